#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/kernels/sum_tree.cuh>
#include <qrl/rl/prioritized.hpp>

using namespace qrl;
using rl::PrioritizedConfig;
using rl::PrioritizedSampler;

namespace {

// A tree over `leaf_values` built through SumTreeSet alone, as a kernel would.
struct Tree {
  std::int64_t leaves;
  std::vector<double> sum, min;
  explicit Tree(const std::vector<double>& leaf_values)
      : leaves(kernels::sum_tree_leaves(static_cast<std::int64_t>(leaf_values.size()))),
        sum(static_cast<std::size_t>(2 * leaves), 0.0),
        min(sum.size(), HUGE_VAL) {
    for (std::size_t i = 0; i < leaf_values.size(); ++i) set(static_cast<std::int64_t>(i), leaf_values[i]);
  }
  void set(std::int64_t slot, double q) { kernels::SumTreeSet{sum.data(), min.data(), leaves}(slot, q); }
  std::int64_t find(double u) const { return kernels::SumTreeFind{sum.data(), leaves}(u); }
};

// The leaf a linear scan of prefix sums gives: the reference for find().
std::int64_t scan(const std::vector<double>& q, double u) {
  double prefix = 0.0;
  std::int64_t last_positive = -1;
  for (std::size_t i = 0; i < q.size(); ++i) {
    if (q[i] <= 0.0) continue;
    last_positive = static_cast<std::int64_t>(i);
    if (u < prefix + q[i]) return last_positive;
    prefix += q[i];
  }
  return last_positive;
}

// Config whose priorities come out exact: with epsilon 0.25 the TD errors
// 0.75, 3.75, 8.75, 0 give p = 1, 4, 9, 0.25 and at alpha 0.5 q = 1, 2, 3, 0.5.
PrioritizedConfig exact_config() {
  PrioritizedConfig c;
  c.alpha = 0.5;
  c.epsilon = 0.25;
  return c;
}

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_SUITE("prioritized") {
  TEST_CASE("sum_tree_leaves is the next power of two") {
    CHECK(kernels::sum_tree_leaves(1) == 1);
    CHECK(kernels::sum_tree_leaves(2) == 2);
    CHECK(kernels::sum_tree_leaves(5) == 8);
    CHECK(kernels::sum_tree_leaves(8) == 8);
    CHECK(kernels::sum_tree_leaves(1000001) == 1048576);
  }

  TEST_CASE("sum and min tree of 5 slots by hand") {
    // q = 1 2 0 3 0.5 | padding 0 0 0 (8 leaves)
    const Tree t({1.0, 2.0, 0.0, 3.0, 0.5});
    REQUIRE(t.leaves == 8);
    CHECK(t.sum[1] == 6.5);   // 1 + 2 + 0 + 3 + 0.5
    CHECK(t.sum[2] == 6.0);   // slots 0-3
    CHECK(t.sum[3] == 0.5);   // slots 4-7
    CHECK(t.sum[4] == 3.0);   // slots 0-1
    CHECK(t.sum[5] == 3.0);   // slots 2-3
    CHECK(t.sum[6] == 0.5);   // slots 4-5
    CHECK(t.sum[7] == 0.0);   // padding 6-7
    CHECK(t.min[1] == 0.5);   // smallest positive: slot 4
    CHECK(t.min[2] == 1.0);   // slots 0-3, the zero of slot 2 not counted
    CHECK(t.min[5] == 3.0);   // slots 2-3: only slot 3 counts
    CHECK(std::isinf(t.min[7]));
  }

  TEST_CASE("find: interiors, exact boundaries, the end, and zero leaves skipped") {
    // Intervals: slot 0 [0, 1), slot 1 [1, 3), slot 2 empty, slot 3 [3, 6),
    // slot 4 [6, 6.5), slots 5-7 empty.
    const Tree t({1.0, 2.0, 0.0, 3.0, 0.5});
    CHECK(t.find(0.0) == 0);
    CHECK(t.find(0.5) == 0);
    CHECK(t.find(std::nextafter(1.0, 0.0)) == 0);
    CHECK(t.find(1.0) == 1);  // a boundary belongs to the leaf starting there
    CHECK(t.find(2.999) == 1);
    CHECK(t.find(std::nextafter(3.0, 0.0)) == 1);
    CHECK(t.find(3.0) == 3);  // slot 2 has width 0 and is stepped over
    CHECK(t.find(5.999) == 3);
    CHECK(t.find(6.0) == 4);
    CHECK(t.find(std::nextafter(6.5, 0.0)) == 4);  // just below the total
    // Out of range: clamped onto positive leaves, never the padding after slot 4.
    CHECK(t.find(6.5) == 4);
    CHECK(t.find(1e300) == 4);
    CHECK(t.find(-1.0) == 0);
    CHECK(t.find(std::numeric_limits<double>::quiet_NaN()) == 0);
  }

  TEST_CASE("find with zero leaves first and last") {
    const Tree t({0.0, 0.0, 2.0, 0.0});
    CHECK(t.find(0.0) == 2);
    CHECK(t.find(1.999) == 2);
    CHECK(t.find(2.0) == 2);  // at the total: the last positive leaf
    const Tree one({4.0});    // capacity 1: the root is the leaf
    CHECK(one.sum[1] == 4.0);
    CHECK(one.find(3.0) == 0);
  }

  TEST_CASE("find agrees with a prefix-sum scan and never returns an empty leaf") {
    // Dyadic priorities (k / 8) keep every sum exact, so find must equal the
    // scan everywhere; half the leaves are empty.
    Rng rng(11);
    for (int trial = 0; trial < 50; ++trial) {
      const auto n = static_cast<std::size_t>(1 + rng.uniform_index(37));
      std::vector<double> q(n);
      for (auto& v : q) v = rng.uniform() < 0.5 ? 0.0 : static_cast<double>(1 + rng.uniform_index(64)) / 8.0;
      q[rng.uniform_index(n)] = 1.0;  // at least one positive
      const Tree t(q);
      double total = 0.0;
      for (double v : q) total += v;
      REQUIRE(t.sum[1] == total);
      std::vector<double> probes = {0.0, total, std::nextafter(total, 0.0)};
      double prefix = 0.0;
      for (double v : q) {
        prefix += v;
        probes.push_back(prefix);
        probes.push_back(std::nextafter(prefix, 0.0));
      }
      for (int k = 0; k < 200; ++k) probes.push_back(rng.uniform() * total);
      for (double u : probes) {
        const auto slot = t.find(u);
        REQUIRE(slot >= 0);
        REQUIRE(slot < static_cast<std::int64_t>(n));
        CHECK(q[static_cast<std::size_t>(slot)] > 0.0);
        CHECK(slot == scan(q, u));
      }
    }
  }

  TEST_CASE("find never returns an empty leaf with rounded sums") {
    // Priorities spread over 12 decades with many empty leaves: sums round,
    // and u near every boundary and the total probes the descent's guard.
    Rng rng(12);
    const std::size_t n = 1000;
    std::vector<double> q(n, 0.0);
    for (auto& v : q)
      if (rng.uniform() < 0.3) v = std::pow(10.0, -6.0 + 12.0 * rng.uniform());
    const Tree t(q);
    REQUIRE(t.sum[1] > 0.0);
    std::int64_t empty = 0;
    for (int k = 0; k < 200000; ++k) {
      const double u = k % 2 == 0 ? rng.uniform() * t.sum[1] : std::nextafter(t.sum[1], 0.0) - rng.uniform() * 1e-9;
      empty += q[static_cast<std::size_t>(t.find(u))] > 0.0 ? 0 : 1;
    }
    CHECK(empty == 0);
  }

  TEST_CASE("config defaults, validation and the beta anneal") {
    const PrioritizedConfig rainbow;
    CHECK(rainbow.alpha == 0.5);
    CHECK(rainbow.beta_start == 0.4);
    CHECK(rainbow.beta_end == 1.0);
    PrioritizedConfig c;
    c.beta_steps = 1000;
    CHECK(c.beta_at(-5) == 0.4);
    CHECK(c.beta_at(0) == 0.4);
    CHECK(c.beta_at(500) == doctest::Approx(0.7));  // 0.4 + 0.5 * 0.6
    CHECK(c.beta_at(1000) == 1.0);
    CHECK(c.beta_at(5000) == 1.0);
    c.beta_steps = 0;
    CHECK(c.beta_at(0) == 1.0);
    auto bad = [](auto edit) {
      PrioritizedConfig b;
      edit(b);
      return error_of([&] { PrioritizedSampler s(4, b); });
    };
    CHECK(bad([](PrioritizedConfig& b) { b.alpha = -0.1; }).find("alpha") != std::string::npos);
    CHECK(bad([](PrioritizedConfig& b) { b.beta_end = 1.5; }).find("beta") != std::string::npos);
    CHECK(bad([](PrioritizedConfig& b) { b.beta_steps = -1; }).find("beta_steps") != std::string::npos);
    CHECK(bad([](PrioritizedConfig& b) { b.epsilon = 0.0; }).find("epsilon") != std::string::npos);
    CHECK(error_of([] { PrioritizedSampler s(0); }).find("capacity") != std::string::npos);
  }

  TEST_CASE("priorities, probabilities and importance weights by hand") {
    PrioritizedSampler s(5, exact_config());
    CHECK(s.size() == 0);
    CHECK(s.total() == 0.0);
    CHECK(s.max_priority() == 1.0);
    for (std::int64_t i = 0; i < 5; ++i) s.add(i);
    // Before any update every slot has p = 1 (the initial max): q = 1^0.5 = 1.
    CHECK(s.size() == 5);
    CHECK(s.total() == 5.0);
    const std::vector<std::int64_t> slots = {0, 1, 2, 3};
    const std::vector<float> td = {0.75f, -3.75f, 8.75f, 0.0f};  // sign must not matter
    s.update(slots, td);
    // p = |td| + 0.25 = 1, 4, 9, 0.25; q = p^0.5 = 1, 2, 3, 0.5; slot 4 keeps 1.
    CHECK(s.stored(0) == doctest::Approx(1.0).epsilon(1e-15));
    CHECK(s.stored(1) == doctest::Approx(2.0).epsilon(1e-15));
    CHECK(s.stored(2) == doctest::Approx(3.0).epsilon(1e-15));
    CHECK(s.stored(3) == doctest::Approx(0.5).epsilon(1e-15));
    CHECK(s.stored(4) == 1.0);
    CHECK(s.max_priority() == 9.0);
    // total = 1 + 2 + 3 + 0.5 + 1 = 7.5; P = q / 7.5.
    CHECK(s.total() == doctest::Approx(7.5).epsilon(1e-15));
    CHECK(s.probability(0) == doctest::Approx(1.0 / 7.5));
    CHECK(s.probability(1) == doctest::Approx(2.0 / 7.5));
    CHECK(s.probability(2) == doctest::Approx(0.4));
    CHECK(s.probability(3) == doctest::Approx(0.5 / 7.5));
    CHECK(s.min_stored() == doctest::Approx(0.5));
    // Weights from the textbook form, N = 5:
    //   w_i = (N P_i)^-beta / max_j (N P_j)^-beta, N P = 5 q / 7.5 = 2q/3,
    //   the max is at the smallest P (slot 3, N P = 1/3).
    // beta = 0.5: (2/3)^-0.5 / (1/3)^-0.5 = sqrt(1/2) = 0.70711 for slot 0,
    //   slot 1 (4/3)^-0.5 / sqrt(3) = 0.5, slot 2 2^-0.5 / sqrt(3) = 0.40825,
    //   slot 3 1, slot 4 as slot 0.
    // beta = 1: 0.5 / q = 0.5, 0.25, 0.16667, 1, 0.5.
    for (double beta : {0.0, 0.5, 1.0}) {
      const double n = 5.0, p_min = 0.5 / 7.5;
      for (std::int64_t i = 0; i < 5; ++i) {
        const double textbook = std::pow(n * s.probability(i), -beta) / std::pow(n * p_min, -beta);
        CHECK(s.weight(i, beta) == doctest::Approx(textbook).epsilon(1e-12));
      }
    }
    CHECK(s.weight(0, 0.5) == doctest::Approx(0.7071067811865476));
    CHECK(s.weight(1, 0.5) == doctest::Approx(0.5));
    CHECK(s.weight(2, 0.5) == doctest::Approx(0.4082482904638631));
    CHECK(s.weight(3, 0.5) == 1.0);
    CHECK(s.weight(2, 1.0) == doctest::Approx(1.0 / 6.0));
    CHECK(s.weight(1, 0.0) == 1.0);
    // The normaliser is the memory's smallest priority, not the batch's: a
    // batch drawn without slot 3 still carries weights below 1.
    Rng rng(5);
    std::vector<std::int64_t> out(2);
    std::vector<float> w(2);
    s.sample(rng, 1.0, out, w, [](std::int64_t slot) { return slot != 3; });
    for (std::size_t k = 0; k < out.size(); ++k) {
      CHECK(out[k] != 3);
      CHECK(w[k] == doctest::Approx(0.5 / s.stored(out[k])));
      CHECK(w[k] < 1.0f);
    }
  }

  TEST_CASE("new slots get the largest priority so far and update raises it") {
    PrioritizedSampler s(6, exact_config());
    s.add(0);
    CHECK(s.stored(0) == 1.0);  // initial max 1, 1^0.5
    const std::int64_t zero[] = {0};
    const float big[] = {8.75f};  // p = 9
    s.update(zero, big);
    CHECK(s.max_priority() == 9.0);
    s.add(1);
    CHECK(s.stored(1) == doctest::Approx(3.0).epsilon(1e-15));  // 9^0.5
    const float small[] = {0.0f};  // p = 0.25: lowering a slot keeps the max
    s.update(zero, small);
    CHECK(s.max_priority() == 9.0);
    CHECK(s.stored(0) == doctest::Approx(0.5).epsilon(1e-15));
    const std::int64_t one[] = {1};
    const float bigger[] = {15.75f};  // p = 16
    s.update(one, bigger);
    CHECK(s.max_priority() == 16.0);
    s.add(2);
    CHECK(s.stored(2) == doctest::Approx(4.0).epsilon(1e-15));
    CHECK(s.size() == 3);
    CHECK(s.total() == doctest::Approx(0.5 + 4.0 + 4.0));
    s.add(2);  // re-adding a slot replaces, it does not count twice
    CHECK(s.size() == 3);
  }

  TEST_CASE("remove() makes a slot never drawn and update() does not bring it back") {
    PrioritizedSampler s(5, exact_config());
    for (std::int64_t i = 0; i < 5; ++i) s.add(i);
    const std::vector<std::int64_t> slots = {0, 1, 2, 3};
    s.update(slots, std::vector<float>{0.75f, 3.75f, 8.75f, 0.0f});  // q = 1 2 3 0.5, slot 4 q = 1
    s.remove(2);
    CHECK(s.size() == 4);
    CHECK(s.probability(2) == 0.0);
    CHECK(s.total() == doctest::Approx(4.5));
    const std::int64_t two[] = {2};
    const float td[] = {100.0f};
    s.update(two, td);
    CHECK(s.probability(2) == 0.0);
    CHECK(s.max_priority() == 9.0);  // the ignored error does not count either
    s.remove(3);                      // the smallest: q_min moves to 1
    CHECK(s.min_stored() == doctest::Approx(1.0));
    CHECK(s.weight(1, 1.0) == doctest::Approx(0.5));  // 1 / 2
    Rng rng(3);
    std::vector<std::int64_t> out(4);
    std::vector<float> w(4);
    for (int b = 0; b < 5000; ++b) {
      s.sample(rng, 0.5, out, w);
      for (auto slot : out) REQUIRE((slot != 2 && slot != 3));
    }
    CHECK(error_of([&] { (void)s.weight(2, 0.5); }).find("empty") != std::string::npos);
    for (std::int64_t i : {0, 1, 4}) s.remove(i);
    CHECK(s.size() == 0);
    CHECK(s.total() == 0.0);
    CHECK(error_of([&] { s.sample(rng, 0.5, out, w); }).find("add()") != std::string::npos);
  }

  TEST_CASE("stratified: equal priorities and batch = size give each slot once per batch") {
    // Segment k of [0, 4) is [k, k + 1), exactly slot k's interval: an i.i.d.
    // sampler would repeat slots, a stratified one cannot.
    PrioritizedSampler s(4);
    for (std::int64_t i = 0; i < 4; ++i) s.add(i);
    Rng rng(1);
    std::vector<std::int64_t> out(4);
    std::vector<float> w(4);
    for (int b = 0; b < 1000; ++b) {
      s.sample(rng, 0.4, out, w);
      for (std::int64_t k = 0; k < 4; ++k) REQUIRE(out[static_cast<std::size_t>(k)] == k);
      for (float x : w) REQUIRE(x == 1.0f);
    }
  }

  TEST_CASE("sampling frequencies match P(i)") {
    // q = 1 2 3 4 0 6 7 8 (alpha 1, epsilon tiny so q = |td| up to 1e-12).
    PrioritizedConfig c;
    c.alpha = 1.0;
    c.epsilon = 1e-12;
    PrioritizedSampler s(8, c);
    const std::vector<double> q = {1, 2, 3, 4, 0, 6, 7, 8};
    std::vector<std::int64_t> live;
    std::vector<float> td;
    for (std::int64_t i = 0; i < 8; ++i)
      if (q[static_cast<std::size_t>(i)] > 0) {
        s.add(i);
        live.push_back(i);
        td.push_back(static_cast<float>(q[static_cast<std::size_t>(i)]));
      }
    s.update(live, td);
    REQUIRE(s.total() == doctest::Approx(31.0));
    const int batch = 32, batches = 20000;
    const double draws = double(batch) * batches;
    std::vector<double> count(8, 0.0);
    Rng rng(2024);
    std::vector<std::int64_t> out(batch);
    std::vector<float> w(batch);
    for (int b = 0; b < batches; ++b) {
      s.sample(rng, 0.4, out, w);
      REQUIRE(std::is_sorted(out.begin(), out.end()));  // row k from segment k
      for (auto slot : out) count[static_cast<std::size_t>(slot)] += 1.0;
    }
    CHECK(count[4] == 0.0);
    // Pearson chi-square over the 7 live slots, 6 degrees of freedom: the
    // 99.9% quantile is 22.46. Stratification only lowers the variance below
    // the multinomial's, so the bound is conservative. Each slot also within
    // 5 multinomial standard deviations of n P(i).
    double chi2 = 0.0;
    for (std::size_t i = 0; i < 8; ++i) {
      const double p = q[i] / 31.0;
      if (p == 0.0) continue;
      const double expected = draws * p;
      chi2 += (count[i] - expected) * (count[i] - expected) / expected;
      CHECK(std::fabs(count[i] - expected) < 5.0 * std::sqrt(draws * p * (1 - p)));
    }
    CHECK(chi2 < 22.46);
    MESSAGE("chi-square over 7 slots: " << chi2);
  }

  TEST_CASE("rejected rows are redrawn within their own segment") {
    // q = 1 1 1 1 as in the stratified test, slot 2 rejected: row 2's segment
    // is slot 2's interval alone, so it can never be filled.
    PrioritizedSampler s(8);
    for (std::int64_t i = 0; i < 8; ++i) s.add(i);
    Rng rng(9);
    std::vector<std::int64_t> out(4);  // segments of 2 slots each
    std::vector<float> w(4);
    int rejected = 0;
    for (int b = 0; b < 500; ++b) {
      s.sample(rng, 1.0, out, w, [&](std::int64_t slot) {
        if (slot % 2 == 0) ++rejected;
        return slot % 2 == 1;
      });
      for (std::int64_t k = 0; k < 4; ++k) REQUIRE(out[static_cast<std::size_t>(k)] == 2 * k + 1);
    }
    CHECK(rejected > 500);  // the predicate did reject, and rows were redrawn
    std::vector<std::int64_t> eight(8);
    std::vector<float> w8(8);
    const auto message = error_of([&] { s.sample(rng, 1.0, eight, w8, [](std::int64_t slot) { return slot != 2; }, 10); });
    CHECK(message.find("row 2 of 8") != std::string::npos);
    CHECK(message.find("remove()") != std::string::npos);
    // draw() on one segment, as a replay memory redraws a row by hand.
    const auto seg = s.segment(3, 4);
    CHECK(seg.lo == 6.0);
    CHECK(seg.hi == 8.0);
    for (int k = 0; k < 100; ++k) {
      const auto slot = s.draw(rng, seg.lo, seg.hi);
      REQUIRE((slot == 6 || slot == 7));
    }
    CHECK(!error_of([&] { (void)s.draw(rng, 2.0, 1.0); }).empty());
    CHECK(!error_of([&] { (void)s.segment(4, 4); }).empty());
  }

  TEST_CASE("update() rejects non-finite TD errors and bad batches, changing nothing") {
    PrioritizedSampler s(4, exact_config());
    for (std::int64_t i = 0; i < 4; ++i) s.add(i);
    const std::vector<std::int64_t> slots = {0, 1};
    s.update(slots, std::vector<float>{3.75f, 0.0f});
    const std::vector<double> before(s.leaf_priorities().begin(), s.leaf_priorities().end());
    const double total = s.total();
    REQUIRE(total > 0.0);
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      // The good row first: it must not be written either.
      const auto message = error_of([&] { s.update(slots, std::vector<float>{100.0f, bad}); });
      CHECK(message.find("not finite") != std::string::npos);
      CHECK(message.find("slot 1") != std::string::npos);
    }
    CHECK(error_of([&] { s.update(slots, std::vector<float>{1.0f}); }).find("TD errors") != std::string::npos);
    CHECK(error_of([&] { s.update(std::vector<std::int64_t>{0, 4}, std::vector<float>{1, 1}); }).find("slot 4") !=
          std::string::npos);
    CHECK(std::equal(before.begin(), before.end(), s.leaf_priorities().begin()));
    CHECK(s.total() == total);
    CHECK(s.max_priority() == 4.0);
    CHECK(!error_of([&] { (void)s.weight(0, 1.5); }).empty());
    CHECK(!error_of([&] { s.add(-1); }).empty());
  }

