#pragma once
// Durable file writing: what a crash may leave behind is either the old file
// or the new one, never a half-written file under the final name.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include <qrl/core/error.hpp>
#include <qrl/io/crc32c.hpp>

namespace qrl::io {

// fsync of a directory makes the names created or renamed in it durable.
inline void fsync_directory(const std::filesystem::path& dir) {
  const auto d = dir.empty() ? std::filesystem::path(".") : dir;
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // some file systems refuse; the data itself is already synced
  ::fsync(fd);
  ::close(fd);
}

// Writes a new file, keeping its size and CRC-32C; commit() syncs it to disk.
// A writer destroyed without commit() removes its file.
class FileWriter {
 public:
  explicit FileWriter(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot write ", path_.string(), ": ", std::strerror(errno), " (is the directory writable?)");
  }
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  ~FileWriter() {
    if (fd_ >= 0) {
      ::close(fd_);
      std::error_code ignored;
      std::filesystem::remove(path_, ignored);
    }
  }

  void write(const void* data, std::size_t size) {
    crc_ = crc32c_extend(crc_, data, size);
    auto p = static_cast<const char*>(data);
    while (size > 0) {
      const auto n = ::write(fd_, p, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("cannot write ", path_.string(), ": ", std::strerror(errno), " (disk full?)");
      }
      p += n;
      size -= static_cast<std::size_t>(n);
      bytes_ += static_cast<std::uint64_t>(n);
    }
  }
  void write(std::string_view s) { write(s.data(), s.size()); }

  void commit() {
    const bool synced = ::fsync(fd_) == 0;
    const int err = errno;
    const bool closed = ::close(fd_) == 0;
    fd_ = -1;
    if (!synced || !closed) {
      std::error_code ignored;
      std::filesystem::remove(path_, ignored);
      fail("cannot flush ", path_.string(), " to disk: ", std::strerror(synced ? errno : err));
    }
  }

  std::uint64_t bytes() const { return bytes_; }
  std::uint32_t crc() const { return crc_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t bytes_ = 0;
  std::uint32_t crc_ = 0;
};

// Replaces `path` by `bytes` atomically: temporary file, fsync, rename,
// fsync of the directory.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  const auto tmp = std::filesystem::path(path.string() + ".tmp." + std::to_string(::getpid()));
  FileWriter out(tmp);
  out.write(bytes);
  out.commit();
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    fail("cannot rename ", tmp.string(), " to ", path.string(), ": ", ec.message());
  }
  fsync_directory(path.parent_path());
}

inline std::string read_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path.string(), ": cannot open for reading (", std::strerror(errno), ")");
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail(path.string(), ": read error (", std::strerror(err), ")");
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace qrl::io
