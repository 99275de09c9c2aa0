#pragma once
// Error checking for the CUDA backend: every runtime, cuBLAS and cuDNN call
// goes through check(), which turns a failure into a qrl::Error naming the
// call and the library's own message, so a failed call is never ignored and
// never reported without saying which one it was.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <qrl/core/error.hpp>

namespace qrl::cuda_detail {

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

}  // namespace qrl::cuda_detail
