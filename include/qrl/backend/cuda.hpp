#pragma once
// The CUDA backend: cuDNN convolutions, cuBLAS matrix products, and the
// hand-written kernels of kernels/*.cu (launchers declared in cuda_launch.hpp)
// for everything else. This header is plain C++: it includes only the C
// headers of the CUDA runtime, cuBLAS and cuDNN, so users compile their code
// with g++ and link qrl::cuda. Every operation is enqueued on the Context's
// stream; only download() and synchronize() wait for the device.
//
// This header is the backend's entry point: the tag, and backend_traits<cuda>
// with its operations. The parts beside it, one idea each:
//   cuda/check.hpp            error checking of runtime, cuBLAS and cuDNN calls
//   cuda/device_memory.hpp    device and pinned allocations, the registry a
//                             captured graph watches, the growing workspace
//   cuda/conv_algorithms.hpp  which cuDNN algorithms a plan may use, the cache
//   cuda/context.hpp          Context: stream, handles, workspace, tables
//   cuda/conv_plan.hpp        per-shape cuDNN convolution plans
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include <qrl/backend/backend.hpp>
#include <qrl/backend/cuda/check.hpp>
#include <qrl/backend/cuda/context.hpp>
#include <qrl/backend/cuda/conv_algorithms.hpp>
#include <qrl/backend/cuda/conv_plan.hpp>
#include <qrl/backend/cuda/device_memory.hpp>
#include <qrl/backend/cuda_launch.hpp>
#include <qrl/kernels/geometry.hpp>
#include <qrl/kernels/op_args.hpp>
#include <qrl/core/error.hpp>

namespace qrl {

struct cuda {};

template <>
struct backend_traits<cuda> {
  static constexpr std::string_view name = "cuda";
  // Device memory: the host reaches it through upload/download only.
  static constexpr bool host_memory = false;

  template <class T>
  using DeviceBuffer = cuda_detail::DeviceBuffer<T>;
  template <class T>
  static DeviceBuffer<T> make_buffer(std::size_t count) {
    return cuda_detail::make_buffer<T>(count);
  }

  using Context = cuda_detail::CudaContext;
  using Conv2dPlan = cuda_detail::Conv2dPlan;
  using Conv2dState = cuda_detail::Conv2dState;

  // Adam's step count on the device (optim::Adam<cuda> holds one): the
  // update kernel's one-thread prologue advances it and writes the step's
  // bias corrections to `update`, so nothing a graph captured changes from
  // step to step.
  struct AdamStepState {
    DeviceBuffer<std::int64_t> step = make_buffer<std::int64_t>(1);
    DeviceBuffer<kernels::AdamUpdate> update = make_buffer<kernels::AdamUpdate>(1);
  };

  // ---- memory -------------------------------------------------------------
  template <class T>
  static T* allocate(std::size_t count) {
    return cuda_detail::device_allocate<T>(count);
  }
  template <class T>
  static void deallocate(T* p) noexcept {
    cuda_detail::device_free(p);
  }
  // Pageable host memory: the runtime stages it before returning, so the
  // host buffer may be reused at once.
  template <class T>
  static void upload(Context& ctx, const T* host, T* dst, std::size_t n) {
    if (!n) return;
    ctx.note({dst});
    cuda_detail::check(cudaMemcpyAsync(dst, host, n * sizeof(T), cudaMemcpyHostToDevice, ctx.stream()),
                       "cudaMemcpyAsync (upload)");
  }
  // Returns when the host has the data.
  template <class T>
  static void download(Context& ctx, const T* src, T* host, std::size_t n) {
    if (!n) return;
    cuda_detail::check(cudaMemcpyAsync(host, src, n * sizeof(T), cudaMemcpyDeviceToHost, ctx.stream()),
                       "cudaMemcpyAsync (download)");
    synchronize(ctx);
  }
  template <class T>
  static void copy(Context& ctx, const T* src, T* dst, std::size_t n) {
    if (!n) return;
    ctx.note({src, dst});
    cuda_detail::check(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToDevice, ctx.stream()),
                       "cudaMemcpyAsync (device copy)");
  }
  static void fill(Context& ctx, float* p, std::size_t n, float value) {
    if (!n) return;
    ctx.note({p});
    kernels::launch_fill(p, static_cast<std::int64_t>(n), value, ctx.stream());
    cuda_detail::check_launch("launch_fill");
  }
  static void synchronize(Context& ctx) { cuda_detail::check(cudaStreamSynchronize(ctx.stream()), "cudaStreamSynchronize"); }

