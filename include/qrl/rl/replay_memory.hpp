#pragma once
#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/env/env.hpp>
#include <qrl/kernels/replay.cuh>
#include <qrl/rl/prioritized.hpp>
#include <qrl/tensor.hpp>

namespace qrl::rl {

struct ReplayConfig {
  std::int64_t capacity = 100000;  // frames (≈ transitions) kept
  env::FrameShape frame{84, 84, 1};
  int stack = 4;
  int streams = 1;  // one per env writing to it; capacity is split between them
  int n_step = 1;   // reward horizon of a sampled transition (n-step returns)
  // Prioritized replay (Schaul et al. 2016) instead of uniform sampling.
  std::optional<PrioritizedConfig> prioritized = std::nullopt;
};

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

// Ring buffer of transitions that stores each frame once. Slot i holds the
// frame o_i and, once the next step is known, the transition (a_i, r_i,
// terminated_i) whose next frame is slot i+1. Stacked states are rebuilt at
// sampling time from the previous frames of the same episode; at an episode
// start the first frame is repeated (as FrameStack does while acting), so a
// stack never mixes two episodes. A terminal/truncated next frame gets a
// slot with no transition of its own, and the next episode starts after it.
//
// Streams. With N envs each env writes its own stream: the capacity is split
// into N contiguous rings (stream s holds slots [stream_base(s),
// stream_base(s) + stream_capacity(s)), the first capacity % N streams one
// slot longer). A ring only ever holds consecutive frames of one env, so the
// stacking rule above needs no change, and frames are still stored once.
// Sampling draws uniformly over the used slots of all rings and rejects the
// ones without a complete transition, which is uniform over all valid
// transitions. With one stream it is the single ring it always was, draw for
// draw.
//
// n-step returns are formed at sampling time from the stored rewards: the
// window from slot i runs forward over the same ring until n steps, a true
// terminal (no bootstrap) or the last frame of an episode that was cut
// (truncated: bootstrap there), so it never crosses an episode end. A window
// that would run into the newest frame of an episode still being played is
// not complete yet, and that slot is not sampled until it is.
//
// Storage. Frames live in the backend's memory (host memory on the CPU,
// device memory on CUDA) and are written there once, as they arrive. Each
// slot's metadata is one kernels::SlotRecord, kept twice: on the host, where
// the draws and the bookkeeping read it, and in the backend's memory, where
// the batch gather reads it; every write updates both, the backend's with
// one copy per step. Sampling draws slots on the host (the seeded RNG and
// the rejection test, the same draws on every backend) and then runs one
// backend operation, replay_gather, whose body is kernels::ReplayGather:
// the n-step window and the stacked-state gather of each row. The CPU runs
// it in a loop, CUDA in a kernel, and a batch never passes through the host.
// Writes use the Context given at construction (on CUDA: the agent's, so
// writes and gathers share its stream), which must outlive the memory.
//
// Prioritized replay is a sampler of the same memory (ReplayConfig::
// prioritized): a slot enters its sum tree at the largest priority so far
// once its n-step window is complete (at once for n = 1), leaves it when its
// frame is overwritten, and sample_prioritized() draws stratified batches
// with importance weights; update_priorities() feeds the TD errors back.
template <Backend B>
class ReplayMemory {
 public:
  // Writes go through `ctx`, which must outlive the memory.
  ReplayMemory(ReplayConfig config, Context<B>& ctx) : config_(config), ctx_(&ctx) { allocate(); }
  // A backend the host writes to directly needs no caller's context.
  explicit ReplayMemory(ReplayConfig config)
    requires(backend_traits<B>::host_memory)
      : config_(config), own_ctx_(std::make_unique<Context<B>>()), ctx_(own_ctx_.get()) {
    allocate();
  }

  ReplayMemory(ReplayMemory&&) noexcept = default;
  ReplayMemory& operator=(ReplayMemory&&) noexcept = default;

  // Bytes this configuration allocates, known before allocating it: a
  // million 84x84 frames come to about 7.07 GB, however many streams (the
  // frames once, a slot record on the host and one in the backend's memory).
  static std::uint64_t bytes_required(const ReplayConfig& c) {
    return static_cast<std::uint64_t>(c.capacity) * (c.frame.bytes() + 2 * sizeof(kernels::SlotRecord));
  }

