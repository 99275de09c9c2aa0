// CUDA benchmarks, one JSON line each (as bench_dqn_update):
//   dqn_update_cuda        Nature-DQN update (batch 32, 4x84x84, 6 actions,
//                          Double DQN, Huber, Adam), eager launches
//   dqn_update_cuda_graph  the same update replayed from a CUDA graph
//   dqn_sample_update_cuda_graph  a ReplayMemory<cuda> sample (10,000 frames
//                          in device memory: slots drawn on the host, one
//                          gather launch) followed by the graph update: a
//                          training step whose batch never visits the host
//   preprocess_cuda        600x150 RGBA frames -> 80x80 gray, batched,
//                          frames/s and the bytes moved per second
// bench/pytorch_dqn_update_cuda.py times the identical update in PyTorch on
// the same GPU. Without a usable device it prints one "skipped" line per
// benchmark and exits 0, so scripts can run it anywhere.
//
// The Context is in its default deterministic mode (cuDNN algorithms by
// heuristics, deterministic only: CudaOptions::deterministic); pass
// "fastest" as the third argument for cudnnFind* timings instead. The mode
// is in the update benchmarks' JSON lines ("cudnn").
//
//   build/bench/bench_cuda [seconds] [batch] [deterministic|fastest]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <qrl/backend/cuda.hpp>
#include <qrl/env/preprocess.hpp>
#include <qrl/qrl.hpp>
#include <qrl/rl/cuda_graph.hpp>

