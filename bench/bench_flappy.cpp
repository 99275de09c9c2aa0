// Flappy Bird environment throughput on one thread, observation included.
// Prints one JSON line per figure:
//   flappy_step                analytic (fused) 80x80 gray observation
//   flappy_step_84             the same at 84x84
//   flappy_step_rgb_reference  render_rgb() + generic preprocess() every step
// Usage: bench_flappy [seconds per figure, default 2]
#include <qrl/core/rng.hpp>
#include <qrl/envs/flappy_bird.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace {

using Clock = std::chrono::steady_clock;

// Seeded random actions (mostly gliding, so episodes are not all a few frames
// long) with automatic reset; returns steps per second.
double steps_per_second(qrl::envs::FlappyBirdConfig config, double seconds, std::uint64_t& checksum) {
  qrl::envs::FlappyBird env(config);
  qrl::Rng policy(12345);
  std::uint64_t seed = 1;
  env.reset(seed);
  auto run = [&](std::int64_t steps) {
    for (std::int64_t i = 0; i < steps; ++i) {
      const auto result = env.step(policy.uniform() < 0.12 ? 1 : 0);
      // Reading the observation keeps the work observable to the compiler.
      checksum += result.observation.pixels[(i * 997) % result.observation.shape.bytes()];
      if (result.terminated || result.truncated) env.reset(++seed);
    }
  };
  run(1000);  // warm caches and allocations
  std::int64_t steps = 0;
  std::int64_t batch = 256;
  const auto start = Clock::now();
  double elapsed = 0.0;
  while (elapsed < seconds) {
    run(batch);
    steps += batch;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (elapsed < seconds / 10) batch *= 2;
  }
  return static_cast<double>(steps) / elapsed;
}

void report(const char* name, double value, int size) {
  std::printf("{\"bench\":\"%s\",\"value\":%.0f,\"unit\":\"steps/s\",\"threads\":1,\"observation\":\"%dx%d\"}\n", name,
              value, size, size);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  std::uint64_t checksum = 0;

  qrl::envs::FlappyBirdConfig analytic;
  report("flappy_step", steps_per_second(analytic, seconds, checksum), 80);

  qrl::envs::FlappyBirdConfig analytic84;
  analytic84.observation_height = analytic84.observation_width = 84;
  report("flappy_step_84", steps_per_second(analytic84, seconds, checksum), 84);

  qrl::envs::FlappyBirdConfig rendered;
  rendered.observation_mode = qrl::envs::ObservationMode::Rendered;
  report("flappy_step_rgb_reference", steps_per_second(rendered, seconds, checksum), 80);

  // Printed to stderr so stdout stays pure JSON lines.
  std::fprintf(stderr, "checksum %llu\n", static_cast<unsigned long long>(checksum));
  return 0;
}
