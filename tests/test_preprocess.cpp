#include <doctest/doctest.h>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/env/preprocess.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <tuple>
#include <vector>

using qrl::env::CropRect;
using qrl::env::FrameShape;
using qrl::env::FrameView;
using qrl::env::PixelLayout;
using qrl::env::PreprocessSpec;

namespace {

struct Image {
  FrameShape shape;
  std::vector<std::uint8_t> data;
  FrameView view() const { return {data.data(), shape}; }
};

// A frame whose pixels are the given gray levels, stored in `layout`.
Image gray_image(int height, int width, const std::vector<int>& levels, PixelLayout layout) {
  REQUIRE(levels.size() == static_cast<std::size_t>(height * width));
  const int channels = qrl::kernels::channel_count(layout);
  Image image{{height, width, channels}, {}};
  for (int level : levels) {
    for (int c = 0; c < channels; ++c) image.data.push_back(static_cast<std::uint8_t>(level));
  }
  return image;
}

Image uniform_rgb(int height, int width, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  Image image{{height, width, 3}, {}};
  for (int i = 0; i < height * width; ++i) image.data.insert(image.data.end(), {r, g, b});
  return image;
}

Image random_rgb(int height, int width, std::uint64_t seed) {
  qrl::Rng rng(seed);
  Image image{{height, width, 3}, std::vector<std::uint8_t>(static_cast<std::size_t>(height) * width * 3)};
  for (auto& byte : image.data) byte = static_cast<std::uint8_t>(rng.uniform_index(256));
  return image;
}

std::vector<int> run(const Image& image, const PreprocessSpec& spec) {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(spec.out_height) * spec.out_width, 77);
  qrl::env::preprocess(image.view(), spec, out.data());
  return {out.begin(), out.end()};
}

PreprocessSpec spec_for(PixelLayout layout, int out_height, int out_width) {
  PreprocessSpec spec;
  spec.layout = layout;
  spec.out_height = out_height;
  spec.out_width = out_width;
  return spec;
}

// Independent floating-point area resize of an RGB crop (downscale only):
// each output pixel integrates the piecewise-constant image over its
// rectangle, overlaps computed in source-pixel units with doubles.
std::vector<double> area_reference(const Image& image, CropRect crop, int out_height, int out_width) {
  std::vector<double> out(static_cast<std::size_t>(out_height) * out_width, 0.0);
  const double sy = static_cast<double>(crop.height) / out_height;
  const double sx = static_cast<double>(crop.width) / out_width;
  for (int oy = 0; oy < out_height; ++oy) {
    for (int ox = 0; ox < out_width; ++ox) {
      const double y0 = oy * sy, y1 = (oy + 1) * sy, x0 = ox * sx, x1 = (ox + 1) * sx;
      double sum = 0.0;
      for (int y = static_cast<int>(std::floor(y0)); y < std::min<double>(std::ceil(y1), crop.height); ++y) {
        const double wy = std::min<double>(y1, y + 1) - std::max<double>(y0, y);
        for (int x = static_cast<int>(std::floor(x0)); x < std::min<double>(std::ceil(x1), crop.width); ++x) {
          const double wx = std::min<double>(x1, x + 1) - std::max<double>(x0, x);
          const std::uint8_t* p =
              &image.data[(static_cast<std::size_t>(crop.top + y) * image.shape.width + crop.left + x) * 3];
          sum += wy * wx * (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]);
        }
      }
      out[static_cast<std::size_t>(oy) * out_width + ox] = sum / (sy * sx);
    }
  }
  return out;
}

}  // namespace

