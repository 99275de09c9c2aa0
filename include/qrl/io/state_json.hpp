#pragma once
// JSON helpers for checkpoint sidecars and environment states. RNG words are
// written as hex strings: JSON readers that hold numbers as doubles (jq,
// JavaScript) would silently round 64-bit words.
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>

namespace qrl::io {

inline std::string hex_u64(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

inline std::uint64_t parse_hex_u64(const nlohmann::json& j, const char* what) {
  require(j.is_string(), what, ": expected a hex string such as \"0x00000000000000ff\"");
  const auto s = j.get<std::string>();
  require(s.size() == 18 && s[0] == '0' && s[1] == 'x' &&
              s.find_first_not_of("0123456789abcdef", 2) == std::string::npos,
          what, ": '", s, "' is not a 64-bit hex word");
  return std::stoull(s.substr(2), nullptr, 16);
}

inline nlohmann::json rng_state_json(const Rng::State& s) {
  return nlohmann::json::array({hex_u64(s[0]), hex_u64(s[1]), hex_u64(s[2]), hex_u64(s[3])});
}

inline Rng::State rng_state_from_json(const nlohmann::json& j, const char* what) {
  require(j.is_array() && j.size() == 4, what, ": an RNG state is 4 hex words");
  Rng::State s{};
  for (int i = 0; i < 4; ++i) s[i] = parse_hex_u64(j[i], what);
  require(s[0] | s[1] | s[2] | s[3], what, ": an all-zero xoshiro state is invalid");
  return s;
}

// Binary blobs (an emulator's saved state) inside a JSON state: standard
// base64 with padding, as Python's base64.b64decode reads it.
inline std::string base64_encode(std::string_view bytes) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const auto v = (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16) |
                   (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8) |
                   static_cast<unsigned char>(bytes[i + 2]);
    out += {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], alphabet[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const auto v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    out += {alphabet[v >> 18], alphabet[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const auto v = (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16) |
                   (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8);
    out += {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], '='};
  }
  return out;
}

// The inverse of base64_encode; anything but canonical padded base64 is an
// error naming `what`.
inline std::string base64_decode(std::string_view text, const std::string& what) {
  require(text.size() % 4 == 0, what, ": base64 length ", text.size(), " is not a multiple of 4 (truncated?)");
  auto value = [&](char c) -> std::uint32_t {
    if (c >= 'A' && c <= 'Z') return static_cast<std::uint32_t>(c - 'A');
    if (c >= 'a' && c <= 'z') return static_cast<std::uint32_t>(c - 'a' + 26);
    if (c >= '0' && c <= '9') return static_cast<std::uint32_t>(c - '0' + 52);
    if (c == '+') return 62;
    if (c == '/') return 63;
    fail(what, ": invalid base64 character '", c, "'");
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
    require(pad == 0 || text[i + 3] == '=', what, ": misplaced base64 padding");
    std::uint32_t v = (value(text[i]) << 18) | (value(text[i + 1]) << 12);
    if (pad < 2) v |= value(text[i + 2]) << 6;
    if (pad < 1) v |= value(text[i + 3]);
    out += static_cast<char>(v >> 16);
    if (pad < 2) out += static_cast<char>((v >> 8) & 255);
    if (pad < 1) out += static_cast<char>(v & 255);
  }
  return out;
}

// j[key] as T, or an error naming the file and the key.
template <class T>
T json_get(const nlohmann::json& j, const char* key, const std::string& where) {
  require(j.is_object() && j.contains(key), where, ": missing '", key, "'");
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(where, ": '", key, "' has the wrong type");
  }
}

}  // namespace qrl::io