  TEST_CASE("restore() round trip reproduces the sampler exactly") {
    PrioritizedSampler a(100);
    Rng fill(7);
    for (std::int64_t i = 0; i < 90; ++i) a.add(i);
    for (int b = 0; b < 50; ++b) {
      std::vector<std::int64_t> slots(8);
      std::vector<float> td(8);
      for (auto& x : slots) x = static_cast<std::int64_t>(fill.uniform_index(90));
      for (auto& x : td) x = static_cast<float>(3.0 * fill.normal());
      a.update(slots, td);
    }
    a.remove(17);
    const std::vector<double> leaves(a.leaf_priorities().begin(), a.leaf_priorities().end());
    REQUIRE(leaves.size() == 100);
    REQUIRE(a.max_priority() > 1.0);
    PrioritizedSampler b(100);
    b.restore(leaves, a.max_priority());
    CHECK(b.total() == a.total());
    CHECK(b.min_stored() == a.min_stored());
    CHECK(b.size() == 89);
    CHECK(b.size() == a.size());
    CHECK(b.max_priority() == a.max_priority());
    CHECK(std::equal(leaves.begin(), leaves.end(), b.leaf_priorities().begin()));
    Rng ra(99), rb(99);
    std::vector<std::int64_t> sa(32), sb(32);
    std::vector<float> wa(32), wb(32);
    for (int k = 0; k < 20; ++k) {
      a.sample(ra, 0.6, sa, wa);
      b.sample(rb, 0.6, sb, wb);
      REQUIRE(sa == sb);
      REQUIRE(wa == wb);
    }
    a.add(95);
    b.add(95);
    CHECK(b.stored(95) == a.stored(95));  // the max priority came back too
  }

