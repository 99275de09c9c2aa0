// Chrome Dino environment throughput through one headless Chromium, lock-step,
// 4 frames per step, 80x80 gray observation produced every step.
// Prints one JSON line per figure:
//   dino_step_screenshot   steps/s with Page.captureScreenshot + PNG decode
//   dino_step_canvas       steps/s with the canvas pixels via Runtime.evaluate
//   dino_reset             resets/s (page reload with a new seed, game start)
//   dino_vec_canvas, dino_vec_screenshot (browsers = 1, 2, 4 ...)
//                          steps/s summed over N browsers stepped together
//                          by env::VectorEnv, autoresets included (what a
//                          vector-env trainer would see)
// The single-env step figures exclude resets (reported apart), so they do not
// depend on how long the policy survives.
// Usage: bench_dino [seconds per figure, default 5] [most browsers, default 4]
#include <qrl/core/rng.hpp>
#include <qrl/env/vector_env.hpp>
#include <qrl/envs/dino.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

// N browsers, one env each, stepped together; every env has its own seeded
// policy. Returns env steps/s summed over the envs.
// tabs: the envs are N tabs of one browser (attached as with --cdp), not N browsers.
double measure_vector(qrl::envs::CaptureMode mode, int browsers, bool tabs, double seconds, std::uint64_t& checksum) {
  qrl::envs::BrowserConfig browser;
  browser.capture = mode;
  browser.warn_no_sandbox = false;
  std::unique_ptr<qrl::cdp::ChromiumProcess> shared;
  if (tabs) {
    qrl::cdp::ChromiumOptions options;
    options.warn_no_sandbox = false;
    shared = std::make_unique<qrl::cdp::ChromiumProcess>(options);
    browser.cdp_url = "http://127.0.0.1:" + std::to_string(shared->port());
  }
  qrl::env::VectorEnv<qrl::envs::Dino> vec(browsers, [&](int) { return qrl::envs::Dino({}, browser); });
  std::vector<qrl::Rng> policies;
  for (int i = 0; i < browsers; ++i) policies.emplace_back(12345 + i);
  std::vector<int> actions(static_cast<std::size_t>(browsers));
  auto act = [&] {
    for (int i = 0; i < browsers; ++i)
      actions[i] = policies[i].uniform() < 0.1 ? qrl::envs::Dino::kJump : qrl::envs::Dino::kNoop;
    return vec.step(actions);
  };
  vec.reset(1);
  for (int i = 0; i < 20; ++i) act();  // warm up
  std::int64_t steps = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    const auto results = act();
    steps += browsers;
    checksum += results[0].result.observation.pixels[(steps * 997) % results[0].result.observation.shape.bytes()];
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return steps / elapsed;
}

void report(const char* name, double value, const char* unit, int browsers = 1) {
  std::printf("{\"bench\":\"%s\",\"value\":%.1f,\"unit\":\"%s\",\"browsers\":%d,\"observation\":\"80x80\","
              "\"frame_skip\":4,\"cores\":%u}\n",
              name, value, unit, browsers, std::thread::hardware_concurrency());
  std::fflush(stdout);
}

void report_tabs(const char* name, double value, int tabs) {
  std::printf("{\"bench\":\"%s\",\"value\":%.1f,\"unit\":\"steps/s\",\"browsers\":1,\"tabs\":%d,"
              "\"observation\":\"80x80\",\"frame_skip\":4,\"cores\":%u}\n",
              name, value, tabs, std::thread::hardware_concurrency());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5.0;
  const int most_browsers = argc > 2 ? std::atoi(argv[2]) : 4;
  std::uint64_t checksum = 0;
  const Rates shot = measure(qrl::envs::CaptureMode::Screenshot, seconds, checksum);
  report("dino_step_screenshot", shot.steps_per_second, "steps/s");
  const Rates canvas = measure(qrl::envs::CaptureMode::Canvas, seconds, checksum);
  report("dino_step_canvas", canvas.steps_per_second, "steps/s");
  report("dino_reset", (shot.resets_per_second + canvas.resets_per_second) / 2, "resets/s");
  for (const auto mode : {qrl::envs::CaptureMode::Canvas, qrl::envs::CaptureMode::Screenshot}) {
    const bool canvas_mode = mode == qrl::envs::CaptureMode::Canvas;
    for (int n = 1; n <= most_browsers; n *= 2)
      report(canvas_mode ? "dino_vec_canvas" : "dino_vec_screenshot", measure_vector(mode, n, false, seconds, checksum),
             "steps/s", n);
    // The other way to run N envs: N tabs of one browser ("browsers" is 1).
    for (int n = 2; n <= most_browsers; n *= 2)
      report_tabs(canvas_mode ? "dino_vec_canvas_tabs" : "dino_vec_screenshot_tabs",
                  measure_vector(mode, n, true, seconds, checksum), n);
  }
  // Printed to stderr so stdout stays pure JSON lines.
  std::fprintf(stderr, "checksum %llu\n", static_cast<unsigned long long>(checksum));
  return 0;
}
