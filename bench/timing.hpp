#pragma once
// The benchmarks' one way of timing a call.
#include <algorithm>
#include <chrono>
#include <vector>

namespace bench {

// Seconds per call: the median of 5 rounds, each as many calls as fill a
// fifth of the budget, after 3 warm-up calls (buffers, thread pools,
// oneDNN's JIT). The median keeps one round that another process slowed
// from moving the figure.
template <class F>
double seconds_per_call(F&& f, double budget) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> rounds;
  using clock = std::chrono::steady_clock;
  for (int r = 0; r < 5; ++r) {
    const auto start = clock::now();
    int calls = 0;
    double elapsed = 0;
    do {
      f();
      ++calls;
      elapsed = std::chrono::duration<double>(clock::now() - start).count();
    } while (elapsed < budget / 5);
    rounds.push_back(elapsed / calls);
  }
  std::sort(rounds.begin(), rounds.end());
  return rounds[2];
}

}  // namespace bench
