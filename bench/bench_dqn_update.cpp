// One Nature-DQN training update on the CPU backend (batch 32, 4x84x84):
// target forward on s', online forward on s, TD loss, backward, Adam.
// Prints one JSON line; bench/pytorch_dqn_update.py times the same update in
// PyTorch on the same machine for comparison.
//
//   build/bench/bench_dqn_update [seconds] [batch]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <qrl/qrl.hpp>

int main(int argc, char** argv) {
  using namespace qrl;
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  const int batch = argc > 2 ? std::atoi(argv[2]) : 32;
  const int actions = 6;
  Context<cpu> ctx;
  Rng rng(1);
  auto net = nn::nature_dqn<cpu>(4, 84, 84, actions);
  net.initialize(ctx, rng, nn::Init::pytorch_default);
  rl::DqnConfig config;
  config.batch_size = batch;
  config.double_dqn = false;  // the PyTorch reference does the plain (Nature) target
  rl::Dqn<cpu> agent(ctx, std::move(net), {4, 84, 84}, actions, config);

  rl::ReplayBatch<cpu> data;
  const Shape states{batch, 4, 84, 84};
  data.states.resize(states);
  data.next_states.resize(states);
  data.actions.resize({batch});
  data.rewards.resize({batch});
  data.discounts.resize({batch});
  for (std::int64_t i = 0; i < states.size(); ++i) {
    data.states.data()[i] = static_cast<std::uint8_t>(rng.uniform_index(256));
    data.next_states.data()[i] = static_cast<std::uint8_t>(rng.uniform_index(256));
  }
  for (int i = 0; i < batch; ++i) {
    data.actions.data()[i] = static_cast<std::int32_t>(rng.uniform_index(actions));
    data.rewards.data()[i] = static_cast<float>(rng.uniform());
    data.discounts.data()[i] = i % 10 == 0 ? 0.0f : config.gamma;
  }

  for (int i = 0; i < 5; ++i) agent.update(data);  // warm-up: buffers, thread pools
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  int updates = 0;
  double elapsed = 0;
  do {
    agent.update(data);
    ++updates;
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  } while (elapsed < seconds);
  const auto stats = agent.last_stats();
  if (!std::isfinite(stats.loss)) {
    std::fprintf(stderr, "bench_dqn_update: loss became non-finite\n");
    return 1;
  }
  std::printf("{\"bench\":\"dqn_update_cpu\",\"value\":%.3f,\"unit\":\"updates/s\",\"batch\":%d,\"threads\":%d,"
              "\"updates\":%d,\"impl\":\"qrl\"}\n",
              updates / elapsed, batch, omp_get_max_threads(), updates);
  return 0;
}
