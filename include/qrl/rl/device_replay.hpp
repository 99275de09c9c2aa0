#pragma once
// A replay memory whose frames live on the GPU (CUDA backend only).
//
// Same semantics as ReplayMemory<B> (slot i holds frame o_i and, once known,
// the transition whose next frame is slot i+1; stacks rebuilt from earlier
// frames of the same episode; the oldest slots whose history was overwritten
// never sampled), but sampling is one kernel launch: a device RNG draws the
// slots and the block gathers the stacked states in place, so a batch never
// crosses PCIe. Each added frame is uploaded once; slot metadata is mirrored
// on the host and the slots changed since the last sample are uploaded in
// front of it.
//
// RNG: kernels::CounterRng, a counter-based hash (splitmix64 finaliser over
// seed, counter and draw index). sample() takes the generator so the caller
// owns reproducibility: the same (seed, counter) gives the same batch.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <qrl/backend/cuda.hpp>
#include <qrl/core/error.hpp>
#include <qrl/rl/replay_memory.hpp>

namespace qrl::rl {

class DeviceReplayMemory {
 public:
  DeviceReplayMemory(Context<cuda>& ctx, ReplayConfig config) : ctx_(&ctx), config_(config) {
    require(config.capacity >= config.stack + 2, "replay capacity must be at least stack + 2 = ", config.stack + 2,
            " frames, got ", config.capacity);
    require(config.capacity < (std::int64_t{1} << 31), "device replay capacity must stay below 2^31 frames, got ",
            config.capacity);
    require(config.stack >= 1 && config.stack <= 255, "replay stack depth must lie in [1, 255], got ", config.stack);
    require(config.streams == 1, "the device replay memory keeps one stream; got ", config.streams,
            " (train one env, or use ReplayMemory<B> for several)");
    require(config.frame.channels == 1, "replay memory stores gray frames; got ", config.frame.channels,
            " channels (preprocess to gray first)");
    frame_bytes_ = config.frame.bytes();
    frames_.resize({config.capacity, static_cast<std::int64_t>(frame_bytes_)});
    slots_.resize(static_cast<std::size_t>(config.capacity));
    device_slots_ = backend_traits<cuda>::make_buffer<kernels::ReplaySlot>(slots_.size());
    cuda_detail::check(cudaMemsetAsync(device_slots_.get(), 0, slots_.size() * sizeof(kernels::ReplaySlot),
                                       ctx.stream()),
                       "cudaMemsetAsync (replay slots)");
  }

  // Frame bytes plus 8 bytes of slot metadata per frame, on the device.
  static std::uint64_t bytes_required(const ReplayConfig& c) {
    return static_cast<std::uint64_t>(c.capacity) * (c.frame.bytes() + sizeof(kernels::ReplaySlot));
  }

  // Host frames: each is uploaded once into its slot.
  void begin_episode(env::FrameView first) {
    upload_frame(first);
    commit_frame(0);
    episode_open_ = true;
  }
  void add(int action, float reward, bool terminated, bool truncated, env::FrameView next) {
    const int history = record_transition(action, reward, terminated);
    upload_frame(next);
    commit_frame(history);
    if (terminated || truncated) episode_open_ = false;
  }

  // Device frames: write the frame of the next begin_episode/add straight
  // into the store at next_frame() (for example with launch_preprocess on
  // the same stream), then call the *_in_place variant.
  std::uint8_t* next_frame() { return frames_.data() + cursor_ * static_cast<std::int64_t>(frame_bytes_); }
  void begin_episode_in_place() {
    commit_frame(0);
    episode_open_ = true;
  }
  void add_in_place(int action, float reward, bool terminated, bool truncated) {
    commit_frame(record_transition(action, reward, terminated));
    if (terminated || truncated) episode_open_ = false;
  }

  std::int64_t capacity() const { return config_.capacity; }
  std::int64_t transitions() const { return transitions_; }
  std::int64_t frames() const { return count_; }
  const ReplayConfig& config() const { return config_; }
  bool can_sample(int batch) const { return transitions_ >= std::max(batch, 1) + config_.stack; }