TEST_SUITE("preprocess") {
  TEST_CASE("preprocess: 4x4 gray-coloured RGB frame averages 2x2 blocks") {
    // Gray pixels (R = G = B) have luma equal to their level since the
    // BT.601 weights sum to 1.
    const Image image = gray_image(4, 4,
                                   {10, 20, 100, 100,  //
                                    30, 40, 100, 200,  //
                                    0, 0, 255, 255,    //
                                    0, 4, 255, 254},
                                   PixelLayout::Rgb);
    // (10+20+30+40)/4 = 25, (100+100+100+200)/4 = 125, 4/4 = 1, 1019/4 = 254.75.
    CHECK(run(image, spec_for(PixelLayout::Rgb, 2, 2)) == std::vector<int>{25, 125, 1, 255});
  }

  TEST_CASE("preprocess: BT.601 weights on pure primaries") {
    // 0.299*255 = 76.245, 0.587*255 = 149.685, 0.114*255 = 29.07.
    CHECK(run(uniform_rgb(4, 4, 255, 0, 0), spec_for(PixelLayout::Rgb, 2, 2)) == std::vector<int>(4, 76));
    CHECK(run(uniform_rgb(4, 4, 0, 255, 0), spec_for(PixelLayout::Rgb, 2, 2)) == std::vector<int>(4, 150));
    CHECK(run(uniform_rgb(4, 4, 0, 0, 255), spec_for(PixelLayout::Rgb, 2, 2)) == std::vector<int>(4, 29));
    // 0.299*200 + 0.587*100 + 0.114*50 = 59.8 + 58.7 + 5.7 = 124.2, any size.
    CHECK(run(uniform_rgb(7, 9, 200, 100, 50), spec_for(PixelLayout::Rgb, 3, 4)) == std::vector<int>(12, 124));
  }

  TEST_CASE("preprocess: box filter uses fractional edge weights") {
    // 3 -> 2: each output covers 1.5 pixels. (30 + 0.5*60)/1.5 = 40, (0.5*60 + 90)/1.5 = 80.
    CHECK(run(gray_image(1, 3, {30, 60, 90}, PixelLayout::Gray), spec_for(PixelLayout::Gray, 1, 2)) ==
          std::vector<int>{40, 80});
    // 5 -> 2: 2.5 pixels each; the middle 100 is split in halves: 50/2.5 = 20.
    CHECK(run(gray_image(1, 5, {0, 0, 100, 0, 0}, PixelLayout::Gray), spec_for(PixelLayout::Gray, 1, 2)) ==
          std::vector<int>{20, 20});
    // 3x3 -> 2x2 with a 90 in the centre: it weighs 0.5*0.5 of a 1.5*1.5 area
    // in every output, 90 * 0.25 / 2.25 = 10.
    CHECK(run(gray_image(3, 3, {0, 0, 0, 0, 90, 0, 0, 0, 0}, PixelLayout::Rgb), spec_for(PixelLayout::Rgb, 2, 2)) ==
          std::vector<int>{10, 10, 10, 10});
  }

  TEST_CASE("preprocess: rounding is to nearest and halves up") {
    CHECK(run(gray_image(1, 2, {0, 1}, PixelLayout::Gray), spec_for(PixelLayout::Gray, 1, 1)) == std::vector<int>{1});
    CHECK(run(gray_image(1, 2, {2, 3}, PixelLayout::Gray), spec_for(PixelLayout::Gray, 1, 1)) == std::vector<int>{3});
    // (0 + 0 + 1) / 3 = 0.33 -> 0, (1 + 1 + 0) / 3 = 0.67 -> 1.
    CHECK(run(gray_image(1, 6, {0, 0, 1, 1, 1, 0}, PixelLayout::Gray), spec_for(PixelLayout::Gray, 1, 2)) ==
          std::vector<int>{0, 1});
  }

  TEST_CASE("preprocess: crop selects the rectangle even with a padded row pitch") {
    std::vector<int> levels;
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 6; ++x) levels.push_back(10 * y + x);
    const Image image = gray_image(6, 6, levels, PixelLayout::Rgb);
    PreprocessSpec spec = spec_for(PixelLayout::Rgb, 2, 2);
    spec.crop = CropRect{2, 1, 2, 2};
    CHECK(run(image, spec) == std::vector<int>{21, 22, 31, 32});
    spec.out_height = spec.out_width = 1;
    CHECK(run(image, spec) == std::vector<int>{27});  // (21+22+31+32)/4 = 26.5

    // Same pixels with 5 bytes of 255 after each 18-byte row.
    constexpr std::size_t pitch = 6 * 3 + 5;
    std::vector<std::uint8_t> padded(pitch * 6, 255);
    for (int y = 0; y < 6; ++y)
      std::copy_n(image.data.begin() + y * 18, 18, padded.begin() + static_cast<std::ptrdiff_t>(y * pitch));
    spec.row_pitch = pitch;
    spec.crop = CropRect{3, 3, 3, 3};
    spec.out_height = spec.out_width = 3;
    std::vector<std::uint8_t> out(9);
    qrl::env::preprocess(FrameView{padded.data(), image.shape}, spec, out.data());
    CHECK(std::vector<int>(out.begin(), out.end()) == std::vector<int>{33, 34, 35, 43, 44, 45, 53, 54, 55});
  }

  TEST_CASE("preprocess: threshold is strict and off by default") {
    const Image image = gray_image(4, 4, {10, 20, 100, 100, 30, 40, 100, 200, 0, 0, 255, 255, 0, 4, 255, 254},
                                   PixelLayout::Rgb);
    PreprocessSpec spec = spec_for(PixelLayout::Rgb, 2, 2);  // gray levels 25, 125, 1, 255
    CHECK_FALSE(spec.threshold.has_value());
    spec.threshold = 25;
    CHECK(run(image, spec) == std::vector<int>{0, 255, 0, 255});
    spec.threshold = 24;
    CHECK(run(image, spec) == std::vector<int>{255, 255, 0, 255});
    spec.threshold = 0;
    CHECK(run(image, spec) == std::vector<int>{255, 255, 255, 255});
    spec.threshold = 255;
    CHECK(run(image, spec) == std::vector<int>{0, 0, 0, 0});
  }

  TEST_CASE("preprocess: RGBA and BGRA give the gray of the same RGB colour") {
    const Image rgb = random_rgb(37, 53, 11);
    Image rgba{{37, 53, 4}, {}}, bgra{{37, 53, 4}, {}};
    qrl::Rng alpha(5);
    for (std::size_t i = 0; i < rgb.data.size(); i += 3) {
      const auto a = static_cast<std::uint8_t>(alpha.uniform_index(256));
      rgba.data.insert(rgba.data.end(), {rgb.data[i], rgb.data[i + 1], rgb.data[i + 2], a});
      bgra.data.insert(bgra.data.end(), {rgb.data[i + 2], rgb.data[i + 1], rgb.data[i], a});
    }
    const std::vector<int> expected = run(rgb, spec_for(PixelLayout::Rgb, 10, 13));
    CHECK(std::any_of(expected.begin(), expected.end(), [&](int v) { return v != expected.front(); }));
    CHECK(run(rgba, spec_for(PixelLayout::Rgba, 10, 13)) == expected);
    CHECK(run(bgra, spec_for(PixelLayout::Bgra, 10, 13)) == expected);
    // Hand value for one colour in both 4-channel layouts: 124.2 -> 124.
    CHECK(run(Image{{1, 1, 4}, {200, 100, 50, 0}}, spec_for(PixelLayout::Rgba, 1, 1)) == std::vector<int>{124});
    CHECK(run(Image{{1, 1, 4}, {50, 100, 200, 9}}, spec_for(PixelLayout::Bgra, 1, 1)) == std::vector<int>{124});
  }

  TEST_CASE("preprocess: matches an independent floating-point area resize within 1") {
    const Image image = random_rgb(512, 288, 2024);
    double norm = 0.0;
    for (auto byte : image.data) norm += byte;
    REQUIRE(norm > 0.0);
    for (const auto& [crop, out_h, out_w] :
         {std::tuple{CropRect{0, 0, 404, 288}, 80, 80}, std::tuple{CropRect{0, 0, 404, 288}, 84, 84},
          std::tuple{CropRect{33, 17, 301, 203}, 47, 61}}) {
      PreprocessSpec spec = spec_for(PixelLayout::Rgb, out_h, out_w);
      spec.crop = crop;
      const std::vector<int> got = run(image, spec);
      const std::vector<double> want = area_reference(image, crop, out_h, out_w);
      int worst = 0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        worst = std::max(worst, static_cast<int>(std::abs(got[i] - std::lround(want[i]))));
      }
      CHECK(worst <= 1);
    }
  }

  TEST_CASE("preprocess: upscaling falls back to bilinear with half-pixel centres") {
    // Output centres map to source x = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    CHECK(run(gray_image(1, 2, {0, 100}, PixelLayout::Gray), spec_for(PixelLayout::Gray, 1, 4)) ==
          std::vector<int>{0, 25, 75, 100});
    // Mixed: rows downscaled by box (2 -> 1 averages), columns upscaled.
    CHECK(run(gray_image(2, 2, {0, 100, 100, 200}, PixelLayout::Gray), spec_for(PixelLayout::Gray, 1, 4)) ==
          std::vector<int>{50, 75, 125, 150});
  }

  TEST_CASE("preprocess: batched preprocess equals one call per frame") {
    const Image a = random_rgb(60, 40, 1), b = random_rgb(45, 70, 2), c = uniform_rgb(10, 10, 0, 255, 0);
    const PreprocessSpec spec = spec_for(PixelLayout::Rgb, 12, 9);
    const std::vector<FrameView> views{a.view(), b.view(), c.view()};
    std::vector<std::uint8_t> batch(3 * 12 * 9, 0);
    qrl::env::preprocess(std::span<const FrameView>(views), spec, batch.data());
    std::vector<int> expected;
    for (const Image* image : {&a, &b, &c}) {
      const std::vector<int> one = run(*image, spec);
      expected.insert(expected.end(), one.begin(), one.end());
    }
    CHECK(std::vector<int>(batch.begin(), batch.end()) == expected);
    CHECK(batch.back() == 150);
  }

  TEST_CASE("preprocess: invalid specs throw qrl::Error with a clear message") {
    const Image image = random_rgb(10, 12, 3);
    std::vector<std::uint8_t> out(64 * 64);
    auto attempt = [&](PreprocessSpec spec, FrameView view) { qrl::env::preprocess(view, spec, out.data()); };
    PreprocessSpec spec = spec_for(PixelLayout::Rgb, 4, 4);

    spec.crop = CropRect{5, 0, 6, 12};  // rows 5..11 of a 10-row frame
    CHECK_THROWS_WITH_AS(attempt(spec, image.view()), doctest::Contains("outside the 10x12 frame"), qrl::Error);
    spec.crop = CropRect{0, -1, 4, 4};
    CHECK_THROWS_WITH_AS(attempt(spec, image.view()), doctest::Contains("outside"), qrl::Error);
    spec.crop = CropRect{0, 0, 0, 4};
    CHECK_THROWS_WITH_AS(attempt(spec, image.view()), doctest::Contains("crop size 0x4"), qrl::Error);
    spec.crop.reset();
    spec.out_width = 0;
    CHECK_THROWS_WITH_AS(attempt(spec, image.view()), doctest::Contains("output size 4x0"), qrl::Error);
    spec.out_width = 4;

    const Image two_channels{{2, 2, 2}, std::vector<std::uint8_t>(8, 1)};
    CHECK_THROWS_WITH_AS(attempt(spec, two_channels.view()), doctest::Contains("unsupported channel count 2"),
                         qrl::Error);
    spec.layout = PixelLayout::Rgba;
    CHECK_THROWS_WITH_AS(attempt(spec, image.view()), doctest::Contains("needs 4 channels but the frame has 3"),
                         qrl::Error);
    spec.layout = PixelLayout::Rgb;
    CHECK_THROWS_AS(attempt(spec, FrameView{nullptr, image.shape}), qrl::Error);
    spec.row_pitch = 5;
    CHECK_THROWS_WITH_AS(attempt(spec, image.view()), doctest::Contains("row pitch"), qrl::Error);
    spec.row_pitch = 0;
    CHECK_NOTHROW(attempt(spec, image.view()));

    // A bad frame in a batch names its index.
    const std::vector<FrameView> views{image.view(), two_channels.view()};
    CHECK_THROWS_WITH_AS(qrl::env::preprocess(std::span<const FrameView>(views), spec, out.data()),
                         doctest::Contains("batch frame 1"), qrl::Error);
  }
}
