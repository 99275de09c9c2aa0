// Kernels on the acting and replay side: batched frame preprocessing,
// epsilon-greedy action selection and replay sampling. Random draws come from
// CounterRng (qrl/kernels/random.cuh): a pure function of (seed, counter,
// index), so the CPU computes the same draws for the parity tests.
#include <qrl/backend/cuda_launch.hpp>

#include "launch_config.cuh"

namespace qrl::kernels {
namespace {

// grid.y is the frame; one thread per output pixel.
__global__ void preprocess_kernel(PreprocessFunctor base, std::size_t src_frame_stride, std::uint8_t* dst) {
  PreprocessFunctor f = base;
  f.src = base.src + blockIdx.y * src_frame_stride;
  const int width = f.out_width();
  const std::int64_t pixels = std::int64_t{f.out_height()} * width;
  std::uint8_t* out = dst + blockIdx.y * pixels;
  for (std::int64_t p = global_index(); p < pixels; p += grid_stride())
    out[p] = f(static_cast<int>(p / width), static_cast<int>(p % width));
}

__global__ void epsilon_greedy_kernel(const float* q, int batch, int actions, EpsilonGreedy policy,
                                      std::int32_t* out) {
  for (std::int64_t e = global_index(); e < batch; e += grid_stride())
    out[e] = policy(q + e * actions, actions, static_cast<int>(e));
}

}  // namespace

void launch_preprocess(PreprocessFunctor base, std::size_t src_frame_stride, int frames, std::uint8_t* dst,
                       cudaStream_t stream) {
  if (frames <= 0) return;
  const std::int64_t pixels = std::int64_t{base.out_height()} * base.out_width();
  preprocess_kernel<<<dim3(blocks_for(pixels), static_cast<unsigned>(frames)), threads_per_block, 0, stream>>>(
      base, src_frame_stride, dst);
}

void launch_epsilon_greedy(const float* q, int batch, int actions, EpsilonGreedy policy, std::int32_t* out,
                           cudaStream_t stream) {
  epsilon_greedy_kernel<<<blocks_for(batch), threads_per_block, 0, stream>>>(q, batch, actions, policy, out);
}

}  // namespace qrl::kernels
