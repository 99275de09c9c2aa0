#pragma once
// cuDNN convolution plans: per layer, one plan per input shape seen, each
// with its descriptors, the algorithms chosen for its geometry (searched
// once per geometry and Context, conv_algorithms.hpp) and its workspace
// reserved when it is made. Plans are made outside any CUDA graph capture,
// so a running update never allocates or searches.
#include <cudnn.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <qrl/backend/cuda/check.hpp>
#include <qrl/backend/cuda/context.hpp>
#include <qrl/backend/cuda/conv_algorithms.hpp>
#include <qrl/backend/cuda/device_memory.hpp>
#include <qrl/kernels/geometry.hpp>
#include <qrl/core/error.hpp>

namespace qrl::cuda_detail {

// Per convolution layer: one plan per input shape seen (acting uses batch
// 1, training the minibatch), each with its descriptors and the algorithms
// chosen for its geometry (shared through the Context's cache), made once.
// The input of the last forward is remembered for the filter gradient.
struct Conv2dPlan {
  Conv2dGeometry geometry;
  int extra_h = 0, extra_w = 0;  // zero rows/cols appended for asymmetric 'same' padding
  cudnnTensorDescriptor_t x_desc = nullptr, y_desc = nullptr;
  cudnnFilterDescriptor_t w_desc = nullptr;
  // One convolution descriptor per pass: each carries the math type its
  // pass's algorithm was chosen with.
  cudnnConvolutionDescriptor_t forward_desc = nullptr, backward_data_desc = nullptr, backward_filter_desc = nullptr;
  cuda_detail::ConvAlgorithms algorithms;
  std::size_t workspace_bytes = 0;  // the largest of the three passes'
  // The zero-extended input and its gradient (padded plans only): sized
  // for this plan when it is made and never reallocated.
  DeviceBuffer<float> padded_input, padded_grad;

