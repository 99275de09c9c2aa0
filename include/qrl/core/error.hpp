#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace qrl {

// Every failure a user can cause (bad shape, bad file, bad flag) is reported as
// qrl::Error with a message that says what was wrong and what to do.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Shapes that do not fit together: a programming or configuration mistake.
class ShapeError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}
}  // namespace detail

template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  throw Error(detail::concat(std::forward<Parts>(parts)...));
}

template <class... Parts>
void require(bool condition, Parts&&... parts) {
  if (!condition) fail(std::forward<Parts>(parts)...);
}

template <class... Parts>
void require_shape(bool condition, Parts&&... parts) {
  if (!condition) throw ShapeError(detail::concat(std::forward<Parts>(parts)...));
}

}  // namespace qrl
