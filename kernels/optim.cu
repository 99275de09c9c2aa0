// The optimizer step over every parameter tensor of a network in one launch
// each: global gradient norm (clip_grad_norm_'s scale) and fused Adam. The
// tensors come as rows of a device table; grid.y walks the rows, grid.x
// strides through a row's elements.
//
// Both are run-to-run deterministic: the norm's block sums go to fixed slots
// and one block adds them in a fixed order (no atomics), and Adam is
// element-wise.
#include <qrl/backend/cuda_launch.hpp>

#include "launch_config.cuh"

namespace qrl::kernels {
namespace {

unsigned row_blocks(std::int64_t max_size) {
  const std::int64_t blocks = (max_size + threads_per_block - 1) / threads_per_block;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 256 ? 256 : blocks));
}

// partials[row * gridDim.x + block] = this block's part of the row's sum of squares.
__global__ void squared_norm_kernel(const DeviceParameter* table, double* partials) {
  const DeviceParameter p = table[blockIdx.y];
  double sum = 0.0;
  for (std::int64_t i = global_index(); i < p.size; i += grid_stride()) sum += double(p.grad[i]) * p.grad[i];
  sum = block_sum(sum);
  if (threadIdx.x == 0) partials[std::int64_t{blockIdx.y} * gridDim.x + blockIdx.x] = sum;
}

// One block: the partial sums in a fixed order.
__global__ void finish_norm_kernel(const double* partials, std::int64_t count, float max_norm, float* norm_out,
                                   float* scale_out) {
  double sum = 0.0;
  for (std::int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  sum = block_sum(sum);
  if (threadIdx.x == 0) {
    const float norm = static_cast<float>(sqrt(sum));
    *norm_out = norm;
    *scale_out = (max_norm > 0.0f && norm > max_norm) ? max_norm / (norm + 1e-6f) : 1.0f;
  }
}

__device__ void adam_rows(const DeviceParameter* table, const AdamUpdate& update, const float* grad_scale) {
  const DeviceParameter p = table[blockIdx.y];
  const float scale = grad_scale ? *grad_scale : 1.0f;
  for (std::int64_t i = global_index(); i < p.size; i += grid_stride())
    update(p.value[i], p.grad[i], p.first_moment[i], p.second_moment[i], scale);
}

// The step's bias corrections as a kernel argument (host-computed).
__global__ void adam_kernel(const DeviceParameter* table, AdamUpdate update, const float* grad_scale) {
  adam_rows(table, update, grad_scale);
}

// The step's bias corrections from device memory, written by
// adam_prepare_kernel in the same stream just before.
__global__ void adam_counted_kernel(const DeviceParameter* table, const AdamUpdate* update, const float* grad_scale) {
  const AdamUpdate u = *update;
  adam_rows(table, u, grad_scale);
}

// One thread: advance the device step count and derive the step's update
// with the host's formula (AdamHyperparameters::for_step).
__global__ void adam_prepare_kernel(AdamHyperparameters hyper, std::int64_t* step, AdamUpdate* update) {
  const std::int64_t t = *step + 1;
  *step = t;
  *update = hyper.for_step(t);
}

__global__ void adam_set_step_kernel(std::int64_t* step, std::int64_t value) { *step = value; }

}  // namespace

std::int64_t grad_norm_partials(int count, std::int64_t max_size) {
  return std::int64_t{row_blocks(max_size)} * (count < 1 ? 1 : count);
}

void launch_grad_norm(const DeviceParameter* table, int count, std::int64_t max_size, double* partials,
                      float max_norm, float* norm_out, float* scale_out, cudaStream_t stream) {
  const unsigned blocks = row_blocks(max_size);
  squared_norm_kernel<<<dim3(blocks, static_cast<unsigned>(count)), threads_per_block, 0, stream>>>(table, partials);
  finish_norm_kernel<<<1, threads_per_block, 0, stream>>>(partials, std::int64_t{blocks} * count, max_norm, norm_out,
                                                          scale_out);
}

void launch_adam_update(const DeviceParameter* table, int count, std::int64_t max_size, AdamUpdate update,
                        const float* grad_scale, cudaStream_t stream) {
  adam_kernel<<<dim3(row_blocks(max_size), static_cast<unsigned>(count)), threads_per_block, 0, stream>>>(
      table, update, grad_scale);
}

void launch_adam_update_counted(const DeviceParameter* table, int count, std::int64_t max_size,
                                AdamHyperparameters hyper, std::int64_t* step, AdamUpdate* update,
                                const float* grad_scale, cudaStream_t stream) {
  adam_prepare_kernel<<<1, 1, 0, stream>>>(hyper, step, update);
  if (count <= 0) return;
  adam_counted_kernel<<<dim3(row_blocks(max_size), static_cast<unsigned>(count)), threads_per_block, 0, stream>>>(
      table, update, grad_scale);
}

void launch_adam_set_step(std::int64_t* step, std::int64_t value, cudaStream_t stream) {
  adam_set_step_kernel<<<1, 1, 0, stream>>>(step, value);
}

}  // namespace qrl::kernels
