// Atari throughput in emulator frames per second. Prints one JSON line per
// figure:
//   atari_ale_act     ALE's own act() loop, one frame per call (the ceiling)
//   atari_env_step    qrl::envs::Atari: frame skip 4, two gray screens, max,
//                     84x84 resize; with its overhead against atari_ale_act
//   atari_vector_env  VectorEnv<Atari> with N envs on N threads, N = 1, 2, ...
// The first two alternate over several rounds and report their best round, so
// load from other processes hits both alike.
// Usage: bench_atari [game, default pong] [seconds per round, default 1] [max threads, default hardware]
#include <qrl/core/rng.hpp>
#include <qrl/env/vector_env.hpp>
#include <qrl/envs/atari.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using qrl::envs::Atari;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Frames/s of ALE alone: random minimal-set actions, reset at game over.
double ale_frames_per_second(Atari& env, double seconds, std::uint64_t& checksum) {
  ale::ALEInterface& ale = env.ale();
  const auto& actions = env.actions();
  qrl::Rng policy(7);
  std::int64_t frames = 0;
  const auto start = Clock::now();
  while (seconds_since(start) < seconds) {
    for (int i = 0; i < 400; ++i) {
      checksum += static_cast<std::uint64_t>(ale.act(actions[policy.uniform_index(actions.size())]) != 0);
      if (ale.game_over(false)) ale.reset_game();
    }
    frames += 400;
  }
  return static_cast<double>(frames) / seconds_since(start);
}

// Frames/s through the env: steps times the frame skip.
double env_frames_per_second(Atari& env, double seconds, std::uint64_t& seed, std::uint64_t& checksum) {
  qrl::Rng policy(7);
  std::int64_t steps = 0;
  const auto start = Clock::now();
  while (seconds_since(start) < seconds) {
    for (int i = 0; i < 100; ++i) {
      const auto r = env.step(static_cast<int>(policy.uniform_index(env.action_count())));
      checksum += r.observation.pixels[(i * 997) % r.observation.shape.bytes()];
      if (r.terminated || r.truncated) env.reset(++seed);
    }
    steps += 100;
  }
  return static_cast<double>(steps) * env.config().frame_skip / seconds_since(start);
}

double vector_frames_per_second(const qrl::envs::AtariConfig& config, int threads, double seconds,
                                std::uint64_t& checksum) {
  qrl::env::VectorEnv<Atari> vec(threads, [&](int) { return Atari(config); }, threads);
  vec.reset(3);
  qrl::Rng policy(7);
  std::vector<int> actions(threads);
  auto run = [&](int steps) {
    for (int s = 0; s < steps; ++s) {
      for (auto& a : actions) a = static_cast<int>(policy.uniform_index(vec.action_count()));
      const auto results = vec.step(actions);
      checksum += results[0].result.observation.pixels[(s * 997) % 7056];
    }
  };
  run(50);  // warm up the threads
  std::int64_t steps = 0;
  const auto start = Clock::now();
  while (seconds_since(start) < seconds) {
    run(50);
    steps += 50;
  }
  return static_cast<double>(steps) * threads * config.frame_skip / seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string game = argc > 1 ? argv[1] : "pong";
  const double seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
  const int max_threads =
      argc > 3 ? std::atoi(argv[3]) : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::uint64_t checksum = 0;
  qrl::envs::AtariConfig config;
  config.game = game;

  Atari raw(config), env(config);
  raw.reset(1);
  std::uint64_t seed = 1;
  env.reset(seed);
  double best_ale = 0.0, best_env = 0.0;
  for (int round = 0; round < 5; ++round) {
    best_ale = std::max(best_ale, ale_frames_per_second(raw, seconds, checksum));
    best_env = std::max(best_env, env_frames_per_second(env, seconds, seed, checksum));
  }
  std::printf("{\"bench\":\"atari_ale_act\",\"value\":%.0f,\"unit\":\"frames/s\",\"threads\":1,\"game\":\"%s\"}\n",
              best_ale, game.c_str());
  std::printf("{\"bench\":\"atari_env_step\",\"value\":%.0f,\"unit\":\"frames/s\",\"threads\":1,\"game\":\"%s\","
              "\"frame_skip\":4,\"observation\":\"84x84\",\"overhead_vs_ale_percent\":%.1f}\n",
              best_env, game.c_str(), 100.0 * (best_ale - best_env) / best_ale);
  std::fflush(stdout);
  for (int threads = 1; threads <= max_threads; threads *= 2) {
    const double fps = vector_frames_per_second(config, threads, 2 * seconds, checksum);
    std::printf("{\"bench\":\"atari_vector_env\",\"value\":%.0f,\"unit\":\"frames/s\",\"threads\":%d,\"envs\":%d,"
                "\"game\":\"%s\"}\n",
                fps, threads, threads, game.c_str());
    std::fflush(stdout);
  }
  // Printed to stderr so stdout stays pure JSON lines.
  std::fprintf(stderr, "checksum %llu\n", static_cast<unsigned long long>(checksum));
  return 0;
}
