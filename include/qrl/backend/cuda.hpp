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
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <qrl/backend/backend.hpp>
#include <qrl/backend/cuda_launch.hpp>
#include <qrl/kernels/geometry.hpp>
#include <qrl/kernels/op_args.hpp>
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

// Owners of the runtime's and the libraries' handles, so a Context that
// throws half-built releases what it made.
struct StreamDestroy {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
struct CublasDestroy {
  void operator()(cublasHandle_t h) const noexcept { cublasDestroy(h); }
};
struct CudnnDestroy {
  void operator()(cudnnHandle_t h) const noexcept { cudnnDestroy(h); }
};
struct PinnedFree {
  void operator()(void* p) const noexcept { cudaFreeHost(p); }
};
using StreamHandle = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDestroy>;
using CublasHandle = std::unique_ptr<std::remove_pointer_t<cublasHandle_t>, CublasDestroy>;
using CudnnHandle = std::unique_ptr<std::remove_pointer_t<cudnnHandle_t>, CudnnDestroy>;
template <class T>
using PinnedBuffer = std::unique_ptr<T, PinnedFree>;

template <class T>
PinnedBuffer<T> make_pinned(std::size_t count) {
  void* p = nullptr;
  check(cudaMallocHost(&p, std::max<std::size_t>(count, 1) * sizeof(T)), "cudaMallocHost");
  return PinnedBuffer<T>(static_cast<T*>(p));
}

// Every live device allocation of backend_traits<cuda>::allocate, so a
// captured CUDA graph can tell that a buffer it reads or writes was freed
// (a Tensor resized beyond its capacity, a layer's activations grown by a
// larger batch): watch() ties a flag to the allocations that hold a set of
// pointers (interior pointers included), and freeing one of them sets it.
// Pure host bookkeeping, so it is testable without a device.
class AllocationRegistry {
 public:
  using Flag = std::shared_ptr<std::atomic<bool>>;

  void add(const void* base, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.insert_or_assign(key(base), Entry{bytes, {}});
  }
  // Forgets `base` and sets the flags that watched it.
  void remove(const void* base) noexcept {
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = entries_.find(key(base));
      if (it == entries_.end()) return;
      for (const auto& flag : it->second.watchers) flag->store(true);
      entries_.erase(it);
    } catch (...) {  // std::mutex::lock failing: nothing sensible left to do
    }
  }
  // Ties `flag` to each allocation that holds one of `pointers`; pointers
  // outside every allocation (null, host memory) are skipped. Returns the
  // number of allocations newly watched.
  std::size_t watch(std::span<const void* const> pointers, const Flag& flag) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t watched = 0;
    for (const void* p : pointers) {
      const auto it = find_containing(entries_, key(p));
      if (it == entries_.end()) continue;
      auto& watchers = it->second.watchers;
      if (std::find(watchers.begin(), watchers.end(), flag) != watchers.end()) continue;
      watchers.push_back(flag);
      ++watched;
    }
    return watched;
  }
  void unwatch(const Flag& flag) noexcept {
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [base, entry] : entries_) std::erase(entry.watchers, flag);
    } catch (...) {
    }
  }
  bool contains(const void* p) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return find_containing(entries_, key(p)) != entries_.end();
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

 private:
  struct Entry {
    std::size_t bytes = 0;
    std::vector<Flag> watchers;
  };
  using Map = std::map<std::uintptr_t, Entry>;
  static std::uintptr_t key(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
  template <class M>
  static auto find_containing(M& entries, std::uintptr_t p) -> decltype(entries.begin()) {
    if (p == 0) return entries.end();
    auto it = entries.upper_bound(p);
    if (it == entries.begin()) return entries.end();
    --it;
    return p - it->first < std::max<std::size_t>(it->second.bytes, 1) ? it : entries.end();
  }

  mutable std::mutex mutex_;
  Map entries_;
};

// The process's registry. Never destroyed: device buffers owned by static
// objects may be freed after other statics are gone.
inline AllocationRegistry& allocations() {
  static AllocationRegistry* registry = new AllocationRegistry;
  return *registry;
}

// A flag set once any allocation holding one of `pointers` is freed; stops
// watching when destroyed.
class AllocationWatch {
 public:
  AllocationWatch() = default;
  AllocationWatch(AllocationRegistry& registry, std::span<const void* const> pointers)
      : registry_(&registry), flag_(std::make_shared<std::atomic<bool>>(false)) {
    watched_ = registry.watch(pointers, flag_);
  }
  ~AllocationWatch() {
    if (registry_) registry_->unwatch(flag_);
  }
  AllocationWatch(const AllocationWatch&) = delete;
  AllocationWatch& operator=(const AllocationWatch&) = delete;

