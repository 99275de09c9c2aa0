#pragma once
#include <array>
#include <cmath>
#include <cstdint>

namespace qrl {

// What a seed derived from a run's seed is for: one purpose, one constant, so
// that no two of a run's random sequences coincide. The constants are the
// salts each component XORed into the seed before Rng::derive existed; they
// stay, so that training runs and the shipped agents' evaluations draw what
// they drew before (docs/runs.md, "Seeds").
enum class SeedPurpose : std::uint64_t {
  exploration = 0xe4e4e4e4e4e4e4e4ULL,    // the trainer's epsilon-greedy draws
  sampling = 0x5a5a5a5a5a5a5a5aULL,       // replay minibatches
  episode_seeds = 0x5eed5eed5eed5eedULL,  // index i: the trainer's env i's sequence of episode seeds
  evaluation_actions = 0xa5a5a5a5ULL,     // of an evaluation episode's seed: its random actions
  noop_starts = 0x6e6f6f7073ULL,          // of an Atari episode's seed: its no-op count at reset
  demonstration_episodes = 0xde3005ULL,   // the seeds of Flappy Bird's planner demonstrations
  pretraining_sampling = 0x9e7a11ULL,     // DQfD's pre-training minibatches
  layer_noise = 0x9015e5eedULL,           // noisy layers' noise
};

__extension__ typedef unsigned __int128 Uint128;  // GCC/Clang builtin; __extension__ keeps -Wpedantic quiet

// xoshiro256** seeded through splitmix64. Chosen over std::mt19937 plus
// std::*_distribution because those distributions differ between standard
// libraries: a seed must give the same run everywhere, and the state is four
// words that a checkpoint can store.
class Rng {
 public:
  using State = std::array<std::uint64_t, 4>;

  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

  // The seed of `purpose`'s sequence number `index` (an env, an episode)
  // within a run seeded with `seed`. Every seed qrl derives comes from here.
  // The result seeds an Rng, whose splitmix64 seeding decorrelates the
  // nearby values this gives.
  static constexpr std::uint64_t derive(std::uint64_t seed, SeedPurpose purpose, std::uint64_t index = 0) {
    return (seed ^ static_cast<std::uint64_t>(purpose)) + index * 0xd1b54a32d192ed03ULL;
  }
  Rng(std::uint64_t seed, SeedPurpose purpose, std::uint64_t index = 0) : Rng(derive(seed, purpose, index)) {}

  void reseed(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& word : state_) word = splitmix64(x);
  }

  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, bound) without modulo bias (Lemire's method).
  std::uint64_t uniform_index(std::uint64_t bound) {
    if (bound <= 1) return 0;
    const std::uint64_t threshold = (0 - bound) % bound;
    for (;;) {
      const Uint128 product = static_cast<Uint128>(next_u64()) * bound;
      if (static_cast<std::uint64_t>(product) >= threshold) return static_cast<std::uint64_t>(product >> 64);
    }
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Standard normal by Box-Muller; both values are used so the sequence is
  // deterministic and the cached value is part of the state.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 0.0;
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    constexpr double two_pi = 6.283185307179586476925286766559;
    spare_ = radius * std::sin(two_pi * u2);
    has_spare_ = true;
    return radius * std::cos(two_pi * u2);
  }

  // Derive an independent generator (for a sub-component) without disturbing
  // reproducibility of the parent beyond one draw.
  Rng split() { return Rng(next_u64()); }

  // The four words; a cached normal() value is not part of them, so a
  // generator that is checkpointed between draws calls discard_spare() after
  // each group of normal() draws to keep state() complete.
  void discard_spare() { has_spare_ = false; }

  const State& state() const { return state_; }
  void set_state(const State& s) {
    state_ = s;
    has_spare_ = false;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  State state_{};
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace qrl
