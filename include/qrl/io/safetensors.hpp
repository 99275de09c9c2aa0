#pragma once
// safetensors (https://huggingface.co/docs/safetensors): u64 little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}, 
// "__metadata__": {str: str}}, then the raw little-endian tensor bytes.
// The reader treats the file as hostile: every inconsistency is an error that
// names the file and the problem, never a crash or a silent truncation.
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/io/file.hpp>

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
// The largest weights file qrl reads: its networks are megabytes, so a file
// this size is the wrong file, and it is refused before it fills the memory.
inline constexpr std::uint64_t safetensors_max_file_bytes = 4ull << 30;
// qrl writes a CRC-32C of each tensor's bytes into the metadata, under this
// prefix and the tensor's name (8 hex digits). Other readers ignore metadata;
// qrl checks it on load, so a flipped byte in the data is an error, not an
// agent that silently plays worse. Files without it load as before.
inline constexpr std::string_view safetensors_crc_prefix = "crc32c.";

namespace detail {

inline std::int64_t element_count(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// Bytes per element of the dtypes the format defines; 0 for unknown names.
inline std::uint64_t safetensors_dtype_bytes(const std::string& dtype) {
  static const std::map<std::string, std::uint64_t> sizes{
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2},
      {"F16", 2},  {"BF16", 2}, {"I32", 4}, {"U32", 4},     {"F32", 4},     {"F64", 8}, {"I64", 8}, {"U64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

}  // namespace detail

// The bytes of a safetensors file holding `file` (F32 tensors in name order).
inline std::string encode_safetensors(const SafetensorsFile& file) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::map<std::string, std::string> metadata = file.metadata;
  for (const auto& [name, tensor] : file.tensors)
    metadata[std::string(safetensors_crc_prefix) + name] =
        hex_u32(crc32c(tensor.values.data(), tensor.values.size() * sizeof(float)));
  if (!metadata.empty()) header["__metadata__"] = metadata;
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
  return out;
}

inline void save_safetensors(const std::filesystem::path& path, const SafetensorsFile& file) {
  write_file_atomically(path, encode_safetensors(file));
}

// Parses the bytes of a safetensors file. `where` names the file in errors.
// Checks everything the format promises before trusting any of it: header
// length cap, a JSON object header with no duplicate names, known dtypes,
// shape x dtype size == byte range, ranges inside the data section, not
// overlapping and covering it exactly. Only F32 tensors are then accepted.
inline SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& where) {
  const std::uint64_t file_size = bytes.size();
  require(file_size >= 8, where, ": not a safetensors file (", file_size, " bytes, shorter than its 8-byte header length)");
  std::uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) header_size |= std::uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  require(header_size <= safetensors_max_header_bytes, where, ": header length ", header_size,
          " exceeds the 100 MiB limit (corrupt or not a safetensors file)");
  require(header_size <= file_size - 8, where, ": header length ", header_size, " runs past the end of the ",
          file_size, "-byte file (truncated?)");
  const std::string_view json_text = bytes.substr(8, header_size);
  require(!json_text.empty() && json_text.front() == '{', where,
          ": header must be a JSON object starting with '{' (not a safetensors file?)");

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
  struct Entry {
    std::string name;
    std::string dtype;
    std::uint64_t begin, end;
  };
  std::vector<Entry> entries;
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
    const std::uint64_t element_bytes = detail::safetensors_dtype_bytes(dtype);
    require(element_bytes > 0, where, ": tensor '", name, "' has unknown dtype '", dtype, "'");
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
    require(count <= data_size / element_bytes && end - begin == count * element_bytes, where, ": tensor '", name,
            "' byte range holds ", end - begin, " bytes but its shape needs ", count, " x ", element_bytes);
    entries.push_back({name, dtype, begin, end});
    file.tensors[name] = std::move(tensor);
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const auto& e : entries) ranges.emplace_back(e.begin, e.end);
  std::sort(ranges.begin(), ranges.end());
  std::uint64_t expected = 0;
  for (const auto& [begin, end] : ranges) {
    require(begin == expected, where, begin < expected ? ": tensor byte ranges overlap" : ": gap in the data section",
            " at byte ", std::min(begin, expected));
    expected = end;
  }
  require(expected == data_size, where, ": the data section has ", data_size - expected,
          " bytes that belong to no tensor");
  const std::string_view data = bytes.substr(8 + header_size);
  for (auto it = file.metadata.begin(); it != file.metadata.end();) {
    if (it->first.rfind(safetensors_crc_prefix, 0) != 0) {
      ++it;
      continue;
    }
    const std::string name = it->first.substr(safetensors_crc_prefix.size());
    const auto entry = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return e.name == name; });
    require(entry != entries.end(), where, ": the metadata holds a CRC-32C for tensor '", name,
            "', which the file does not have (damaged file?)");
    const std::string actual = hex_u32(crc32c(data.data() + entry->begin, entry->end - entry->begin));
    require(actual == it->second, where, ": the data of tensor '", name, "' fails its CRC-32C (", actual,
            ", the file says ", it->second, "): the file is damaged; use another copy of it");
    it = file.metadata.erase(it);
  }
  for (const auto& e : entries) {
    require(e.dtype == "F32", where, ": tensor '", e.name, "' has dtype ", e.dtype,
            "; qrl networks are float32 (convert with tensor.float() before saving)");
    auto& tensor = file.tensors[e.name];
    tensor.values.resize((e.end - e.begin) / sizeof(float));
    if (!tensor.values.empty()) std::memcpy(tensor.values.data(), data.data() + e.begin, e.end - e.begin);
  }
  return file;
}

inline SafetensorsFile load_safetensors(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) fail(path.string(), ": no such file (check the --weights path)");
  return parse_safetensors(read_file(path, safetensors_max_file_bytes, "weights file (safetensors)"), path.string());
}

}  // namespace qrl::io
