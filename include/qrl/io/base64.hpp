#pragma once
// Base64 (RFC 4648, standard alphabet, with padding), the one codec for
// binary data that travels as text: an emulator's saved state inside a JSON
// state, and the pixels a browser page sends (btoa, toDataURL, CDP
// screenshots), which are always canonical padded base64 as well.
#include <cstdint>
#include <string>
#include <string_view>

#include <qrl/core/error.hpp>

namespace qrl::io {

// Python's base64.b64decode reads what this writes.
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
// error naming `what`. Bytes is the container the caller keeps the data in
// (std::string for JSON states, std::vector<std::uint8_t> for pixels), so
// neither pays for a copy.
template <class Bytes = std::string>
Bytes base64_decode(std::string_view text, std::string_view what) {
  require(text.size() % 4 == 0, what, ": base64 length ", text.size(), " is not a multiple of 4 (truncated?)");
  auto value = [&](char c) -> std::uint32_t {
    if (c >= 'A' && c <= 'Z') return static_cast<std::uint32_t>(c - 'A');
    if (c >= 'a' && c <= 'z') return static_cast<std::uint32_t>(c - 'a' + 26);
    if (c >= '0' && c <= '9') return static_cast<std::uint32_t>(c - '0' + 52);
    if (c == '+') return 62;
    if (c == '/') return 63;
    fail(what, ": invalid base64 character '", c, "'");
  };
  using Byte = typename Bytes::value_type;
  Bytes out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
    require(pad == 0 || text[i + 3] == '=', what, ": misplaced base64 padding");
    std::uint32_t v = (value(text[i]) << 18) | (value(text[i + 1]) << 12);
    if (pad < 2) v |= value(text[i + 2]) << 6;
    if (pad < 1) v |= value(text[i + 3]);
    out.push_back(static_cast<Byte>(v >> 16));
    if (pad < 2) out.push_back(static_cast<Byte>((v >> 8) & 255));
    if (pad < 1) out.push_back(static_cast<Byte>(v & 255));
  }
  return out;
}

}  // namespace qrl::io