  // ---- dense algebra ------------------------------------------------------
  // Row-major C = alpha op(A) op(B) + beta C is column-major C^T = op(B)^T
  // op(A)^T: swap the operands instead of transposing anything.
  static void gemm(Context& ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                   const float* b, int ldb, float beta, float* c, int ldc) {
    ctx.note({a, b, c});
    cuda_detail::check(cublasSgemm(ctx.cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc),
                       "cublasSgemm");
  }
  static void bias_add_rows(Context& ctx, float* y, const float* bias, std::int64_t rows, std::int64_t cols) {
    ctx.note({y, bias});
    kernels::launch_bias_add(y, bias, rows, static_cast<int>(cols), 1, ctx.stream());
    cuda_detail::check_launch("launch_bias_add");
  }
  static void bias_grad_rows(Context& ctx, const float* grad_y, float* grad_bias, std::int64_t rows, std::int64_t cols) {
    ctx.note({grad_y, grad_bias});
    kernels::launch_bias_grad(grad_y, grad_bias, rows, static_cast<int>(cols), 1, ctx.stream());
    cuda_detail::check_launch("launch_bias_grad");
  }

  // ---- element-wise ---------------------------------------------------------
  static void relu_forward(Context& ctx, const float* x, float* y, std::size_t n) {
    if (!n) return;
    ctx.note({x, y});
    kernels::launch_relu_forward(x, y, static_cast<std::int64_t>(n), ctx.stream());
    cuda_detail::check_launch("launch_relu_forward");
  }
  static void relu_backward(Context& ctx, const float* y, const float* grad_y, float* grad_x, std::size_t n) {
    if (!n) return;
    ctx.note({y, grad_y, grad_x});
    kernels::launch_relu_backward(y, grad_y, grad_x, static_cast<std::int64_t>(n), ctx.stream());
    cuda_detail::check_launch("launch_relu_backward");
  }
  static void u8_to_float(Context& ctx, const std::uint8_t* src, float* dst, std::size_t n, float scale) {
    if (!n) return;
    ctx.note({src, dst});
    kernels::launch_u8_to_float(src, dst, static_cast<std::int64_t>(n), kernels::ByteToUnitFloat{scale}, ctx.stream());
    cuda_detail::check_launch("launch_u8_to_float");
  }
  static void polyak_average(Context& ctx, const float* online, float* target, std::size_t n, float tau) {
    kernels::launch_polyak_average(online, target, static_cast<std::int64_t>(n), kernels::PolyakAverage{tau},
                                   ctx.stream());
    cuda_detail::check_launch("launch_polyak_average");
  }
  static void argmax_rows(Context& ctx, const float* x, int rows, int cols, std::int32_t* out) {
    if (rows <= 0) return;
    ctx.note({x, out});
    kernels::launch_argmax_rows(x, rows, cols, out, ctx.stream());
    cuda_detail::check_launch("launch_argmax_rows");
  }

  // ---- convolution (cuDNN) ---------------------------------------------------
  static void conv2d_forward(Context& ctx, Conv2dState& state, const Conv2dGeometry& g, const float* x,
                             const float* w, const float* bias, float* y) {
    const Conv2dPlan& plan = cuda_detail::plan_for(ctx, state, g);
    const float* input = x;
    if (plan.padded()) {
      kernels::launch_pad_planes(x, plan.padded_input.get(), std::int64_t{g.batch} * g.in_channels, g.in_h, g.in_w,
                                 plan.padded_h(), plan.padded_w(), ctx.stream());
      cuda_detail::check_launch("launch_pad_planes");
      input = plan.padded_input.get();
    }
    state.input = input;
    void* workspace = ctx.workspace(plan.workspace_bytes);
    ctx.note({x, input, w, bias, y, workspace});
    const float one = 1.0f, zero = 0.0f;
    cuda_detail::check(cudnnConvolutionForward(ctx.cudnn(), &one, plan.x_desc, input, plan.w_desc, w, plan.forward_desc,
                                               plan.algorithms.forward.algo, workspace, plan.workspace_bytes, &zero,
                                               plan.y_desc, y),
                       "cudnnConvolutionForward");
    if (bias) {
      kernels::launch_bias_add(y, bias, g.batch, g.out_channels, g.output_pixels(), ctx.stream());
      cuda_detail::check_launch("launch_bias_add");
    }
  }

