#include <doctest/doctest.h>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>

#include <vector>

TEST_SUITE("core") {
  TEST_CASE("Rng is reproducible and its state round-trips") {
    qrl::Rng a(42), b(42), c(43);
    for (int i = 0; i < 10; ++i) {
      const auto x = a.next_u64();
      CHECK(x == b.next_u64());
      CHECK(x != c.next_u64());
    }
    const auto saved = a.state();
    std::vector<std::uint64_t> first;
    for (int i = 0; i < 5; ++i) first.push_back(a.next_u64());
    a.set_state(saved);
    for (int i = 0; i < 5; ++i) CHECK(a.next_u64() == first[i]);
  }

  TEST_CASE("Rng uniform_index covers the range evenly") {
    qrl::Rng rng(7);
    std::vector<int> counts(10, 0);
    constexpr int draws = 100000;
    for (int i = 0; i < draws; ++i) ++counts[rng.uniform_index(10)];
    for (int count : counts) CHECK(count == doctest::Approx(draws / 10).epsilon(0.05));
  }

  TEST_CASE("Rng normal has unit variance") {
    qrl::Rng rng(3);
    double sum = 0, sum_sq = 0;
    constexpr int draws = 200000;
    for (int i = 0; i < draws; ++i) {
      const double x = rng.normal();
      sum += x;
      sum_sq += x * x;
    }
    CHECK(sum / draws == doctest::Approx(0.0).epsilon(0.01).scale(1.0));
    CHECK(sum_sq / draws == doctest::Approx(1.0).epsilon(0.02));
  }

  TEST_CASE("require throws qrl::Error with the message") {
    CHECK_THROWS_WITH_AS(qrl::require(false, "batch size ", 3, " must be even"), "batch size 3 must be even", qrl::Error);
    CHECK_NOTHROW(qrl::require(true, "never"));
  }
}
