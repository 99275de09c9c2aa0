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
#include <qrl/io/base64.hpp>  // binary blobs (an emulator's state) inside a JSON state

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
