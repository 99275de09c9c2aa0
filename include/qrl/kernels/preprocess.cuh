#pragma once
// Frame preprocessing element functor: 8-bit colour frame -> cropped, resized,
// BT.601 gray uint8 frame (optionally binarised), one output pixel per call.
//
// Compiled by g++ as the CPU implementation (qrl::env::preprocess loops it)
// and by nvcc inside kernels/*.cu, where a thread computes one (out_y, out_x).
// So: PODs and raw pointers only, no std:: containers, no exceptions; the host
// side (include/qrl/env/preprocess.hpp) validates before building a functor.
//
// Arithmetic is integer-exact: luma is 299 R + 587 G + 114 B (BT.601 scaled by
// 1000) and resampling weights are integers in units of 1/out_size (box) or
// 1/(2 out_size) (bilinear), so the result is the exactly rounded weighted
// mean. CPU and GPU therefore agree bit for bit, and analytic shortcuts (the
// Flappy Bird env's fused observation) can reproduce it exactly.
#include <cstddef>
#include <cstdint>

#include <qrl/core/host_device.hpp>

namespace qrl::kernels {

// Interleaved 8-bit pixel layouts as browsers (RGBA, BGRA), emulators (RGB)
// and already-gray sources produce them.
enum class PixelLayout : int { Rgb = 0, Rgba = 1, Bgra = 2, Gray = 3 };

QRL_HOST_DEVICE constexpr int channel_count(PixelLayout layout) {
  return layout == PixelLayout::Gray ? 1 : (layout == PixelLayout::Rgb ? 3 : 4);
}

// ITU-R BT.601 luma times 1000 (0.299, 0.587, 0.114 are exact in thousandths).
QRL_HOST_DEVICE constexpr std::uint32_t luma_milli(std::uint32_t r, std::uint32_t g, std::uint32_t b) {
  return 299u * r + 587u * g + 114u * b;
}

QRL_HOST_DEVICE inline std::uint32_t luma_milli(const std::uint8_t* pixel, PixelLayout layout) {
  switch (layout) {
    case PixelLayout::Rgb:
    case PixelLayout::Rgba:
      return luma_milli(pixel[0], pixel[1], pixel[2]);
    case PixelLayout::Bgra:
      return luma_milli(pixel[2], pixel[1], pixel[0]);
    case PixelLayout::Gray:
    default:
      return 1000u * pixel[0];
  }
}

// One axis of the separable resampler, in integer weights.
//
// Downscaling (src_size >= out_size): exact box filter. Output o covers the
// source interval [o*src/out, (o+1)*src/out); a source pixel i weighs the
// length of its overlap with that interval, counted in units of 1/out so it
// is an integer. 288 -> 80 thus averages 3.6 columns with fractional edges.
// Weights of one output sum to src_size.
//
// Upscaling (src_size < out_size): a box narrower than one source pixel
// degenerates to nearest-neighbour with seams, so we use bilinear with
// half-pixel centres (OpenCV/PyTorch align_corners=false, edges clamped), in
// units of 1/(2 out). Weights of one output sum to 2*out_size.
struct AxisResampler {
  int src_size = 1;
  int out_size = 1;

  QRL_HOST_DEVICE constexpr bool is_box() const { return src_size >= out_size; }

  QRL_HOST_DEVICE constexpr std::uint64_t total_weight() const {
    return is_box() ? static_cast<std::uint64_t>(src_size) : 2u * static_cast<std::uint64_t>(out_size);
  }

  // Source taps of output `o`: indices [first, last).
  QRL_HOST_DEVICE constexpr void taps(int o, int& first, int& last) const {
    if (is_box()) {
      const std::int64_t lo = static_cast<std::int64_t>(o) * src_size;
      const std::int64_t hi = lo + src_size;
      first = static_cast<int>(lo / out_size);
      last = static_cast<int>((hi + out_size - 1) / out_size);
    } else {
      int i1 = 0;
      std::uint32_t frac = 0;
      bilinear(o, first, i1, frac);
      last = i1 + 1;
    }
  }

