#pragma once
// Launch geometry and block reductions shared by kernels/*.cu (device code,
// nvcc only).
#include <cstdint>

namespace qrl::kernels {

constexpr int threads_per_block = 256;
// Grid-stride loops cover any size; more blocks than this only add launch
// cost for the sizes a DQN has.
constexpr std::int64_t max_blocks = 4096;

inline unsigned blocks_for(std::int64_t n) {
  const std::int64_t blocks = (n + threads_per_block - 1) / threads_per_block;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks));
}

__device__ inline std::int64_t global_index() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline std::int64_t grid_stride() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }

// Sum over the block (blockDim.x a multiple of 32, at most 1024); the result
// is valid in thread 0. The order is fixed, so sums are run-to-run identical.
template <class T>
__device__ T block_sum(T value) {
  __shared__ T warp_sums[32];
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  const int warps = (blockDim.x + 31) / 32;
  value = threadIdx.x < warps ? warp_sums[threadIdx.x] : T(0);
  if (warp == 0)
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  __syncthreads();  // warp_sums may be reused by a second block_sum
  return value;
}

}  // namespace qrl::kernels
