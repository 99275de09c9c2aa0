#pragma once
// How Flappy Bird looks: flat-coloured rectangles (pipes with rims, the
// bird) over sky and ground, so the gray observation can be computed
// straight from the rectangles without rasterising. FlappyRenderer draws the
// RGB screen on demand and computes that observation; both give the same
// bytes as rendering and env::preprocess (the analytic path reproduces the
// reference's integer arithmetic exactly).
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <qrl/env/env.hpp>
#include <qrl/envs/flappy_rules.hpp>
#include <qrl/kernels/preprocess.cuh>

namespace qrl::envs {

struct Rgb8 {
  std::uint8_t r = 0;
  std::uint8_t g = 0;
  std::uint8_t b = 0;
};

// FlappyBird derives from this too: FlappyBird::kSkyColor, ...
struct FlappyPalette {
  // Flat colours, picked so the gray levels stay apart (sky 159, pipe 124,
  // pipe rim 76, bird 197, ground 210); the sprites' own colours are close in
  // luma, which would blur pipes into sky for the learner.
  static constexpr Rgb8 kSkyColor{78, 192, 202};
  static constexpr Rgb8 kPipeColor{83, 160, 50};
  static constexpr Rgb8 kPipeRimColor{45, 100, 30};
  static constexpr Rgb8 kBirdColor{250, 200, 40};
  static constexpr Rgb8 kGroundColor{222, 216, 149};
  // The rim is the pipe's lip at the gap end; drawing only, not collision.
  static constexpr int kPipeRimHeight = 12;
};

class FlappyRenderer : FlappyRules, FlappyPalette {
 public:
  FlappyRenderer() = default;
  // For gray observations of `height` x `width` of the playfield (binary
  // above `threshold` when set); the caller has checked the size.
  FlappyRenderer(int height, int width, std::optional<std::uint8_t> threshold)
      : height_(height), width_(width), threshold_(threshold) {
    prepare_columns();
  }

  // The whole 288x512 RGB screen of the bird at `bird_y` among `pipes`.
  void draw_screen(int bird_y, std::span<const FlappyPipe> pipes) {
    screen_.resize(static_cast<std::size_t>(kScreenHeight) * kScreenWidth * 3);
    auto fill = [this](int top, int bottom, int left, int right, Rgb8 color) {
      for (int y = top; y < bottom; ++y) {
        std::uint8_t* pixel = &screen_[(static_cast<std::size_t>(y) * kScreenWidth + left) * 3];
        for (int x = left; x < right; ++x, pixel += 3) {
          pixel[0] = color.r;
          pixel[1] = color.g;
          pixel[2] = color.b;
        }
      }
    };
    fill(0, kBaseY, 0, kScreenWidth, kSkyColor);
    fill(kBaseY, kScreenHeight, 0, kScreenWidth, kGroundColor);
    std::array<SceneRect, kMaxRects> rects;
    const int count = scene(bird_y, pipes, rects);
    for (int i = 0; i < count; ++i) fill(rects[i].top, rects[i].bottom, rects[i].left, rects[i].right, rects[i].color);
  }
  // The screen last drawn.
  env::FrameView screen() const { return {screen_.data(), {kScreenHeight, kScreenWidth, 3}}; }

  // The observation of the same scene into `out` (height x width bytes)
  // without rasterising 116k pixels. The rectangle edges cut the playfield
  // into horizontal bands whose rows are identical; each band's
  // box-filtered row ("profile") is computed once from its 288 columns, and
  // an output row is the sum of the profiles weighted by how many source
  // rows (in the filter's integer units) it shares with each band. This is
  // the reference functor's exact sum regrouped, so the result is
  // bit-identical.
  void observe_analytic(int bird_y, std::span<const FlappyPipe> pipes, std::uint8_t* observation) {
    std::array<SceneRect, kMaxRects> rects;
    const int rect_count = scene(bird_y, pipes, rects);

    std::array<int, 2 * kMaxRects + 2> cuts;
    int cut_count = 0;
    cuts[cut_count++] = 0;
    cuts[cut_count++] = kBaseY;
    for (int i = 0; i < rect_count; ++i) {
      cuts[cut_count++] = rects[i].top;
      cuts[cut_count++] = rects[i].bottom;
    }
    std::sort(cuts.begin(), cuts.begin() + cut_count);
    const int band_count = static_cast<int>(std::unique(cuts.begin(), cuts.begin() + cut_count) - cuts.begin()) - 1;

    const int width = width_;
    const std::int32_t sky = luma_of(kSkyColor);
    for (int band = 0; band < band_count; ++band) {
      const int top = cuts[band], bottom = cuts[band + 1];
      std::fill(row_luma_.begin(), row_luma_.begin() + kScreenWidth, sky);
      for (int i = 0; i < rect_count; ++i) {
        const SceneRect& rect = rects[i];
        if (rect.top <= top && rect.bottom >= bottom) {
          std::fill(row_luma_.begin() + rect.left, row_luma_.begin() + rect.right, luma_of(rect.color));
        }
      }
      double* profile = &band_profiles_[static_cast<std::size_t>(band) * width];
      for (int ox = 0; ox < width; ++ox) {
        const std::int32_t* luma = &row_luma_[column_first_[ox]];
        const std::int32_t* weights = &column_weights_[static_cast<std::size_t>(ox) * tap_count_];
        std::int32_t sum = 0;  // at most 288 * 255000
        for (int k = 0; k < tap_count_; ++k) sum += weights[k] * luma[k];
        profile[ox] = sum;
      }
    }

    // Row weights are in units of 1/height: output row oy covers
    // [oy * kBaseY, (oy + 1) * kBaseY), a band covers [top * height, bottom * height).
    const int height = height_;
    const double denominator = 1000.0 * kBaseY * kScreenWidth;
    const double scale = 1.0 / denominator;
    // Sums are integers, so exact quotients are multiples of 1/denominator.
    // Adding half a step on top of the 0.5 of round-half-up keeps a margin
    // of half a step for the ~1e-13 error of the double arithmetic, so the
    // truncation below rounds exactly like the reference's integer division.
    const double bias = 0.5 + 0.5 * scale;
    const int threshold = threshold_ ? static_cast<int>(*threshold_) : -1;
    int band = 0;
    for (int oy = 0; oy < height; ++oy) {
      const std::int64_t lo = static_cast<std::int64_t>(oy) * kBaseY;
      const std::int64_t hi = lo + kBaseY;
      while (static_cast<std::int64_t>(cuts[band + 1]) * height <= lo) ++band;
      std::fill(row_sum_.begin(), row_sum_.end(), 0.0);
      for (int b = band; b < band_count && static_cast<std::int64_t>(cuts[b]) * height < hi; ++b) {
        const double w = static_cast<double>(std::min<std::int64_t>(hi, static_cast<std::int64_t>(cuts[b + 1]) * height) -
                                             std::max<std::int64_t>(lo, static_cast<std::int64_t>(cuts[b]) * height));
        const double* profile = &band_profiles_[static_cast<std::size_t>(b) * width];
        for (int ox = 0; ox < width; ++ox) row_sum_[ox] += w * profile[ox];
      }
      std::uint8_t* out = &observation[static_cast<std::size_t>(oy) * width];
      for (int ox = 0; ox < width; ++ox) {
        const int gray = static_cast<int>(row_sum_[ox] * scale + bias);
        out[ox] = threshold < 0 ? static_cast<std::uint8_t>(gray) : (gray > threshold ? 255 : 0);
      }
    }
  }