namespace {

using namespace qrl;
using Clock = std::chrono::steady_clock;

std::string device_name() {
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "?";
  return prop.name;
}

// Runs `step` in rounds of 100 until `seconds` pass; waits for the device
// at the end of every round so the time is the device's, not the queue's.
template <class Step>
double per_second(Context<cuda>& ctx, double seconds, Step&& step, long& count) {
  count = 0;
  const auto start = Clock::now();
  double elapsed = 0.0;
  do {
    for (int i = 0; i < 100; ++i) step();
    backend_traits<cuda>::synchronize(ctx);
    count += 100;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return static_cast<double>(count) / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5.0;
  const int batch = argc > 2 ? std::atoi(argv[2]) : 32;
  const std::string mode = argc > 3 ? argv[3] : "deterministic";
  if (mode != "deterministic" && mode != "fastest") {
    std::fprintf(stderr, "bench_cuda: the third argument is deterministic or fastest, got %s\n", mode.c_str());
    return 2;
  }
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) {
    for (const char* name : {"dqn_update_cuda", "dqn_update_cuda_graph", "dqn_sample_update_cuda_graph",
                             "preprocess_cuda"})
      std::printf("{\"bench\":\"%s\",\"skipped\":\"%s\"}\n", name, reason.c_str());
    return 0;
  }
  try {
    const int actions = 6;
    CudaOptions options;
    options.deterministic = mode == "deterministic";
    Context<cuda> ctx(options);
    const char* cudnn = mode.c_str();
    Rng rng(1);
    const std::string gpu = device_name();

    auto make_agent = [&] {
      auto net = nn::nature_dqn<cuda>(4, 84, 84, actions);
      Rng init(1);
      net.initialize(ctx, init, nn::Init::pytorch_default);
      rl::DqnConfig config;
      config.batch_size = batch;
      config.double_dqn = true;
      return std::make_unique<rl::Dqn<cuda>>(ctx, std::move(net), Shape{4, 84, 84}, actions, config);
    };
    const Shape states{batch, 4, 84, 84};
    std::vector<std::uint8_t> s(static_cast<std::size_t>(states.size())), ns(s.size());
    for (auto& b : s) b = static_cast<std::uint8_t>(rng.uniform_index(256));
    for (auto& b : ns) b = static_cast<std::uint8_t>(rng.uniform_index(256));
    std::vector<std::int32_t> a(batch);
    std::vector<float> r(batch), t(batch);
    for (int i = 0; i < batch; ++i) {
      a[i] = static_cast<std::int32_t>(rng.uniform_index(actions));
      r[i] = static_cast<float>(rng.uniform());
      t[i] = i % 10 == 0 ? 1.0f : 0.0f;
    }
    rl::ReplayBatch<cuda> data;
    data.states = from_host<cuda, std::uint8_t>(ctx, s, states);
    data.next_states = from_host<cuda, std::uint8_t>(ctx, ns, states);
    data.actions = from_host<cuda, std::int32_t>(ctx, a, {batch});
    data.rewards = from_host<cuda, float>(ctx, r, {batch});
    for (auto& v : t) v = v != 0.0f ? 0.0f : 0.99f;  // terminal rows do not bootstrap
    data.discounts = from_host<cuda, float>(ctx, t, {batch});

    long updates = 0;
    {
      auto agent = make_agent();
      for (int i = 0; i < 10; ++i) agent->update(data);  // plans, buffers
      const double rate = per_second(ctx, seconds, [&] { agent->update(data); }, updates);
      const auto stats = agent->last_stats();
      if (!std::isfinite(stats.loss)) fail("loss became non-finite");
      std::printf("{\"bench\":\"dqn_update_cuda\",\"value\":%.1f,\"unit\":\"updates/s\",\"batch\":%d,\"updates\":%ld,"
                  "\"graph\":false,\"cudnn\":\"%s\",\"gpu\":\"%s\",\"impl\":\"qrl\"}\n",
                  rate, batch, updates, cudnn, gpu.c_str());
    }
    {
      auto agent = make_agent();
      rl::DqnUpdateGraph graph(ctx, *agent, data);
      for (int i = 0; i < 10; ++i) graph.replay();
      const double rate = per_second(ctx, seconds, [&] { graph.replay(); }, updates);
      const auto stats = agent->last_stats();
      if (!std::isfinite(stats.loss)) fail("loss became non-finite");
      std::printf("{\"bench\":\"dqn_update_cuda_graph\",\"value\":%.1f,\"unit\":\"updates/s\",\"batch\":%d,"
                  "\"updates\":%ld,\"graph\":true,\"nodes\":%zu,\"cudnn\":\"%s\",\"gpu\":\"%s\",\"impl\":\"qrl\"}\n",
                  rate, batch, updates, graph.node_count(), cudnn, gpu.c_str());
      // The agent counts replays as updates (and the optimizer as steps).
      if (agent->updates() != 1 + 10 + updates || agent->optimizer().steps() != agent->updates())
        fail("the graph's replays were not counted: updates() ", agent->updates(), ", Adam steps ",
             agent->optimizer().steps(), ", expected ", 1 + 10 + updates);
    }
    {
      rl::ReplayMemory<cuda> replay({10000, {84, 84, 1}, 4}, ctx);
      std::vector<std::uint8_t> frame(84 * 84);
      auto next_frame = [&] {
        for (auto& b : frame) b = static_cast<std::uint8_t>(rng.uniform_index(256));
        return env::FrameView{frame.data(), {84, 84, 1}};
      };
      for (int episode = 0; episode < 100; ++episode) {  // 100 episodes of 99 steps fill it
        replay.begin_episode(next_frame());
        for (int t = 1; t < 100; ++t)
          replay.add(static_cast<int>(rng.uniform_index(actions)), static_cast<float>(rng.uniform()), t == 99, false,
                     next_frame());
      }
      auto agent = make_agent();
      Rng sampling(2);
      rl::ReplayBatch<cuda> sampled;
      replay.sample(ctx, sampling, batch, 0.99f, sampled);
      rl::DqnUpdateGraph graph(ctx, *agent, sampled);  // refilled in place by each sample()
      auto step = [&] {
        replay.sample(ctx, sampling, batch, 0.99f, sampled);
        graph.replay();
      };
      for (int i = 0; i < 10; ++i) step();
      const double rate = per_second(ctx, seconds, step, updates);
      if (!std::isfinite(agent->last_stats().loss)) fail("loss became non-finite");
      std::printf("{\"bench\":\"dqn_sample_update_cuda_graph\",\"value\":%.1f,\"unit\":\"updates/s\",\"batch\":%d,"
                  "\"updates\":%ld,\"replay_frames\":10000,\"graph\":true,\"cudnn\":\"%s\",\"gpu\":\"%s\","
                  "\"impl\":\"qrl\"}\n",
                  rate, batch, updates, cudnn, gpu.c_str());
    }
    {
      const env::FrameShape shape{150, 600, 4};
      const int frames = 256;
      std::vector<std::uint8_t> host(shape.bytes() * frames);
      for (auto& b : host) b = static_cast<std::uint8_t>(rng.uniform_index(256));
      auto src = from_host<cuda, std::uint8_t>(ctx, host, {static_cast<std::int64_t>(host.size())});
      Tensor<cuda, std::uint8_t> out({frames, 80, 80});
      env::PreprocessSpec spec;
      spec.layout = kernels::PixelLayout::Rgba;
      spec.out_height = spec.out_width = 80;
      const auto functor = env::make_preprocess_functor({src.data(), shape}, spec);
      long launches = 0;
      const double rate = per_second(ctx, seconds, [&] {
        kernels::launch_preprocess(functor, shape.bytes(), frames, out.data(), ctx.stream());
      }, launches);
      cuda_detail::check_launch("launch_preprocess");
      const double bytes_per_frame = static_cast<double>(shape.bytes()) + 80.0 * 80.0;
      std::printf("{\"bench\":\"preprocess_cuda\",\"value\":%.0f,\"unit\":\"frames/s\",\"frames_per_launch\":%d,"
                  "\"src\":\"600x150 RGBA\",\"dst\":\"80x80\",\"gbytes_per_s\":%.1f,\"gpu\":\"%s\"}\n",
                  rate * frames, frames, rate * frames * bytes_per_frame / 1e9, gpu.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda: %s\n", e.what());
    return 1;
  }
  return 0;
}
