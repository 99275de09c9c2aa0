// Built against the installed qrl::cuda with g++ only: the CUDA backend's
// headers, its kernels' static library, cuBLAS and cuDNN resolve from the
// installed package. Without a usable device it says why and exits 0 (the
// install test checks building and linking); with one, a small network's
// Q-values must match the CPU backend's.
#include <cmath>
#include <cstdio>

#include <qrl/backend/cuda.hpp>
#include <qrl/qrl.hpp>

int main() {
  using namespace qrl;
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) {
    std::printf("consumer_cuda: linked; not run: %s\n", reason.c_str());
    return 0;
  }
  auto q_of = [](auto tag) {
    using B = decltype(tag);
    Context<B> ctx;
    Rng rng(1);
    nn::Sequential<B> net;
    net.template add<nn::Flatten>().template add<nn::Dense>(100, 16).template add<nn::ReLU>().template add<nn::Dense>(16, 3);
    net.initialize(ctx, rng, nn::Init::pytorch_default);
    rl::Dqn<B> agent(ctx, std::move(net), {1, 10, 10}, 3, rl::DqnConfig{});
    std::uint8_t state[100];
    for (int i = 0; i < 100; ++i) state[i] = static_cast<std::uint8_t>(i * 7);
    return agent.q_values(state);
  };
  const auto gpu = q_of(cuda{});
  const auto cpu_q = q_of(cpu{});
  bool ok = gpu.size() == 3 && cpu_q.size() == 3;
  for (std::size_t i = 0; ok && i < 3; ++i)
    ok = std::isfinite(gpu[i]) && std::fabs(gpu[i] - cpu_q[i]) <= 1e-4f + 1e-4f * std::fabs(cpu_q[i]);
  std::printf("consumer_cuda: q %g %g %g (cpu %g %g %g): %s\n", gpu[0], gpu[1], gpu[2], cpu_q[0], cpu_q[1], cpu_q[2],
              ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
