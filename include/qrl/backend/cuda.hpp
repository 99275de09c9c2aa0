#pragma once
// The CUDA backend: cuDNN convolutions, cuBLAS matrix products, and the
// hand-written kernels of kernels/*.cu (launchers declared in cuda_launch.hpp)
// for everything else. This header is plain C++: it includes only the C
// headers of the CUDA runtime, cuBLAS and cuDNN, so users compile their code
// with g++ and link qrl::cuda. Every operation is enqueued on the Context's
// stream; only download() and synchronize() wait for the device.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <qrl/backend/backend.hpp>
#include <qrl/backend/cuda_launch.hpp>
#include <qrl/backend/geometry.hpp>
#include <qrl/backend/op_args.hpp>
#include <qrl/core/error.hpp>

namespace qrl {

struct cuda {};

namespace cuda_detail {

inline void check(cudaError_t status, const char* call) {
  if (status != cudaSuccess)
    fail(call, " failed: ", cudaGetErrorName(status), " (", cudaGetErrorString(status),
         "); run with CUDA_LAUNCH_BLOCKING=1 under compute-sanitizer to find the failing kernel");
}
inline void check(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail(call, " failed: ", cublasGetStatusName(status), " (", cublasGetStatusString(status), ")");
}
inline void check(cudnnStatus_t status, const char* call) {
  if (status != CUDNN_STATUS_SUCCESS) {
    char detail[512] = {};
    cudnnGetLastErrorString(detail, sizeof(detail));
    fail(call, " failed: ", cudnnGetErrorString(status), detail[0] ? " - " : "", detail);
  }
}
// Kernel launches report configuration errors only through the runtime's
// sticky last error.
inline void check_launch(const char* launcher) { check(cudaGetLastError(), launcher); }

}  // namespace cuda_detail

// Why the CUDA backend cannot run here, or an empty string when it can: no
// driver, no device, or a build without code for this device's architecture
// (tests report these as skips, the examples as one error line).
inline std::string cuda_unavailable_reason() {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();
    return detail::concat("no CUDA device found (cudaGetDeviceCount: ",
                          status == cudaSuccess ? "0 devices" : cudaGetErrorString(status),
                          "); run on a machine with an NVIDIA GPU or use the cpu backend");
  }
  const cudaError_t probe = kernels::probe_kernel_image();
  if (probe != cudaSuccess)
    return detail::concat("the CUDA device cannot run qrl's kernels (", cudaGetErrorString(probe),
                          "); rebuild with -DCMAKE_CUDA_ARCHITECTURES=native");
  return {};
}

struct CudaOptions {
  // TF32 tensor cores for cuBLAS GEMMs and cuDNN convolutions: faster on
  // Ampere and later, with a 10-bit mantissa in the products. Off by default
  // so results match the CPU backend to float precision.
  bool allow_tf32 = false;
  // Largest cuDNN workspace an algorithm may ask for.
  std::size_t max_workspace_bytes = std::size_t{256} << 20;
};

template <>
struct backend_traits<cuda> {
  static constexpr std::string_view name = "cuda";

  template <class T>
  struct DeviceFree {
    void operator()(T* p) const noexcept { cudaFree(p); }
  };
  template <class T>
  using DeviceBuffer = std::unique_ptr<T, DeviceFree<T>>;

  template <class T>
  static DeviceBuffer<T> make_buffer(std::size_t count) {
    return DeviceBuffer<T>(allocate<T>(count));
  }

  // One per agent: the stream everything is enqueued on, the cuBLAS and
  // cuDNN handles bound to it, the shared cuDNN workspace, a few device
  // scalars and the device copies of the optimizer's parameter tables.
  class Context {
   public:
    explicit Context(CudaOptions options = {}) : options_(options) {
      const std::string reason = cuda_unavailable_reason();
      if (!reason.empty()) fail(reason);
      cuda_detail::check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
      cuda_detail::check(cublasCreate(&cublas_), "cublasCreate");
      cuda_detail::check(cublasSetStream(cublas_, stream_), "cublasSetStream");
      // A workspace of its own keeps cuBLAS from allocating inside a graph capture.
      cublas_workspace_ = make_buffer<std::uint8_t>(cublas_workspace_bytes);
      cuda_detail::check(cublasSetWorkspace(cublas_, cublas_workspace_.get(), cublas_workspace_bytes),
                         "cublasSetWorkspace");
      cuda_detail::check(cudnnCreate(&cudnn_), "cudnnCreate");
      cuda_detail::check(cudnnSetStream(cudnn_, stream_), "cudnnSetStream");
      scalars_ = make_buffer<double>(scalar_count);
      set_tf32(options.allow_tf32);
    }
    ~Context() {
      if (stream_) cudaStreamSynchronize(stream_);
      if (cudnn_) cudnnDestroy(cudnn_);
      if (cublas_) cublasDestroy(cublas_);
      workspace_.reset();
      if (stream_) cudaStreamDestroy(stream_);
    }
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    cudaStream_t stream() const { return stream_; }
    cublasHandle_t cublas() const { return cublas_; }
    cudnnHandle_t cudnn() const { return cudnn_; }
    const CudaOptions& options() const { return options_; }

