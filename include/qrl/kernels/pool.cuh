#pragma once
// The max-pooling window search, shared by the CPU backend's loop and the
// CUDA kernel so that both pick the same element: cells of Keras' asymmetric
// 'same' padding are skipped (not read as zeros), and on ties the first
// maximum in row-major window order wins.
#include <cstdint>

#include <qrl/kernels/geometry.hpp>
#include <qrl/core/host_device.hpp>

namespace qrl::kernels {

struct MaxPoolWindow {
  // Index, within one (n, c) input plane, of the maximum of output cell
  // (oh, ow)'s window. Every window of a planned geometry holds at least one
  // input cell (padding is smaller than the kernel), so the index is valid.
  QRL_HOST_DEVICE std::int32_t operator()(const Pool2dGeometry& g, const float* plane, int oh, int ow) const {
    float best = 0.0f;
    std::int32_t best_index = -1;
    for (int kh = 0; kh < g.kernel_h; ++kh) {
      const int ih = oh * g.stride_h - g.pad_top + kh;
      if (ih < 0 || ih >= g.in_h) continue;
      for (int kw = 0; kw < g.kernel_w; ++kw) {
        const int iw = ow * g.stride_w - g.pad_left + kw;
        if (iw < 0 || iw >= g.in_w) continue;
        const float v = plane[ih * g.in_w + iw];
        if (best_index < 0 || v > best) {
          best = v;
          best_index = ih * g.in_w + iw;
        }
      }
    }
    return best_index;
  }
};

}  // namespace qrl::kernels
