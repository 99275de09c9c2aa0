#pragma once
// The CPU backend: oneDNN's JIT convolutions (backend/cpu_convolution.hpp)
// and SGEMM (the dense layers), OpenMP loops over the element functors in
// qrl/kernels for everything else. Plain C++; no CUDA header is reachable
// from here.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <string_view>
#include <vector>

#include <qrl/backend/backend.hpp>
#include <qrl/backend/cpu_convolution.hpp>
#include <qrl/kernels/geometry.hpp>
#include <qrl/kernels/op_args.hpp>
#include <qrl/kernels/activation.cuh>
#include <qrl/kernels/adam.cuh>
#include <qrl/kernels/categorical.cuh>
#include <qrl/kernels/heads.cuh>
#include <qrl/kernels/loss.cuh>
#include <qrl/kernels/pool.cuh>
#include <qrl/kernels/random.cuh>
#include <qrl/kernels/replay.cuh>

namespace qrl {

struct cpu {};

template <>
struct backend_traits<cpu> {
  static constexpr std::string_view name = "cpu";
  // The host reads and writes this backend's memory directly.
  static constexpr bool host_memory = true;

  // The stream oneDNN's primitives run on.
  class Context {
   public:
    dnnl::stream& stream() { return stream_; }

   private:
    dnnl::stream stream_{cpu_detail::cpu_engine()};
  };

  // A convolution layer's oneDNN primitives, one plan per input shape, and
  // what the backward pass needs of the last forward.
  struct Conv2dState {
    std::vector<std::unique_ptr<cpu_detail::ConvPlan>> plans;
    cpu_detail::ConvPlan* last = nullptr;
    const float* input = nullptr;
  };

  // ---- memory -------------------------------------------------------------
  template <class T>
  static T* allocate(std::size_t count) {
    if (count == 0) count = 1;
    const std::size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  template <class T>
  static void deallocate(T* p) noexcept {
    std::free(const_cast<std::remove_const_t<T>*>(p));
  }
  template <class T>
  static void upload(Context&, const T* host, T* dst, std::size_t n) {
    if (n) std::memcpy(dst, host, n * sizeof(T));
  }
  template <class T>
  static void download(Context&, const T* src, T* host, std::size_t n) {
    if (n) std::memcpy(host, src, n * sizeof(T));
  }
  template <class T>
  static void copy(Context&, const T* src, T* dst, std::size_t n) {
    if (n) std::memcpy(dst, src, n * sizeof(T));
  }
  static void fill(Context&, float* p, std::size_t n, float value) { std::fill_n(p, n, value); }
  static void synchronize(Context&) {}

  // ---- dense algebra ------------------------------------------------------
  // Row-major C[m,n] = alpha * op(A) op(B) + beta * C.
  static void gemm(Context&, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                   const float* b, int ldb, float beta, float* c, int ldc) {
    const dnnl_status_t status =
        dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    require(status == dnnl_success, "dnnl_sgemm refused a ", m, "x", n, "x", k, " product (status ", int(status), ")");
  }

  // y[r, c] += bias[c]
  static void bias_add_rows(Context&, float* y, const float* bias, std::int64_t rows, std::int64_t cols) {
#pragma omp parallel for if (worth_threads(rows * cols))
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) y[r * cols + c] += bias[c];
  }
  // grad_bias[c] = sum_r grad_y[r, c]
  static void bias_grad_rows(Context&, const float* grad_y, float* grad_bias, std::int64_t rows, std::int64_t cols) {
    std::fill_n(grad_bias, cols, 0.0f);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) grad_bias[c] += grad_y[r * cols + c];
  }

