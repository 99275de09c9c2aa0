#pragma once
// How a frame leaves the browser, the two capture paths of a canvas game:
// a screenshot (Page.captureScreenshot clipped to the canvas, a PNG of what
// is on screen) and the canvas itself (the observation the page runtime
// computes from getImageData, and the canvas's own PNG when the raw frame
// is wanted). Both give the same pixels for the same game state (tested).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <qrl/core/error.hpp>
#include <qrl/envs/png.hpp>
#include <qrl/io/base64.hpp>

namespace qrl::envs {

// Where the canvas is on the page, in CSS pixels, and its own size in
// pixels: the answer of __qrl.rect().
struct CanvasRect {
  double x = 0;
  double y = 0;
  double width = 0;
  double height = 0;
  int pixel_width = 0;
  int pixel_height = 0;
};

namespace detail {
inline std::vector<std::uint8_t> browser_pixels(std::string_view b64) {
  return io::base64_decode<std::vector<std::uint8_t>>(b64, "the browser's pixel data");
}
}  // namespace detail

// Page.captureScreenshot's parameters: the canvas, scaled so the image has
// the canvas's own size when CSS stretches it.
inline nlohmann::json screenshot_request(const CanvasRect& canvas) {
  const nlohmann::json clip{{"x", canvas.x},
                            {"y", canvas.y},
                            {"width", canvas.width},
                            {"height", canvas.height},
                            {"scale", canvas.pixel_width / canvas.width}};
  return {{"format", "png"}, {"clip", clip}, {"fromSurface", true}, {"optimizeForSpeed", true}};
}

// The RGB frame in a screenshot's base64 PNG (the "data" of the answer).
inline Image decode_screenshot(std::string_view b64, const std::string& game_name) {
  return decode_png(detail::browser_pixels(b64), 3, game_name + ": cannot decode the screenshot PNG");
}

// The observation the page computed (__qrl.observe(): base64 of its
// height x width gray bytes), which must fill `observation` exactly.
inline void read_canvas_observation(std::string_view b64, std::vector<std::uint8_t>& observation,
                                    const std::string& game_name) {
  auto gray = detail::browser_pixels(b64);
  require(gray.size() == observation.size(), game_name, ": the page sent ", gray.size(),
          " observation bytes, expected ", observation.size());
  observation = std::move(gray);
}

// The canvas as RGB from its own PNG (__qrl.pixels()). The PNG holds
// straight (non-premultiplied) RGBA, as getImageData does; the page shows
// it blended over the background, and so does this.
inline Image decode_canvas_png(std::string_view b64, const std::array<std::uint8_t, 3>& background,
                               const std::string& game_name) {
  const Image rgba = decode_png(detail::browser_pixels(b64), 4, game_name + ": cannot decode the canvas PNG");
  const std::size_t count = static_cast<std::size_t>(rgba.width) * rgba.height;
  Image rgb{std::vector<std::uint8_t>(count * 3), rgba.height, rgba.width, 3};
  for (std::size_t i = 0; i < count; ++i) {
    const int a = rgba.pixels[i * 4 + 3];
    for (std::size_t c = 0; c < 3; ++c) {
      const int fg = rgba.pixels[i * 4 + c];
      const int bg = background[c];
      rgb.pixels[i * 3 + c] = static_cast<std::uint8_t>((fg * a + bg * (255 - a) + 127) / 255);
    }
  }
  return rgb;
}

}  // namespace qrl::envs
