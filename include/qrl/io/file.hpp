#pragma once
// Durable file writing: what a crash may leave behind is either the old file
// or the new one, never a half-written file under the final name.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
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

// What a path names when it is not a regular file, for error messages.
inline const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "a special file";
}

inline constexpr std::uint64_t unlimited_file_bytes = ~std::uint64_t{0};
// A config file (TOML options, a game config) is a page, never megabytes.
inline constexpr std::uint64_t config_file_max_bytes = 4u << 20;

inline std::string byte_size_text(std::uint64_t bytes) {
  char buf[48];
  if (bytes >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  else if (bytes >= (1ull << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1ull << 20));
  else
    std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(bytes));
  return buf;
}

// Reads a whole regular file of at most `max_bytes`. Anything else is refused
// before it is opened for reading, so /dev/zero cannot fill the memory, a
// FIFO cannot hang the caller and a directory gives a clear line instead of
// a stream error. `what` names the file's role ("weights file", "config").
inline std::string read_file(const std::filesystem::path& path, std::uint64_t max_bytes = unlimited_file_bytes,
                             const char* what = "file") {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    fail(path.string(), ": cannot open the ", what, " (", std::strerror(errno), ")");
  if (!S_ISREG(st.st_mode))
    fail(path.string(), ": is ", file_kind(st.st_mode), ", not a regular file; give the path of a ", what);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_bytes)
    fail(path.string(), ": ", byte_size_text(size), ", more than the ", byte_size_text(max_bytes),
         " a ", what, " may have (is it the right file?)");
  // O_NONBLOCK: should the path have been swapped for a FIFO since stat(),
  // open() must not wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(path.string(), ": cannot open the ", what, " for reading (", std::strerror(errno), ")");
  struct stat opened {};
  if (::fstat(fd, &opened) != 0 || !S_ISREG(opened.st_mode)) {
    ::close(fd);
    fail(path.string(), ": is ", file_kind(opened.st_mode), ", not a regular file; give the path of a ", what);
  }
  std::string out;
  out.reserve(static_cast<std::size_t>(size));
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
    if (out.size() > max_bytes) {  // a file that grows while it is read
      ::close(fd);
      fail(path.string(), ": more than the ", byte_size_text(max_bytes), " a ", what, " may have");
    }
  }
  ::close(fd);
  return out;
}

// A log that grows by whole lines, each written straight to the file with
// write(2): a failed write (a full disk, a removed mount) is an error at
// once, not a stream that silently stops keeping what it is given.
class AppendFile {
 public:
  // `append`: continue an existing file; otherwise it starts empty.
  AppendFile(std::filesystem::path path, bool append) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
    if (fd_ < 0) fail("cannot write ", path_.string(), ": ", std::strerror(errno), " (is the directory writable?)");
  }
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  ~AppendFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  void write(std::string_view text) {
    const char* p = text.data();
    std::size_t left = text.size();
    while (left > 0) {
      const auto n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("cannot write ", path_.string(), ": ", std::strerror(errno));
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

// Bytes the file system holding `dir` can still give this process; none
// when it cannot tell (statvfs failed).
inline std::optional<std::uint64_t> free_bytes(const std::filesystem::path& dir) {
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) != 0) return std::nullopt;
  return static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
}

}  // namespace qrl::io
