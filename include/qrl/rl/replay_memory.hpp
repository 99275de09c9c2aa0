#pragma once
#include <algorithm>
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
// Prioritized replay is a sampler of the same memory (ReplayConfig::
// prioritized): a slot enters its sum tree at the largest priority so far
// once its n-step window is complete (at once for n = 1), leaves it when its
// frame is overwritten, and sample_prioritized() draws stratified batches
// with importance weights; update_priorities() feeds the TD errors back.
template <Backend B>
class ReplayMemory {
 public:
  explicit ReplayMemory(ReplayConfig config) : config_(config) {
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
    frame_bytes_ = config.frame.bytes();
    rings_.resize(static_cast<std::size_t>(config.streams));
    std::int64_t base = 0;
    for (int s = 0; s < config.streams; ++s) {
      rings_[s].base = base;
      rings_[s].capacity = config.capacity / config.streams + (s < config.capacity % config.streams ? 1 : 0);
      base += rings_[s].capacity;
    }
    const auto capacity = static_cast<std::size_t>(config.capacity);
    frames_.resize(capacity * frame_bytes_);
    actions_.resize(capacity);
    rewards_.resize(capacity);
    flags_.resize(capacity);
    history_.resize(capacity);
    if (config.prioritized) prioritized_ = std::make_unique<PrioritizedSampler>(config.capacity, *config.prioritized);
  }

  ReplayMemory(ReplayMemory&&) noexcept = default;
  ReplayMemory& operator=(ReplayMemory&&) noexcept = default;

  // Bytes this configuration allocates, known before allocating it: a
  // million 84x84 frames come to about 7.06 GB, however many streams.
  static std::uint64_t bytes_required(const ReplayConfig& c) {
    return static_cast<std::uint64_t>(c.capacity) *
           (c.frame.bytes() + sizeof(std::int16_t) + sizeof(float) + 2 * sizeof(std::uint8_t));
  }

  // The first observation of an episode (after env.reset()) of the env that
  // writes `stream`.
  void begin_episode(env::FrameView first, int stream = 0) {
    Ring& r = ring(stream);
    write_frame(r, first, 0);
    r.episode_open = true;
  }

  // The outcome of acting in the newest frame of `stream`: its action,
  // reward, flags and the next observation.
  void add(int action, float reward, bool terminated, bool truncated, env::FrameView next, int stream = 0) {
    Ring& r = ring(stream);
    require(r.episode_open, "ReplayMemory::add without an open episode in stream ", stream,
            ": call begin_episode(first observation, stream) after each reset");
    require(action >= 0 && action <= 32767, "action ", action, " out of range for the replay memory");
    const std::int64_t current = previous(r, r.cursor);
    actions_[current] = static_cast<std::int16_t>(action);
    rewards_[current] = reward;
    flags_[current] = has_transition | (terminated ? terminal : 0);
    ++r.transitions;
    ++transitions_;
    if (prioritized_) enter_complete_windows(r, current, terminated || truncated);
    write_frame(r, next, std::min<int>(history_[current] + 1, 255));
    if (terminated || truncated) r.episode_open = false;
  }

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
  // The rings' arrays, slot-indexed. In stream s, slots [stream_base(s),
  // stream_base(s) + stream_frames(s)) are in use: a ring fills from its
  // first slot and only wraps once full.
  std::span<std::uint8_t> frame_storage() { return frames_; }
  std::span<std::int16_t> action_storage() { return actions_; }
  std::span<float> reward_storage() { return rewards_; }
  std::span<std::uint8_t> flag_storage() { return flags_; }
  std::span<std::uint8_t> history_storage() { return history_; }