  bool freed() const { return flag_ && flag_->load(); }
  std::size_t allocations() const { return watched_; }

 private:
  AllocationRegistry* registry_ = nullptr;
  AllocationRegistry::Flag flag_;
  std::size_t watched_ = 0;
};

// One grow-only scratch block (the cuDNN workspace). Growing allocates the
// new block first, so a failed allocation throws with the old block and its
// size untouched and usable. The old block is retired, not freed: a CUDA
// graph captured earlier may still use it (the stream orders the graph's
// use and the new block's, so both are safe). generation() counts the
// growths. Allocator: static void* allocate(std::size_t) (throws) and
// static void release(void*) noexcept.
template <class Allocator>
class GrowingWorkspace {
 public:
  GrowingWorkspace() = default;
  ~GrowingWorkspace() {
    if (current_) Allocator::release(current_);
    for (void* p : retired_) Allocator::release(p);
  }
  GrowingWorkspace(const GrowingWorkspace&) = delete;
  GrowingWorkspace& operator=(const GrowingWorkspace&) = delete;

  // A block of at least `bytes` (null while nothing was asked for).
  void* get(std::size_t bytes) {
    if (bytes <= bytes_) return current_;
    retired_.reserve(retired_.size() + 1);      // may throw: nothing changed yet
    void* fresh = Allocator::allocate(bytes);  // may throw: nothing changed yet
    if (current_) retired_.push_back(current_);
    current_ = fresh;
    bytes_ = bytes;
    ++generation_;
    return current_;
  }
  void* data() const { return current_; }
  std::size_t bytes() const { return bytes_; }
  std::uint64_t generation() const { return generation_; }
  std::size_t retired_blocks() const { return retired_.size(); }

 private:
  void* current_ = nullptr;
  std::size_t bytes_ = 0;
  std::uint64_t generation_ = 0;
  std::vector<void*> retired_;
};

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
  // cuDNN convolution algorithms: only CUDNN_DETERMINISTIC ones, ranked by
  // cuDNN's heuristics (cudnnGet*_v7, no timing), so every run and every
  // Context on the same GPU and library versions choose the same and compute
  // bit-identical results (seeded runs, tests). false: the fastest by
  // cudnnFind* timings, possibly with atomics, varying from run to run.
  bool deterministic = true;
  // With allow_tf32, also accept CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
  // (FP16 arithmetic inside FP32 convolutions). Off by default.
  bool allow_conversion = false;
  // Largest cuDNN workspace an algorithm may ask for.
  std::size_t max_workspace_bytes = std::size_t{256} << 20;
};

template <>
struct backend_traits<cuda> {
  static constexpr std::string_view name = "cuda";
  // Device memory: the host reaches it through upload/download only.
  static constexpr bool host_memory = false;

  template <class T>
  struct DeviceFree {
    void operator()(T* p) const noexcept { deallocate(p); }
  };
  template <class T>
  using DeviceBuffer = std::unique_ptr<T, DeviceFree<T>>;

  template <class T>
  static DeviceBuffer<T> make_buffer(std::size_t count) {
    return DeviceBuffer<T>(allocate<T>(count));
  }

  // The cuDNN workspace's allocator (device bytes through allocate()).
  struct WorkspaceAllocator {
    static void* allocate(std::size_t bytes) { return backend_traits::allocate<std::uint8_t>(bytes); }
    static void release(void* p) noexcept { deallocate(static_cast<std::uint8_t*>(p)); }
  };

