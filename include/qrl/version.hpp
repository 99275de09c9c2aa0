#pragma once
namespace qrl {
inline constexpr const char* version = "0.1.0";
}