  // The first observation of an episode (after env.reset()) of the env that
  // writes `stream`.
  void begin_episode(env::FrameView first, int stream = 0) {
    Ring& r = ring(stream);
    const std::int64_t slot = write_frame(r, first, 0);
    publish_records(slot, 1);
    r.episode_open = true;
  }

  // The outcome of acting in the newest frame of `stream`: its action,
  // reward, flags and the next observation.
  void add(int action, float reward, bool terminated, bool truncated, env::FrameView next, int stream = 0) {
    Ring& r = ring(stream);
    require(r.episode_open, "ReplayMemory::add without an open episode in stream ", stream,
            ": call begin_episode(first observation, stream) after each reset");
    require(action >= 0 && action <= 32767, "action ", action, " out of range for the replay memory");
    require(reward_storable(reward), "reward ", reward, " of stream ", stream, " is not a finite value within ±",
            max_abs_reward, ": fix the environment or scale its rewards (a DQN learns from rewards near ±1)");
    const std::int64_t current = previous(r, r.cursor);
    kernels::SlotRecord& record = records_[current];
    record.action = static_cast<std::int16_t>(action);
    record.reward = reward;
    record.flags = has_transition | (terminated ? terminal : 0);
    ++r.transitions;
    ++transitions_;
    if (prioritized_) enter_complete_windows(r, current, terminated || truncated);
    const std::int64_t slot = write_frame(r, next, std::min<int>(record.history + 1, 255));
    if (slot == current + 1) {
      publish_records(current, 2);
    } else {  // the ring wrapped between them
      publish_records(current, 1);
      publish_records(slot, 1);
    }
    if (terminated || truncated) r.episode_open = false;
  }

  // The rewards the memory takes (and a checkpoint may hold): finite and at
  // most 1e9 in magnitude, so that n-step sums, TD errors and priorities
  // stay finite in float32.
  static constexpr float max_abs_reward = 1e9f;
  static bool reward_storable(float reward) { return std::isfinite(reward) && std::fabs(reward) <= max_abs_reward; }

  std::int64_t capacity() const { return config_.capacity; }
  std::int64_t transitions() const { return transitions_; }
  std::int64_t frames() const { return count_; }
  const ReplayConfig& config() const { return config_; }
  int streams() const { return config_.streams; }
  std::int64_t stream_base(int stream) const { return ring(stream).base; }
  std::int64_t stream_capacity(int stream) const { return ring(stream).capacity; }
  std::int64_t stream_frames(int stream) const { return ring(stream).count; }
  std::int64_t stream_transitions(int stream) const { return ring(stream).transitions; }
  bool can_sample(int batch) const {
    return transitions_ >= std::max(batch, 1) + config_.stack + config_.n_step - 1;
  }

  // What a checkpoint needs besides the arrays: where a stream's ring stands
  // (cursor relative to the stream's first slot).
  struct Position {
    std::int64_t cursor = 0, count = 0, transitions = 0;
    bool episode_open = false;
  };
  Position position(int stream = 0) const {
    const Ring& r = ring(stream);
    return {r.cursor, r.count, r.transitions, r.episode_open};
  }
  // Restores a position saved with the arrays below; checked against the
  // stream's capacity so a checkpoint of another configuration cannot be
  // half-used.
  void set_position(const Position& p, int stream = 0) {
    Ring& r = ring(stream);
    require(p.count >= 0 && p.count <= r.capacity && p.cursor >= 0 && p.cursor < r.capacity &&
                (p.count == r.capacity || p.cursor == p.count) && p.transitions >= 0 && p.transitions <= p.count,
            "replay memory position (cursor ", p.cursor, ", count ", p.count, ", transitions ", p.transitions,
            ") is impossible for stream ", stream, " of capacity ", r.capacity);
    count_ += p.count - r.count;
    transitions_ += p.transitions - r.transitions;
    r.cursor = p.cursor;
    r.count = p.count;
    r.transitions = p.transitions;
    r.episode_open = p.episode_open;
  }