  TEST_CASE("restore() rejects bad leaves and max priorities, changing nothing") {
    PrioritizedSampler s(4, exact_config());
    s.add(0);
    s.add(3);
    const double total = s.total();
    REQUIRE(total == 2.0);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    auto restore_error = [&](std::vector<double> leaves, double max_priority) {
      return error_of([&] { s.restore(leaves, max_priority); });
    };
    CHECK(restore_error({1, 1, 1}, 4.0).find("3 leaf priorities for a capacity of 4") != std::string::npos);
    CHECK(restore_error({1, -0.5, 1, 1}, 4.0).find("-0.5 for slot 1") != std::string::npos);
    CHECK(restore_error({1, 1, nan, 1}, 4.0).find("for slot 2") != std::string::npos);
    CHECK(restore_error({1, 1, 1, inf}, 4.0).find("for slot 3") != std::string::npos);
    CHECK(restore_error({1, 1, 1, 1}, 0.0).find("max_priority") != std::string::npos);
    CHECK(restore_error({1, 1, 1, 1}, nan).find("max_priority") != std::string::npos);
    CHECK(restore_error({1, 1, 1, 1}, -inf).find("max_priority") != std::string::npos);
    // q = 3 needs p = 9 at alpha 0.5; max_priority 4 allows q <= 2.
    CHECK(restore_error({1, 3, 1, 1}, 4.0).find("another alpha") != std::string::npos);
    CHECK(s.total() == total);
    CHECK(s.size() == 2);
    CHECK(s.max_priority() == 1.0);
    s.restore(std::vector<double>{0, 2, 0, 0.5}, 4.0);  // zeros are empty slots
    CHECK(s.size() == 2);
    CHECK(s.total() == 2.5);
    CHECK(s.min_stored() == 0.5);
  }

