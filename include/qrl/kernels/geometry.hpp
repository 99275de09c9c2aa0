#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include <qrl/core/error.hpp>

namespace qrl {

// 'valid': no padding. 'same': Keras/TensorFlow semantics, output =
// ceil(input / stride), the padding split with the extra row/column at the
// bottom/right, as the Keras DQN tutorials use it.
enum class Padding { valid, same };

inline const char* to_string(Padding p) { return p == Padding::valid ? "valid" : "same"; }

struct PaddedExtent {
  int out = 0;
  int pad_before = 0;
};

inline PaddedExtent padded_extent(int in, int kernel, int stride, Padding padding) {
  if (padding == Padding::valid) {
    require_shape(in >= kernel, "input extent ", in, " is smaller than the kernel ", kernel,
                  " with 'valid' padding: use 'same' padding or a larger input");
    return {(in - kernel) / stride + 1, 0};
  }
  const int out = (in + stride - 1) / stride;
  const int total = std::max((out - 1) * stride + kernel - in, 0);
  return {out, total / 2};
}

// NCHW convolution geometry shared by every backend's conv implementation.
struct Conv2dGeometry {
  int batch = 0, in_channels = 0, in_h = 0, in_w = 0;
  int out_channels = 0, kernel_h = 0, kernel_w = 0;
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0;
  int out_h = 0, out_w = 0;

  std::int64_t input_size() const { return std::int64_t{batch} * in_channels * in_h * in_w; }
  std::int64_t output_size() const { return std::int64_t{batch} * out_channels * out_h * out_w; }
  std::int64_t weight_size() const { return std::int64_t{out_channels} * in_channels * kernel_h * kernel_w; }
  std::int64_t patch_size() const { return std::int64_t{in_channels} * kernel_h * kernel_w; }
  std::int64_t output_pixels() const { return std::int64_t{out_h} * out_w; }
  bool operator==(const Conv2dGeometry&) const = default;  // the key of the backends' per-shape plans
};

// Max pooling geometry; padded cells never win the max.
struct Pool2dGeometry {
  int batch = 0, channels = 0, in_h = 0, in_w = 0;
  int kernel_h = 2, kernel_w = 2, stride_h = 2, stride_w = 2;
  int pad_top = 0, pad_left = 0;
  int out_h = 0, out_w = 0;
  std::int64_t input_size() const { return std::int64_t{batch} * channels * in_h * in_w; }
  std::int64_t output_size() const { return std::int64_t{batch} * channels * out_h * out_w; }
};

}  // namespace qrl