  // Enqueues the sampling kernel; returns without waiting for it.
  void sample(Context<cuda>& ctx, int batch, kernels::CounterRng rng, ReplayBatch<cuda>& out) {
    require(can_sample(batch), "replay memory holds ", transitions_, " transitions, too few for a batch of ", batch,
            " (raise learning_starts)");
    flush(ctx);
    const Shape stacked{batch, config_.stack, config_.frame.height, config_.frame.width};
    out.states.resize(stacked);
    out.next_states.resize(stacked);
    out.actions.resize({batch});
    out.rewards.resize({batch});
    out.terminated.resize({batch});
    kernels::ReplayDeviceView view;
    view.frames = frames_.data();
    view.slots = device_slots_.get();
    view.capacity = config_.capacity;
    view.oldest = (cursor_ - count_ + config_.capacity) % config_.capacity;
    view.count = count_;
    view.frame_bytes = static_cast<std::int64_t>(frame_bytes_);
    view.stack = config_.stack;
    kernels::launch_replay_sample(view, batch, rng, out.states.data(), out.next_states.data(), out.actions.data(),
                                  out.rewards.data(), out.terminated.data(), ctx.stream());
    cuda_detail::check_launch("launch_replay_sample");
  }

 private:
  static constexpr std::uint8_t has_transition = 1;
  static constexpr std::uint8_t terminal = 2;

  std::int64_t next(std::int64_t slot) const { return slot + 1 == config_.capacity ? 0 : slot + 1; }
  std::int64_t previous(std::int64_t slot) const { return slot == 0 ? config_.capacity - 1 : slot - 1; }

  // The transition of the newest frame; returns the next frame's history.
  int record_transition(int action, float reward, bool terminated) {
    require(episode_open_, "DeviceReplayMemory::add without an open episode: call begin_episode(first observation) "
                           "after each reset");
    require(action >= 0 && action <= 32767, "action ", action, " out of range for the replay memory");
    const std::int64_t current = previous(cursor_);
    auto& slot = slots_[static_cast<std::size_t>(current)];
    slot.action = static_cast<std::int16_t>(action);
    slot.reward = reward;
    slot.flags = static_cast<std::uint8_t>(has_transition | (terminated ? terminal : 0));
    mark_dirty(current);
    ++transitions_;
    return std::min<int>(slot.history + 1, 255);
  }

  void upload_frame(env::FrameView frame) {
    require(frame.pixels != nullptr && frame.shape == config_.frame, "replay memory got a ", frame.shape.height, "x",
            frame.shape.width, "x", frame.shape.channels, " frame, configured for ", config_.frame.height, "x",
            config_.frame.width, "x", config_.frame.channels);
    backend_traits<cuda>::upload(*ctx_, frame.pixels, next_frame(), frame_bytes_);
  }

  // The frame at cursor_ is in place: overwrite the slot's metadata.
  void commit_frame(int history) {
    auto& slot = slots_[static_cast<std::size_t>(cursor_)];
    if (count_ == config_.capacity && (slot.flags & has_transition)) --transitions_;
    slot = kernels::ReplaySlot{};
    slot.history = static_cast<std::uint8_t>(history);
    mark_dirty(cursor_);
    cursor_ = next(cursor_);
    count_ = std::min(count_ + 1, config_.capacity);
  }

  void mark_dirty(std::int64_t slot) {
    if (dirty_.empty() || dirty_.back() != slot) dirty_.push_back(slot);
  }

  // Uploads the changed slots, runs of consecutive slots as one copy.
  void flush(Context<cuda>& ctx) {
    std::sort(dirty_.begin(), dirty_.end());
    dirty_.erase(std::unique(dirty_.begin(), dirty_.end()), dirty_.end());
    for (std::size_t i = 0; i < dirty_.size();) {
      std::size_t j = i + 1;
      while (j < dirty_.size() && dirty_[j] == dirty_[j - 1] + 1) ++j;
      const auto first = static_cast<std::size_t>(dirty_[i]);
      cuda_detail::check(cudaMemcpyAsync(device_slots_.get() + first, slots_.data() + first,
                                         (j - i) * sizeof(kernels::ReplaySlot), cudaMemcpyHostToDevice, ctx.stream()),
                         "cudaMemcpyAsync (replay slots)");
      i = j;
    }
    dirty_.clear();
  }

  Context<cuda>* ctx_;
  ReplayConfig config_;
  std::size_t frame_bytes_ = 0;
  Tensor<cuda, std::uint8_t> frames_;
  std::vector<kernels::ReplaySlot> slots_;
  backend_traits<cuda>::DeviceBuffer<kernels::ReplaySlot> device_slots_;
  std::vector<std::int64_t> dirty_;
  std::int64_t cursor_ = 0, count_ = 0, transitions_ = 0;
  bool episode_open_ = false;
};

}  // namespace qrl::rl