  // One per agent: the stream everything is enqueued on, the cuBLAS and
  // cuDNN handles bound to it, the shared cuDNN workspace, the convolution
  // algorithms chosen per geometry, a few device scalars and the device
  // copies of the optimizer's parameter tables.
  class Context {
   public:
    explicit Context(CudaOptions options = {}) : options_(options) {
      // Each handle is owned as soon as it exists: a throw part-way releases
      // what was made (members are destroyed in reverse order).
      const std::string reason = cuda_unavailable_reason();
      if (!reason.empty()) fail(reason);
      cudaStream_t stream = nullptr;
      cuda_detail::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
      stream_.reset(stream);
      // A workspace of its own keeps cuBLAS from allocating inside a graph capture.
      cublas_workspace_ = make_buffer<std::uint8_t>(cublas_workspace_bytes);
      scalars_ = make_buffer<double>(scalar_count);
      cublasHandle_t cublas = nullptr;
      cuda_detail::check(cublasCreate(&cublas), "cublasCreate");
      cublas_.reset(cublas);
      cuda_detail::check(cublasSetStream(cublas, stream), "cublasSetStream");
      cuda_detail::check(cublasSetWorkspace(cublas, cublas_workspace_.get(), cublas_workspace_bytes),
                         "cublasSetWorkspace");
      cudnnHandle_t cudnn = nullptr;
      cuda_detail::check(cudnnCreate(&cudnn), "cudnnCreate");
      cudnn_.reset(cudnn);
      cuda_detail::check(cudnnSetStream(cudnn, stream), "cudnnSetStream");
      set_tf32(options.allow_tf32);
    }
    // Waits for the stream, then releases the library handles, the buffers
    // and last the stream (reverse member order).
    ~Context() {
      if (stream_) cudaStreamSynchronize(stream_.get());
    }
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    cudaStream_t stream() const { return stream_.get(); }
    cublasHandle_t cublas() const { return cublas_.get(); }
    cudnnHandle_t cudnn() const { return cudnn_.get(); }
    const CudaOptions& options() const { return options_; }

