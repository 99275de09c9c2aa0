#pragma once
// The examples' one `train` assembly: the learner (replay memory, network,
// agent, trainer settings) from the shared options, then the trainer over 1
// or N envs handed to run_training(). An example's own train() names its
// env, its network and its action count, and nothing else.
#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <type_traits>
#include <utility>

#include <qrl/env/vector_env.hpp>
#include <qrl/qrl.hpp>

#include "dqn_options.hpp"
#include "training_run.hpp"

namespace qrl::examples {

// What an example's learner sees: the envs' frames, the stacked state and
// the action count; how many envs write to the replay memory; the run's seed,
// optional starting weights and the agent's settings.
struct LearnerSpec {
  env::FrameShape frame;
  int stack = 4;
  int actions = 0;
  int envs = 1;
  std::uint64_t seed = 1;
  std::string weights;
  rl::DqnConfig config;
};

// MemAvailable from /proc/meminfo, in bytes; 0 when unknown.
inline std::uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

// Refuses a replay memory that would not fit, before allocating it.
inline void check_replay_fits(std::uint64_t bytes, bool force) {
  const auto available = available_memory_bytes();
  std::cout << "replay memory: " << bytes / 1e6 << " MB";
  if (available) std::cout << " (" << available / 1e6 << " MB available)";
  std::cout << '\n';
  if (force || available == 0) return;
  require(bytes <= available / 10 * 9, "the replay memory needs ", bytes / 1e6, " MB but only ", available / 1e6,
          " MB are available: lower --buffer-size, or pass --force-memory to allocate it anyway");
}

// Built in this order so that a replay memory too big for the machine is
// refused before the network takes any memory.
template <Backend B>
struct Learner {
  Context<B> ctx;
  rl::ReplayMemory<B> replay;
  rl::Dqn<B> agent;
  rl::TrainerConfig trainer_config;

  template <class MakeNetwork>
  Learner(const LearnerSpec& spec, const DqnOptions& dqn, const RunOptions& run, MakeNetwork make_network)
      : replay(fitting_replay(spec, dqn, run), ctx),
        agent(ctx, initialized(spec, make_network()), Shape{spec.stack, spec.frame.height, spec.frame.width},
              spec.actions, spec.config) {
    trainer_config.seed = spec.seed;
    trainer_config.epsilon = dqn.epsilon_schedule(run.steps);
    trainer_config.schedule = dqn.schedule();
    trainer_config.progress_interval = run.progress_interval;
  }

 private:
  static rl::ReplayConfig fitting_replay(const LearnerSpec& spec, const DqnOptions& dqn, const RunOptions& run) {
    // One ring per env: the capacity is split between them.
    const rl::ReplayConfig config = dqn.replay_config(spec.frame, spec.stack, run.steps, spec.envs);
    check_replay_fits(rl::ReplayMemory<B>::bytes_required(config), run.force_memory);
    return config;
  }

  nn::Sequential<B> initialized(const LearnerSpec& spec, nn::Sequential<B> net) {
    Rng init_rng(spec.seed);
    net.initialize(ctx, init_rng, nn::Init::pytorch_default);
    if (!spec.weights.empty()) nn::load_weights(ctx, net, spec.weights);
    std::cout << net.summary({1, spec.stack, spec.frame.height, spec.frame.width});
    return net;
  }
};

// The env inside a recorder, for hooks that ask the game itself.
template <class E>
E& unrecorded(E& env) {
  return env;
}
template <class E>
E& unrecorded(log::RecordVideo<E>& env) {
  return env.inner();
}

struct NoHook {
  template <class Trainer>
  void operator()(Trainer&) const {}
};

// Trains on `count` envs, env i made by make_env(i) (by value). One env runs
// on the caller's thread inside a recorder (RUN_DIR/videos, timed for a game
// drawn at `game_fps` with `frame_skip` frames a step); N > 1 run on their
// own threads, the agent acting for all in one batch and --steps counting
// the steps of all, unrecorded. before_run(trainer) and after_run(trainer)
// are the example's own steps around the run (demonstrations, reports).
template <Backend B, class MakeEnv, class BeforeRun = NoHook, class AfterRun = NoHook>
int train_on_envs(Learner<B>& learner, int count, MakeEnv make_env, const RunOptions& run,
                  const std::string& config_toml, double game_fps, int frame_skip, BeforeRun before_run = {},
                  AfterRun after_run = {}) {
  using Env = std::invoke_result_t<MakeEnv&, int>;
  auto train = [&](auto& envs) {
    using E = std::remove_reference_t<decltype(envs.env(0))>;
    rl::Trainer<B, E> trainer(envs, learner.agent, learner.replay, learner.trainer_config);
    before_run(trainer);
    const int status = run_training(learner.ctx, trainer, run, config_toml);
    after_run(trainer);
    return status;
  };
  if (count == 1) {
    Env env = make_env(0);
    auto recorded = record_videos(env, run, game_fps, frame_skip);
    env::VectorEnv<decltype(recorded)> one_env(recorded);
    return train(one_env);
  }
  env::VectorEnv<Env> envs(count, make_env);
  return train(envs);
}

}  // namespace qrl::examples