  // The slots' records and frames, slot-indexed, for checkpoints. In stream
  // s, slots [stream_base(s), stream_base(s) + stream_frames(s)) are in use:
  // a ring fills from its first slot and only wraps once full.
  std::span<const kernels::SlotRecord> records() const { return records_; }
  void restore_records(std::int64_t first, std::span<const kernels::SlotRecord> records) {
    require(first >= 0 && first + static_cast<std::int64_t>(records.size()) <= config_.capacity,
            "replay records [", first, ", ", first + static_cast<std::int64_t>(records.size()),
            ") outside the memory's ", config_.capacity, " slots");
    std::copy(records.begin(), records.end(), records_.begin() + first);
    publish_records(first, static_cast<std::int64_t>(records.size()));
  }
  // Frames [first, first + count) to or from host memory.
  void read_frames(std::int64_t first, std::int64_t count, std::uint8_t* out) const {
    check_frame_range(first, count);
    backend_traits<B>::download(*ctx_, frames_.data() + first * frame_bytes(), out,
                                static_cast<std::size_t>(count * frame_bytes()));
  }
  void write_frames(std::int64_t first, std::int64_t count, const std::uint8_t* in) {
    check_frame_range(first, count);
    backend_traits<B>::upload(*ctx_, in, frames_.data() + first * frame_bytes(),
                              static_cast<std::size_t>(count * frame_bytes()));
  }

  // Uniform over stored transitions whose stacked state and n-step window
  // are complete; `gamma` discounts the window's rewards.
  void sample(Context<B>& ctx, Rng& rng, int batch, float gamma, ReplayBatch<B>& out) {
    require(can_sample(batch), "replay memory holds ", transitions_, " transitions, too few for a batch of ", batch,
            " (raise learning_starts)");
    shape_batch(batch, out);
    draw_rows(rng, batch);
    gather(ctx, 0, gamma, config_.n_step, out);
  }

  // Whether sampling may return `slot`: it holds a transition whose stacked
  // state is still stored and whose n-step window is complete.
  bool sampleable(std::int64_t slot) const {
    require(slot >= 0 && slot < config_.capacity, "replay slot ", slot, " outside [0, ", config_.capacity, ")");
    return valid(ring_of(slot), slot, age_rank(slot));
  }

  bool prioritized() const { return prioritized_ != nullptr; }
  PrioritizedSampler& prioritized_sampler() {
    require(prioritized_ != nullptr, "this replay memory samples uniformly (ReplayConfig::prioritized is unset)");
    return *prioritized_;
  }
  const PrioritizedSampler& prioritized_sampler() const {
    return const_cast<ReplayMemory*>(this)->prioritized_sampler();
  }

  // Prioritized replay: a stratified batch, P(i) proportional to p_i^alpha,
  // with importance weights (exponent `beta`) in out.weights and the rows'
  // slots in out.slots for update_priorities().
  void sample_prioritized(Context<B>& ctx, Rng& rng, int batch, float gamma, double beta, ReplayBatch<B>& out) {
    auto& sampler = prioritized_sampler();
    require(can_sample(batch) && sampler.size() > 0, "replay memory holds ", transitions_,
            " transitions, too few for a batch of ", batch, " (raise learning_starts)");
    shape_batch(batch, out);
    out.slots.resize(static_cast<std::size_t>(batch));
    staging_weights_.resize(static_cast<std::size_t>(batch));
    // The sampler holds complete windows only; a slot at the oldest edge of
    // a full ring can still have lost its stack's history: redrawn.
    sampler.sample(rng, beta, out.slots, staging_weights_,
                   [this](std::int64_t slot) { return valid(ring_of(slot), slot, age_rank(slot)); });
    rows_.clear();
    for (const std::int64_t slot : out.slots) rows_.push_back(row_of(ring_of(slot), slot));
    gather(ctx, 0, gamma, config_.n_step, out);
    out.weights.resize({batch});
    upload<B, float>(ctx, staging_weights_, out.weights);
  }

  // New priorities |TD error| + epsilon for the rows of the last prioritized
  // batch.
  void update_priorities(std::span<const std::int64_t> slots, std::span<const float> td_errors) {
    prioritized_sampler().update(slots, td_errors);
  }

