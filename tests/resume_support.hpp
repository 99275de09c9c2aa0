#pragma once
// The exact-resume harness shared by test_checkpoint (Catch, Flappy Bird) and
// test_atari (ALE): a whole training setup built from a seed, and the check
// that N steps straight equal N/2 + checkpoint + load into fresh objects +
// N/2, bitwise (weights, target, Adam moments, replay contents, episodes).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

#include <qrl/rl/checkpoint.hpp>

#include "test_support.hpp"

namespace qrl::test {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  explicit TempDir(const char* tag)
      : path(fs::temp_directory_path() / ("qrl_ckpt_" + std::string(tag) + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// A whole training setup of `env_count` envs whose construction depends
// only on `init_seed`.
template <class Env>
struct Setup {
  Context<cpu> ctx;
  env::VectorEnv<Env> envs;
  rl::Dqn<cpu> agent;
  rl::ReplayMemory<cpu> replay;
  rl::Trainer<cpu, Env> trainer;
  std::vector<rl::EpisodeRecord> episodes;

  static nn::Sequential<cpu> network(int stack, int size, int actions, std::uint64_t init_seed, Context<cpu>& ctx) {
    nn::Sequential<cpu> net;
    net.add<nn::Conv2d>(stack, 4, 3, 1, Padding::same).add<nn::ReLU>();
    net.add<nn::Flatten>();
    net.add<nn::Dense>(4 * size * size, 16).add<nn::ReLU>();
    net.add<nn::Dense>(16, actions);
    Rng rng(init_seed);
    net.initialize(ctx, rng, nn::Init::pytorch_default);
    return net;
  }
  static rl::DqnConfig dqn_config() {
    rl::DqnConfig c;
    c.batch_size = 8;
    c.adam.learning_rate = 1e-3f;
    c.adam.max_grad_norm = 10.0f;
    return c;
  }
  static rl::TrainerConfig trainer_config(rl::ActingPath acting) {
    rl::TrainerConfig c;
    c.seed = 11;
    c.acting = acting;
    c.epsilon = rl::EpsilonSchedule::linear(1.0, 0.1, 400);
    c.score_window = 5;
    c.schedule.learning_starts = 60;
    c.schedule.train_frequency = 2;
    c.schedule.target_update_interval = 50;
    return c;
  }

  template <class MakeEnv>
    requires std::invocable<MakeEnv&, int>
  Setup(MakeEnv make_env, int size, std::uint64_t init_seed, std::int64_t capacity, int env_count = 1,
        rl::ActingPath acting = rl::ActingPath::automatic)
      : envs(env_count, make_env),
        agent(ctx, network(2, size, envs.action_count(), init_seed, ctx), {2, size, size}, envs.action_count(),
              dqn_config()),
        replay({capacity, {size, size, 1}, 2, env_count}),
        trainer(envs, agent, replay, trainer_config(acting)) {
    trainer.on_episode = [this](const rl::EpisodeRecord& r) { episodes.push_back(r); };
  }
  Setup(Env e, int size, std::uint64_t init_seed, std::int64_t capacity)
      : Setup([&e](int) { return std::move(e); }, size, init_seed, capacity) {}

  Env& env(int i = 0) { return envs.env(i); }
};

inline std::vector<std::vector<float>> all_tensors(Context<cpu>& ctx, rl::Dqn<cpu>& agent) {
  std::vector<std::vector<float>> out;
  for (auto& p : agent.online().parameters()) out.push_back(to_host(ctx, *p.value));
  for (auto& p : agent.target().parameters()) out.push_back(to_host(ctx, *p.value));
  for (auto& m : agent.optimizer().first_moments()) out.push_back(to_host(ctx, m));
  for (auto& v : agent.optimizer().second_moments()) out.push_back(to_host(ctx, v));
  return out;
}

template <class Env>
void check_same_run(Setup<Env>& a, Setup<Env>& b, const std::vector<rl::EpisodeRecord>& b_episodes) {
  CHECK(a.trainer.step() == b.trainer.step());
  CHECK(a.trainer.episodes() == b.trainer.episodes());
  CHECK(a.agent.updates() == b.agent.updates());
  CHECK(a.agent.optimizer().steps() == b.agent.optimizer().steps());
  CHECK(a.trainer.progress().epsilon == b.trainer.progress().epsilon);
  const auto ta = all_tensors(a.ctx, a.agent), tb = all_tensors(b.ctx, b.agent);
  REQUIRE(ta.size() == tb.size());
  for (std::size_t i = 0; i < ta.size(); ++i) {
    REQUIRE(ta[i].size() == tb[i].size());
    CHECK(std::memcmp(ta[i].data(), tb[i].data(), ta[i].size() * sizeof(float)) == 0);
  }
  CHECK(test::norm(ta.front()) > 0.0);
  // Training moved the weights away from initialisation.
  CHECK(a.agent.updates() > 100);

  REQUIRE(a.replay.frames() == b.replay.frames());
  CHECK(a.replay.transitions() == b.replay.transitions());
  int compared = 0;
  for (std::int64_t k = 0; k < a.replay.frames(); ++k) {
    std::vector<std::uint8_t> sa, na, sb, nb;
    int aa = 0, ab = 0;
    float ra = 0, rb = 0;
    bool ta_ = false, tb_ = false;
    const bool va = a.replay.transition_at(k, sa, na, aa, ra, ta_);
    const bool vb = b.replay.transition_at(k, sb, nb, ab, rb, tb_);
    REQUIRE(va == vb);
    if (!va) continue;
    ++compared;
    CHECK((sa == sb && na == nb && aa == ab && ra == rb && ta_ == tb_));
  }
  CHECK(compared > 100);

  REQUIRE(a.episodes.size() == b_episodes.size());
  for (std::size_t i = 0; i < a.episodes.size(); ++i) {
    CHECK(a.episodes[i].episode_return == b_episodes[i].episode_return);
    CHECK(a.episodes[i].length == b_episodes[i].length);
    CHECK(a.episodes[i].end_step == b_episodes[i].end_step);
    CHECK(a.episodes[i].score == b_episodes[i].score);
  }
}

// With `env_count` envs: `steps` counts env steps summed over them, the
// save falls between two vector steps.
template <class MakeEnv>
void exact_resume(MakeEnv make_env, int size, std::int64_t steps, std::int64_t capacity, const char* tag,
                  int env_count = 1, rl::ActingPath acting = rl::ActingPath::automatic) {
  using Env = std::invoke_result_t<MakeEnv&, int>;
  TempDir dir(tag);
  Setup<Env> straight(make_env, size, 3, capacity, env_count, acting);
  straight.trainer.run(steps);

  Setup<Env> first(make_env, size, 3, capacity, env_count, acting);
  first.trainer.run(steps / 2);
  // The harder case: every env is mid-episode.
  for (const auto& slot : first.trainer.state().envs) CHECK(slot.tally.length > 0);
  const auto saved = rl::save_checkpoint(dir.path / "checkpoints", first.trainer, first.ctx);
  CHECK(saved.filename() == rl::checkpoint_name(steps / 2));

  // Built with another init seed: everything must come from the checkpoint.
  Setup<Env> resumed(make_env, size, 99, capacity, env_count, acting);
  rl::load_checkpoint(*rl::latest_checkpoint(dir.path / "checkpoints"), resumed.trainer, resumed.ctx);
  CHECK(resumed.trainer.step() == steps / 2);
  resumed.trainer.run(steps);

  auto episodes = first.episodes;
  episodes.insert(episodes.end(), resumed.episodes.begin(), resumed.episodes.end());
  check_same_run(straight, resumed, episodes);
  // The environments end in the same state too (emulator, RNGs, counters).
  for (int i = 0; i < env_count; ++i) CHECK(straight.env(i).save_state() == resumed.env(i).save_state());
}

}  // namespace qrl::test
