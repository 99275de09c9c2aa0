// The optimizer step over every parameter tensor of a network in one launch
// each: global gradient norm (clip_grad_norm_'s scale) and fused Adam. The
// tensors come as rows of a device table; grid.y walks the rows, grid.x
// strides through a row's elements.
#include <qrl/backend/cuda_launch.hpp>

#include "launch_config.cuh"

namespace qrl::kernels {
namespace {

unsigned row_blocks(std::int64_t max_size) {
  const std::int64_t blocks = (max_size + threads_per_block - 1) / threads_per_block;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 256 ? 256 : blocks));
}

__global__ void squared_norm_kernel(const DeviceParameter* table, double* accumulator) {
  const DeviceParameter p = table[blockIdx.y];
  double sum = 0.0;
  for (std::int64_t i = global_index(); i < p.size; i += grid_stride()) sum += double(p.grad[i]) * p.grad[i];
  sum = block_sum(sum);
  if (threadIdx.x == 0 && sum != 0.0) atomicAdd(accumulator, sum);
}

__global__ void finish_norm_kernel(const double* accumulator, float max_norm, float* norm_out, float* scale_out) {
  const float norm = static_cast<float>(sqrt(*accumulator));
  *norm_out = norm;
  *scale_out = (max_norm > 0.0f && norm > max_norm) ? max_norm / (norm + 1e-6f) : 1.0f;
}

__global__ void adam_kernel(const DeviceParameter* table, AdamUpdate update, const float* grad_scale) {
  const DeviceParameter p = table[blockIdx.y];
  const float scale = grad_scale ? *grad_scale : 1.0f;
  for (std::int64_t i = global_index(); i < p.size; i += grid_stride())
    update(p.value[i], p.grad[i], p.first_moment[i], p.second_moment[i], scale);
}

}  // namespace

void launch_grad_norm(const DeviceParameter* table, int count, std::int64_t max_size, double* accumulator,
                      float max_norm, float* norm_out, float* scale_out, cudaStream_t stream) {
  if (cudaMemsetAsync(accumulator, 0, sizeof(double), stream) != cudaSuccess) return;  // reported by check_launch
  squared_norm_kernel<<<dim3(row_blocks(max_size), static_cast<unsigned>(count)), threads_per_block, 0, stream>>>(
      table, accumulator);
  finish_norm_kernel<<<1, 1, 0, stream>>>(accumulator, max_norm, norm_out, scale_out);
}

void launch_adam_update(const DeviceParameter* table, int count, std::int64_t max_size, AdamUpdate update,
                        const float* grad_scale, cudaStream_t stream) {
  adam_kernel<<<dim3(row_blocks(max_size), static_cast<unsigned>(count)), threads_per_block, 0, stream>>>(
      table, update, grad_scale);
}

const void* adam_kernel_entry() { return reinterpret_cast<const void*>(&adam_kernel); }

}  // namespace qrl::kernels