  // ---- Q-network heads (kernels/heads.cuh) ----------------------------------
  // out[r, c] = mu + sigma * f_rows[r] * f_cols[c] (noisy weights).
  static void noisy_compose(Context&, const float* mu, const float* sigma, const float* f_rows, const float* f_cols,
                            float* out, std::int64_t rows, std::int64_t cols) {
    const kernels::NoisyCompose f;
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) out[r * cols + c] = f(mu[r * cols + c], sigma[r * cols + c], f_rows[r], f_cols[c]);
  }
  // out[r, c] = grad * f_rows[r] * f_cols[c] (dLoss/dsigma).
  static void noisy_scale(Context&, const float* grad, const float* f_rows, const float* f_cols, float* out,
                          std::int64_t rows, std::int64_t cols) {
    const kernels::NoisyScale f;
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) out[r * cols + c] = f(grad[r * cols + c], f_rows[r], f_cols[c]);
  }
  static void dueling_forward(Context&, const float* value, const float* advantage, float* out, std::int64_t batch,
                              int actions, int atoms) {
    const kernels::DuelingCombine f{actions, atoms};
    for (std::int64_t b = 0; b < batch; ++b)
      for (int j = 0; j < atoms; ++j) f(value, advantage, out, b, j);
  }
  static void dueling_backward(Context&, const float* grad_out, float* grad_value, float* grad_advantage,
                               std::int64_t batch, int actions, int atoms) {
    const kernels::DuelingCombineBackward f{actions, atoms};
    for (std::int64_t b = 0; b < batch; ++b)
      for (int j = 0; j < atoms; ++j) f(grad_out, grad_value, grad_advantage, b, j);
  }
  static void add_into(Context&, const float* src, float* dst, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];
  }

  // Epsilon-greedy acting over a batch of Q rows [batch, actions]; the
  // backend-resident acting path (counter-based draws, rl::ActingPath).
  static void epsilon_greedy(Context&, const float* q, int batch, int actions, kernels::EpsilonGreedy policy,
                             std::int32_t* out) {
    for (int e = 0; e < batch; ++e) out[e] = policy(q + static_cast<std::ptrdiff_t>(e) * actions, actions, e);
  }

  // ---- replay (kernels/replay.cuh) ------------------------------------------
  static void replay_gather(Context&, const kernels::ReplayGatherArgs& a) {
    const kernels::ReplayGather g{a};
    const auto bytes = static_cast<std::size_t>(a.frame_bytes);
    for (int i = 0; i < a.batch; ++i) {
      const kernels::NStepEnd e = g.states_only() ? kernels::NStepEnd{} : g.end(i);
      g.write_scalars(i, e);
      for (int c = 0; c < a.stack; ++c) {
        std::memcpy(g.destination(i, false, c), g.source(i, false, e, c), bytes);
        if (!g.states_only()) std::memcpy(g.destination(i, true, c), g.source(i, true, e, c), bytes);
      }
    }
  }

  // ---- element-wise ---------------------------------------------------------
  static void relu_forward(Context&, const float* x, float* y, std::size_t n) {
    const kernels::ReluForward f;
    const auto count = static_cast<std::int64_t>(n);
#pragma omp parallel for simd if (worth_threads(count))
    for (std::int64_t i = 0; i < count; ++i) y[i] = f(x[i]);
  }
  static void relu_backward(Context&, const float* y, const float* grad_y, float* grad_x, std::size_t n) {
    const kernels::ReluBackward f;
    const auto count = static_cast<std::int64_t>(n);
#pragma omp parallel for simd if (worth_threads(count))
    for (std::int64_t i = 0; i < count; ++i) grad_x[i] = f(y[i], grad_y[i]);
  }
  static void u8_to_float(Context&, const std::uint8_t* src, float* dst, std::size_t n, float scale) {
    const kernels::ByteToUnitFloat f{scale};
    const auto count = static_cast<std::int64_t>(n);
#pragma omp parallel for simd if (worth_threads(count))
    for (std::int64_t i = 0; i < count; ++i) dst[i] = f(src[i]);
  }
  static void polyak_average(Context&, const float* online, float* target, std::size_t n, float tau) {
    const kernels::PolyakAverage f{tau};
    const auto count = static_cast<std::int64_t>(n);
#pragma omp parallel for simd if (worth_threads(count))
    for (std::int64_t i = 0; i < count; ++i) target[i] = f(online[i], target[i]);
  }
  static void argmax_rows(Context&, const float* x, int rows, int cols, std::int32_t* out) {
    for (int r = 0; r < rows; ++r) out[r] = kernels::ArgmaxRow{}(x + std::int64_t{r} * cols, cols);
  }

  // A parallel region costs microseconds, and far more when another process
  // holds a core and a thread is descheduled at the barrier: small layers
  // (acting on one state, small tasks) run on one thread.
  static bool worth_threads(std::int64_t elements) { return elements >= (std::int64_t{1} << 16); }

  // ---- convolution (oneDNN) ---------------------------------------------------
  static void conv2d_forward(Context& ctx, Conv2dState& state, const Conv2dGeometry& g, const float* x,
                             const float* w, const float* bias, float* y) {
    require(bias != nullptr, "conv2d_forward: the CPU backend's convolutions need a bias");
    state.last = &plan_for(state, g);
    state.input = x;
    state.last->forward(ctx.stream(), x, w, bias, y);
  }

  // Needs the Conv2dState of the matching forward. grad_x may be null (first
  // layer: nobody needs the gradient of the observation).
  static void conv2d_backward(Context& ctx, Conv2dState& state, const Conv2dGeometry& g, const float* w,
                              const float* grad_y, float* grad_x, float* grad_w, float* grad_bias) {
    require(state.last != nullptr && state.last->geometry == g,
            "conv2d_backward without a conv2d_forward of the same shape: run forward() first");
    require(grad_bias != nullptr, "conv2d_backward: the CPU backend's convolutions need a bias gradient");
    state.last->backward(ctx.stream(), state.input, w, grad_y, grad_x, grad_w, grad_bias);
  }

  static cpu_detail::ConvPlan& plan_for(Conv2dState& state, const Conv2dGeometry& g) {
    for (const auto& plan : state.plans)
      if (plan->geometry == g) return *plan;
    state.plans.push_back(std::make_unique<cpu_detail::ConvPlan>(g));
    return *state.plans.back();
  }

  // ---- max pooling -----------------------------------------------------------
  static void maxpool2d_forward(Context&, const Pool2dGeometry& g, const float* x, float* y, std::int32_t* argmax) {
#pragma omp parallel for collapse(2) if (worth_threads(g.input_size()))
    for (int n = 0; n < g.batch; ++n)
      for (int c = 0; c < g.channels; ++c) {
        const std::int64_t plane = std::int64_t{n} * g.channels + c;
        const float* src = x + plane * g.in_h * g.in_w;
        float* dst = y + plane * g.out_h * g.out_w;
        std::int32_t* arg = argmax + plane * g.out_h * g.out_w;
        for (int oh = 0; oh < g.out_h; ++oh)
          for (int ow = 0; ow < g.out_w; ++ow) {
            const std::int32_t best = kernels::MaxPoolWindow{}(g, src, oh, ow);
            dst[oh * g.out_w + ow] = src[best];
            arg[oh * g.out_w + ow] = best;
          }
      }
  }
  static void maxpool2d_backward(Context&, const Pool2dGeometry& g, const float* grad_y, const std::int32_t* argmax,
                                 float* grad_x) {
#pragma omp parallel for collapse(2) if (worth_threads(g.input_size()))
    for (int n = 0; n < g.batch; ++n)
      for (int c = 0; c < g.channels; ++c) {
        const std::int64_t plane = std::int64_t{n} * g.channels + c;
        float* dst = grad_x + plane * g.in_h * g.in_w;
        std::fill_n(dst, std::int64_t{g.in_h} * g.in_w, 0.0f);
        const float* src = grad_y + plane * g.out_h * g.out_w;
        const std::int32_t* arg = argmax + plane * g.out_h * g.out_w;
        for (std::int64_t i = 0; i < std::int64_t{g.out_h} * g.out_w; ++i) dst[arg[i]] += src[i];
      }
  }

  // ---- losses ----------------------------------------------------------------
  // Mean loss over n elements; grad (may be null) = dLoss/dprediction.
  template <class Element>
  static float elementwise_loss(Context&, const float* prediction, const float* target, std::size_t n, Element element,
                                float* grad) {
    double total = 0.0;
    const float inv_n = 1.0f / static_cast<float>(n);
    for (std::size_t i = 0; i < n; ++i) {
      const float d = prediction[i] - target[i];
      total += element.value(d);
      if (grad) grad[i] = element.grad(d) * inv_n;
    }
    return static_cast<float>(total / static_cast<double>(n));
  }

  // A TD step is a row functor (kernels::TdRow, CategoricalTdRow) run over
  // the batch; the mean loss and Q are reduced in double, in row order.
  template <class Row, class Args>
  static void td_rows(const Row& row, const Args& a) {
    double loss = 0.0, q_sum = 0.0;
    for (int i = 0; i < a.batch; ++i) {
      const auto out = row(a, i);
      loss += out.loss;
      loss += out.margin;
      q_sum += out.q;
    }
    *a.loss_out = static_cast<float>(loss / a.batch);
    if (a.q_mean_out) *a.q_mean_out = static_cast<float>(q_sum / a.batch);
  }
  static void td_loss(Context&, const TdLossArgs& a) { td_rows(kernels::TdRow{}, a); }

  // The distributional head's TD step and its Q values (kernels/categorical.cuh).
  static void categorical_td_loss(Context&, const CategoricalTdArgs& a) { td_rows(kernels::CategoricalTdRow{}, a); }
  // q[r, a] = sum_j z_j softmax(logits[r, a, :])_j for `rows` rows of `actions` actions.
  static void categorical_q(Context&, const float* logits, int rows, int actions, CategoricalSupport support,
                            float* q) {
    const kernels::CategoricalExpectation expectation{support};
    const std::int64_t count = std::int64_t{rows} * actions;
    for (std::int64_t k = 0; k < count; ++k) q[k] = expectation(logits + k * support.atoms);
  }

  // ---- optimisation ------------------------------------------------------------
  // Global L2 norm of all gradients; when max_norm > 0 and the norm exceeds
  // it, *grad_scale is set to max_norm / (norm + 1e-6) (torch's
  // clip_grad_norm_), else 1. Both outputs are backend memory.
  static void grad_norm(Context&, std::span<const ParameterSlice> params, float max_norm, float* norm_out,
                        float* grad_scale_out) {
    double sum = 0.0;
    for (const auto& p : params) {
      double part = 0.0;
#pragma omp parallel for reduction(+ : part) if (worth_threads(p.size))
      for (std::int64_t i = 0; i < p.size; ++i) part += double(p.grad[i]) * p.grad[i];
      sum += part;
    }
    const float norm = static_cast<float>(std::sqrt(sum));
    *norm_out = norm;
    *grad_scale_out = (max_norm > 0.0f && norm > max_norm) ? max_norm / (norm + 1e-6f) : 1.0f;
  }

  static void adam_update(Context&, std::span<const ParameterSlice> params, std::span<float* const> first_moments,
                          std::span<float* const> second_moments, const kernels::AdamUpdate& update,
                          const float* grad_scale) {
    const float scale = grad_scale ? *grad_scale : 1.0f;
    for (std::size_t t = 0; t < params.size(); ++t) {
      float* value = params[t].value;
      const float* grad = params[t].grad;
      float* m = first_moments[t];
      float* v = second_moments[t];
#pragma omp parallel for simd if (worth_threads(params[t].size))
      for (std::int64_t i = 0; i < params[t].size; ++i) update(value[i], grad[i], m[i], v[i], scale);
    }
  }
};

}  // namespace qrl