 private:
  // A filled rectangle: rows [top, bottom), cols [left, right).
  struct SceneRect {
    int top = 0;
    int bottom = 0;
    int left = 0;
    int right = 0;
    Rgb8 color;
  };
  // Four per pipe (two bodies, two rims) and the bird.
  static constexpr int kMaxRects = 4 * kMaxPipes + 1;

  // The playfield above the ground as rectangles in painting order (pipes,
  // then the bird on top), clipped to it. Sky is the background.
  static int scene(int bird_y, std::span<const FlappyPipe> pipes, std::array<SceneRect, kMaxRects>& rects) {
    int count = 0;
    auto add = [&](int top, int bottom, int left, int right, Rgb8 color) {
      top = std::max(top, 0);
      bottom = std::min(bottom, kBaseY);
      left = std::max(left, 0);
      right = std::min(right, kScreenWidth);
      if (top < bottom && left < right) rects[count++] = SceneRect{top, bottom, left, right, color};
    };
    for (const FlappyPipe& pipe : pipes) {
      const int left = pipe.x, right = pipe.x + kPipeWidth;
      const int lower_top = pipe.gap_top + kPipeGap;
      add(pipe.gap_top - kPipeHeight, pipe.gap_top, left, right, kPipeColor);
      add(pipe.gap_top - kPipeRimHeight, pipe.gap_top, left, right, kPipeRimColor);
      add(lower_top, lower_top + kPipeHeight, left, right, kPipeColor);
      add(lower_top, lower_top + kPipeRimHeight, left, right, kPipeRimColor);
    }
    add(bird_y, bird_y + kBirdHeight, kBirdX, kBirdX + kBirdWidth, kBirdColor);
    return count;
  }

  static std::int32_t luma_of(Rgb8 color) {
    return static_cast<std::int32_t>(kernels::luma_milli(color.r, color.g, color.b));
  }

  // Column taps of the box filter (kScreenWidth -> observation width), padded
  // to a common count with zero weights so the inner loop has a fixed length.
  void prepare_columns() {
    const kernels::AxisResampler cols{kScreenWidth, width_};
    const int width = width_;
    tap_count_ = 0;
    column_first_.assign(static_cast<std::size_t>(width), 0);
    for (int ox = 0; ox < width; ++ox) {
      int first = 0, last = 0;
      cols.taps(ox, first, last);
      column_first_[ox] = first;
      tap_count_ = std::max(tap_count_, last - first);
    }
    column_weights_.assign(static_cast<std::size_t>(width) * tap_count_, 0);
    for (int ox = 0; ox < width; ++ox) {
      for (int k = 0; k < tap_count_; ++k) {
        column_weights_[static_cast<std::size_t>(ox) * tap_count_ + k] =
            static_cast<std::int32_t>(cols.weight(ox, column_first_[ox] + k));
      }
    }
    row_luma_.assign(static_cast<std::size_t>(kScreenWidth + tap_count_), 0);
    band_profiles_.assign(static_cast<std::size_t>(2 * kMaxRects + 1) * width, 0.0);
    row_sum_.assign(static_cast<std::size_t>(width), 0.0);
  }

  int height_ = 0, width_ = 0;
  std::optional<std::uint8_t> threshold_;
  std::vector<std::uint8_t> screen_;

  // Scratch for observe_analytic(), sized once for the configuration.
  int tap_count_ = 0;
  std::vector<int> column_first_;
  std::vector<std::int32_t> column_weights_;
  std::vector<std::int32_t> row_luma_;
  std::vector<double> band_profiles_;
  std::vector<double> row_sum_;
};

}  // namespace qrl::envs