  // A batch whose first `demonstration_rows` rows come from `demonstrations`
  // (DQfD's demonstration data, drawn first) and the rest from this memory,
  // each part uniform over its own transitions, as sample() draws.
  void sample_with_demonstrations(Context<B>& ctx, Rng& rng, int batch, float gamma,
                                  const ReplayMemory& demonstrations, int demonstration_rows, ReplayBatch<B>& out) {
    require(demonstration_rows >= 0 && demonstration_rows <= batch, "demonstration rows must lie in [0, ", batch,
            "], got ", demonstration_rows);
    require(demonstrations.config_.stack == config_.stack &&
                demonstrations.config_.frame.height == config_.frame.height &&
                demonstrations.config_.frame.width == config_.frame.width &&
                demonstrations.config_.frame.channels == config_.frame.channels &&
                demonstrations.config_.n_step == config_.n_step,
            "the demonstrations' frames, stack and n-step horizon must match the replay memory's");
    require(demonstrations.can_sample(demonstration_rows), "the demonstrations hold ", demonstrations.transitions_,
            " transitions, too few for ", demonstration_rows, " rows a batch (record more)");
    require(can_sample(batch - demonstration_rows), "replay memory holds ", transitions_,
            " transitions, too few for a batch of ", batch - demonstration_rows, " (raise learning_starts)");
    shape_batch(batch, out);
    demonstrations.draw_rows(rng, demonstration_rows);
    draw_rows(rng, batch - demonstration_rows);
    demonstrations.gather(ctx, 0, gamma, config_.n_step, out);
    gather(ctx, demonstration_rows, gamma, config_.n_step, out);
  }

  // The states the envs act on next, [streams, stack, H, W] in backend
  // memory: row s is the stacked state of stream s's newest frame (its env's
  // current observation, which has no transition yet), gathered by the same
  // replay_gather as the batches, so acting on the backend needs no host
  // copy of the frames.
  void gather_newest_states(Context<B>& ctx, Tensor<B, std::uint8_t>& out) const {
    rows_.clear();
    for (int s = 0; s < streams(); ++s) {
      const Ring& r = rings_[s];
      require(r.count > 0, "replay memory: stream ", s, " holds no frame yet; begin_episode() it before acting");
      rows_.push_back(row_of(r, newest(r)));
    }
    out.resize({static_cast<std::int64_t>(streams()), config_.stack, config_.frame.height, config_.frame.width});
    kernels::ReplayGatherArgs a = gather_args(ctx);
    a.states = out.data();  // next_states null: states only
    backend_traits<B>::replay_gather(ctx, a);
  }

  // The stacked state [stack, H, W] of the k-th oldest stored frame (of
  // stream 0, then stream 1, ...), for tests and inspection. Returns false if
  // that slot holds no complete transition.
  bool transition_at(std::int64_t k, std::vector<std::uint8_t>& state, std::vector<std::uint8_t>& next_state,
                     int& action, float& reward, bool& terminated) const {
    require(k >= 0 && k < count_, "transition index ", k, " outside [0, ", count_, ")");
    int stream = 0;
    while (k >= rings_[stream].count) k -= rings_[stream++].count;
    return transition_at(stream, k, state, next_state, action, reward, terminated);
  }

  // The same for the k-th oldest stored frame of one stream, gathered by
  // the backend's replay_gather as a one-row batch of one-step windows.
  bool transition_at(int stream, std::int64_t k, std::vector<std::uint8_t>& state,
                     std::vector<std::uint8_t>& next_state, int& action, float& reward, bool& terminated) const {
    const Ring& r = ring(stream);
    require(k >= 0 && k < r.count, "transition index ", k, " outside [0, ", r.count, ") of stream ", stream);
    const std::int64_t slot = r.base + (oldest(r) + k) % r.capacity;
    if (!valid(r, slot, k)) return false;
    const Inspected one = inspect(r, slot, 1.0f, 1);
    state = one.state;
    next_state = one.next_state;
    action = one.action;
    reward = one.reward;
    terminated = records_[slot].flags & terminal;
    return true;
  }

  // The n-step window that sampling forms from the k-th oldest frame of
  // `stream` (for tests and inspection); false if that slot is not sampled.
  struct Window {
    float reward = 0.0f;    // discounted reward sum
    float discount = 0.0f;  // gamma^steps, 0 after a true terminal
    int steps = 0;
    std::vector<std::uint8_t> next_state;
  };
  bool window_at(int stream, std::int64_t k, float gamma, Window& out) const {
    const Ring& r = ring(stream);
    require(k >= 0 && k < r.count, "transition index ", k, " outside [0, ", r.count, ") of stream ", stream);
    const std::int64_t slot = r.base + (oldest(r) + k) % r.capacity;
    if (!valid(r, slot, k)) return false;
    const Inspected one = inspect(r, slot, gamma, config_.n_step);
    out.reward = one.reward;
    out.discount = one.discount;
    out.steps = kernels::NStepWindow{config_.n_step, gamma}(records_.data(), row_of(r, slot)).steps;
    out.next_state = one.next_state;
    return true;
  }

