#pragma once
// Which cuDNN convolution algorithms a plan may use, and the per-Context
// cache of the choices. A choice depends on the search settings (TF32,
// determinism, workspace cap) as well as the geometry: in the default FP32
// deterministic mode every run on the same GPU and library versions picks
// the same algorithms, so seeded runs compute bit-identical results. Pure
// selection logic over cuDNN's ranked results, testable without a device.
#include <cudnn.h>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <vector>

#include <qrl/kernels/geometry.hpp>

namespace qrl::cuda_detail {

// What a convolution's algorithms may be: the Context's settings when the
// plan is made.
struct ConvSearch {
  bool allow_tf32 = false;
  bool deterministic = true;
  bool allow_conversion = false;  // CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION (with allow_tf32 only)
  std::size_t max_workspace_bytes = std::size_t{256} << 20;
  friend bool operator==(const ConvSearch&, const ConvSearch&) = default;
};

// The math type a pass's descriptor has while cuDNN searches: FMA keeps
// FP32 results FP32 (cuDNN's default math may use TF32 on Ampere and later);
// with TF32, default math (tensor-op candidates included), or FP16
// down-conversion when that was asked for as well.
inline cudnnMathType_t search_math(const ConvSearch& s) {
  if (!s.allow_tf32) return CUDNN_FMA_MATH;
  return s.allow_conversion ? CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION : CUDNN_DEFAULT_MATH;
}

// Whether a result's math type is acceptable: FMA always; default math
// always (it runs as FMA unless TF32 is allowed, see execution_math);
// tensor-op math only with TF32; FP16 down-conversion only when asked for
// explicitly on top of TF32.
inline bool acceptable_math(cudnnMathType_t math, const ConvSearch& s) {
  switch (math) {
    case CUDNN_FMA_MATH:
    case CUDNN_DEFAULT_MATH: return true;
    case CUDNN_TENSOR_OP_MATH: return s.allow_tf32;
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return s.allow_tf32 && s.allow_conversion;
  }
  return false;
}

// The math type the pass's descriptor gets for the chosen algorithm.
inline cudnnMathType_t execution_math(cudnnMathType_t found, const ConvSearch& s) {
  return s.allow_tf32 ? found : CUDNN_FMA_MATH;
}

template <class Algo>
struct ConvChoice {
  Algo algo{};
  cudnnMathType_t math = CUDNN_FMA_MATH;
  std::size_t workspace_bytes = 0;  // cudnnGet*WorkspaceSize for (algo, math)
};

// The first of cuDNN's ranked results (cudnnFind*: by measured time;
// cudnnGet*_v7: by its heuristics) that succeeded, is deterministic when
// asked, has an acceptable math type and whose workspace, asked of cuDNN
// for that algorithm and math type by workspace_for(algo, math) (an empty
// optional when cuDNN refuses the pair), fits the cap.
template <class Perf, class WorkspaceFor>
auto pick_algorithm(const Perf* results, int count, const ConvSearch& s, WorkspaceFor&& workspace_for)
    -> std::optional<ConvChoice<decltype(Perf{}.algo)>> {
  for (int i = 0; i < count; ++i) {
    const Perf& r = results[i];
    if (r.status != CUDNN_STATUS_SUCCESS) continue;
    if (s.deterministic && r.determinism != CUDNN_DETERMINISTIC) continue;
    if (!acceptable_math(r.mathType, s)) continue;
    const cudnnMathType_t math = execution_math(r.mathType, s);
    const std::optional<std::size_t> bytes = workspace_for(r.algo, math);
    if (!bytes || *bytes > s.max_workspace_bytes) continue;
    return ConvChoice<decltype(Perf{}.algo)>{r.algo, math, *bytes};
  }
  return std::nullopt;
}

// The three passes' algorithms for one convolution geometry.
struct ConvAlgorithms {
  ConvChoice<cudnnConvolutionFwdAlgo_t> forward;
  ConvChoice<cudnnConvolutionBwdDataAlgo_t> backward_data;
  ConvChoice<cudnnConvolutionBwdFilterAlgo_t> backward_filter;
  std::size_t workspace_bytes() const {
    return std::max({forward.workspace_bytes, backward_data.workspace_bytes, backward_filter.workspace_bytes});
  }
};

// Choices by (geometry, search settings), per Context: every layer of the
// same geometry (the online and the target network's) gets the same
// algorithms, and cuDNN is searched once per geometry.
class ConvAlgorithmCache {
 public:
  const ConvAlgorithms* find(const Conv2dGeometry& g, const ConvSearch& s) const {
    for (const auto& e : entries_)
      if (e.geometry == g && e.search == s) return &e.algorithms;
    return nullptr;
  }
  const ConvAlgorithms& insert(const Conv2dGeometry& g, const ConvSearch& s, const ConvAlgorithms& algorithms) {
    entries_.push_back({g, s, algorithms});
    return entries_.back().algorithms;
  }
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Conv2dGeometry geometry;
    ConvSearch search;
    ConvAlgorithms algorithms;
  };
  std::vector<Entry> entries_;
};

}  // namespace qrl::cuda_detail
