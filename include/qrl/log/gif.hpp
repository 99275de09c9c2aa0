#pragma once
// Animated GIFs through giflib (link with -lgif, CMake: GIF::GIF). Frames are
// 8-bit RGB; each gets its own palette: the exact colours when a frame has at
// most 256 (the flat-coloured games qrl ships), else a 3-3-2 bit cube.
#include <fcntl.h>
#include <gif_lib.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/env/env.hpp>  // FrameView

namespace qrl::log {

class GifWriter {
 public:
  // `delay_cs`: display time of each frame in 1/100 s. Loops forever.
  GifWriter(const std::filesystem::path& path, int width, int height, int delay_cs = 4)
      : path_(path), width_(width), height_(height), delay_cs_(delay_cs) {
    require(width > 0 && height > 0 && width <= 65535 && height <= 65535, path.string(), ": GIF size ", width, "x",
            height, " is out of range");
    // Opened here rather than by EGifOpenFileName, which creates files
    // readable by their owner only (0600); this leaves the mode to the umask.
    // Written under a temporary name and renamed by close(): a recording
    // that fails half-way (a full disk) leaves no broken GIF behind.
    const int fd = ::open(partial_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    require(fd >= 0, "cannot write ", path.string(), ": ", std::strerror(errno));
    int error = 0;
    gif_ = EGifOpenFileHandle(fd, &error);
    try {
      if (gif_ == nullptr) ::close(fd);
      require(gif_ != nullptr, "cannot write ", path.string(), ": ", GifErrorString(error));
      EGifSetGifVersion(gif_, true);  // GIF89a: needed for delays and looping
      check(EGifPutScreenDesc(gif_, width, height, 8, 0, nullptr), "screen descriptor");
      // NETSCAPE2.0 application extension: loop count 0 = forever.
      check(EGifPutExtensionLeader(gif_, APPLICATION_EXT_FUNC_CODE), "loop extension");
      check(EGifPutExtensionBlock(gif_, 11, "NETSCAPE2.0"), "loop extension");
      const unsigned char loop[3] = {1, 0, 0};
      check(EGifPutExtensionBlock(gif_, 3, loop), "loop extension");
      check(EGifPutExtensionTrailer(gif_), "loop extension");
    } catch (...) {
      discard();  // no destructor runs for a constructor that throws
      throw;
    }
  }
  GifWriter(const GifWriter&) = delete;
  GifWriter& operator=(const GifWriter&) = delete;
  ~GifWriter() { discard(); }

  void add_frame(env::FrameView rgb) {
    require(gif_ != nullptr, path_.string(), ": GIF already closed");
    require(rgb.shape.height == height_ && rgb.shape.width == width_ && rgb.shape.channels == 3, path_.string(),
            ": frame is ", rgb.shape.height, "x", rgb.shape.width, "x", rgb.shape.channels, ", the GIF is ", height_,
            "x", width_, "x3");
    const std::size_t pixels = static_cast<std::size_t>(width_) * height_;
    indices_.resize(pixels);
    std::vector<std::array<std::uint8_t, 3>> palette;
    std::unordered_map<std::uint32_t, std::uint8_t> index_of;
    bool exact = true;
    for (std::size_t i = 0; i < pixels && exact; ++i) {
      const std::uint8_t* p = rgb.pixels + 3 * i;
      const std::uint32_t key = std::uint32_t{p[0]} << 16 | std::uint32_t{p[1]} << 8 | p[2];
      auto it = index_of.find(key);
      if (it == index_of.end()) {
        if (palette.size() == 256) {
          exact = false;
          break;
        }
        it = index_of.emplace(key, static_cast<std::uint8_t>(palette.size())).first;
        palette.push_back({p[0], p[1], p[2]});
      }
      indices_[i] = it->second;
    }
    if (!exact) {
      palette.resize(256);
      for (int i = 0; i < 256; ++i)
        palette[i] = {static_cast<std::uint8_t>((i >> 5) * 255 / 7), static_cast<std::uint8_t>(((i >> 2) & 7) * 255 / 7),
                      static_cast<std::uint8_t>((i & 3) * 255 / 3)};
      for (std::size_t i = 0; i < pixels; ++i) {
        const std::uint8_t* p = rgb.pixels + 3 * i;
        indices_[i] = static_cast<std::uint8_t>((p[0] * 7 + 127) / 255 << 5 | (p[1] * 7 + 127) / 255 << 2 |
                                                (p[2] * 3 + 127) / 255);
      }
    }
    int bits = 1;
    while ((1u << bits) < palette.size()) ++bits;
    ColorMapObject* map = GifMakeMapObject(1 << bits, nullptr);
    require(map != nullptr, path_.string(), ": out of memory for a GIF palette");
    for (std::size_t i = 0; i < palette.size(); ++i)
      map->Colors[i] = GifColorType{palette[i][0], palette[i][1], palette[i][2]};

    GraphicsControlBlock gcb{};
    gcb.DisposalMode = DISPOSE_DO_NOT;
    gcb.DelayTime = delay_cs_;
    gcb.TransparentColor = NO_TRANSPARENT_COLOR;
    GifByteType ext[4];
    EGifGCBToExtension(&gcb, ext);
    const bool ok = EGifPutExtension(gif_, GRAPHICS_EXT_FUNC_CODE, 4, ext) == GIF_OK &&
                    EGifPutImageDesc(gif_, 0, 0, width_, height_, false, map) == GIF_OK;
    GifFreeMapObject(map);
    check(ok ? GIF_OK : GIF_ERROR, "frame header");
    for (int y = 0; y < height_; ++y)
      check(EGifPutLine(gif_, indices_.data() + static_cast<std::size_t>(y) * width_, width_), "frame pixels");
    ++frames_;
  }

  // Finishes the file and gives it its name; a writer destroyed without
  // close() (or whose close() failed) removes what it wrote.
  void close() {
    if (!gif_) return;
    int error = 0;
    const int rc = EGifCloseFile(gif_, &error);
    const int err = errno;
    gif_ = nullptr;
    require(rc == GIF_OK, "cannot write ", path_.string(), ": ", GifErrorString(error),
            error == E_GIF_ERR_WRITE_FAILED ? std::string(" (") + std::strerror(err) + ")" : std::string());
    std::error_code ec;
    std::filesystem::rename(partial_path(), path_, ec);
    require(!ec, "cannot rename ", partial_path().string(), " to ", path_.string(), ": ", ec.message());
    finished_ = true;
  }

  int frames() const { return frames_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void check(int rc, const char* what) {
    if (rc == GIF_OK) return;
    const int err = errno;
    const int error = gif_ ? gif_->Error : 0;
    fail("cannot write ", path_.string(), " (", what, "): ", GifErrorString(error),
         error == E_GIF_ERR_WRITE_FAILED ? std::string(" (") + std::strerror(err) + ")" : std::string());
  }
  // Closes the file if open and removes it unless close() named it.
  void discard() {
    if (gif_) {
      int error = 0;
      EGifCloseFile(gif_, &error);
      gif_ = nullptr;
    }
    if (!finished_) {
      std::error_code ignored;
      std::filesystem::remove(partial_path(), ignored);
    }
  }
  std::filesystem::path partial_path() const { return std::filesystem::path(path_.string() + ".partial"); }

  std::filesystem::path path_;
  int width_, height_, delay_cs_;
  GifFileType* gif_ = nullptr;
  std::vector<GifByteType> indices_;
  int frames_ = 0;
  bool finished_ = false;
};

}  // namespace qrl::log