 private:
  static constexpr std::uint8_t has_transition = kernels::replay_has_transition;
  static constexpr std::uint8_t terminal = kernels::replay_terminal;

  // One stream's ring: slots [base, base + capacity); cursor and the oldest
  // frame are relative to base.
  struct Ring {
    std::int64_t base = 0, capacity = 0, cursor = 0, count = 0, transitions = 0;
    bool episode_open = false;
  };

  void allocate() {
    const ReplayConfig& config = config_;
    require(config.capacity >= config.stack + 2, "replay capacity must be at least stack + 2 = ", config.stack + 2,
            " frames, got ", config.capacity);
    require(config.stack >= 1 && config.stack <= 255, "replay stack depth must lie in [1, 255], got ", config.stack);
    require(config.frame.channels == 1, "replay memory stores gray frames; got ", config.frame.channels,
            " channels (preprocess to gray first)");
    require(config.n_step >= 1 && config.n_step <= 100, "n-step horizon must lie in [1, 100], got ", config.n_step);
    require(config.streams >= 1 && config.capacity / config.streams >= config.stack + 2, "replay memory of ",
            config.capacity, " frames cannot hold ", config.streams, " streams of at least stack + 2 = ",
            config.stack + 2, " frames each (raise the capacity or use fewer envs)");
    require(config.capacity / config.streams >= config.stack + config.n_step + 1, "replay memory of ",
            config.capacity, " frames over ", config.streams, " streams is too small for stack ", config.stack,
            " and n-step ", config.n_step, ": each ring must hold a whole window (raise the capacity)");
    rings_.resize(static_cast<std::size_t>(config.streams));
    std::int64_t base = 0;
    for (int s = 0; s < config.streams; ++s) {
      rings_[s].base = base;
      rings_[s].capacity = config.capacity / config.streams + (s < config.capacity % config.streams ? 1 : 0);
      base += rings_[s].capacity;
    }
    // Frames are written before they are read, so their memory is left as
    // allocated (pages are committed as the rings fill); the records start
    // empty on both sides.
    frames_.resize({config.capacity, frame_bytes()});
    records_.assign(static_cast<std::size_t>(config.capacity), kernels::SlotRecord{});
    backend_records_.resize({config.capacity});
    publish_records(0, config.capacity);
    if (config.prioritized) prioritized_ = std::make_unique<PrioritizedSampler>(config.capacity, *config.prioritized);
  }

  std::int64_t frame_bytes() const { return static_cast<std::int64_t>(config_.frame.bytes()); }
  void check_frame_range(std::int64_t first, std::int64_t count) const {
    require(first >= 0 && count >= 0 && first + count <= config_.capacity, "replay frames [", first, ", ",
            first + count, ") outside the memory's ", config_.capacity, " slots");
  }

  // Host records [first, first + count) to the backend's copy.
  void publish_records(std::int64_t first, std::int64_t count) {
    backend_traits<B>::upload(*ctx_, records_.data() + first, backend_records_.data() + first,
                              static_cast<std::size_t>(count));
  }

  Ring& ring(int stream) {
    require(stream >= 0 && stream < config_.streams, "replay stream ", stream, " outside [0, ", config_.streams, ")");
    return rings_[stream];
  }
  const Ring& ring(int stream) const { return const_cast<ReplayMemory*>(this)->ring(stream); }
  const Ring& ring_of(std::int64_t slot) const {
    const Ring* r = rings_.data();
    while (slot >= r->base + r->capacity) ++r;
    return *r;
  }
  std::int64_t age_rank(std::int64_t slot) const {
    const Ring& r = ring_of(slot);
    return (slot - r.base - oldest(r) + r.capacity) % r.capacity;
  }
  static kernels::ReplayRow row_of(const Ring& r, std::int64_t slot) { return {slot, r.base, r.capacity}; }

  // The transition just stored at `current` completes the n-step window of
  // the one n - 1 steps earlier in its episode, or at an episode end every
  // window still open: those slots enter the prioritized sampler.
  void enter_complete_windows(const Ring& r, std::int64_t current, bool episode_end) {
    const int earlier = records_[current].history;  // transitions of this episode before `current`
    const int n = config_.n_step;
    auto back = [&](int j) { return r.base + (current - r.base - j + r.capacity) % r.capacity; };
    if (episode_end) {
      for (int j = 0; j <= std::min(n - 1, earlier); ++j) prioritized_->add(back(j));
    } else if (earlier >= n - 1) {
      prioritized_->add(back(n - 1));
    }
  }