    // Convolution plans made after these calls use the new setting; plans
    // already made keep their algorithms.
    void set_tf32(bool allow) {
      cuda_detail::check(cublasSetMathMode(cublas(), allow ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
                         "cublasSetMathMode");
      options_.allow_tf32 = allow;
    }
    void set_deterministic(bool deterministic) { options_.deterministic = deterministic; }

    cuda_detail::ConvSearch conv_search() const {
      return {options_.allow_tf32, options_.deterministic, options_.allow_conversion, options_.max_workspace_bytes};
    }
    cuda_detail::ConvAlgorithmCache& conv_algorithms() { return algorithms_; }

    // The shared cuDNN workspace, grown (never shrunk) to `bytes`. Plans
    // reserve their size when made, so a running update never grows it. A
    // failed growth throws and leaves the old block in use; a replaced block
    // is kept until the Context goes (a captured graph may use it).
    void* workspace(std::size_t bytes) { return workspace_.get(bytes); }
    std::size_t workspace_bytes() const { return workspace_.bytes(); }
    // Bumped whenever the workspace block changes.
    std::uint64_t workspace_generation() const { return workspace_.generation(); }

    // Device scratch: one double accumulator and a few floats (losses).
    double* accumulator() { return scalars_.get(); }
    float* scalar(int i) { return reinterpret_cast<float*>(scalars_.get() + 1) + i; }

    // A device copy of `rows` (the optimizer kernels' table) with the
    // gradient norm's scratch, uploaded once and found again while the same
    // parameters come back (every step of the same optimizer). The upload is
    // enqueued on the context's stream from pinned host memory that the
    // table keeps and never changes.
    struct ParameterTable {
      std::vector<kernels::DeviceParameter> rows;
      cuda_detail::PinnedBuffer<kernels::DeviceParameter> host;
      DeviceBuffer<kernels::DeviceParameter> device;
      DeviceBuffer<double> partials;  // kernels::grad_norm_partials(rows, max_size) doubles
      std::int64_t max_size = 0;
      int count() const { return static_cast<int>(rows.size()); }
    };
    const ParameterTable& parameter_table(const std::vector<kernels::DeviceParameter>& rows) {
      for (const auto& table : tables_)
        if (table->rows == rows) return *table;
      require_not_capturing("uploading an optimizer parameter table");
      auto table = std::make_unique<ParameterTable>();
      table->rows = rows;
      for (const auto& r : rows) table->max_size = std::max(table->max_size, r.size);
      table->host = cuda_detail::make_pinned<kernels::DeviceParameter>(rows.size());
      std::copy(rows.begin(), rows.end(), table->host.get());
      table->device = make_buffer<kernels::DeviceParameter>(rows.size());
      table->partials = make_buffer<double>(
          static_cast<std::size_t>(kernels::grad_norm_partials(table->count(), table->max_size)));
      tables_.reserve(tables_.size() + 1);  // nothing below throws once the copy is queued
      cuda_detail::check(cudaMemcpyAsync(table->device.get(), table->host.get(), rows.size() * sizeof(rows[0]),
                                         cudaMemcpyHostToDevice, stream()),
                         "cudaMemcpyAsync (parameter table)");
      tables_.push_back(std::move(table));
      return *tables_.back();
    }

    // Whether the stream is being captured into a CUDA graph.
    bool capturing() const {
      cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
      cuda_detail::check(cudaStreamIsCapturing(stream(), &status), "cudaStreamIsCapturing");
      return status != cudaStreamCaptureStatusNone;
    }
    void require_not_capturing(const char* what) const {
      if (capturing())
        fail(what, " inside a CUDA graph capture: run the same work once before capturing (rl::DqnUpdateGraph "
                   "does), so plans, tables and buffers exist, and keep batch size and network unchanged");
    }

    // While recording, every operation notes the device pointers it hands
    // to a kernel or library call; rl::DqnUpdateGraph records its capture
    // and watches those buffers (cuda_detail::AllocationWatch).
    void begin_recording() {
      recorded_.clear();
      recording_ = true;
    }
    std::vector<const void*> end_recording() {
      recording_ = false;
      return std::exchange(recorded_, {});
    }
    void note(std::initializer_list<const void*> pointers) {
      if (recording_) recorded_.insert(recorded_.end(), pointers.begin(), pointers.end());
    }

   private:
    static constexpr std::size_t cublas_workspace_bytes = std::size_t{32} << 20;
    static constexpr int scalar_count = 8;

    CudaOptions options_;
    // Declaration order is teardown order reversed: the stream goes last,
    // the library handles first, the buffers in between.
    cuda_detail::StreamHandle stream_;
    DeviceBuffer<std::uint8_t> cublas_workspace_;
    cuda_detail::GrowingWorkspace<WorkspaceAllocator> workspace_;
    DeviceBuffer<double> scalars_;
    std::vector<std::unique_ptr<ParameterTable>> tables_;
    cuda_detail::ConvAlgorithmCache algorithms_;
    bool recording_ = false;
    std::vector<const void*> recorded_;
    cuda_detail::CublasHandle cublas_;
    cuda_detail::CudnnHandle cudnn_;
  };

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
    if (count == 0) count = 1;
    if (count > std::numeric_limits<std::size_t>::max() / sizeof(T))
      fail("cudaMalloc of ", count, " elements of ", sizeof(T), " bytes: the size overflows");
    const std::size_t bytes = count * sizeof(T);
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      fail("cudaMalloc of ", bytes, " bytes failed: ", cudaGetErrorString(status),
           " (reduce the replay capacity or batch size, or free GPU memory)");
    }
    try {
      cuda_detail::allocations().add(p, bytes);
    } catch (...) {
      cudaFree(p);
      throw;
    }
    return static_cast<T*>(p);
  }
  template <class T>
  static void deallocate(T* p) noexcept {
    if (!p) return;
    cuda_detail::allocations().remove(p);
    cudaFree(const_cast<std::remove_const_t<T>*>(p));
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
    const Conv2dPlan& plan = plan_for(ctx, state, g);
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
    const Conv2dPlan& plan = plan_for(ctx, state, g);
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

  // Plans are few (one per batch size in use) and found by a linear scan.
  static const Conv2dPlan& plan_for(Context& ctx, Conv2dState& state, const Conv2dGeometry& g) {
    for (const auto& plan : state.plans)
      if (plan->geometry == g) return *plan;
    state.plans.push_back(make_plan(ctx, g));
    return *state.plans.back();
  }

  static std::unique_ptr<Conv2dPlan> make_plan(Context& ctx, const Conv2dGeometry& g) {
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

  // cuDNN's ranked candidates for each pass: heuristics (no timing) when
  // deterministic, else measured with cudnnFind*. The plan's descriptors
  // carry search_math(search) on entry; the winner's math type is set by
  // the caller.
  static cuda_detail::ConvAlgorithms choose_algorithms(Context& ctx, const Conv2dPlan& plan,
                                                       const cuda_detail::ConvSearch& search) {
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

  static std::string no_algorithm_message(const char* pass, const Conv2dGeometry& g,
                                          const cuda_detail::ConvSearch& search) {
    return detail::concat("cuDNN found no ", search.deterministic ? "deterministic " : "", pass,
                          " convolution algorithm for input ", g.batch, "x", g.in_channels, "x", g.in_h, "x", g.in_w,
                          " and kernel ", g.out_channels, "x", g.kernel_h, "x", g.kernel_w, " within a ",
                          search.max_workspace_bytes >> 20, " MiB workspace",
                          search.allow_tf32 ? "" : " in FP32 (FMA) math",
                          " (raise CudaOptions::max_workspace_bytes",
                          search.deterministic ? ", or set CudaOptions::deterministic = false" : "", ")");
  }
};

}  // namespace qrl
