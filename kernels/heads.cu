// Kernels of the Q-network heads (qrl/kernels/heads.cuh): noisy weights and
// the dueling combination, each a loop over the functor the CPU backend runs.
#include <qrl/backend/cuda_launch.hpp>

#include "launch_config.cuh"

namespace qrl::kernels {
namespace {

__global__ void noisy_compose_kernel(const float* mu, const float* sigma, const float* f_rows, const float* f_cols,
                                     float* out, std::int64_t rows, std::int64_t cols) {
  const NoisyCompose f;
  for (std::int64_t i = global_index(); i < rows * cols; i += grid_stride())
    out[i] = f(mu[i], sigma[i], f_rows[i / cols], f_cols[i % cols]);
}

__global__ void noisy_scale_kernel(const float* grad, const float* f_rows, const float* f_cols, float* out,
                                   std::int64_t rows, std::int64_t cols) {
  const NoisyScale f;
  for (std::int64_t i = global_index(); i < rows * cols; i += grid_stride())
    out[i] = f(grad[i], f_rows[i / cols], f_cols[i % cols]);
}

__global__ void dueling_forward_kernel(DuelingCombine f, const float* value, const float* advantage, float* out,
                                       std::int64_t batch) {
  for (std::int64_t i = global_index(); i < batch * f.atoms; i += grid_stride())
    f(value, advantage, out, i / f.atoms, static_cast<int>(i % f.atoms));
}

__global__ void dueling_backward_kernel(DuelingCombineBackward f, const float* grad_out, float* grad_value,
                                        float* grad_advantage, std::int64_t batch) {
  for (std::int64_t i = global_index(); i < batch * f.atoms; i += grid_stride())
    f(grad_out, grad_value, grad_advantage, i / f.atoms, static_cast<int>(i % f.atoms));
}

__global__ void add_into_kernel(const float* src, float* dst, std::int64_t n) {
  for (std::int64_t i = global_index(); i < n; i += grid_stride()) dst[i] += src[i];
}

}  // namespace

void launch_noisy_compose(const float* mu, const float* sigma, const float* f_rows, const float* f_cols, float* out,
                          std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  if (rows * cols == 0) return;
  noisy_compose_kernel<<<blocks_for(rows * cols), threads_per_block, 0, stream>>>(mu, sigma, f_rows, f_cols, out,
                                                                                   rows, cols);
}
void launch_noisy_scale(const float* grad, const float* f_rows, const float* f_cols, float* out, std::int64_t rows,
                        std::int64_t cols, cudaStream_t stream) {
  if (rows * cols == 0) return;
  noisy_scale_kernel<<<blocks_for(rows * cols), threads_per_block, 0, stream>>>(grad, f_rows, f_cols, out, rows,
                                                                                 cols);
}
void launch_dueling_forward(DuelingCombine f, const float* value, const float* advantage, float* out,
                            std::int64_t batch, cudaStream_t stream) {
  if (batch * f.atoms == 0) return;
  dueling_forward_kernel<<<blocks_for(batch * f.atoms), threads_per_block, 0, stream>>>(f, value, advantage, out,
                                                                                         batch);
}
void launch_dueling_backward(DuelingCombineBackward f, const float* grad_out, float* grad_value,
                             float* grad_advantage, std::int64_t batch, cudaStream_t stream) {
  if (batch * f.atoms == 0) return;
  dueling_backward_kernel<<<blocks_for(batch * f.atoms), threads_per_block, 0, stream>>>(f, grad_out, grad_value,
                                                                                          grad_advantage, batch);
}
void launch_add_into(const float* src, float* dst, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_into_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(src, dst, n);
}

}  // namespace qrl::kernels