  TEST_CASE("a million updates leave the total equal to a fresh recomputation") {
    // Priorities over six decades. The tree recomputes parents from
    // children, so its root must equal a rebuild from the leaves bit for bit
    // and an exact (long double, compensated) sum to 1e-12. A float running
    // total adjusted by deltas, what the recomputation avoids, is shown to
    // miss by far more than that tolerance.
    const std::int64_t capacity = 5000;
    PrioritizedConfig c;
    PrioritizedSampler s(capacity, c);
    for (std::int64_t i = 0; i < capacity; ++i) s.add(i);
    Rng rng(77);
    float naive_total = static_cast<float>(s.total());
    std::vector<std::int64_t> slots(32);
    std::vector<float> td(32);
    for (int b = 0; b < 31250; ++b) {  // 31,250 x 32 = 1,000,000 updates
      for (std::size_t k = 0; k < slots.size(); ++k) {
        slots[k] = static_cast<std::int64_t>(rng.uniform_index(static_cast<std::uint64_t>(capacity)));
        td[k] = static_cast<float>(std::pow(10.0, -3.0 + 6.0 * rng.uniform()));
      }
      for (std::size_t k = 0; k < slots.size(); ++k) {
        const double q_new = std::pow(std::fabs(double(td[k])) + c.epsilon, c.alpha);
        naive_total += static_cast<float>(q_new - s.stored(slots[k]));
        s.update(std::span(slots).subspan(k, 1), std::span(td).subspan(k, 1));
      }
    }
    const auto leaves = s.leaf_priorities();
    long double exact = 0.0L, compensation = 0.0L;
    double q_min = HUGE_VAL;
    for (double q : leaves) {
      const long double y = static_cast<long double>(q) - compensation;
      const long double t = exact + y;
      compensation = (t - exact) - y;
      exact = t;
      if (q > 0.0) q_min = std::min(q_min, q);
    }
    REQUIRE(exact > 1000.0L);
    const double relative = std::fabs(static_cast<double>((static_cast<long double>(s.total()) - exact) / exact));
    CHECK(relative < 1e-12);
    PrioritizedSampler rebuilt(capacity, c);
    rebuilt.restore(leaves, s.max_priority());
    CHECK(rebuilt.total() == s.total());
    CHECK(s.min_stored() == q_min);
    CHECK(s.size() == capacity);
    const double naive_relative = std::fabs(static_cast<double>((naive_total - exact) / exact));
    MESSAGE("relative error of the total: tree " << relative << ", float running total " << naive_relative);
    CHECK(naive_relative > 1e-9);
  }
}