  Conv2dPlan() = default;
  Conv2dPlan(const Conv2dPlan&) = delete;
  Conv2dPlan& operator=(const Conv2dPlan&) = delete;
  ~Conv2dPlan() {
    if (x_desc) cudnnDestroyTensorDescriptor(x_desc);
    if (y_desc) cudnnDestroyTensorDescriptor(y_desc);
    if (w_desc) cudnnDestroyFilterDescriptor(w_desc);
    for (auto* desc : {forward_desc, backward_data_desc, backward_filter_desc})
      if (desc) cudnnDestroyConvolutionDescriptor(desc);
  }
  bool padded() const { return extra_h > 0 || extra_w > 0; }
  int padded_h() const { return geometry.in_h + extra_h; }
  int padded_w() const { return geometry.in_w + extra_w; }
};

struct Conv2dState {
  std::vector<std::unique_ptr<Conv2dPlan>> plans;
  const float* input = nullptr;  // what the last forward convolved (x or its padded copy)
};

inline std::string no_algorithm_message(const char* pass, const Conv2dGeometry& g, const ConvSearch& search) {
  return detail::concat("cuDNN found no ", search.deterministic ? "deterministic " : "", pass,
                        " convolution algorithm for input ", g.batch, "x", g.in_channels, "x", g.in_h, "x", g.in_w,
                        " and kernel ", g.out_channels, "x", g.kernel_h, "x", g.kernel_w, " within a ",
                        search.max_workspace_bytes >> 20, " MiB workspace",
                        search.allow_tf32 ? "" : " in FP32 (FMA) math",
                        " (raise CudaOptions::max_workspace_bytes",
                        search.deterministic ? ", or set CudaOptions::deterministic = false" : "", ")");
}

// cuDNN's ranked candidates for each pass: heuristics (no timing) when
// deterministic, else measured with cudnnFind*. The plan's descriptors
// carry search_math(search) on entry; the winner's math type is set by
// the caller.
inline ConvAlgorithms choose_algorithms(CudaContext& ctx, const Conv2dPlan& plan, const ConvSearch& search) {
  using cuda_detail::check;
  const Conv2dGeometry& g = plan.geometry;
  cudnnHandle_t handle = ctx.cudnn();
  cuda_detail::ConvAlgorithms chosen;
  int max_count = 0, returned = 0;
  {
    check(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_count),
          "cudnnGetConvolutionForwardAlgorithmMaxCount");
    std::vector<cudnnConvolutionFwdAlgoPerf_t> results(static_cast<std::size_t>(std::max(max_count, 1)));
    if (search.deterministic)
      check(cudnnGetConvolutionForwardAlgorithm_v7(handle, plan.x_desc, plan.w_desc, plan.forward_desc, plan.y_desc,
                                                   max_count, &returned, results.data()),
            "cudnnGetConvolutionForwardAlgorithm_v7");
    else
      check(cudnnFindConvolutionForwardAlgorithm(handle, plan.x_desc, plan.w_desc, plan.forward_desc, plan.y_desc,
                                                 max_count, &returned, results.data()),
            "cudnnFindConvolutionForwardAlgorithm");
    const auto choice = cuda_detail::pick_algorithm(
        results.data(), returned, search, [&](cudnnConvolutionFwdAlgo_t algo, cudnnMathType_t math) {
          std::size_t bytes = 0;
          const bool ok = cudnnSetConvolutionMathType(plan.forward_desc, math) == CUDNN_STATUS_SUCCESS &&
                          cudnnGetConvolutionForwardWorkspaceSize(handle, plan.x_desc, plan.w_desc, plan.forward_desc,
                                                                  plan.y_desc, algo, &bytes) == CUDNN_STATUS_SUCCESS;
          return ok ? std::optional<std::size_t>(bytes) : std::nullopt;
        });
    if (!choice) fail(no_algorithm_message("forward", g, search));
    chosen.forward = *choice;
  }
  {
    check(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &max_count),
          "cudnnGetConvolutionBackwardDataAlgorithmMaxCount");
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> results(static_cast<std::size_t>(std::max(max_count, 1)));
    if (search.deterministic)
      check(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, plan.w_desc, plan.y_desc, plan.backward_data_desc,
                                                        plan.x_desc, max_count, &returned, results.data()),
            "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    else
      check(cudnnFindConvolutionBackwardDataAlgorithm(handle, plan.w_desc, plan.y_desc, plan.backward_data_desc,
                                                      plan.x_desc, max_count, &returned, results.data()),
            "cudnnFindConvolutionBackwardDataAlgorithm");
    const auto choice = cuda_detail::pick_algorithm(
        results.data(), returned, search, [&](cudnnConvolutionBwdDataAlgo_t algo, cudnnMathType_t math) {
          std::size_t bytes = 0;
          const bool ok =
              cudnnSetConvolutionMathType(plan.backward_data_desc, math) == CUDNN_STATUS_SUCCESS &&
              cudnnGetConvolutionBackwardDataWorkspaceSize(handle, plan.w_desc, plan.y_desc, plan.backward_data_desc,
                                                           plan.x_desc, algo, &bytes) == CUDNN_STATUS_SUCCESS;
          return ok ? std::optional<std::size_t>(bytes) : std::nullopt;
        });
    if (!choice) fail(no_algorithm_message("backward data", g, search));
    chosen.backward_data = *choice;
  }
  {
    check(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &max_count),
          "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount");
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> results(static_cast<std::size_t>(std::max(max_count, 1)));
    if (search.deterministic)
      check(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, plan.x_desc, plan.y_desc, plan.backward_filter_desc,
                                                          plan.w_desc, max_count, &returned, results.data()),
            "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    else
      check(cudnnFindConvolutionBackwardFilterAlgorithm(handle, plan.x_desc, plan.y_desc, plan.backward_filter_desc,
                                                        plan.w_desc, max_count, &returned, results.data()),
            "cudnnFindConvolutionBackwardFilterAlgorithm");
    const auto choice = cuda_detail::pick_algorithm(
        results.data(), returned, search, [&](cudnnConvolutionBwdFilterAlgo_t algo, cudnnMathType_t math) {
          std::size_t bytes = 0;
          const bool ok = cudnnSetConvolutionMathType(plan.backward_filter_desc, math) == CUDNN_STATUS_SUCCESS &&
                          cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, plan.x_desc, plan.y_desc,
                                                                         plan.backward_filter_desc, plan.w_desc,
                                                                         algo, &bytes) == CUDNN_STATUS_SUCCESS;
          return ok ? std::optional<std::size_t>(bytes) : std::nullopt;
        });
    if (!choice) fail(no_algorithm_message("backward filter", g, search));
    chosen.backward_filter = *choice;
  }
  return chosen;
}