    // Convolution plans made after this call use the new setting.
    void set_tf32(bool allow) {
      options_.allow_tf32 = allow;
      cuda_detail::check(cublasSetMathMode(cublas_, allow ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
                         "cublasSetMathMode");
    }

    // The shared cuDNN workspace, grown (never shrunk) to `bytes`. cudaFree
    // waits for queued work, so nothing in flight loses the old block; plans
    // reserve their size when made, so a running update never grows it.
    void* workspace(std::size_t bytes) {
      if (bytes > workspace_bytes_) {
        workspace_.reset();
        workspace_ = make_buffer<std::uint8_t>(bytes);
        workspace_bytes_ = bytes;
      }
      return workspace_.get();
    }

    // Device scratch: one double accumulator and a few floats (losses).
    double* accumulator() { return scalars_.get(); }
    float* scalar(int i) { return reinterpret_cast<float*>(scalars_.get() + 1) + i; }

    // A device copy of `rows`, uploaded once and reused while the same
    // parameters come back (every step of the same optimizer).
    const kernels::DeviceParameter* parameter_table(const std::vector<kernels::DeviceParameter>& rows) {
      for (auto& table : tables_)
        if (table.rows == rows) return table.device.get();
      auto& table = tables_.emplace_back();
      table.rows = rows;
      table.device = make_buffer<kernels::DeviceParameter>(rows.size());
      cuda_detail::check(cudaMemcpy(table.device.get(), rows.data(), rows.size() * sizeof(rows[0]),
                                    cudaMemcpyHostToDevice),
                         "cudaMemcpy (parameter table)");
      return table.device.get();
    }

   private:
    static constexpr std::size_t cublas_workspace_bytes = std::size_t{32} << 20;
    static constexpr int scalar_count = 8;
    struct Table {
      std::vector<kernels::DeviceParameter> rows;
      DeviceBuffer<kernels::DeviceParameter> device;
    };

    CudaOptions options_;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t cublas_ = nullptr;
    cudnnHandle_t cudnn_ = nullptr;
    DeviceBuffer<std::uint8_t> cublas_workspace_, workspace_;
    std::size_t workspace_bytes_ = 0;
    DeviceBuffer<double> scalars_;
    std::vector<Table> tables_;
  };

  // Per convolution layer: one plan per input shape seen (acting uses batch
  // 1, training the minibatch), each with its descriptors and the algorithms
  // cuDNN's measurements chose for it, made once. The input of the last
  // forward is remembered for the filter gradient.
  struct Conv2dPlan {
    Conv2dGeometry geometry;
    int extra_h = 0, extra_w = 0;  // zero rows/cols appended for asymmetric 'same' padding
    cudnnTensorDescriptor_t x_desc = nullptr, y_desc = nullptr;
    cudnnFilterDescriptor_t w_desc = nullptr;
    cudnnConvolutionDescriptor_t conv_desc = nullptr;
    cudnnConvolutionFwdAlgo_t forward_algo{};
    cudnnConvolutionBwdDataAlgo_t backward_data_algo{};
    cudnnConvolutionBwdFilterAlgo_t backward_filter_algo{};
    std::size_t workspace_bytes = 0;

    Conv2dPlan() = default;
    Conv2dPlan(const Conv2dPlan&) = delete;
    Conv2dPlan& operator=(const Conv2dPlan&) = delete;
    ~Conv2dPlan() {
      if (x_desc) cudnnDestroyTensorDescriptor(x_desc);
      if (y_desc) cudnnDestroyTensorDescriptor(y_desc);
      if (w_desc) cudnnDestroyFilterDescriptor(w_desc);
      if (conv_desc) cudnnDestroyConvolutionDescriptor(conv_desc);
    }
    bool padded() const { return extra_h > 0 || extra_w > 0; }
    int padded_h() const { return geometry.in_h + extra_h; }
    int padded_w() const { return geometry.in_w + extra_w; }
  };