  // Absolute slot after / before `slot` in ring r.
  static std::int64_t next(const Ring& r, std::int64_t slot) { return slot + 1 == r.base + r.capacity ? r.base : slot + 1; }
  static std::int64_t previous(const Ring& r, std::int64_t cursor) {
    return r.base + (cursor == 0 ? r.capacity - 1 : cursor - 1);
  }
  static std::int64_t oldest(const Ring& r) { return (r.cursor - r.count + r.capacity) % r.capacity; }

  // Stores `frame` at the ring's cursor and returns its slot; its record
  // becomes "no transition yet" (the caller publishes it).
  std::int64_t write_frame(Ring& r, env::FrameView frame, int history) {
    require(frame.pixels != nullptr && frame.shape == config_.frame, "replay memory got a ", frame.shape.height, "x",
            frame.shape.width, "x", frame.shape.channels, " frame, configured for ", config_.frame.height, "x",
            config_.frame.width, "x", config_.frame.channels);
    const std::int64_t slot = r.base + r.cursor;
    kernels::SlotRecord& record = records_[slot];
    if (r.count == r.capacity && (record.flags & has_transition)) {
      --r.transitions;
      --transitions_;
    }
    if (prioritized_) prioritized_->remove(slot);
    backend_traits<B>::upload(*ctx_, frame.pixels, frames_.data() + slot * frame_bytes(), config_.frame.bytes());
    record.flags = 0;
    record.history = static_cast<std::uint8_t>(history);
    r.cursor = r.cursor + 1 == r.capacity ? 0 : r.cursor + 1;
    if (r.count < r.capacity) {
      ++r.count;
      ++count_;
    }
    if (prioritized_ && r.count == r.capacity) retire_lost_histories(r);
    return slot;
  }

  // In a full ring the oldest stack - 1 slots may have lost frames their
  // stacked state needs to the overwrite; they stay unusable until they are
  // overwritten themselves, so they leave the prioritized sampler now. Left
  // in, one with a large priority would take most draws and be rejected
  // every time.
  void retire_lost_histories(const Ring& r) {
    const kernels::SampleValid usable{config_.stack};
    const std::int64_t first = oldest(r);
    for (int age = 0; age < config_.stack - 1 && age < r.capacity; ++age) {
      const std::int64_t slot = r.base + (first + age) % r.capacity;
      const kernels::SlotRecord& record = records_[slot];
      if ((record.flags & has_transition) && !usable(record.flags, record.history, age)) prioritized_->remove(slot);
    }
  }

  // A transition is usable when the frames its state needs are still stored
  // (the oldest slots may have lost their history to the ring's overwrite)
  // and its n-step window is complete.
  bool valid(const Ring& r, std::int64_t slot, std::int64_t age_rank) const {
    const kernels::SlotRecord& record = records_[slot];
    if (!kernels::SampleValid{config_.stack}(record.flags, record.history, age_rank)) return false;
    return config_.n_step == 1 || window_complete(r, slot);
  }

  std::int64_t newest(const Ring& r) const { return previous(r, r.cursor); }

  // Whether the window from `slot` ends before it reaches the newest frame
  // of an episode still being played.
  bool window_complete(const Ring& r, std::int64_t slot) const {
    for (int k = 0; k < config_.n_step - 1; ++k) {
      if (records_[slot].flags & terminal) return true;
      const std::int64_t after = next(r, slot);
      if (!(records_[after].flags & has_transition)) return !(r.episode_open && after == newest(r));
      slot = after;
    }
    return true;
  }

  void shape_batch(int batch, ReplayBatch<B>& out) const {
    const Shape stacked{batch, config_.stack, config_.frame.height, config_.frame.width};
    out.states.resize(stacked);
    out.next_states.resize(stacked);
    out.actions.resize({batch});
    out.rewards.resize({batch});
    out.discounts.resize({batch});
  }

  // Draws `count` valid slots into rows_ (replacing what it held).
  void draw_rows(Rng& rng, int count) const {
    rows_.clear();
    for (int i = 0; i < count; ++i) {
      const auto [r, slot] = draw_valid_slot(rng);
      rows_.push_back(row_of(*r, slot));
    }
  }

