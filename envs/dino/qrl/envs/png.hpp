#pragma once
// PNG decoding, the one thing qrl uses stb_image for. stb's code is compiled
// once, in envs/dino/src/png_decode.cpp (part of qrl::dino), so this header
// does not include stb and no translation unit pays for it again.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace qrl::envs {

// Pixels row by row, `channels` bytes each (3: RGB, 4: straight RGBA).
struct Image {
  std::vector<std::uint8_t> pixels;
  int height = 0;
  int width = 0;
  int channels = 0;
};

// Decodes `png` to `channels` per pixel whatever the file holds. A PNG that
// does not decode is an error "<what> (<stb_image's reason>)".
Image decode_png(std::span<const std::uint8_t> png, int channels, std::string_view what);

}  // namespace qrl::envs