  // Weight of source index i for output o (zero outside the taps).
  QRL_HOST_DEVICE constexpr std::uint32_t weight(int o, int i) const {
    if (is_box()) {
      const std::int64_t lo = static_cast<std::int64_t>(o) * src_size;
      const std::int64_t hi = lo + src_size;
      const std::int64_t pixel_lo = static_cast<std::int64_t>(i) * out_size;
      const std::int64_t pixel_hi = pixel_lo + out_size;
      const std::int64_t overlap = (hi < pixel_hi ? hi : pixel_hi) - (lo > pixel_lo ? lo : pixel_lo);
      return overlap > 0 ? static_cast<std::uint32_t>(overlap) : 0u;
    }
    int i0 = 0, i1 = 0;
    std::uint32_t frac = 0;
    bilinear(o, i0, i1, frac);
    const std::uint32_t unit = 2u * static_cast<std::uint32_t>(out_size);
    return (i == i0 ? unit - frac : 0u) + (i == i1 ? frac : 0u);
  }

 private:
  // Source position of output o's centre, (2o+1)*src/(2 out) - 1/2, times 2 out.
  QRL_HOST_DEVICE constexpr void bilinear(int o, int& i0, int& i1, std::uint32_t& frac) const {
    const std::int64_t unit = 2 * static_cast<std::int64_t>(out_size);
    std::int64_t position = (2 * static_cast<std::int64_t>(o) + 1) * src_size - out_size;
    if (position < 0) position = 0;
    i0 = static_cast<int>(position / unit);
    frac = static_cast<std::uint32_t>(position % unit);
    i1 = i0 + 1 < src_size ? i0 + 1 : src_size - 1;
    if (i1 == i0) frac = 0;
  }
};

// Computes output pixel (out_y, out_x). Built and validated on the host by
// qrl::env::make_preprocess_functor; on its own it trusts its fields.
struct PreprocessFunctor {
  const std::uint8_t* src = nullptr;  // first byte of the (uncropped) frame
  std::size_t row_pitch = 0;          // bytes from one source row to the next
  PixelLayout layout = PixelLayout::Rgb;
  int crop_top = 0;
  int crop_left = 0;
  AxisResampler rows;  // crop height -> output height
  AxisResampler cols;  // crop width -> output width
  int threshold = -1;  // < 0: keep gray levels; else value > threshold ? 255 : 0

  QRL_HOST_DEVICE int out_height() const { return rows.out_size; }
  QRL_HOST_DEVICE int out_width() const { return cols.out_size; }

  QRL_HOST_DEVICE std::uint8_t operator()(int out_y, int out_x) const {
    int y_first = 0, y_last = 0, x_first = 0, x_last = 0;
    rows.taps(out_y, y_first, y_last);
    cols.taps(out_x, x_first, x_last);
    const int channels = channel_count(layout);
    std::uint64_t sum = 0;
    for (int y = y_first; y < y_last; ++y) {
      const std::uint8_t* row = src + static_cast<std::size_t>(crop_top + y) * row_pitch +
                                static_cast<std::size_t>(crop_left) * channels;
      std::uint64_t row_sum = 0;
      for (int x = x_first; x < x_last; ++x) {
        row_sum += static_cast<std::uint64_t>(cols.weight(out_x, x)) * luma_milli(row + x * channels, layout);
      }
      sum += rows.weight(out_y, y) * row_sum;
    }
    const std::uint64_t denominator = 1000u * rows.total_weight() * cols.total_weight();
    // Round half up; the mean of 8-bit values never exceeds 255.
    const auto gray = static_cast<int>((sum + denominator / 2) / denominator);
    if (threshold >= 0) return gray > threshold ? 255 : 0;
    return static_cast<std::uint8_t>(gray);
  }
};

}  // namespace qrl::kernels