  // Gathers rows_ into rows [first, first + rows_.size()) of `out` with the
  // backend's replay_gather: the rows go to the backend, the batch never
  // comes back.
  void gather(Context<B>& ctx, int first, float gamma, int n_step, ReplayBatch<B>& out) const {
    if (rows_.empty()) return;
    const std::int64_t state_bytes = frame_bytes() * config_.stack;
    kernels::ReplayGatherArgs a = gather_args(ctx);
    a.window = {n_step, gamma};
    a.states = out.states.data() + first * state_bytes;
    a.next_states = out.next_states.data() + first * state_bytes;
    a.actions = out.actions.data() + first;
    a.rewards = out.rewards.data() + first;
    a.discounts = out.discounts.data() + first;
    backend_traits<B>::replay_gather(ctx, a);
  }

  // The gather of rows_ on `ctx`, its rows uploaded; the caller sets the
  // window and the outputs.
  kernels::ReplayGatherArgs gather_args(Context<B>& ctx) const {
    // Writes went through the memory's own context; a gather on another one
    // (another stream) must not overtake them.
    if (&ctx != ctx_) backend_traits<B>::synchronize(*ctx_);
    backend_rows_.resize({static_cast<std::int64_t>(rows_.size())});
    backend_traits<B>::upload(ctx, rows_.data(), backend_rows_.data(), rows_.size());
    kernels::ReplayGatherArgs a;
    a.frames = frames_.data();
    a.records = backend_records_.data();
    a.rows = backend_rows_.data();
    a.batch = static_cast<int>(rows_.size());
    a.stack = config_.stack;
    a.frame_bytes = frame_bytes();
    return a;
  }

  // One row gathered by the backend and brought to the host (inspection).
  struct Inspected {
    std::vector<std::uint8_t> state, next_state;
    int action = 0;
    float reward = 0.0f, discount = 0.0f;
  };
  Inspected inspect(const Ring& r, std::int64_t slot, float gamma, int n_step) const {
    rows_.assign(1, row_of(r, slot));
    ReplayBatch<B> one;
    shape_batch(1, one);
    gather(*ctx_, 0, gamma, n_step, one);
    Inspected out;
    out.state = to_host(*ctx_, one.states);
    out.next_state = to_host(*ctx_, one.next_states);
    out.action = to_host(*ctx_, one.actions)[0];
    out.reward = to_host(*ctx_, one.rewards)[0];
    out.discount = to_host(*ctx_, one.discounts)[0];
    return out;
  }

  std::pair<const Ring*, std::int64_t> draw_valid_slot(Rng& rng) const {
    // Rejection ends quickly whenever a fair share of the slots is valid; a
    // bound turns a memory of almost only unusable slots (a tiny ring of
    // short episodes with a long n-step horizon) into an error, not a hang.
    for (std::int64_t attempt = 0; attempt < 1000 + 100 * count_; ++attempt) {
      auto k = static_cast<std::int64_t>(rng.uniform_index(static_cast<std::uint64_t>(count_)));
      const Ring* r = rings_.data();
      while (k >= r->count) k -= (r++)->count;
      const std::int64_t slot = r->base + (oldest(*r) + k) % r->capacity;
      if (valid(*r, slot, k)) return {r, slot};
    }
    fail("replay memory: no sampleable transition among ", count_, " stored frames (stack ", config_.stack,
         ", n-step ", config_.n_step, "): raise learning_starts or the capacity");
  }

  ReplayConfig config_;
  std::unique_ptr<Context<B>> own_ctx_;  // only for the constructor without a context
  Context<B>* ctx_ = nullptr;
  Tensor<B, std::uint8_t> frames_;                   // [capacity, frame bytes], backend memory
  std::vector<kernels::SlotRecord> records_;         // host: draws and bookkeeping read these
  Tensor<B, kernels::SlotRecord> backend_records_;   // the backend's copy: the gather reads these
  std::vector<Ring> rings_;
  std::int64_t count_ = 0, transitions_ = 0;  // summed over the rings
  // Drawn rows and their backend copy: staging, mutable so that drawing
  // from a const memory (the demonstrations, inspection) can use them.
  mutable std::vector<kernels::ReplayRow> rows_;
  mutable Tensor<B, kernels::ReplayRow> backend_rows_;
  std::vector<float> staging_weights_;
  std::unique_ptr<PrioritizedSampler> prioritized_;
};

}  // namespace qrl::rl
