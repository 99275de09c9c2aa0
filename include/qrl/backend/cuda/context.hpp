#pragma once
// The CUDA backend's Context (backend_traits<cuda>::Context): one per agent,
// holding the stream everything is enqueued on, the cuBLAS and cuDNN handles
// bound to it, the shared cuDNN workspace, the convolution algorithms chosen
// per geometry, a few device scalars and the device copies of the
// optimizer's parameter tables. Also whether CUDA can run here at all, and
// the options a Context is made with.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <qrl/backend/cuda/check.hpp>
#include <qrl/backend/cuda/conv_algorithms.hpp>
#include <qrl/backend/cuda/device_memory.hpp>
#include <qrl/backend/cuda_launch.hpp>
#include <qrl/core/error.hpp>

namespace qrl {

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

namespace cuda_detail {

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
using StreamHandle = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDestroy>;
using CublasHandle = std::unique_ptr<std::remove_pointer_t<cublasHandle_t>, CublasDestroy>;
using CudnnHandle = std::unique_ptr<std::remove_pointer_t<cudnnHandle_t>, CudnnDestroy>;

// One per agent: the stream everything is enqueued on, the cuBLAS and
// cuDNN handles bound to it, the shared cuDNN workspace, the convolution
// algorithms chosen per geometry, a few device scalars and the device
// copies of the optimizer's parameter tables.
class CudaContext {
 public:
  explicit CudaContext(CudaOptions options = {}) : options_(options) {
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
  ~CudaContext() {
    if (stream_) cudaStreamSynchronize(stream_.get());
  }
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

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
  cuda_detail::GrowingWorkspace<DeviceBytes> workspace_;
  DeviceBuffer<double> scalars_;
  std::vector<std::unique_ptr<ParameterTable>> tables_;
  cuda_detail::ConvAlgorithmCache algorithms_;
  bool recording_ = false;
  std::vector<const void*> recorded_;
  cuda_detail::CublasHandle cublas_;
  cuda_detail::CudnnHandle cudnn_;
};

}  // namespace cuda_detail

}  // namespace qrl
