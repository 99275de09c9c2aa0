#pragma once
// safetensors (https://huggingface.co/docs/safetensors): u64 little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}, 
// "__metadata__": {str: str}}, then the raw little-endian tensor bytes.
// The reader treats the file as hostile: every inconsistency is an error that
// names the file and the problem, never a crash or a silent truncation.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include <qrl/core/error.hpp>

namespace qrl::io {

struct StoredTensor {
  std::vector<std::int64_t> shape;
  std::vector<float> values;  // F32 only: what qrl networks hold
};

struct SafetensorsFile {
  std::map<std::string, StoredTensor> tensors;
  std::map<std::string, std::string> metadata;
};

inline constexpr std::uint64_t safetensors_max_header_bytes = 100u << 20;  // as the reference implementation

namespace detail {

inline std::int64_t element_count(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// Writes `bytes` to `path` so that a crash leaves either the old file or the
// new one: temporary file, fsync, rename, fsync of the directory.
inline void write_file_atomically(const std::filesystem::path& path, const std::string& bytes) {
  const auto tmp = path.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot write ", tmp, ": ", std::strerror(errno), " (is the directory writable?)");
  std::size_t written = 0;
  while (written < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      std::filesystem::remove(tmp);
      fail("cannot write ", tmp, ": ", std::strerror(err));
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::filesystem::remove(tmp);
    fail("cannot flush ", tmp, " to disk: ", std::strerror(errno));
  }
  std::filesystem::rename(tmp, path);
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace detail

inline void save_safetensors(const std::filesystem::path& path, const SafetensorsFile& file) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : file.tensors) {
    require(name != "__metadata__", "a tensor cannot be named __metadata__");
    require(detail::element_count(tensor.shape) == static_cast<std::int64_t>(tensor.values.size()), "tensor ", name,
            " has ", tensor.values.size(), " values for its shape");
    const std::uint64_t bytes = tensor.values.size() * sizeof(float);
    header[name] = {{"dtype", "F32"}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // the format aligns the data to 8 bytes with spaces
  std::string out(8, '\0');
  const std::uint64_t header_size = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header_size >> (8 * i)) & 0xff);
  out += json;
  static_assert(std::endian::native == std::endian::little, "qrl writes safetensors on little-endian hosts only");
  for (const auto& [name, tensor] : file.tensors)
    out.append(reinterpret_cast<const char*>(tensor.values.data()), tensor.values.size() * sizeof(float));
  detail::write_file_atomically(path, out);
}

inline SafetensorsFile load_safetensors(const std::filesystem::path& path) {
  const std::string where = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(path)) fail(where, ": no such file (check the --weights path)");
    fail(where, ": cannot open for reading");
  }
  in.seekg(0, std::ios::end);
  const auto file_size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  require(file_size >= 8, where, ": not a safetensors file (", file_size, " bytes, shorter than its 8-byte header length)");
  unsigned char size_bytes[8];
  in.read(reinterpret_cast<char*>(size_bytes), 8);
  std::uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) header_size |= std::uint64_t{size_bytes[i]} << (8 * i);
  require(header_size <= safetensors_max_header_bytes, where, ": header length ", header_size,
          " exceeds the 100 MiB limit (corrupt or not a safetensors file)");
  require(header_size <= file_size - 8, where, ": header length ", header_size, " runs past the end of the ",
          file_size, "-byte file (truncated?)");
  std::string json_text(header_size, '\0');
  in.read(json_text.data(), static_cast<std::streamsize>(header_size));

  // Duplicate keys would silently shadow each other in a JSON object: refuse.
  std::set<std::string> top_keys;
  std::string duplicate;
  const auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& value) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key) {
      const auto key = value.get<std::string>();
      if (!top_keys.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(json_text, on_event);
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": header is not valid JSON (", e.what(), ")");
  }
  require(duplicate.empty(), where, ": tensor name '", duplicate, "' appears twice in the header");
  require(header.is_object(), where, ": header must be a JSON object");

  SafetensorsFile file;
  const std::uint64_t data_size = file_size - 8 - header_size;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  std::vector<std::pair<std::string, std::pair<std::uint64_t, std::uint64_t>>> entries;
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      require(entry.is_object(), where, ": __metadata__ must be an object of strings");
      for (auto& [k, v] : entry.items()) {
        require(v.is_string(), where, ": __metadata__ value of '", k, "' is not a string");
        file.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    require(entry.is_object() && entry.contains("dtype") && entry.contains("shape") && entry.contains("data_offsets"),
            where, ": tensor '", name, "' needs dtype, shape and data_offsets");
    require(entry["dtype"].is_string(), where, ": tensor '", name, "' dtype is not a string");
    const auto dtype = entry["dtype"].get<std::string>();
    require(dtype == "F32", where, ": tensor '", name, "' has dtype ", dtype,
            "; qrl networks are float32 (convert with tensor.float() before saving)");
    require(entry["shape"].is_array(), where, ": tensor '", name, "' shape is not an array");
    StoredTensor tensor;
    std::uint64_t count = 1;
    for (auto& d : entry["shape"]) {
      require(d.is_number_unsigned(), where, ": tensor '", name, "' has a shape entry that is not a non-negative integer");
      const auto dim = d.get<std::uint64_t>();
      require(dim <= data_size && (dim == 0 || count <= data_size / dim), where, ": tensor '", name,
              "' shape is larger than the file");
      count *= dim;
      tensor.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const auto& offsets = entry["data_offsets"];
    require(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                offsets[1].is_number_unsigned(),
            where, ": tensor '", name, "' data_offsets must be two non-negative integers");
    const auto begin = offsets[0].get<std::uint64_t>(), end = offsets[1].get<std::uint64_t>();
    require(begin <= end && end <= data_size, where, ": tensor '", name, "' byte range [", begin, ", ", end,
            ") lies outside the ", data_size, "-byte data section");
    require(end - begin == count * sizeof(float), where, ": tensor '", name, "' byte range holds ", end - begin,
            " bytes but its shape needs ", count * sizeof(float));
    ranges.emplace_back(begin, end);
    entries.emplace_back(name, std::pair{begin, end});
    file.tensors[name] = std::move(tensor);
  }
  std::sort(ranges.begin(), ranges.end());
  std::uint64_t expected = 0;
  for (const auto& [begin, end] : ranges) {
    require(begin == expected, where, begin < expected ? ": tensor byte ranges overlap" : ": gap in the data section",
            " at byte ", std::min(begin, expected));
    expected = end;
  }
  require(expected == data_size, where, ": the data section has ", data_size - expected,
          " bytes that belong to no tensor");
  for (auto& [name, range] : entries) {
    auto& tensor = file.tensors[name];
    tensor.values.resize((range.second - range.first) / sizeof(float));
    in.seekg(static_cast<std::streamoff>(8 + header_size + range.first));
    in.read(reinterpret_cast<char*>(tensor.values.data()), static_cast<std::streamsize>(range.second - range.first));
    require(static_cast<bool>(in), where, ": could not read the bytes of tensor '", name, "'");
  }
  return file;
}

}  // namespace qrl::io
