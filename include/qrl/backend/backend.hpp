#pragma once
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include <qrl/kernels/op_args.hpp>
#include <qrl/kernels/random.cuh>
#include <qrl/kernels/replay.cuh>

namespace qrl {

// A backend is a tag type (qrl::cpu, qrl::cuda) whose backend_traits
// specialisation supplies memory management and the compute operations the
// generic code (layers, losses, optimizers, agents) is written against.
template <class B>
struct backend_traits;

// Per-layer backend state for a convolution: one plan per input shape (the
// CPU's oneDNN primitives and reorders; CUDA's descriptors, chosen algorithms
// and workspace) and what the backward pass needs of the last forward.
template <class B>
using Conv2dState = typename backend_traits<B>::Conv2dState;

// Execution context: scratch memory on the CPU; stream and library handles on
// CUDA. One per agent; not shared between threads.
template <class B>
using Context = typename backend_traits<B>::Context;

template <class B>
concept Backend = requires {
  typename backend_traits<B>::Context;
  typename backend_traits<B>::Conv2dState;
  { backend_traits<B>::name } -> std::convertible_to<std::string_view>;
  // Whether the host can read the backend's memory itself (no copies).
  { backend_traits<B>::host_memory } -> std::convertible_to<bool>;
} && requires(typename backend_traits<B>::Context& ctx, float* f, const float* cf, std::uint8_t* u8,
              const std::uint8_t* cu8, std::int32_t* i32, std::size_t n) {
  { backend_traits<B>::template allocate<float>(n) } -> std::same_as<float*>;
  backend_traits<B>::deallocate(f);
  backend_traits<B>::upload(ctx, cf, f, n);
  backend_traits<B>::download(ctx, cf, f, n);
  backend_traits<B>::copy(ctx, cf, f, n);
  backend_traits<B>::fill(ctx, f, n, 0.0f);
  backend_traits<B>::synchronize(ctx);
  backend_traits<B>::gemm(ctx, false, false, 1, 1, 1, 1.0f, cf, 1, cf, 1, 0.0f, f, 1);
  backend_traits<B>::relu_forward(ctx, cf, f, n);
  backend_traits<B>::relu_backward(ctx, cf, cf, f, n);
  backend_traits<B>::u8_to_float(ctx, cu8, f, n, 1.0f);
  backend_traits<B>::argmax_rows(ctx, cf, 1, 1, i32);
  backend_traits<B>::polyak_average(ctx, cf, f, n, 1.0f);
  backend_traits<B>::td_loss(ctx, std::declval<const TdLossArgs&>());
  backend_traits<B>::categorical_td_loss(ctx, std::declval<const CategoricalTdArgs&>());
  backend_traits<B>::categorical_q(ctx, cf, 1, 1, CategoricalSupport{}, f);
  backend_traits<B>::noisy_compose(ctx, cf, cf, cf, cf, f, std::int64_t{1}, std::int64_t{1});
  backend_traits<B>::noisy_scale(ctx, cf, cf, cf, f, std::int64_t{1}, std::int64_t{1});
  backend_traits<B>::dueling_forward(ctx, cf, cf, f, std::int64_t{1}, 2, 1);
  backend_traits<B>::dueling_backward(ctx, cf, f, f, std::int64_t{1}, 2, 1);
  backend_traits<B>::add_into(ctx, cf, f, n);
  backend_traits<B>::replay_gather(ctx, std::declval<const kernels::ReplayGatherArgs&>());
  backend_traits<B>::epsilon_greedy(ctx, cf, 1, 1, kernels::EpsilonGreedy{}, i32);
};

}  // namespace qrl
