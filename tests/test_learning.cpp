// The DQN agent must learn, not just run: Catch from 10x10 pixels, seeded,
// on the CPU in seconds. The learned greedy policy's return is compared with
// the random policy's on the same evaluation seeds.
#include <doctest/doctest.h>

#include <qrl/envs/catch.hpp>
#include <qrl/nn/models.hpp>
#include <qrl/rl/dqn.hpp>
#include <qrl/rl/trainer.hpp>

#include "test_support.hpp"

using namespace qrl;

namespace {

template <class Policy>
double mean_return(Policy&& policy, int episodes, std::uint64_t first_seed) {
  envs::Catch env(10);
  rl::FrameStack stack(env.observation_shape(), 2);
  double total = 0;
  for (int e = 0; e < episodes; ++e) {
    stack.reset(env.reset(first_seed + e));
    for (;;) {
      const auto r = env.step(policy(stack.data()));
      stack.push(r.observation);
      total += r.reward;
      if (r.terminated || r.truncated) break;
    }
  }
  return total / episodes;
}

template <class B>
nn::Sequential<B> catch_network() {
  nn::Sequential<B> net;
  net.template add<nn::Conv2d>(2, 16, 3, 1, Padding::same).template add<nn::ReLU>();
  net.template add<nn::Flatten>();
  net.template add<nn::Dense>(16 * 10 * 10, 64).template add<nn::ReLU>();
  net.template add<nn::Dense>(64, 3);
  return net;
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("DQN learns Catch from pixels far above the random policy", B, learns_catch) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  Rng init_rng(2024);
  auto net = catch_network<B>();
  net.initialize(ctx, init_rng, nn::Init::pytorch_default);

  rl::DqnConfig config;
  config.batch_size = 32;
  config.learning_starts = 500;
  config.train_frequency = 1;
  config.target_update_interval = 200;
  config.gamma = 0.99f;
  config.adam.learning_rate = 1e-3f;
  rl::Dqn<B> agent(ctx, std::move(net), {2, 10, 10}, 3, config);
  rl::ReplayMemory<B> replay({20000, {10, 10, 1}, 2});

  envs::Catch env(10);
  rl::TrainerConfig trainer_config;
  trainer_config.seed = 7;
  trainer_config.epsilon = rl::EpsilonSchedule::linear(1.0, 0.05, 3000);
  rl::DqnTrainer<B, envs::Catch> trainer(env, agent, replay, trainer_config);
  trainer.run(6000);
  CHECK(trainer.step() == 6000);
  CHECK(trainer.episodes() == 6000 / 9);
  CHECK(agent.updates() == 6000 - 500 + 1);
  const auto stats = agent.last_stats();
  CHECK(std::isfinite(stats.loss));
  CHECK(stats.grad_norm > 0.0f);

  // Evaluation seeds (1e6 + k) are disjoint from the trainer's episode seeds.
  constexpr int episodes = 200;
  Rng random_actions(1);
  const double random = mean_return([&](const std::uint8_t*) { return int(random_actions.uniform_index(3)); },
                                    episodes, 1000000);
  const double learned = mean_return([&](const std::uint8_t* s) { return agent.greedy_action(s); }, episodes, 1000000);
  MESSAGE("Catch mean return over ", episodes, " episodes: random ", random, ", DQN ", learned);
  CHECK(random < -0.4);
  CHECK(learned > 0.9);
}

TEST_CASE_TEMPLATE_INVOKE(learns_catch, qrl::cpu);

#if defined(QRL_HAVE_CUDA)
// The same suites on the GPU, labelled "cuda"; each reports a skip (see
// test::backend_available) where no CUDA device is usable.
TEST_SUITE_BEGIN("cuda");
TEST_CASE_TEMPLATE_INVOKE(learns_catch, qrl::cuda);
TEST_SUITE_END();
#endif
