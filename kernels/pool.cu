// Max pooling, hand-written rather than cuDNN's: the layer needs Keras'
// asymmetric 'same' padding and the CPU backend's tie rule (the first
// maximum in row-major window order wins), and its backward gets the argmax
// indices the forward stored, not x and y as cuDNN's backward wants.
#include <qrl/backend/cuda_launch.hpp>
#include <qrl/kernels/pool.cuh>

#include "launch_config.cuh"

namespace qrl::kernels {
namespace {

__global__ void maxpool_forward_kernel(Pool2dGeometry g, const float* x, float* y, std::int32_t* argmax) {
  const std::int64_t total = std::int64_t{g.batch} * g.channels * g.out_h * g.out_w;
  for (std::int64_t i = global_index(); i < total; i += grid_stride()) {
    const int ow = static_cast<int>(i % g.out_w);
    const int oh = static_cast<int>(i / g.out_w % g.out_h);
    const std::int64_t plane = i / (std::int64_t{g.out_w} * g.out_h);
    const float* src = x + plane * g.in_h * g.in_w;
    const std::int32_t best = MaxPoolWindow{}(g, src, oh, ow);
    y[i] = src[best];
    argmax[i] = best;
  }
}

// One thread per input cell gathers from the windows that cover it, in
// increasing output order as the CPU's scatter adds them: no atomics, and
// overlapping windows (stride < kernel) sum in the same order on both.
__global__ void maxpool_backward_kernel(Pool2dGeometry g, const float* grad_y, const std::int32_t* argmax,
                                        float* grad_x) {
  const std::int64_t total = std::int64_t{g.batch} * g.channels * g.in_h * g.in_w;
  for (std::int64_t i = global_index(); i < total; i += grid_stride()) {
    const int iw = static_cast<int>(i % g.in_w);
    const int ih = static_cast<int>(i / g.in_w % g.in_h);
    const std::int64_t plane = i / (std::int64_t{g.in_w} * g.in_h);
    const int self = ih * g.in_w + iw;
    const int num_h = ih + g.pad_top - g.kernel_h + 1, num_w = iw + g.pad_left - g.kernel_w + 1;
    const int oh_lo = num_h <= 0 ? 0 : (num_h + g.stride_h - 1) / g.stride_h;
    const int ow_lo = num_w <= 0 ? 0 : (num_w + g.stride_w - 1) / g.stride_w;
    const int oh_hi = min(g.out_h - 1, (ih + g.pad_top) / g.stride_h);
    const int ow_hi = min(g.out_w - 1, (iw + g.pad_left) / g.stride_w);
    const std::int64_t base = plane * g.out_h * g.out_w;
    float sum = 0.0f;
    for (int oh = oh_lo; oh <= oh_hi; ++oh)
      for (int ow = ow_lo; ow <= ow_hi; ++ow) {
        const std::int64_t o = base + oh * g.out_w + ow;
        if (argmax[o] == self) sum += grad_y[o];
      }
    grad_x[i] = sum;
  }
}

}  // namespace

void launch_maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, std::int32_t* argmax,
                              cudaStream_t stream) {
  maxpool_forward_kernel<<<blocks_for(g.output_size()), threads_per_block, 0, stream>>>(g, x, y, argmax);
}

void launch_maxpool2d_backward(const Pool2dGeometry& g, const float* grad_y, const std::int32_t* argmax,
                               float* grad_x, cudaStream_t stream) {
  maxpool_backward_kernel<<<blocks_for(g.input_size()), threads_per_block, 0, stream>>>(g, grad_y, argmax, grad_x);
}

}  // namespace qrl::kernels
