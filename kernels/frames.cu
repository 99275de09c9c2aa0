// Kernels on the acting and replay side: batched frame preprocessing,
// epsilon-greedy action selection and the replay batch gather. Random draws come from
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

// One block per (row, state or next state, channel): the frame the
// functor names is copied 16 bytes a thread when both ends allow it.
__global__ void replay_gather_kernel(ReplayGather g) {
  const int i = static_cast<int>(blockIdx.x);
  const bool next = blockIdx.y >= static_cast<unsigned>(g.a.stack);
  const int c = static_cast<int>(blockIdx.y) - (next ? g.a.stack : 0);
  const NStepEnd e = g.states_only() ? NStepEnd{} : g.end(i);
  if (!next && c == 0 && threadIdx.x == 0) g.write_scalars(i, e);
  const std::uint8_t* src = g.source(i, next, e, c);
  std::uint8_t* dst = g.destination(i, next, c);
  const std::int64_t bytes = g.a.frame_bytes;
  if (((reinterpret_cast<std::uintptr_t>(src) | reinterpret_cast<std::uintptr_t>(dst) |
        static_cast<std::uintptr_t>(bytes)) & 15u) == 0) {
    const auto* s4 = reinterpret_cast<const uint4*>(src);
    auto* d4 = reinterpret_cast<uint4*>(dst);
    for (std::int64_t k = threadIdx.x; k < bytes / 16; k += blockDim.x) d4[k] = s4[k];
  } else {
    for (std::int64_t k = threadIdx.x; k < bytes; k += blockDim.x) dst[k] = src[k];
  }
}

}  // namespace

void launch_replay_gather(const ReplayGatherArgs& args, cudaStream_t stream) {
  if (args.batch <= 0) return;
  const ReplayGather gather{args};
  const dim3 grid(static_cast<unsigned>(args.batch), static_cast<unsigned>(gather.states_per_row() * args.stack));
  replay_gather_kernel<<<grid, threads_per_block, 0, stream>>>(gather);
}

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
