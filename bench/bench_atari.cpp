// Atari throughput in emulator frames per second. Prints one JSON line per
// figure:
//   atari_ale_act     ALE's own act() loop, one frame per call (the ceiling)
//   atari_env_step    qrl::envs::Atari: frame skip 4, two gray screens, max,
//                     84x84 resize; with its overhead against atari_ale_act
//   atari_vector_env  VectorEnv<Atari> with N envs on N threads, N = 1, 2, ...
// The first two replay one recorded sequence of actions and resets, so they
// emulate the same frames (checked: the same frame count and RAM at the end);
// they alternate over several rounds and report their best round, so load
// from other processes hits both alike.
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

// One stretch of play: the action of each step and, after it, the seed of
// the reset that follows (0: none).
struct Recording {
  std::vector<int> actions;
  std::vector<std::uint64_t> reset_after;
};

// Random minimal-set actions through the env, resets at episode ends.
Recording record(const qrl::envs::AtariConfig& config, int steps) {
  Atari env(config);
  env.reset(1);
  qrl::Rng policy(7);
  Recording rec;
  std::uint64_t seed = 1;
  for (int i = 0; i < steps; ++i) {
    rec.actions.push_back(static_cast<int>(policy.uniform_index(env.action_count())));
    const auto r = env.step(rec.actions.back());
    rec.reset_after.push_back(r.terminated || r.truncated ? ++seed : 0);
    if (rec.reset_after.back()) env.reset(seed);
  }
  return rec;
}

// What a replay ended in: its emulated frames and a hash of the console's RAM.
struct Replayed {
  double seconds = 0;
  std::int64_t frames = 0;
  std::uint64_t ram_hash = 0;
};
std::uint64_t ram_hash(ale::ALEInterface& ale) {
  std::uint64_t h = 1469598103934665603ULL;
  const auto& ram = ale.getRAM();
  for (std::size_t i = 0; i < ram.size(); ++i) h = (h ^ ram.get(i)) * 1099511628211ULL;
  return h;
}

// ALE alone: each step's action for frame_skip act() calls, cut short where
// the env's step ends at game over (the env's resets, identical in both).
Replayed replay_ale(Atari& env, const Recording& rec) {
  ale::ALEInterface& ale = env.ale();
  const auto& actions = env.actions();
  env.reset(1);
  Replayed out;
  const auto start = Clock::now();
  for (std::size_t i = 0; i < rec.actions.size(); ++i) {
    const ale::Action a = actions[static_cast<std::size_t>(rec.actions[i])];
    for (int t = 0; t < env.config().frame_skip; ++t) {
      ale.act(a);
      ++out.frames;
      if (ale.game_over(false)) break;
    }
    if (rec.reset_after[i]) env.reset(rec.reset_after[i]);
  }
  out.seconds = seconds_since(start);
  out.ram_hash = ram_hash(ale);
  return out;
}

// The same through the env's step(): two screens grabbed, max, 84x84 resize.
Replayed replay_env(Atari& env, const Recording& rec, std::uint64_t& checksum) {
  env.reset(1);
  Replayed out;
  const std::int64_t first_frame = env.ale().getFrameNumber();
  const auto start = Clock::now();
  for (std::size_t i = 0; i < rec.actions.size(); ++i) {
    const auto r = env.step(rec.actions[i]);
    checksum += r.observation.pixels[(i * 997) % r.observation.shape.bytes()];
    if (rec.reset_after[i]) env.reset(rec.reset_after[i]);
  }
  out.seconds = seconds_since(start);
  out.frames = env.ale().getFrameNumber() - first_frame;
  out.ram_hash = ram_hash(env.ale());
  return out;
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

  // About `seconds` of emulation per replay at ALE's usual few thousand frames/s.
  const Recording rec = record(config, std::max(200, static_cast<int>(seconds * 1500)));
  Atari raw(config), env(config);
  double best_ale = 1e30, best_env = 1e30;
  Replayed ale_run, env_run;
  for (int round = 0; round < 5; ++round) {
    ale_run = replay_ale(raw, rec);
    env_run = replay_env(env, rec, checksum);
    best_ale = std::min(best_ale, ale_run.seconds);
    best_env = std::min(best_env, env_run.seconds);
  }
  // replay_ale counts the frames it asked for; the env's count includes its resets' no-ops.
  const bool same_game = ale_run.ram_hash == env_run.ram_hash;
  if (!same_game) std::fprintf(stderr, "bench_atari: the two replays ended in different states\n");
  const double ale_fps = static_cast<double>(ale_run.frames) / best_ale;
  std::printf("{\"bench\":\"atari_ale_act\",\"value\":%.0f,\"unit\":\"frames/s\",\"threads\":1,\"game\":\"%s\","
              "\"steps\":%zu}\n",
              ale_fps, game.c_str(), rec.actions.size());
  std::printf("{\"bench\":\"atari_env_step\",\"value\":%.0f,\"unit\":\"frames/s\",\"threads\":1,\"game\":\"%s\","
              "\"frame_skip\":%d,\"observation\":\"84x84\",\"overhead_vs_ale_percent\":%.1f,\"same_frames\":%s}\n",
              static_cast<double>(ale_run.frames) / best_env, game.c_str(), config.frame_skip,
              100.0 * (best_env - best_ale) / best_env, same_game ? "true" : "false");
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
