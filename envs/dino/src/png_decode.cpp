// stb_image's implementation, compiled in this translation unit only
// (qrl/envs/png.hpp declares what the rest of qrl uses of it). PNG only, and
// from memory only: screenshots and canvases arrive as bytes over CDP.
#include <qrl/envs/png.hpp>

#include <qrl/core/error.hpp>

// Static, so a program that also compiles its own stb_image links with no clash.
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#if __has_include(<stb_image.h>)
#include <stb_image.h>
#else
#include <stb/stb_image.h>  // Debian's libstb-dev, with no -I needed
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace qrl::envs {

Image decode_png(std::span<const std::uint8_t> png, int channels, std::string_view what) {
  int w = 0, h = 0, n = 0;
  stbi_uc* pixels = stbi_load_from_memory(png.data(), static_cast<int>(png.size()), &w, &h, &n, channels);
  require(pixels != nullptr, what, " (", stbi_failure_reason(), ")");
  Image image;
  image.pixels.assign(pixels, pixels + static_cast<std::size_t>(w) * h * channels);
  stbi_image_free(pixels);
  image.height = h;
  image.width = w;
  image.channels = channels;
  return image;
}

}  // namespace qrl::envs
