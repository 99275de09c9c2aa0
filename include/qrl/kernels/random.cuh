#pragma once
// Counter-based random numbers for device code (epsilon-greedy, replay
// sampling). Draw i of a launch is a pure function of (seed, counter, i):
// threads need no state, a launch is reproducible from its two integers, and
// the CPU reference computes the very same draws. The mixer is splitmix64's
// finaliser applied twice to a Weyl combination of the three inputs; that is
// plenty for exploration and minibatch sampling, and not meant for anything
// statistical beyond that.
#include <cstdint>

#include <qrl/core/host_device.hpp>

namespace qrl::kernels {

QRL_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct CounterRng {
  std::uint64_t seed = 0;
  std::uint64_t counter = 0;  // advanced by the caller once per launch

  QRL_HOST_DEVICE std::uint64_t bits(std::uint64_t index) const {
    const std::uint64_t key = mix64(seed + 0x9e3779b97f4a7c15ULL * (counter + 1));
    return mix64(key ^ (index * 0xd1b54a32d192ed03ULL + 0x632be59bd9b4e019ULL));
  }
  // Uniform in [0, 1) with 24 bits, exact in float.
  QRL_HOST_DEVICE float uniform(std::uint64_t index) const {
    return static_cast<float>(bits(index) >> 40) * (1.0f / 16777216.0f);
  }
  // Uniform in [0, bound) by a 32x32 multiply-shift; the bias is below
  // bound / 2^32, far under anything a replay of < 2^31 slots can notice.
  QRL_HOST_DEVICE std::uint32_t bounded(std::uint64_t index, std::uint32_t bound) const {
    return static_cast<std::uint32_t>(((bits(index) >> 32) * bound) >> 32);
  }
};

// Epsilon-greedy for environment `env` of a batch: draws 2 env and 2 env + 1
// decide explore-or-not and the random action; ties of the greedy argmax go
// to the lowest index, as std::max_element does.
struct EpsilonGreedy {
  float epsilon = 0.0f;
  CounterRng rng{};

  QRL_HOST_DEVICE int operator()(const float* q_row, int actions, int env) const {
    const auto e = static_cast<std::uint64_t>(env);
    if (rng.uniform(2 * e) < epsilon) return static_cast<int>(rng.bounded(2 * e + 1, static_cast<std::uint32_t>(actions)));
    int best = 0;
    for (int a = 1; a < actions; ++a)
      if (q_row[a] > q_row[best]) best = a;
    return best;
  }
};

}  // namespace qrl::kernels
