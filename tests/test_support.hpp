#pragma once
// Helpers for tests that run once per backend.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include <qrl/backend/cpu.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/tensor.hpp>
#if defined(QRL_HAVE_CUDA)
#include <qrl/backend/cuda.hpp>
#endif

// Runs a TEST_CASE_TEMPLATE_DEFINE'd suite on every backend this build has:
// the CPU, and with CUDA built, the GPU under the test suite "cuda" (ctest
// label cuda), each case reporting a skip where no CUDA device is usable
// (backend_available).
#if defined(QRL_HAVE_CUDA)
#define QRL_TEST_ON_EVERY_BACKEND(name)       \
  TEST_CASE_TEMPLATE_INVOKE(name, qrl::cpu);  \
  TEST_SUITE_BEGIN("cuda");                   \
  TEST_CASE_TEMPLATE_INVOKE(name, qrl::cuda); \
  TEST_SUITE_END()
#else
#define QRL_TEST_ON_EVERY_BACKEND(name) TEST_CASE_TEMPLATE_INVOKE(name, qrl::cpu)
#endif

namespace qrl::test {

// The line ctest's SKIP_REGULAR_EXPRESSION (tests/CMakeLists.txt) turns into
// a skip: a CUDA test without a usable device is reported as skipped with
// the reason, neither failed nor missing.
inline constexpr const char* skip_marker = "QRL_TEST_SKIPPED";

// Whether backend B can run here; the first line of every templated test.
// The CPU always can; CUDA needs a device with code for its architecture.
template <class B>
bool backend_available() {
#if defined(QRL_HAVE_CUDA)
  if constexpr (std::is_same_v<B, cuda>) {
    static const std::string reason = cuda_unavailable_reason();
    if (!reason.empty()) {
      std::printf("%s: %s\n", skip_marker, reason.c_str());
      std::fflush(stdout);
      return false;
    }
  }
#endif
  return true;
}

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

// Counts elements of `got` outside atol + rtol |ref| (NaN never passes);
// prints the first five.
template <class T>
bool all_close(const std::vector<T>& got, const std::vector<T>& ref, double atol, double rtol, const std::string& what) {
  REQUIRE(got.size() == ref.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double g = static_cast<double>(got[i]), r = static_cast<double>(ref[i]);
    if (!(std::abs(g - r) <= atol + rtol * std::abs(r))) {
      if (bad < 5) std::printf("%s[%zu]: got %.9g, reference %.9g\n", what.c_str(), i, g, r);
      ++bad;
    }
  }
  if (bad) std::printf("%s: %zu of %zu elements outside atol %g + rtol %g\n", what.c_str(), bad, ref.size(), atol, rtol);
  return bad == 0;
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

// A batch's per-row bootstrap discounts from 0/1 terminal flags, as the
// replay memory forms them for one-step windows: gamma, or 0 after a terminal.
inline std::vector<float> discounts_of(const std::vector<float>& terminated, float gamma) {
  std::vector<float> out(terminated.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = terminated[i] != 0.0f ? 0.0f : gamma;
  return out;
}

}  // namespace qrl::test
