#pragma once
// The backend side of the replay memory: the frames and the backend's copy
// of the slot records, in the backend's memory (host memory on the CPU,
// device memory on CUDA), and the one backend operation that turns drawn
// rows into a batch there (replay_gather, whose body is
// kernels::ReplayGather: the n-step window and the stacked-state gather of
// each row; the CPU runs it in a loop, CUDA in a kernel). What to store
// where, and which rows to draw, is ReplayMemory's and ReplayRings'; this
// part only moves bytes, so a batch never passes through the host.
#include <cstdint>
#include <span>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/env/env.hpp>
#include <qrl/kernels/replay.cuh>
#include <qrl/tensor.hpp>

namespace qrl::rl {

// A sampled batch in backend memory: states as stacked uint8 frames
// [N, stack, H, W], converted to floats by the agent. Row i is an n-step
// window of k <= n steps from states[i]: rewards[i] is its discounted reward
// sum, next_states[i] the state k steps later and discounts[i] the factor of
// the bootstrap value there, gamma^k, or 0 when the window ends in a true
// terminal. `slots` and `weights` are the prioritized sampler's: the rows'
// slots (to update their priorities) and importance weights; both empty for
// uniform sampling.
template <Backend B>
struct ReplayBatch {
  Tensor<B, std::uint8_t> states, next_states;
  Tensor<B, std::int32_t> actions;
  Tensor<B, float> rewards, discounts, weights;
  std::vector<std::int64_t> slots;
  int size() const { return static_cast<int>(actions.size()); }
};

template <Backend B>
class ReplayStorage {
 public:
  ReplayStorage() = default;
  // `capacity` frames of `frame`'s shape, gathered into stacks of `stack`.
  // Writes go through `writer`, which must outlive the storage. Frames are
  // written before they are read, so their memory is left as allocated
  // (pages are committed as the rings fill); the records are published by
  // the caller.
  ReplayStorage(std::int64_t capacity, env::FrameShape frame, int stack, Context<B>& writer)
      : writer_(&writer), capacity_(capacity), frame_(frame), stack_(stack) {
    frames_.resize({capacity, frame_bytes()});
    records_.resize({capacity});
  }

  std::int64_t frame_bytes() const { return static_cast<std::int64_t>(frame_.bytes()); }
  Context<B>& writer() const { return *writer_; }

  // One frame of pixels into `slot`.
  void write_frame(std::int64_t slot, const std::uint8_t* pixels) {
    backend_traits<B>::upload(*writer_, pixels, frames_.data() + slot * frame_bytes(), frame_.bytes());
  }
  // Host records [first, first + count) to the backend's copy.
  void publish_records(const kernels::SlotRecord* host, std::int64_t first, std::int64_t count) {
    backend_traits<B>::upload(*writer_, host + first, records_.data() + first, static_cast<std::size_t>(count));
  }

  // Frames [first, first + count) to or from host memory.
  void read_frames(std::int64_t first, std::int64_t count, std::uint8_t* out) const {
    check_frame_range(first, count);
    backend_traits<B>::download(*writer_, frames_.data() + first * frame_bytes(), out,
                                static_cast<std::size_t>(count * frame_bytes()));
  }
  void write_frames(std::int64_t first, std::int64_t count, const std::uint8_t* in) {
    check_frame_range(first, count);
    backend_traits<B>::upload(*writer_, in, frames_.data() + first * frame_bytes(),
                              static_cast<std::size_t>(count * frame_bytes()));
  }

  void shape_batch(int batch, ReplayBatch<B>& out) const {
    const Shape stacked{batch, stack_, frame_.height, frame_.width};
    out.states.resize(stacked);
    out.next_states.resize(stacked);
    out.actions.resize({batch});
    out.rewards.resize({batch});
    out.discounts.resize({batch});
  }

  // Gathers `rows` into rows [first, first + rows.size()) of `out` with the
  // backend's replay_gather: the rows go to the backend, the batch never
  // comes back.
  void gather(Context<B>& ctx, std::span<const kernels::ReplayRow> rows, int first, float gamma, int n_step,
              ReplayBatch<B>& out) const {
    if (rows.empty()) return;
    const std::int64_t state_bytes = frame_bytes() * stack_;
    kernels::ReplayGatherArgs a = gather_args(ctx, rows);
    a.window = {n_step, gamma};
    a.states = out.states.data() + first * state_bytes;
    a.next_states = out.next_states.data() + first * state_bytes;
    a.actions = out.actions.data() + first;
    a.rewards = out.rewards.data() + first;
    a.discounts = out.discounts.data() + first;
    backend_traits<B>::replay_gather(ctx, a);
  }

  // The gather of `rows` on `ctx`, the rows uploaded; the caller sets the
  // window and the outputs.
  kernels::ReplayGatherArgs gather_args(Context<B>& ctx, std::span<const kernels::ReplayRow> rows) const {
    // Writes went through the writer's context; a gather on another one
    // (another stream) must not overtake them.
    if (&ctx != writer_) backend_traits<B>::synchronize(*writer_);
    rows_.resize({static_cast<std::int64_t>(rows.size())});
    backend_traits<B>::upload(ctx, rows.data(), rows_.data(), rows.size());
    kernels::ReplayGatherArgs a;
    a.frames = frames_.data();
    a.records = records_.data();
    a.rows = rows_.data();
    a.batch = static_cast<int>(rows.size());
    a.stack = stack_;
    a.frame_bytes = frame_bytes();
    return a;
  }

 private:
  void check_frame_range(std::int64_t first, std::int64_t count) const {
    require(first >= 0 && count >= 0 && first + count <= capacity_, "replay frames [", first, ", ", first + count,
            ") outside the memory's ", capacity_, " slots");
  }

  Context<B>* writer_ = nullptr;
  std::int64_t capacity_ = 0;
  env::FrameShape frame_{};
  int stack_ = 1;
  Tensor<B, std::uint8_t> frames_;            // [capacity, frame bytes]
  Tensor<B, kernels::SlotRecord> records_;    // the backend's copy: the gather reads these
  // The drawn rows' backend copy: staging, mutable so that a const memory
  // (the demonstrations, inspection) can gather.
  mutable Tensor<B, kernels::ReplayRow> rows_;
};

}  // namespace qrl::rl
