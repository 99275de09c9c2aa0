// One DQN training update on the CPU backend: target forward on s' (and,
// with Double DQN, online forward on s'), online forward on s, Huber TD
// loss, backward, Adam; and acting's batch-1 forward. Beside them, in the
// same run, the machine's SGEMM peak (a 2048^3 SGEMM with oneDNN, the
// backend's library; bench_cpu_kernels compares it with OpenBLAS's), so each figure is also a fraction of what the machine can
// do. bench/pytorch_dqn_update.py times the same update and acting in
// PyTorch; bench/compare_cpu_update.sh runs them all side by side.
//
//   build/bench/bench_dqn_update [seconds] [batch] [nature|tutorial] [double: 0|1]
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <qrl/backend/cpu_kernels.hpp>
#include <qrl/qrl.hpp>

#include "timing.hpp"

namespace {

using bench::seconds_per_call;

constexpr int actions = 6;

struct ConvSpec {
  int out_channels, kernel, stride;
  qrl::Padding padding;
  bool pool_after;  // the tutorial network's 2x2 'same' max pooling
};

// The networks of nn/models.hpp, as layer sizes for counting FLOPs.
struct NetSpec {
  int frames, size, hidden;
  std::vector<ConvSpec> convs;
};
NetSpec spec(const std::string& net) {
  using qrl::Padding;
  if (net == "tutorial")
    return {4, 80, 256, {{32, 8, 4, Padding::same, true}, {64, 4, 2, Padding::same, true}, {64, 3, 1, Padding::same, true}}};
  return {4, 84, 512, {{32, 8, 4, Padding::valid, false}, {64, 4, 2, Padding::valid, false}, {64, 3, 1, Padding::valid, false}}};
}

// Multiply-adds x 2 of one sample's forward, and of the backward (weights
// and data gradients; none for the first layer's input).
struct Flops {
  double forward = 0, backward = 0;
};
Flops flops(const NetSpec& n) {
  Flops f;
  int channels = n.frames, size = n.size;
  bool first = true;
  for (const auto& c : n.convs) {
    size = qrl::padded_extent(size, c.kernel, c.stride, c.padding).out;
    const double macs = double(c.out_channels) * size * size * channels * c.kernel * c.kernel;
    f.forward += 2 * macs;
    f.backward += (first ? 2 : 4) * macs;
    first = false;
    channels = c.out_channels;
    if (c.pool_after) size = (size + 1) / 2;
  }
  const double features = double(channels) * size * size;
  for (double macs : {features * n.hidden, double(n.hidden) * actions}) {
    f.forward += 2 * macs;
    f.backward += 4 * macs;
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace qrl;
  const CpuKernels kernels = check_cpu_kernels();
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  const int batch = argc > 2 ? std::atoi(argv[2]) : 32;
  const std::string net_name = argc > 3 ? argv[3] : "nature";
  const bool double_dqn = argc > 4 && std::atoi(argv[4]) != 0;
  const NetSpec n = spec(net_name);
  const int threads = omp_get_max_threads();

  // The machine's SGEMM peak with the library the backend uses.
  constexpr int square = 2048;
  std::vector<float> a(std::size_t{square} * square, 0.5f), b(a.size(), 0.25f), c(a.size());
  const double gemm_s = seconds_per_call(
      [&] {
        dnnl_sgemm('N', 'N', square, square, square, 1.0f, a.data(), square, b.data(), square, 0.0f, c.data(),
                   square);
      },
      std::max(2.0, seconds / 5));  // a 2048^3 SGEMM takes about 0.1 s: several per round
  const double peak = 2.0 * square * square * square / gemm_s / 1e9;
  std::printf("{\"bench\":\"sgemm_peak\",\"value\":%.1f,\"unit\":\"GFLOP/s\",\"size\":%d,\"threads\":%d,"
              "\"library\":\"%s %s\"}\n",
              peak, square, threads, kernels.library.c_str(), kernels.level.c_str());

  Context<cpu> ctx;
  Rng rng(1);
  auto make_net = [&] {
    return net_name == "tutorial" ? nn::tutorial_dqn<cpu>(n.frames, n.size, n.size, actions)
                                  : nn::nature_dqn<cpu>(n.frames, n.size, n.size, actions);
  };
  auto net = make_net();
  net.initialize(ctx, rng, nn::Init::pytorch_default);
  rl::DqnConfig config;
  config.batch_size = batch;
  config.double_dqn = double_dqn;
  rl::Dqn<cpu> agent(ctx, std::move(net), {n.frames, n.size, n.size}, actions, config);

  rl::ReplayBatch<cpu> data;
  const Shape states{batch, n.frames, n.size, n.size};
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

  const double update_s = seconds_per_call([&] { agent.update(data); }, seconds);
  if (!std::isfinite(agent.last_stats().loss)) {
    std::fprintf(stderr, "bench_dqn_update: loss became non-finite\n");
    return 1;
  }
  const Flops f = flops(n);
  const double update_flops = batch * (f.forward * (double_dqn ? 3 : 2) + f.backward);
  const double gflops = update_flops / update_s / 1e9;
  std::printf("{\"bench\":\"dqn_update_cpu\",\"value\":%.3f,\"unit\":\"updates/s\",\"net\":\"%s\",\"double_dqn\":%s,"
              "\"batch\":%d,\"threads\":%d,\"gflop_per_update\":%.3f,\"gflops\":%.1f,\"ratio_to_sgemm_peak\":%.3f,"
              "\"impl\":\"qrl\",\"kernels\":\"%s %s\"}\n",
              1.0 / update_s, net_name.c_str(), double_dqn ? "true" : "false", batch, threads, update_flops / 1e9,
              gflops, gflops / peak, kernels.library.c_str(), kernels.level.c_str());

  // Acting: one state's forward, on every thread and on one (an actor thread's budget).
  auto actor = make_net();
  actor.initialize(ctx, rng, nn::Init::pytorch_default);
  Tensor<cpu, float> state({1, n.frames, n.size, n.size});
  for (std::int64_t i = 0; i < state.size(); ++i) state.data()[i] = static_cast<float>(rng.uniform());
  for (int t : {threads, 1}) {
    omp_set_num_threads(t);
    const double act_s = seconds_per_call([&] { actor.forward(ctx, std::as_const(state).view()); }, seconds / 5);
    std::printf("{\"bench\":\"act_latency_cpu\",\"value\":%.3f,\"unit\":\"ms\",\"net\":\"%s\",\"batch\":1,"
                "\"threads\":%d,\"impl\":\"qrl\"}\n",
                act_s * 1e3, net_name.c_str(), t);
  }
  return 0;
}