  // Needs the Conv2dState of the matching forward; grad_x may be null.
  static void conv2d_backward(Context& ctx, Conv2dState& state, const Conv2dGeometry& g, const float* w,
                              const float* grad_y, float* grad_x, float* grad_w, float* grad_bias) {
    const Conv2dPlan& plan = cuda_detail::plan_for(ctx, state, g);
    require(state.input != nullptr, "conv2d_backward before any conv2d_forward: run forward() first");
    void* workspace = ctx.workspace(plan.workspace_bytes);
    ctx.note({state.input, w, grad_y, grad_x, grad_w, grad_bias, plan.padded_grad.get(), workspace});
    if (grad_bias) {
      kernels::launch_bias_grad(grad_y, grad_bias, g.batch, g.out_channels, g.output_pixels(), ctx.stream());
      cuda_detail::check_launch("launch_bias_grad");
    }
    const float one = 1.0f, zero = 0.0f;
    cuda_detail::check(cudnnConvolutionBackwardFilter(ctx.cudnn(), &one, plan.x_desc, state.input, plan.y_desc, grad_y,
                                                      plan.backward_filter_desc, plan.algorithms.backward_filter.algo,
                                                      workspace, plan.workspace_bytes, &zero, plan.w_desc, grad_w),
                       "cudnnConvolutionBackwardFilter");
    if (!grad_x) return;
    float* dx = plan.padded() ? plan.padded_grad.get() : grad_x;
    cuda_detail::check(cudnnConvolutionBackwardData(ctx.cudnn(), &one, plan.w_desc, w, plan.y_desc, grad_y,
                                                    plan.backward_data_desc, plan.algorithms.backward_data.algo,
                                                    workspace, plan.workspace_bytes, &zero, plan.x_desc, dx),
                       "cudnnConvolutionBackwardData");
    if (plan.padded()) {
      kernels::launch_crop_planes(dx, grad_x, std::int64_t{g.batch} * g.in_channels, plan.padded_h(), plan.padded_w(),
                                  g.in_h, g.in_w, ctx.stream());
      cuda_detail::check_launch("launch_crop_planes");
    }
  }

  // ---- max pooling (hand-written: Keras' asymmetric 'same' padding and the
  // CPU's first-maximum tie rule, which cuDNN pooling offers neither of) ------
  static void maxpool2d_forward(Context& ctx, const Pool2dGeometry& g, const float* x, float* y, std::int32_t* argmax) {
    if (g.output_size() == 0) return;
    ctx.note({x, y, argmax});
    kernels::launch_maxpool2d_forward(g, x, y, argmax, ctx.stream());
    cuda_detail::check_launch("launch_maxpool2d_forward");
  }
  static void maxpool2d_backward(Context& ctx, const Pool2dGeometry& g, const float* grad_y, const std::int32_t* argmax,
                                 float* grad_x) {
    if (g.input_size() == 0) return;
    ctx.note({grad_y, argmax, grad_x});
    kernels::launch_maxpool2d_backward(g, grad_y, argmax, grad_x, ctx.stream());
    cuda_detail::check_launch("launch_maxpool2d_backward");
  }

  // ---- losses ----------------------------------------------------------------
  // Returns the mean loss to the host, so this one waits for the device; the
  // DQN update uses td_loss, which does not.
  template <class Element>
  static float elementwise_loss(Context& ctx, const float* prediction, const float* target, std::size_t n,
                                Element element, float* grad) {
    static_assert(std::is_same_v<Element, kernels::HuberElement> || std::is_same_v<Element, kernels::SquaredElement>,
                  "the CUDA backend has kernels for the Huber and squared elements only");
    float* loss = ctx.scalar(0);
    ctx.note({prediction, target, grad, loss});
    kernels::launch_elementwise_loss(element, prediction, target, static_cast<std::int64_t>(n), grad, loss,
                                     ctx.stream());
    cuda_detail::check_launch("launch_elementwise_loss");
    float host = 0.0f;
    download(ctx, loss, &host, 1);
    return host;
  }

