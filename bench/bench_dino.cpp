// Chrome Dino environment throughput through one headless Chromium, lock-step,
// 4 frames per step, 80x80 gray observation produced every step.
// Prints one JSON line per figure:
//   dino_step_screenshot   steps/s with Page.captureScreenshot + PNG decode
//   dino_step_canvas       steps/s with the canvas pixels via Runtime.evaluate
//   dino_reset             resets/s (page reload with a new seed, game start)
// Step figures exclude resets (reported apart), so they do not depend on how
// long the policy survives.
// Usage: bench_dino [seconds per figure, default 5]
#include <qrl/core/rng.hpp>
#include <qrl/envs/dino.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

struct Rates {
  double steps_per_second = 0;
  double resets_per_second = 0;
};

Rates measure(qrl::envs::CaptureMode mode, double seconds, std::uint64_t& checksum) {
  qrl::envs::BrowserConfig browser;
  browser.capture = mode;
  qrl::envs::Dino env({}, browser);
  qrl::Rng policy(12345);
  std::uint64_t seed = 1;
  double step_time = 0, reset_time = 0;
  std::int64_t steps = 0, resets = 0;
  auto reset = [&] {
    const auto t = Clock::now();
    env.reset(seed++);
    reset_time += std::chrono::duration<double>(Clock::now() - t).count();
    ++resets;
  };
  reset();
  for (int i = 0; i < 20; ++i) env.step(0);  // warm up
  reset();
  while (step_time < seconds) {
    const int action = policy.uniform() < 0.1 ? qrl::envs::Dino::kJump : qrl::envs::Dino::kNoop;
    const auto t = Clock::now();
    const auto r = env.step(action);
    step_time += std::chrono::duration<double>(Clock::now() - t).count();
    ++steps;
    checksum += r.observation.pixels[(steps * 997) % r.observation.shape.bytes()];
    if (r.terminated || r.truncated) reset();
  }
  return {steps / step_time, resets / reset_time};
}

void report(const char* name, double value, const char* unit) {
  std::printf("{\"bench\":\"%s\",\"value\":%.1f,\"unit\":\"%s\",\"browsers\":1,\"observation\":\"80x80\","
              "\"frame_skip\":4,\"cores\":%u}\n",
              name, value, unit, std::thread::hardware_concurrency());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5.0;
  std::uint64_t checksum = 0;
  const Rates shot = measure(qrl::envs::CaptureMode::Screenshot, seconds, checksum);
  report("dino_step_screenshot", shot.steps_per_second, "steps/s");
  const Rates canvas = measure(qrl::envs::CaptureMode::Canvas, seconds, checksum);
  report("dino_step_canvas", canvas.steps_per_second, "steps/s");
  report("dino_reset", (shot.resets_per_second + canvas.resets_per_second) / 2, "resets/s");
  // Printed to stderr so stdout stays pure JSON lines.
  std::fprintf(stderr, "checksum %llu\n", static_cast<unsigned long long>(checksum));
  return 0;
}
