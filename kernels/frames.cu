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

__device__ bool replay_valid(const ReplayDeviceView& r, std::int64_t slot, std::int64_t age_rank) {
  const ReplaySlot meta = r.slots[slot];
  if (!(meta.flags & 1u)) return false;
  const std::int64_t reach = min(static_cast<std::int64_t>(meta.history), static_cast<std::int64_t>(r.stack - 1));
  return age_rank >= reach;
}

// Stacked state of `slot` as ReplayMemory::gather_state builds it: earlier
// frames of the same episode, the first one repeated at an episode start.
__device__ void replay_gather(const ReplayDeviceView& r, std::int64_t slot, std::uint8_t* out) {
  const int reach = min(static_cast<int>(r.slots[slot].history), r.stack - 1);
  const std::int64_t bytes = r.frame_bytes * r.stack;
  for (std::int64_t j = threadIdx.x; j < bytes; j += blockDim.x) {
    const int c = static_cast<int>(j / r.frame_bytes);
    const int back = min(r.stack - 1 - c, reach);
    const std::int64_t source = (slot - back + r.capacity) % r.capacity;
    out[j] = r.frames[source * r.frame_bytes + j % r.frame_bytes];
  }
}

// One block per sampled transition: thread 0 draws (rejecting slots whose
// stack the ring has overwritten), the block copies the two stacked states.
__global__ void replay_sample_kernel(ReplayDeviceView r, CounterRng rng, std::uint8_t* states,
                                     std::uint8_t* next_states, std::int32_t* actions, float* rewards,
                                     float* terminated) {
  __shared__ std::int64_t chosen;
  const std::uint64_t i = blockIdx.x;
  if (threadIdx.x == 0) {
    std::int64_t slot = -1;
    // Valid slots are nearly all of them; after 64 misses a deterministic
    // scan from the last draw ends the search (a vanishing bias).
    std::int64_t k = 0;
    for (std::uint64_t attempt = 0; attempt < 64 && slot < 0; ++attempt) {
      k = rng.bounded((attempt << 32) | i, static_cast<std::uint32_t>(r.count));
      const std::int64_t s = (r.oldest + k) % r.capacity;
      if (replay_valid(r, s, k)) slot = s;
    }
    for (std::int64_t step = 0; slot < 0 && step < r.count; ++step) {
      const std::int64_t kk = (k + step) % r.count;
      const std::int64_t s = (r.oldest + kk) % r.capacity;
      if (replay_valid(r, s, kk)) slot = s;
    }
    chosen = slot < 0 ? r.oldest : slot;  // the host checked that a valid slot exists
    const ReplaySlot meta = r.slots[chosen];
    actions[i] = meta.action;
    rewards[i] = meta.reward;
    terminated[i] = (meta.flags & 2u) ? 1.0f : 0.0f;
  }
  __syncthreads();
  const std::int64_t bytes = r.frame_bytes * r.stack;
  replay_gather(r, chosen, states + i * bytes);
  replay_gather(r, chosen + 1 == r.capacity ? 0 : chosen + 1, next_states + i * bytes);
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

void launch_replay_sample(const ReplayDeviceView& replay, int batch, CounterRng rng, std::uint8_t* states,
                          std::uint8_t* next_states, std::int32_t* actions, float* rewards, float* terminated,
                          cudaStream_t stream) {
  if (batch <= 0) return;
  replay_sample_kernel<<<static_cast<unsigned>(batch), threads_per_block, 0, stream>>>(
      replay, rng, states, next_states, actions, rewards, terminated);
}

}  // namespace qrl::kernels