  // ---- Q-network heads (kernels/heads.cu) ----------------------------------
  static void noisy_compose(Context& ctx, const float* mu, const float* sigma, const float* f_rows,
                            const float* f_cols, float* out, std::int64_t rows, std::int64_t cols) {
    ctx.note({mu, sigma, f_rows, f_cols, out});
    kernels::launch_noisy_compose(mu, sigma, f_rows, f_cols, out, rows, cols, ctx.stream());
    cuda_detail::check_launch("launch_noisy_compose");
  }
  static void noisy_scale(Context& ctx, const float* grad, const float* f_rows, const float* f_cols, float* out,
                          std::int64_t rows, std::int64_t cols) {
    ctx.note({grad, f_rows, f_cols, out});
    kernels::launch_noisy_scale(grad, f_rows, f_cols, out, rows, cols, ctx.stream());
    cuda_detail::check_launch("launch_noisy_scale");
  }
  static void dueling_forward(Context& ctx, const float* value, const float* advantage, float* out,
                              std::int64_t batch, int actions, int atoms) {
    ctx.note({value, advantage, out});
    kernels::launch_dueling_forward({actions, atoms}, value, advantage, out, batch, ctx.stream());
    cuda_detail::check_launch("launch_dueling_forward");
  }
  static void dueling_backward(Context& ctx, const float* grad_out, float* grad_value, float* grad_advantage,
                               std::int64_t batch, int actions, int atoms) {
    ctx.note({grad_out, grad_value, grad_advantage});
    kernels::launch_dueling_backward({actions, atoms}, grad_out, grad_value, grad_advantage, batch, ctx.stream());
    cuda_detail::check_launch("launch_dueling_backward");
  }
  static void add_into(Context& ctx, const float* src, float* dst, std::size_t n) {
    ctx.note({src, dst});
    kernels::launch_add_into(src, dst, static_cast<std::int64_t>(n), ctx.stream());
    cuda_detail::check_launch("launch_add_into");
  }

  static void replay_gather(Context& ctx, const kernels::ReplayGatherArgs& a) {
    ctx.note({a.frames, a.records, a.rows, a.states, a.next_states, a.actions, a.rewards, a.discounts});
    kernels::launch_replay_gather(a, ctx.stream());
    cuda_detail::check_launch("launch_replay_gather");
  }

  static void categorical_td_loss(Context& ctx, const CategoricalTdArgs& a) {
    ctx.note({a.logits, a.next_logits, a.q_select, a.action, a.reward, a.discount, a.weights, a.grad_logits,
              a.td_error_out, a.loss_out, a.q_mean_out});
    kernels::launch_categorical_td_loss(a, ctx.stream());
    cuda_detail::check_launch("launch_categorical_td_loss");
  }
  static void categorical_q(Context& ctx, const float* logits, int rows, int actions, CategoricalSupport support,
                            float* q) {
    ctx.note({logits, q});
    kernels::launch_categorical_q(logits, rows, actions, support, q, ctx.stream());
    cuda_detail::check_launch("launch_categorical_q");
  }
  static void td_loss(Context& ctx, const TdLossArgs& a) {
    ctx.note({a.q, a.q_next_target, a.q_next_online, a.action, a.reward, a.discount, a.weights, a.grad_q,
              a.td_error_out, a.loss_out, a.q_mean_out});
    kernels::launch_td_loss(a, ctx.stream());
    cuda_detail::check_launch("launch_td_loss");
  }

