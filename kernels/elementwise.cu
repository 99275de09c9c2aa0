// Element-wise kernels of the CUDA backend: each __global__ function applies a
// functor from include/qrl/kernels (the CPU backend's own code) per element.
// Built by nvcc into qrl::cuda; tests/test_*.cpp compare every launcher with
// backend_traits<cpu> (ctest -L cuda, needs a GPU).
#include <qrl/backend/cuda_launch.hpp>

#include "launch_config.cuh"

namespace qrl::kernels {
namespace {

__global__ void probe_kernel() {}

__global__ void fill_kernel(float* data, std::int64_t n, float value) {
  for (std::int64_t i = global_index(); i < n; i += grid_stride()) data[i] = value;
}

__global__ void relu_forward_kernel(const float* x, float* y, std::int64_t n) {
  const ReluForward f;
  for (std::int64_t i = global_index(); i < n; i += grid_stride()) y[i] = f(x[i]);
}

__global__ void relu_backward_kernel(const float* y, const float* grad_y, float* grad_x, std::int64_t n) {
  const ReluBackward f;
  for (std::int64_t i = global_index(); i < n; i += grid_stride()) grad_x[i] = f(y[i], grad_y[i]);
}

__global__ void u8_to_float_kernel(const std::uint8_t* src, float* dst, std::int64_t n, ByteToUnitFloat f) {
  for (std::int64_t i = global_index(); i < n; i += grid_stride()) dst[i] = f(src[i]);
}

// One thread per row: DQN rows are a handful of actions.
__global__ void argmax_rows_kernel(const float* x, int rows, int cols, std::int32_t* out) {
  for (std::int64_t r = global_index(); r < rows; r += grid_stride()) {
    out[r] = ArgmaxRow{}(x + r * cols, cols);
  }
}

__global__ void polyak_average_kernel(const float* online, float* target, std::int64_t n, PolyakAverage f) {
  for (std::int64_t i = global_index(); i < n; i += grid_stride()) target[i] = f(online[i], target[i]);
}

__global__ void bias_add_kernel(float* y, const float* bias, std::int64_t total, int channels, std::int64_t inner) {
  for (std::int64_t i = global_index(); i < total; i += grid_stride()) y[i] += bias[(i / inner) % channels];
}

// One block per channel; fixed summation order, so the result is the same
// on every run.
__global__ void bias_grad_kernel(const float* grad_y, float* grad_bias, std::int64_t outer, int channels,
                                 std::int64_t inner) {
  const int c = blockIdx.x;
  float sum = 0.0f;
  const std::int64_t per_channel = outer * inner;
  for (std::int64_t j = threadIdx.x; j < per_channel; j += blockDim.x) {
    const std::int64_t o = j / inner, i = j % inner;
    sum += grad_y[(o * channels + c) * inner + i];
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) grad_bias[c] = sum;
}

__global__ void pad_planes_kernel(const float* src, float* dst, std::int64_t planes, int h, int w, int dst_h,
                                  int dst_w) {
  const std::int64_t total = planes * dst_h * dst_w;
  for (std::int64_t i = global_index(); i < total; i += grid_stride()) {
    const int x = static_cast<int>(i % dst_w);
    const int y = static_cast<int>(i / dst_w % dst_h);
    const std::int64_t p = i / (std::int64_t{dst_w} * dst_h);
    dst[i] = (y < h && x < w) ? src[(p * h + y) * w + x] : 0.0f;
  }
}

__global__ void crop_planes_kernel(const float* src, float* dst, std::int64_t planes, int src_h, int src_w, int h,
                                   int w) {
  const std::int64_t total = planes * h * w;
  for (std::int64_t i = global_index(); i < total; i += grid_stride()) {
    const int x = static_cast<int>(i % w);
    const int y = static_cast<int>(i / w % h);
    const std::int64_t p = i / (std::int64_t{w} * h);
    dst[i] = src[(p * src_h + y) * src_w + x];
  }
}

}  // namespace

cudaError_t probe_kernel_image() {
  probe_kernel<<<1, 1>>>();
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) return status;
  return cudaDeviceSynchronize();
}

void launch_fill(float* data, std::int64_t n, float value, cudaStream_t stream) {
  fill_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(data, n, value);
}
void launch_relu_forward(const float* x, float* y, std::int64_t n, cudaStream_t stream) {
  relu_forward_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(x, y, n);
}
void launch_relu_backward(const float* y, const float* grad_y, float* grad_x, std::int64_t n, cudaStream_t stream) {
  relu_backward_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(y, grad_y, grad_x, n);
}
void launch_u8_to_float(const std::uint8_t* src, float* dst, std::int64_t n, ByteToUnitFloat convert,
                        cudaStream_t stream) {
  u8_to_float_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(src, dst, n, convert);
}
void launch_argmax_rows(const float* x, int rows, int cols, std::int32_t* out, cudaStream_t stream) {
  argmax_rows_kernel<<<blocks_for(rows), threads_per_block, 0, stream>>>(x, rows, cols, out);
}
void launch_polyak_average(const float* online, float* target, std::int64_t n, PolyakAverage f,
                           cudaStream_t stream) {
  if (n == 0) return;
  polyak_average_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(online, target, n, f);
}
void launch_bias_add(float* y, const float* bias, std::int64_t outer, int channels, std::int64_t inner,
                     cudaStream_t stream) {
  const std::int64_t total = outer * channels * inner;
  if (total == 0) return;
  bias_add_kernel<<<blocks_for(total), threads_per_block, 0, stream>>>(y, bias, total, channels, inner);
}
void launch_bias_grad(const float* grad_y, float* grad_bias, std::int64_t outer, int channels, std::int64_t inner,
                      cudaStream_t stream) {
  if (channels == 0) return;
  bias_grad_kernel<<<channels, threads_per_block, 0, stream>>>(grad_y, grad_bias, outer, channels, inner);
}
void launch_pad_planes(const float* src, float* dst, std::int64_t planes, int h, int w, int dst_h, int dst_w,
                       cudaStream_t stream) {
  const std::int64_t total = planes * dst_h * dst_w;
  if (total == 0) return;
  pad_planes_kernel<<<blocks_for(total), threads_per_block, 0, stream>>>(src, dst, planes, h, w, dst_h, dst_w);
}
void launch_crop_planes(const float* src, float* dst, std::int64_t planes, int src_h, int src_w, int h, int w,
                        cudaStream_t stream) {
  const std::int64_t total = planes * h * w;
  if (total == 0) return;
  crop_planes_kernel<<<blocks_for(total), threads_per_block, 0, stream>>>(src, dst, planes, src_h, src_w, h, w);
}

}  // namespace qrl::kernels