  struct Conv2dState {
    std::vector<std::unique_ptr<Conv2dPlan>> plans;
    const float* input = nullptr;  // what the last forward convolved (x or its padded copy)
    DeviceBuffer<float> padded_input, padded_grad;
    std::size_t padded_capacity = 0;
  };

  // ---- memory -------------------------------------------------------------
  template <class T>
  static T* allocate(std::size_t count) {
    if (count == 0) count = 1;
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, count * sizeof(T));
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      fail("cudaMalloc of ", count * sizeof(T), " bytes failed: ", cudaGetErrorString(status),
           " (reduce the replay capacity or batch size, or free GPU memory)");
    }
    return static_cast<T*>(p);
  }
  template <class T>
  static void deallocate(T* p) noexcept {
    cudaFree(const_cast<std::remove_const_t<T>*>(p));
  }
  // Pageable host memory: the runtime stages it before returning, so the
  // host buffer may be reused at once.
  template <class T>
  static void upload(Context& ctx, const T* host, T* dst, std::size_t n) {
    if (n)
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
    if (n)
      cuda_detail::check(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToDevice, ctx.stream()),
                         "cudaMemcpyAsync (device copy)");
  }
  static void fill(Context& ctx, float* p, std::size_t n, float value) {
    if (!n) return;
    kernels::launch_fill(p, static_cast<std::int64_t>(n), value, ctx.stream());
    cuda_detail::check_launch("launch_fill");
  }
  static void synchronize(Context& ctx) { cuda_detail::check(cudaStreamSynchronize(ctx.stream()), "cudaStreamSynchronize"); }

  // ---- dense algebra ------------------------------------------------------
  // Row-major C = alpha op(A) op(B) + beta C is column-major C^T = op(B)^T
  // op(A)^T: swap the operands instead of transposing anything.
  static void gemm(Context& ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                   const float* b, int ldb, float beta, float* c, int ldc) {
    cuda_detail::check(cublasSgemm(ctx.cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc),
                       "cublasSgemm");
  }
  static void bias_add_rows(Context& ctx, float* y, const float* bias, std::int64_t rows, std::int64_t cols) {
    kernels::launch_bias_add(y, bias, rows, static_cast<int>(cols), 1, ctx.stream());
    cuda_detail::check_launch("launch_bias_add");
  }
  static void bias_grad_rows(Context& ctx, const float* grad_y, float* grad_bias, std::int64_t rows, std::int64_t cols) {
    kernels::launch_bias_grad(grad_y, grad_bias, rows, static_cast<int>(cols), 1, ctx.stream());
    cuda_detail::check_launch("launch_bias_grad");
  }

  // ---- element-wise ---------------------------------------------------------
  static void relu_forward(Context& ctx, const float* x, float* y, std::size_t n) {
    if (!n) return;
    kernels::launch_relu_forward(x, y, static_cast<std::int64_t>(n), ctx.stream());
    cuda_detail::check_launch("launch_relu_forward");
  }
  static void relu_backward(Context& ctx, const float* y, const float* grad_y, float* grad_x, std::size_t n) {
    if (!n) return;
    kernels::launch_relu_backward(y, grad_y, grad_x, static_cast<std::int64_t>(n), ctx.stream());
    cuda_detail::check_launch("launch_relu_backward");
  }
  static void u8_to_float(Context& ctx, const std::uint8_t* src, float* dst, std::size_t n, float scale) {
    if (!n) return;
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
    kernels::launch_argmax_rows(x, rows, cols, out, ctx.stream());
    cuda_detail::check_launch("launch_argmax_rows");
  }

  // ---- convolution (cuDNN) ---------------------------------------------------
  static void conv2d_forward(Context& ctx, Conv2dState& state, const Conv2dGeometry& g, const float* x,
                             const float* w, const float* bias, float* y) {
    const Conv2dPlan& plan = plan_for(ctx, state, g);
    const float* input = x;
    if (plan.padded()) {
      ensure_padded_buffers(state, plan);
      kernels::launch_pad_planes(x, state.padded_input.get(), std::int64_t{g.batch} * g.in_channels, g.in_h, g.in_w,
                                 plan.padded_h(), plan.padded_w(), ctx.stream());
      cuda_detail::check_launch("launch_pad_planes");
      input = state.padded_input.get();
    }
    state.input = input;
    const float one = 1.0f, zero = 0.0f;
    cuda_detail::check(cudnnConvolutionForward(ctx.cudnn(), &one, plan.x_desc, input, plan.w_desc, w, plan.conv_desc,
                                               plan.forward_algo, ctx.workspace(plan.workspace_bytes),
                                               plan.workspace_bytes, &zero, plan.y_desc, y),
                       "cudnnConvolutionForward");
    if (bias) {
      kernels::launch_bias_add(y, bias, g.batch, g.out_channels, g.output_pixels(), ctx.stream());
      cuda_detail::check_launch("launch_bias_add");
    }
  }

  // Needs the Conv2dState of the matching forward; grad_x may be null.
  static void conv2d_backward(Context& ctx, Conv2dState& state, const Conv2dGeometry& g, const float* w,
                              const float* grad_y, float* grad_x, float* grad_w, float* grad_bias) {
    const Conv2dPlan& plan = plan_for(ctx, state, g);
    require(state.input != nullptr, "conv2d_backward before any conv2d_forward: run forward() first");
    if (grad_bias) {
      kernels::launch_bias_grad(grad_y, grad_bias, g.batch, g.out_channels, g.output_pixels(), ctx.stream());
      cuda_detail::check_launch("launch_bias_grad");
    }
    const float one = 1.0f, zero = 0.0f;
    void* workspace = ctx.workspace(plan.workspace_bytes);
    cuda_detail::check(cudnnConvolutionBackwardFilter(ctx.cudnn(), &one, plan.x_desc, state.input, plan.y_desc, grad_y,
                                                      plan.conv_desc, plan.backward_filter_algo, workspace,
                                                      plan.workspace_bytes, &zero, plan.w_desc, grad_w),
                       "cudnnConvolutionBackwardFilter");
    if (!grad_x) return;
    float* dx = plan.padded() ? state.padded_grad.get() : grad_x;
    cuda_detail::check(cudnnConvolutionBackwardData(ctx.cudnn(), &one, plan.w_desc, w, plan.y_desc, grad_y,
                                                    plan.conv_desc, plan.backward_data_algo, workspace,
                                                    plan.workspace_bytes, &zero, plan.x_desc, dx),
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
    kernels::launch_maxpool2d_forward(g, x, y, argmax, ctx.stream());
    cuda_detail::check_launch("launch_maxpool2d_forward");
  }
  static void maxpool2d_backward(Context& ctx, const Pool2dGeometry& g, const float* grad_y, const std::int32_t* argmax,
                                 float* grad_x) {
    if (g.input_size() == 0) return;
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
    kernels::launch_elementwise_loss(element, prediction, target, static_cast<std::int64_t>(n), grad, loss,
                                     ctx.stream());
    cuda_detail::check_launch("launch_elementwise_loss");
    float host = 0.0f;
    download(ctx, loss, &host, 1);
    return host;
  }

  static void td_loss(Context& ctx, const TdLossArgs& a) {
    kernels::launch_td_loss(a, ctx.stream());
    cuda_detail::check_launch("launch_td_loss");
  }

  // ---- optimisation ------------------------------------------------------------
  static void grad_norm(Context& ctx, std::span<const ParameterSlice> params, float max_norm, float* norm_out,
                        float* grad_scale_out) {
    std::vector<kernels::DeviceParameter> rows;
    std::int64_t max_size = 0;
    for (const auto& p : params) {
      rows.push_back({p.value, p.grad, nullptr, nullptr, p.size});
      max_size = std::max(max_size, p.size);
    }
    if (rows.empty()) {
      fill(ctx, norm_out, 1, 0.0f);
      fill(ctx, grad_scale_out, 1, 1.0f);
      return;
    }
    kernels::launch_grad_norm(ctx.parameter_table(rows), static_cast<int>(rows.size()), max_size, ctx.accumulator(),
                              max_norm, norm_out, grad_scale_out, ctx.stream());
    cuda_detail::check_launch("launch_grad_norm");
  }

  static void adam_update(Context& ctx, std::span<const ParameterSlice> params, std::span<float* const> first_moments,
                          std::span<float* const> second_moments, const kernels::AdamUpdate& update,
                          const float* grad_scale) {
    std::vector<kernels::DeviceParameter> rows;
    std::int64_t max_size = 0;
    for (std::size_t t = 0; t < params.size(); ++t) {
      rows.push_back({params[t].value, params[t].grad, first_moments[t], second_moments[t], params[t].size});
      max_size = std::max(max_size, params[t].size);
    }
    if (rows.empty()) return;
    kernels::launch_adam_update(ctx.parameter_table(rows), static_cast<int>(rows.size()), max_size, update, grad_scale,
                                ctx.stream());
    cuda_detail::check_launch("launch_adam_update");
  }

  // ---- RL helpers that only the device needs ----------------------------------
  static void epsilon_greedy(Context& ctx, const float* q, int batch, int actions, kernels::EpsilonGreedy policy,
                             std::int32_t* out) {
    if (batch <= 0) return;
    kernels::launch_epsilon_greedy(q, batch, actions, policy, out, ctx.stream());
    cuda_detail::check_launch("launch_epsilon_greedy");
  }

 private:
  static bool same_geometry(const Conv2dGeometry& a, const Conv2dGeometry& b) {
    return a.batch == b.batch && a.in_channels == b.in_channels && a.in_h == b.in_h && a.in_w == b.in_w &&
           a.out_channels == b.out_channels && a.kernel_h == b.kernel_h && a.kernel_w == b.kernel_w &&
           a.stride_h == b.stride_h && a.stride_w == b.stride_w && a.pad_top == b.pad_top &&
           a.pad_left == b.pad_left && a.out_h == b.out_h && a.out_w == b.out_w;
  }

  static void ensure_padded_buffers(Conv2dState& state, const Conv2dPlan& plan) {
    const auto needed = static_cast<std::size_t>(std::int64_t{plan.geometry.batch} * plan.geometry.in_channels *
                                                 plan.padded_h() * plan.padded_w());
    if (needed <= state.padded_capacity) return;
    state.padded_input = make_buffer<float>(needed);
    state.padded_grad = make_buffer<float>(needed);
    state.padded_capacity = needed;
  }

  // Plans are few (one per batch size in use) and found by a linear scan.
  static const Conv2dPlan& plan_for(Context& ctx, Conv2dState& state, const Conv2dGeometry& g) {
    for (const auto& plan : state.plans)
      if (same_geometry(plan->geometry, g)) return *plan;
    state.plans.push_back(make_plan(ctx, g));
    return *state.plans.back();
  }

  static std::unique_ptr<Conv2dPlan> make_plan(Context& ctx, const Conv2dGeometry& g) {
    using cuda_detail::check;
    auto plan = std::make_unique<Conv2dPlan>();
    plan->geometry = g;
    // cuDNN pads symmetrically by pad_top/pad_left; Keras 'same' may want one
    // more row/column at the bottom/right, which a padded copy supplies.
    plan->extra_h = std::max(0, (g.out_h - 1) * g.stride_h + g.kernel_h - g.in_h - 2 * g.pad_top);
    plan->extra_w = std::max(0, (g.out_w - 1) * g.stride_w + g.kernel_w - g.in_w - 2 * g.pad_left);
    check(cudnnCreateTensorDescriptor(&plan->x_desc), "cudnnCreateTensorDescriptor");
    check(cudnnCreateTensorDescriptor(&plan->y_desc), "cudnnCreateTensorDescriptor");
    check(cudnnCreateFilterDescriptor(&plan->w_desc), "cudnnCreateFilterDescriptor");
    check(cudnnCreateConvolutionDescriptor(&plan->conv_desc), "cudnnCreateConvolutionDescriptor");
    check(cudnnSetTensor4dDescriptor(plan->x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.batch, g.in_channels,
                                     plan->padded_h(), plan->padded_w()),
          "cudnnSetTensor4dDescriptor (conv input)");
    check(cudnnSetFilter4dDescriptor(plan->w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g.out_channels, g.in_channels,
                                     g.kernel_h, g.kernel_w),
          "cudnnSetFilter4dDescriptor");
    check(cudnnSetConvolution2dDescriptor(plan->conv_desc, g.pad_top, g.pad_left, g.stride_h, g.stride_w, 1, 1,
                                          CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
          "cudnnSetConvolution2dDescriptor");
    // cuDNN's default math lets FP32 convolutions use TF32 on Ampere and
    // later; FMA math keeps full float precision unless TF32 was asked for.
    const bool tf32 = ctx.options().allow_tf32;
    check(cudnnSetConvolutionMathType(plan->conv_desc, tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH),
          "cudnnSetConvolutionMathType");
    int n = 0, c = 0, h = 0, w = 0;
    check(cudnnGetConvolution2dForwardOutputDim(plan->conv_desc, plan->x_desc, plan->w_desc, &n, &c, &h, &w),
          "cudnnGetConvolution2dForwardOutputDim");
    if (n != g.batch || c != g.out_channels || h != g.out_h || w != g.out_w)
      fail("cuDNN plans a ", n, "x", c, "x", h, "x", w, " convolution output where qrl expects ", g.batch, "x",
           g.out_channels, "x", g.out_h, "x", g.out_w, " (a bug in qrl's padding translation: please report it)");
    check(cudnnSetTensor4dDescriptor(plan->y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w),
          "cudnnSetTensor4dDescriptor (conv output)");

    const std::size_t cap = ctx.options().max_workspace_bytes;
    // cudnnFind* times every algorithm on this device once; the fastest that
    // fits the workspace cap and keeps the math mode wins.
    const auto acceptable = [&](cudnnStatus_t status, std::size_t memory, cudnnMathType_t math) {
      return status == CUDNN_STATUS_SUCCESS && memory <= cap && (tf32 || math == CUDNN_FMA_MATH || math == CUDNN_DEFAULT_MATH);
    };
    constexpr int requested = 16;
    int returned = 0;
    {
      cudnnConvolutionFwdAlgoPerf_t results[requested];
      check(cudnnFindConvolutionForwardAlgorithm(ctx.cudnn(), plan->x_desc, plan->w_desc, plan->conv_desc, plan->y_desc,
                                                 requested, &returned, results),
            "cudnnFindConvolutionForwardAlgorithm");
      const auto* best = std::find_if(results, results + returned, [&](const auto& r) {
        return acceptable(r.status, r.memory, r.mathType);
      });
      if (best == results + returned) fail(no_algorithm_message("forward", g, cap));
      plan->forward_algo = best->algo;
      plan->workspace_bytes = std::max(plan->workspace_bytes, best->memory);
    }
    {
      cudnnConvolutionBwdDataAlgoPerf_t results[requested];
      check(cudnnFindConvolutionBackwardDataAlgorithm(ctx.cudnn(), plan->w_desc, plan->y_desc, plan->conv_desc,
                                                      plan->x_desc, requested, &returned, results),
            "cudnnFindConvolutionBackwardDataAlgorithm");
      const auto* best = std::find_if(results, results + returned, [&](const auto& r) {
        return acceptable(r.status, r.memory, r.mathType);
      });
      if (best == results + returned) fail(no_algorithm_message("backward data", g, cap));
      plan->backward_data_algo = best->algo;
      plan->workspace_bytes = std::max(plan->workspace_bytes, best->memory);
    }
    {
      cudnnConvolutionBwdFilterAlgoPerf_t results[requested];
      check(cudnnFindConvolutionBackwardFilterAlgorithm(ctx.cudnn(), plan->x_desc, plan->y_desc, plan->conv_desc,
                                                        plan->w_desc, requested, &returned, results),
            "cudnnFindConvolutionBackwardFilterAlgorithm");
      const auto* best = std::find_if(results, results + returned, [&](const auto& r) {
        return acceptable(r.status, r.memory, r.mathType);
      });
      if (best == results + returned) fail(no_algorithm_message("backward filter", g, cap));
      plan->backward_filter_algo = best->algo;
      plan->workspace_bytes = std::max(plan->workspace_bytes, best->memory);
    }
    // Reserve the workspace now, outside any graph capture.
    ctx.workspace(plan->workspace_bytes);
    return plan;
  }

  static std::string no_algorithm_message(const char* pass, const Conv2dGeometry& g, std::size_t cap) {
    return detail::concat("cuDNN found no ", pass, " convolution algorithm for input ", g.batch, "x", g.in_channels,
                          "x", g.in_h, "x", g.in_w, " and kernel ", g.out_channels, "x", g.kernel_h, "x", g.kernel_w,
                          " within a ", cap >> 20, " MiB workspace (raise CudaOptions::max_workspace_bytes)");
  }
};

}  // namespace qrl