  // ---- optimisation ------------------------------------------------------------
  static void grad_norm(Context& ctx, std::span<const ParameterSlice> params, float max_norm, float* norm_out,
                        float* grad_scale_out) {
    std::vector<kernels::DeviceParameter> rows;
    for (const auto& p : params) rows.push_back({p.value, p.grad, nullptr, nullptr, p.size});
    if (rows.empty()) {
      fill(ctx, norm_out, 1, 0.0f);
      fill(ctx, grad_scale_out, 1, 1.0f);
      return;
    }
    const auto& table = ctx.parameter_table(rows);
    note_table(ctx, table);
    ctx.note({norm_out, grad_scale_out});
    kernels::launch_grad_norm(table.device.get(), table.count(), table.max_size, table.partials.get(), max_norm,
                              norm_out, grad_scale_out, ctx.stream());
    cuda_detail::check_launch("launch_grad_norm");
  }

  // Adam with the step's bias corrections from the host (`update`), as the
  // CPU backend's. optim::Adam<cuda> uses adam_update_counted instead.
  static void adam_update(Context& ctx, std::span<const ParameterSlice> params, std::span<float* const> first_moments,
                          std::span<float* const> second_moments, const kernels::AdamUpdate& update,
                          const float* grad_scale) {
    const auto rows = adam_rows(params, first_moments, second_moments);
    if (rows.empty()) return;
    const auto& table = ctx.parameter_table(rows);
    note_table(ctx, table);
    ctx.note({grad_scale});
    kernels::launch_adam_update(table.device.get(), table.count(), table.max_size, update, grad_scale, ctx.stream());
    cuda_detail::check_launch("launch_adam_update");
  }

  // Adam with the step count on the device: advances state.step by one and
  // takes the bias corrections of the new count (hyper.for_step on the
  // device), so the launch's arguments are the same at every step.
  static void adam_update_counted(Context& ctx, AdamStepState& state, std::span<const ParameterSlice> params,
                                  std::span<float* const> first_moments, std::span<float* const> second_moments,
                                  const kernels::AdamHyperparameters& hyper, const float* grad_scale) {
    const auto rows = adam_rows(params, first_moments, second_moments);
    const kernels::DeviceParameter* device_table = nullptr;
    std::int64_t max_size = 0;
    if (!rows.empty()) {
      const auto& table = ctx.parameter_table(rows);
      note_table(ctx, table);
      device_table = table.device.get();
      max_size = table.max_size;
    }
    ctx.note({state.step.get(), state.update.get(), grad_scale});
    kernels::launch_adam_update_counted(device_table, static_cast<int>(rows.size()), max_size, hyper, state.step.get(),
                                        state.update.get(), grad_scale, ctx.stream());
    cuda_detail::check_launch("launch_adam_update_counted");
  }

  // Sets the device step count (checkpoint load, or a fresh optimizer), in
  // stream order. Not inside a capture: the value would be baked into the
  // graph.
  static void set_adam_step(Context& ctx, AdamStepState& state, std::int64_t steps) {
    ctx.require_not_capturing("setting Adam's device step count");
    kernels::launch_adam_set_step(state.step.get(), steps, ctx.stream());
    cuda_detail::check_launch("launch_adam_set_step");
  }

  // ---- acting ------------------------------------------------------------------
  static void epsilon_greedy(Context& ctx, const float* q, int batch, int actions, kernels::EpsilonGreedy policy,
                             std::int32_t* out) {
    if (batch <= 0) return;
    ctx.note({q, out});
    kernels::launch_epsilon_greedy(q, batch, actions, policy, out, ctx.stream());
    cuda_detail::check_launch("launch_epsilon_greedy");
  }

 private:
  static std::vector<kernels::DeviceParameter> adam_rows(std::span<const ParameterSlice> params,
                                                         std::span<float* const> first_moments,
                                                         std::span<float* const> second_moments) {
    require(first_moments.size() == params.size() && second_moments.size() == params.size(),
            "adam_update: ", params.size(), " parameter tensors need as many moments, got ", first_moments.size(),
            " and ", second_moments.size());
    std::vector<kernels::DeviceParameter> rows;
    for (std::size_t t = 0; t < params.size(); ++t)
      rows.push_back({params[t].value, params[t].grad, first_moments[t], second_moments[t], params[t].size});
    return rows;
  }

  // The table and every tensor its rows point at.
  static void note_table(Context& ctx, const Context::ParameterTable& table) {
    ctx.note({table.device.get(), table.partials.get()});
    for (const auto& r : table.rows) ctx.note({r.value, r.grad, r.first_moment, r.second_moment});
  }
};

}  // namespace qrl
