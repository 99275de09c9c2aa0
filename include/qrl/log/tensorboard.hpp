#pragma once
// TensorBoard event files written without TensorFlow or protobuf. A file is a
// sequence of TFRecord frames
//   u64 length | u32 masked_crc32c(length) | data | u32 masked_crc32c(data)
// each holding one serialized tensorflow.Event:
//   1: double wall_time   2: int64 step   3: string file_version
//   5: Summary summary { repeated Value value = 1 { string tag = 1; float simple_value = 2; } }
// The first event carries file_version "brain.Event:2", as TensorFlow and
// PyTorch's SummaryWriter write it; TensorBoard and W&B then read the scalars.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include <qrl/core/error.hpp>
#include <qrl/io/crc32c.hpp>

namespace qrl::log {

namespace tensorboard {

inline void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

template <class T>
void put_fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // protobuf fixed fields are little-endian, as the host
  out.append(b, sizeof(T));
}

// A length-delimited field (wire type 2).
inline void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_varint(out, static_cast<std::uint64_t>(field) << 3 | 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}

inline std::string event_header(double wall_time, std::int64_t step) {
  std::string e;
  put_varint(e, 1 << 3 | 1);  // wall_time, 64-bit
  put_fixed(e, wall_time);
  if (step != 0) {
    put_varint(e, 2 << 3 | 0);  // step, varint (two's complement for negatives)
    put_varint(e, static_cast<std::uint64_t>(step));
  }
  return e;
}

inline std::string file_version_event(double wall_time) {
  std::string e = event_header(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

inline std::string scalar_event(double wall_time, std::int64_t step, std::string_view tag, float value) {
  std::string v;
  put_bytes(v, 1, tag);
  put_varint(v, 2 << 3 | 5);  // simple_value, 32-bit
  put_fixed(v, value);
  std::string summary;
  put_bytes(summary, 1, v);
  std::string e = event_header(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

// One TFRecord frame around `data`.
inline std::string frame(std::string_view data) {
  std::string out;
  const std::uint64_t length = data.size();
  put_fixed(out, length);
  put_fixed(out, io::masked_crc32c(out.data(), 8));
  out.append(data);
  put_fixed(out, io::masked_crc32c(data.data(), data.size()));
  return out;
}

}  // namespace tensorboard

// Appends scalars to a new events.out.tfevents.* file in `dir` (one file per
// writer, as SummaryWriter does; TensorBoard merges the files of a run
// directory, so a resumed run simply adds one).
class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::filesystem::path& dir) {
    std::filesystem::create_directories(dir);
    char host[256] = "localhost";
    ::gethostname(host, sizeof host - 1);
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    path_ = dir / ("events.out.tfevents." + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now).count()) +
                   "." + host + "." + std::to_string(::getpid()) + ".qrl");
    file_ = std::fopen(path_.c_str(), "wb");
    require(file_ != nullptr, "cannot write ", path_.string(), " (is the run directory writable?)");
    write(tensorboard::file_version_event(wall_time()));
    flush();
  }
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;
  ~TensorBoardWriter() {
    if (file_) std::fclose(file_);
  }

  void add_scalar(std::string_view tag, double value, std::int64_t step) {
    write(tensorboard::scalar_event(wall_time(), step, tag, static_cast<float>(value)));
  }

  // Makes everything written so far visible to a reading TensorBoard. The
  // events are buffered, so a full disk shows here first.
  void flush() {
    if (std::fflush(file_) != 0 || std::ferror(file_))
      fail("cannot write ", path_.string(), ": ", std::strerror(errno));
  }

  const std::filesystem::path& path() const { return path_; }

  static double wall_time() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

 private:
  void write(const std::string& event) {
    const auto record = tensorboard::frame(event);
    if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() || std::ferror(file_))
      fail("cannot write ", path_.string(), ": ", std::strerror(errno));
  }

  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

}  // namespace qrl::log
