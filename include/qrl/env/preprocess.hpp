#pragma once
// CPU frame preprocessing: validation plus a loop over the element functor in
// qrl/kernels/preprocess.cuh (the same functor a CUDA kernel runs per thread).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include <qrl/core/error.hpp>
#include <qrl/env/env.hpp>
#include <qrl/kernels/preprocess.cuh>

namespace qrl::env {

using kernels::PixelLayout;

// A rectangle in source pixels: rows [top, top + height), cols [left, left + width).
struct CropRect {
  int top = 0;
  int left = 0;
  int height = 0;
  int width = 0;
  friend bool operator==(const CropRect&, const CropRect&) = default;
};

// What to make of a raw frame. Defaults: whole RGB frame to 84x84 gray
// (the Nature DQN input), no threshold.
struct PreprocessSpec {
  PixelLayout layout = PixelLayout::Rgb;
  std::optional<CropRect> crop;  // empty: the whole frame
  int out_height = 84;
  int out_width = 84;
  // Binary output: gray > threshold -> 255, else 0. Empty: keep gray levels.
  std::optional<std::uint8_t> threshold;
  // Bytes between the starts of two rows; 0 means packed (width * channels).
  // FrameView itself is always packed; a pitch lets callers pass padded
  // buffers (canvas readbacks, pitched device copies) without repacking.
  std::size_t row_pitch = 0;

  FrameShape output_shape() const { return {out_height, out_width, 1}; }
};

inline const char* layout_name(PixelLayout layout) {
  switch (layout) {
    case PixelLayout::Rgb: return "Rgb";
    case PixelLayout::Rgba: return "Rgba";
    case PixelLayout::Bgra: return "Bgra";
    case PixelLayout::Gray: return "Gray";
  }
  return "unknown";
}

// Checks `spec` against `src` and returns the functor that computes one
// output pixel. Throws qrl::Error naming the offending value.
inline kernels::PreprocessFunctor make_preprocess_functor(FrameView src, const PreprocessSpec& spec) {
  const FrameShape& shape = src.shape;
  require(src.pixels != nullptr, "preprocess: the source frame has no pixels (null pointer)");
  require(shape.height > 0 && shape.width > 0, "preprocess: the source frame is ", shape.height, "x", shape.width,
          "; both sizes must be positive");
  require(shape.channels == 1 || shape.channels == 3 || shape.channels == 4, "preprocess: unsupported channel count ",
          shape.channels, " (expected 1 for Gray, 3 for Rgb, 4 for Rgba or Bgra)");
  require(kernels::channel_count(spec.layout) == shape.channels, "preprocess: layout ", layout_name(spec.layout),
          " needs ", kernels::channel_count(spec.layout), " channels but the frame has ", shape.channels);
  require(spec.out_height > 0 && spec.out_width > 0, "preprocess: output size ", spec.out_height, "x", spec.out_width,
          " has a zero or negative side");
  const CropRect crop = spec.crop.value_or(CropRect{0, 0, shape.height, shape.width});
  require(crop.height > 0 && crop.width > 0, "preprocess: crop size ", crop.height, "x", crop.width,
          " has a zero or negative side");
  require(crop.top >= 0 && crop.left >= 0 && crop.top <= shape.height - crop.height &&
              crop.left <= shape.width - crop.width,
          "preprocess: crop rows [", crop.top, ", ", static_cast<long long>(crop.top) + crop.height, ") x cols [",
          crop.left, ", ", static_cast<long long>(crop.left) + crop.width, ") lies outside the ", shape.height, "x",
          shape.width, " frame");
  const std::size_t packed_pitch = static_cast<std::size_t>(shape.width) * shape.channels;
  const std::size_t pitch = spec.row_pitch == 0 ? packed_pitch : spec.row_pitch;
  require(pitch >= packed_pitch, "preprocess: row pitch ", pitch, " bytes is shorter than a row (", packed_pitch,
          " bytes)");

  kernels::PreprocessFunctor functor;
  functor.src = src.pixels;
  functor.row_pitch = pitch;
  functor.layout = spec.layout;
  functor.crop_top = crop.top;
  functor.crop_left = crop.left;
  functor.rows = kernels::AxisResampler{crop.height, spec.out_height};
  functor.cols = kernels::AxisResampler{crop.width, spec.out_width};
  functor.threshold = spec.threshold ? static_cast<int>(*spec.threshold) : -1;
  return functor;
}

// Writes spec.out_height x spec.out_width gray bytes to dst. A single frame is
// a few thousand output pixels, too little work to pay for a thread team.
inline void preprocess(FrameView src, const PreprocessSpec& spec, std::uint8_t* dst) {
  const kernels::PreprocessFunctor functor = make_preprocess_functor(src, spec);
  require(dst != nullptr, "preprocess: destination is a null pointer");
  const int height = functor.out_height();
  const int width = functor.out_width();
  for (int y = 0; y < height; ++y) {
    std::uint8_t* out_row = dst + static_cast<std::size_t>(y) * width;
    for (int x = 0; x < width; ++x) out_row[x] = functor(y, x);
  }
}

// Batched: frame i goes to dst + i * out_height * out_width. Frames may differ
// in size; each is validated before any work starts, so a bad frame throws
// without a partially written batch or an exception inside a parallel region.
inline void preprocess(std::span<const FrameView> frames, const PreprocessSpec& spec, std::uint8_t* dst) {
  if (frames.empty()) return;
  require(dst != nullptr, "preprocess: destination is a null pointer");
  const std::size_t count = frames.size();
  // One functor per frame; a small fixed buffer would cap the batch size.
  auto functors = std::make_unique<kernels::PreprocessFunctor[]>(count);
  for (std::size_t i = 0; i < count; ++i) {
    try {
      functors[i] = make_preprocess_functor(frames[i], spec);
    } catch (const Error& error) {
      fail("batch frame ", i, ": ", error.what());
    }
  }
  const int height = spec.out_height;
  const int width = spec.out_width;
  const std::size_t frame_bytes = static_cast<std::size_t>(height) * width;
  const auto rows = static_cast<long long>(count) * height;
#pragma omp parallel for schedule(static) if (count > 1)
  for (long long r = 0; r < rows; ++r) {
    const auto frame = static_cast<std::size_t>(r / height);
    const int y = static_cast<int>(r % height);
    std::uint8_t* out_row = dst + frame * frame_bytes + static_cast<std::size_t>(y) * width;
    for (int x = 0; x < width; ++x) out_row[x] = functors[frame](y, x);
  }
}

}  // namespace qrl::env
