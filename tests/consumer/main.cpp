// Trains a few DQN updates on Catch through the installed headers and checks
// the network still answers with finite Q-values of the right shape.
#include <cmath>
#include <cstdio>

#include <qrl/envs/catch.hpp>
#include <qrl/qrl.hpp>

int main() {
  using namespace qrl;
  Context<cpu> ctx;
  Rng rng(1);
  nn::Sequential<cpu> net;
  net.add<nn::Flatten>().add<nn::Dense>(100, 16).add<nn::ReLU>().add<nn::Dense>(16, 3);
  net.initialize(ctx, rng, nn::Init::pytorch_default);
  rl::Dqn<cpu> agent(ctx, std::move(net), {1, 10, 10}, 3, rl::DqnConfig{});
  rl::ReplayMemory<cpu> replay({1000, {10, 10, 1}, 1});
  envs::Catch env;
  env::VectorEnv<envs::Catch> envs(env);
  rl::TrainerConfig trainer_config;
  trainer_config.schedule.learning_starts = 64;
  trainer_config.schedule.train_frequency = 1;
  rl::Trainer<cpu, envs::Catch> trainer(envs, agent, replay, trainer_config);
  trainer.run(200);
  const auto stats = agent.last_stats();
  std::uint8_t state[100] = {};
  const auto q = agent.q_values(state);
  const bool ok = agent.updates() == 200 - 64 + 1 && q.size() == 3 && std::isfinite(stats.loss) &&
                  std::isfinite(q[0]);
  std::printf("consumer: %lld updates, loss %g, q size %zu: %s\n", static_cast<long long>(agent.updates()),
              stats.loss, q.size(), ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