  // Uniform over stored transitions whose stacked state and n-step window
  // are complete; `gamma` discounts the window's rewards.
  void sample(Context<B>& ctx, Rng& rng, int batch, float gamma, ReplayBatch<B>& out) {
    require(can_sample(batch), "replay memory holds ", transitions_, " transitions, too few for a batch of ", batch,
            " (raise learning_starts)");
    resize_staging(batch);
    draw_rows(rng, 0, batch, gamma, *this);
    upload_staging(ctx, batch, out);
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
    resize_staging(batch);
    out.slots.resize(static_cast<std::size_t>(batch));
    staging_weights_.resize(static_cast<std::size_t>(batch));
    // The sampler holds complete windows only; a slot at the oldest edge of
    // a full ring can still have lost its stack's history: redrawn.
    sampler.sample(rng, beta, out.slots, staging_weights_,
                   [this](std::int64_t slot) { return valid(ring_of(slot), slot, age_rank(slot)); });
    for (int i = 0; i < batch; ++i) stage_row(ring_of(out.slots[i]), out.slots[i], gamma, i, *this);
    upload_staging(ctx, batch, out);
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
    resize_staging(batch);
    demonstrations.draw_rows(rng, 0, demonstration_rows, gamma, *this);
    draw_rows(rng, demonstration_rows, batch - demonstration_rows, gamma, *this);
    upload_staging(ctx, batch, out);
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

  // The same for the k-th oldest stored frame of one stream.
  bool transition_at(int stream, std::int64_t k, std::vector<std::uint8_t>& state,
                     std::vector<std::uint8_t>& next_state, int& action, float& reward, bool& terminated) const {
    const Ring& r = ring(stream);
    require(k >= 0 && k < r.count, "transition index ", k, " outside [0, ", r.count, ") of stream ", stream);
    const std::int64_t slot = r.base + (oldest(r) + k) % r.capacity;
    if (!valid(r, slot, k)) return false;
    state.resize(frame_bytes_ * config_.stack);
    next_state.resize(state.size());
    gather_state(r, slot, state.data());
    gather_state(r, next(r, slot), next_state.data());
    action = actions_[slot];
    reward = rewards_[slot];
    terminated = flags_[slot] & terminal;
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
    const WindowEnd end = window(r, slot, gamma);
    out.reward = end.reward;
    out.discount = end.discount;
    out.steps = end.steps;
    out.next_state.resize(frame_bytes_ * config_.stack);
    gather_state(r, end.next_slot, out.next_state.data());
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

  // The transition just stored at `current` completes the n-step window of
  // the one n - 1 steps earlier in its episode, or at an episode end every
  // window still open: those slots enter the prioritized sampler.
  void enter_complete_windows(const Ring& r, std::int64_t current, bool episode_end) {
    const int earlier = history_[current];  // transitions of this episode before `current`
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

  void write_frame(Ring& r, env::FrameView frame, int history) {
    require(frame.pixels != nullptr && frame.shape == config_.frame, "replay memory got a ", frame.shape.height, "x",
            frame.shape.width, "x", frame.shape.channels, " frame, configured for ", config_.frame.height, "x",
            config_.frame.width, "x", config_.frame.channels);
    const std::int64_t slot = r.base + r.cursor;
    if (r.count == r.capacity && (flags_[slot] & has_transition)) {
      --r.transitions;
      --transitions_;
    }
    if (prioritized_) prioritized_->remove(slot);
    std::memcpy(frames_.data() + slot * frame_bytes_, frame.pixels, frame_bytes_);
    flags_[slot] = 0;
    history_[slot] = static_cast<std::uint8_t>(history);
    r.cursor = r.cursor + 1 == r.capacity ? 0 : r.cursor + 1;
    if (r.count < r.capacity) {
      ++r.count;
      ++count_;
    }
  }

  // A transition is usable when the frames its state needs are still stored
  // (the oldest slots may have lost their history to the ring's overwrite)
  // and its n-step window is complete.
  bool valid(const Ring& r, std::int64_t slot, std::int64_t age_rank) const {
    if (!kernels::SampleValid{config_.stack}(flags_[slot], history_[slot], age_rank)) return false;
    return config_.n_step == 1 || window_complete(r, slot);
  }

  std::int64_t newest(const Ring& r) const { return previous(r, r.cursor); }

  // Whether the window from `slot` ends before it reaches the newest frame
  // of an episode still being played.
  bool window_complete(const Ring& r, std::int64_t slot) const {
    for (int k = 0; k < config_.n_step - 1; ++k) {
      if (flags_[slot] & terminal) return true;
      const std::int64_t after = next(r, slot);
      if (!(flags_[after] & has_transition)) return !(r.episode_open && after == newest(r));
      slot = after;
    }
    return true;
  }

  struct WindowEnd {
    float reward = 0.0f, discount = 0.0f;
    int steps = 0;
    std::int64_t next_slot = 0;
  };
  // The n-step window from a valid slot. With n = 1 this is (r, gamma or 0,
  // the next slot): the one-step target's arithmetic, bit for bit.
  WindowEnd window(const Ring& r, std::int64_t slot, float gamma) const {
    WindowEnd end;
    float factor = 1.0f;
    for (int k = 0; k < config_.n_step; ++k) {
      end.reward += factor * rewards_[slot];
      factor *= gamma;
      end.steps = k + 1;
      end.next_slot = next(r, slot);
      if (flags_[slot] & terminal) return end;  // discount stays 0
      if (k + 1 == config_.n_step || !(flags_[end.next_slot] & has_transition)) break;
      slot = end.next_slot;
    }
    end.discount = factor;
    return end;
  }

  // One draw over the used slots of all rings (ring by ring), so every
  // stored frame is equally likely; rejected until it holds a transition.
  void resize_staging(int batch) {
    const std::size_t state_bytes = frame_bytes_ * config_.stack;
    staging_states_.resize(state_bytes * static_cast<std::size_t>(batch));
    staging_next_.resize(staging_states_.size());
    staging_actions_.resize(batch);
    staging_rewards_.resize(batch);
    staging_discounts_.resize(batch);
  }

  // Draws rows [first, first + count) of `into`'s host staging from this
  // memory (whose frames match `into`'s).
  void draw_rows(Rng& rng, int first, int count, float gamma, ReplayMemory& into) const {
    for (int i = first; i < first + count; ++i) {
      const auto [r, slot] = draw_valid_slot(rng);
      stage_row(*r, slot, gamma, i, into);
    }
  }

  void stage_row(const Ring& r, std::int64_t slot, float gamma, int i, ReplayMemory& into) const {
    const std::size_t state_bytes = frame_bytes_ * config_.stack;
    const WindowEnd end = window(r, slot, gamma);
    gather_state(r, slot, into.staging_states_.data() + i * state_bytes);
    gather_state(r, end.next_slot, into.staging_next_.data() + i * state_bytes);
    into.staging_actions_[i] = actions_[slot];
    into.staging_rewards_[i] = end.reward;
    into.staging_discounts_[i] = end.discount;
  }

  void upload_staging(Context<B>& ctx, int batch, ReplayBatch<B>& out) {
    const Shape stacked{batch, config_.stack, config_.frame.height, config_.frame.width};
    out.states.resize(stacked);
    out.next_states.resize(stacked);
    out.actions.resize({batch});
    out.rewards.resize({batch});
    out.discounts.resize({batch});
    upload<B, std::uint8_t>(ctx, staging_states_, out.states);
    upload<B, std::uint8_t>(ctx, staging_next_, out.next_states);
    upload<B, std::int32_t>(ctx, staging_actions_, out.actions);
    upload<B, float>(ctx, staging_rewards_, out.rewards);
    upload<B, float>(ctx, staging_discounts_, out.discounts);
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

  void gather_state(const Ring& r, std::int64_t slot, std::uint8_t* out) const {
    const kernels::StackGather gather{config_.stack};
    for (int c = 0; c < config_.stack; ++c) {
      const std::int64_t source = gather.source(r.base, r.capacity, slot, history_[slot], c);
      std::memcpy(out + c * frame_bytes_, frames_.data() + source * frame_bytes_, frame_bytes_);
    }
  }

  ReplayConfig config_;
  std::size_t frame_bytes_ = 0;
  std::vector<std::uint8_t> frames_;
  std::vector<std::int16_t> actions_;
  std::vector<float> rewards_;
  std::vector<std::uint8_t> flags_, history_;
  std::vector<Ring> rings_;
  std::int64_t count_ = 0, transitions_ = 0;  // summed over the rings
  std::vector<std::uint8_t> staging_states_, staging_next_;
  std::vector<std::int32_t> staging_actions_;
  std::vector<float> staging_rewards_, staging_discounts_, staging_weights_;
  std::unique_ptr<PrioritizedSampler> prioritized_;
};

}  // namespace qrl::rl