inline std::unique_ptr<Conv2dPlan> make_plan(CudaContext& ctx, const Conv2dGeometry& g) {
  using cuda_detail::check;
  ctx.require_not_capturing("making a cuDNN plan for a new convolution input shape");
  auto plan = std::make_unique<Conv2dPlan>();
  plan->geometry = g;
  // cuDNN pads symmetrically by pad_top/pad_left; Keras 'same' may want one
  // more row/column at the bottom/right, which a padded copy supplies.
  plan->extra_h = std::max(0, (g.out_h - 1) * g.stride_h + g.kernel_h - g.in_h - 2 * g.pad_top);
  plan->extra_w = std::max(0, (g.out_w - 1) * g.stride_w + g.kernel_w - g.in_w - 2 * g.pad_left);
  check(cudnnCreateTensorDescriptor(&plan->x_desc), "cudnnCreateTensorDescriptor");
  check(cudnnCreateTensorDescriptor(&plan->y_desc), "cudnnCreateTensorDescriptor");
  check(cudnnCreateFilterDescriptor(&plan->w_desc), "cudnnCreateFilterDescriptor");
  check(cudnnSetTensor4dDescriptor(plan->x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.batch, g.in_channels,
                                   plan->padded_h(), plan->padded_w()),
        "cudnnSetTensor4dDescriptor (conv input)");
  check(cudnnSetFilter4dDescriptor(plan->w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g.out_channels, g.in_channels,
                                   g.kernel_h, g.kernel_w),
        "cudnnSetFilter4dDescriptor");
  const cuda_detail::ConvSearch search = ctx.conv_search();
  for (auto* desc : {&plan->forward_desc, &plan->backward_data_desc, &plan->backward_filter_desc}) {
    check(cudnnCreateConvolutionDescriptor(desc), "cudnnCreateConvolutionDescriptor");
    check(cudnnSetConvolution2dDescriptor(*desc, g.pad_top, g.pad_left, g.stride_h, g.stride_w, 1, 1,
                                          CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
          "cudnnSetConvolution2dDescriptor");
    check(cudnnSetConvolutionMathType(*desc, cuda_detail::search_math(search)), "cudnnSetConvolutionMathType");
  }
  int n = 0, c = 0, h = 0, w = 0;
  check(cudnnGetConvolution2dForwardOutputDim(plan->forward_desc, plan->x_desc, plan->w_desc, &n, &c, &h, &w),
        "cudnnGetConvolution2dForwardOutputDim");
  if (n != g.batch || c != g.out_channels || h != g.out_h || w != g.out_w)
    fail("cuDNN plans a ", n, "x", c, "x", h, "x", w, " convolution output where qrl expects ", g.batch, "x",
         g.out_channels, "x", g.out_h, "x", g.out_w, " (a bug in qrl's padding translation: please report it)");
  check(cudnnSetTensor4dDescriptor(plan->y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w),
        "cudnnSetTensor4dDescriptor (conv output)");

  if (const auto* cached = ctx.conv_algorithms().find(g, search))
    plan->algorithms = *cached;
  else
    plan->algorithms = ctx.conv_algorithms().insert(g, search, choose_algorithms(ctx, *plan, search));
  check(cudnnSetConvolutionMathType(plan->forward_desc, plan->algorithms.forward.math),
        "cudnnSetConvolutionMathType (forward)");
  check(cudnnSetConvolutionMathType(plan->backward_data_desc, plan->algorithms.backward_data.math),
        "cudnnSetConvolutionMathType (backward data)");
  check(cudnnSetConvolutionMathType(plan->backward_filter_desc, plan->algorithms.backward_filter.math),
        "cudnnSetConvolutionMathType (backward filter)");
  plan->workspace_bytes = plan->algorithms.workspace_bytes();
  if (plan->padded()) {
    const auto padded = static_cast<std::size_t>(std::int64_t{g.batch} * g.in_channels * plan->padded_h() *
                                                 plan->padded_w());
    plan->padded_input = make_buffer<float>(padded);
    plan->padded_grad = make_buffer<float>(padded);
  }
  // Reserve the workspace now, outside any graph capture.
  ctx.workspace(plan->workspace_bytes);
  return plan;
}

// Plans are few (one per batch size in use) and found by a linear scan.
inline const Conv2dPlan& plan_for(CudaContext& ctx, Conv2dState& state, const Conv2dGeometry& g) {
  for (const auto& plan : state.plans)
    if (plan->geometry == g) return *plan;
  state.plans.push_back(make_plan(ctx, g));
  return *state.plans.back();
}

}  // namespace qrl::cuda_detail
