#pragma once
// Helpers for tests that run once per backend.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include <qrl/backend/cpu.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/tensor.hpp>

namespace qrl::test {

inline std::vector<float> random_vector(std::size_t n, Rng& rng, float scale = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(scale * rng.normal());
  return v;
}

inline double norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return std::sqrt(s);
}

inline bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// ||a - b|| / max(||a|| + ||b||, tiny): the relative error that gradient
// checks state their tolerance in.
inline double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  double diff = 0, na = 0, nb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(na) + std::sqrt(nb), 1e-12);
}

// Central difference (loss(v + h e_i) - loss(v - h e_i)) / 2h; v[i] is
// restored afterwards.
template <class Loss>
double central_difference(std::vector<float>& v, std::size_t i, double h, Loss&& loss) {
  const float original = v[i];
  v[i] = original + static_cast<float>(h);
  const double plus = loss(v);
  v[i] = original - static_cast<float>(h);
  const double minus = loss(v);
  v[i] = original;
  return (plus - minus) / (2 * h);
}

}  // namespace qrl::test
