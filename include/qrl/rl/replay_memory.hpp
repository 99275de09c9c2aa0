#pragma once
// The replay memory every backend shares: a ring per env of frames stored
// once, sampled uniformly, by priority or with demonstrations. Its parts:
// ReplayRings (replay_rings.hpp, the host bookkeeping and the draws),
// ReplayStorage (replay_storage.hpp, the backend's bytes and the gather),
// PrioritizedSampler (prioritized.hpp, the sum tree).
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
#include <qrl/rl/replay_rings.hpp>
#include <qrl/rl/replay_storage.hpp>
#include <qrl/tensor.hpp>

namespace qrl::rl {

struct ReplayConfig {
  std::int64_t capacity = 100000;  // frames (≈ transitions) kept
  env::FrameShape frame{84, 84, 1};
  int stack = 4;
  int rings = 1;  // one per env writing to it; capacity is split between them
  int n_step = 1;  // reward horizon of a sampled transition (n-step returns)
  // Prioritized replay (Schaul et al. 2016) instead of uniform sampling.
  std::optional<PrioritizedConfig> prioritized = std::nullopt;
};

// Ring buffer of transitions that stores each frame once. Slot i holds the
// frame o_i and, once the next step is known, the transition (a_i, r_i,
// terminated_i) whose next frame is slot i+1. Stacked states are rebuilt at
// sampling time from the previous frames of the same episode; at an episode
// start the first frame is repeated (as FrameStack does while acting), so a
// stack never mixes two episodes. A terminal/truncated next frame gets a
// slot with no transition of its own, and the next episode starts after it.
//
// Rings. With N envs each env writes its own ring (ReplayConfig::rings = N):
// the capacity is split into N contiguous rings, ring i holding slots
// [ring_base(i), ring_base(i) + ring_capacity(i)). How the rings are laid
// out, drawn from and kept track of is ReplayRings (replay_rings.hpp).
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
// slot's metadata is one kernels::SlotRecord, kept twice: on the host
// (ReplayRings), where the draws and the bookkeeping read it, and in the
// backend's memory (ReplayStorage, replay_storage.hpp), where the batch
// gather reads it; every write updates both, the backend's with one copy
// per step. Sampling draws slots on the host (the seeded RNG and the
// rejection test, the same draws on every backend) and then runs one
// backend operation, replay_gather, so a batch never passes through the
// host. Writes use the Context given at construction (on CUDA: the agent's, so
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
  // million 84x84 frames come to about 7.07 GB, however many rings (the
  // frames once, a slot record on the host and one in the backend's memory).
  static std::uint64_t bytes_required(const ReplayConfig& c) {
    return static_cast<std::uint64_t>(c.capacity) * (c.frame.bytes() + 2 * sizeof(kernels::SlotRecord));
  }

  // The first observation of an episode (after env.reset()) of the env that
  // writes `ring`.
  void begin_episode(env::FrameView first, int ring = 0) {
    ReplayRing& r = rings_.at(ring);
    const std::int64_t slot = write_frame(r, first, 0);
    publish_records(slot, 1);
    r.episode_open = true;
  }

  // The outcome of acting in the newest frame of `ring`: its action, reward,
  // flags and the next observation.
  void add(int action, float reward, bool terminated, bool truncated, env::FrameView next, int ring = 0) {
    ReplayRing& r = rings_.at(ring);
    require(r.episode_open, "ReplayMemory::add without an open episode in ring ", ring,
            ": call begin_episode(first observation, ring) after each reset");
    require(action >= 0 && action <= 32767, "action ", action, " out of range for the replay memory");
    require(reward_storable(reward), "reward ", reward, " of ring ", ring, " is not a finite value within ±",
            max_abs_reward, ": fix the environment or scale its rewards (a DQN learns from rewards near ±1)");
    const std::int64_t current = rings_.record_transition(r, action, reward, terminated);
    if (prioritized_) enter_complete_windows(r, current, terminated || truncated);
    const int history = rings_.records()[current].history;
    const std::int64_t slot = write_frame(r, next, std::min<int>(history + 1, 255));
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
  std::int64_t transitions() const { return rings_.transitions(); }
  std::int64_t frames() const { return rings_.frames(); }
  const ReplayConfig& config() const { return config_; }
  int rings() const { return config_.rings; }
  std::int64_t ring_base(int ring) const { return rings_.at(ring).base; }
  std::int64_t ring_capacity(int ring) const { return rings_.at(ring).capacity; }
  std::int64_t ring_frames(int ring) const { return rings_.at(ring).count; }
  std::int64_t ring_transitions(int ring) const { return rings_.at(ring).transitions; }
  bool can_sample(int batch) const {
    return transitions() >= std::max(batch, 1) + config_.stack + config_.n_step - 1;
  }

  // What a checkpoint needs besides the arrays: where a ring stands (cursor
  // relative to the ring's first slot).
  using Position = ReplayRingPosition;
  Position position(int ring = 0) const { return rings_.position(ring); }
  // Restores a position saved with the arrays below; checked against the
  // ring's capacity so a checkpoint of another configuration cannot be
  // half-used.
  void set_position(const Position& p, int ring = 0) { rings_.set_position(p, ring); }

  // The slots' records and frames, slot-indexed, for checkpoints. In ring
  // i, slots [ring_base(i), ring_base(i) + ring_frames(i)) are in use: a
  // ring fills from its first slot and only wraps once full.
  std::span<const kernels::SlotRecord> records() const { return rings_.records(); }
  void restore_records(std::int64_t first, std::span<const kernels::SlotRecord> records) {
    require(first >= 0 && first + static_cast<std::int64_t>(records.size()) <= config_.capacity,
            "replay records [", first, ", ", first + static_cast<std::int64_t>(records.size()),
            ") outside the memory's ", config_.capacity, " slots");
    std::copy(records.begin(), records.end(), rings_.records().begin() + first);
    publish_records(first, static_cast<std::int64_t>(records.size()));
  }
  // Frames [first, first + count) to or from host memory.
  void read_frames(std::int64_t first, std::int64_t count, std::uint8_t* out) const {
    storage_.read_frames(first, count, out);
  }
  void write_frames(std::int64_t first, std::int64_t count, const std::uint8_t* in) {
    storage_.write_frames(first, count, in);
  }

  // Uniform over stored transitions whose stacked state and n-step window
  // are complete; `gamma` discounts the window's rewards.
  void sample(Context<B>& ctx, Rng& rng, int batch, float gamma, ReplayBatch<B>& out) {
    require(can_sample(batch), "replay memory holds ", transitions(), " transitions, too few for a batch of ", batch,
            " (raise learning_starts)");
    storage_.shape_batch(batch, out);
    draw_rows(rng, batch);
    storage_.gather(ctx, rows_, 0, gamma, config_.n_step, out);
  }

  // Whether sampling may return `slot`: it holds a transition whose stacked
  // state is still stored and whose n-step window is complete.
  bool sampleable(std::int64_t slot) const {
    require(slot >= 0 && slot < config_.capacity, "replay slot ", slot, " outside [0, ", config_.capacity, ")");
    return rings_.valid(rings_.of_slot(slot), slot, rings_.age_rank(slot));
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
    require(can_sample(batch) && sampler.size() > 0, "replay memory holds ", transitions(),
            " transitions, too few for a batch of ", batch, " (raise learning_starts)");
    storage_.shape_batch(batch, out);
    out.slots.resize(static_cast<std::size_t>(batch));
    staging_weights_.resize(static_cast<std::size_t>(batch));
    // The sampler holds complete windows only; a slot at the oldest edge of
    // a full ring can still have lost its stack's history: redrawn.
    sampler.sample(rng, beta, out.slots, staging_weights_,
                   [this](std::int64_t slot) { return rings_.valid(rings_.of_slot(slot), slot, rings_.age_rank(slot)); });
    rows_.clear();
    for (const std::int64_t slot : out.slots) rows_.push_back(rings_.of_slot(slot).row(slot));
    storage_.gather(ctx, rows_, 0, gamma, config_.n_step, out);
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
    require(demonstrations.can_sample(demonstration_rows), "the demonstrations hold ", demonstrations.transitions(),
            " transitions, too few for ", demonstration_rows, " rows a batch (record more)");
    require(can_sample(batch - demonstration_rows), "replay memory holds ", transitions(),
            " transitions, too few for a batch of ", batch - demonstration_rows, " (raise learning_starts)");
    storage_.shape_batch(batch, out);
    demonstrations.draw_rows(rng, demonstration_rows);
    draw_rows(rng, batch - demonstration_rows);
    demonstrations.storage_.gather(ctx, demonstrations.rows_, 0, gamma, config_.n_step, out);
    storage_.gather(ctx, rows_, demonstration_rows, gamma, config_.n_step, out);
  }

  // The states the envs act on next, [rings, stack, H, W] in backend
  // memory: row i is the stacked state of ring i's newest frame (its env's
  // current observation, which has no transition yet), gathered by the same
  // replay_gather as the batches, so acting on the backend needs no host
  // copy of the frames.
  void gather_newest_states(Context<B>& ctx, Tensor<B, std::uint8_t>& out) const {
    rows_.clear();
    for (int i = 0; i < rings(); ++i) {
      const ReplayRing& r = rings_.at(i);
      require(r.count > 0, "replay memory: ring ", i, " holds no frame yet; begin_episode() it before acting");
      rows_.push_back(r.row(r.newest()));
    }
    out.resize({static_cast<std::int64_t>(rings()), config_.stack, config_.frame.height, config_.frame.width});
    kernels::ReplayGatherArgs a = storage_.gather_args(ctx, rows_);
    a.states = out.data();  // next_states null: states only
    backend_traits<B>::replay_gather(ctx, a);
  }

  // The stacked state [stack, H, W] of the k-th oldest stored frame (of
  // ring 0, then ring 1, ...), for tests and inspection. Returns false if
  // that slot holds no complete transition.
  bool transition_at(std::int64_t k, std::vector<std::uint8_t>& state, std::vector<std::uint8_t>& next_state,
                     int& action, float& reward, bool& terminated) const {
    require(k >= 0 && k < frames(), "transition index ", k, " outside [0, ", frames(), ")");
    const auto [ring, age] = rings_.locate(k);
    return transition_at(ring, age, state, next_state, action, reward, terminated);
  }

  // The same for the k-th oldest stored frame of one ring, gathered by the
  // backend's replay_gather as a one-row batch of one-step windows.
  bool transition_at(int ring, std::int64_t k, std::vector<std::uint8_t>& state,
                     std::vector<std::uint8_t>& next_state, int& action, float& reward, bool& terminated) const {
    const ReplayRing& r = rings_.at(ring);
    require(k >= 0 && k < r.count, "transition index ", k, " outside [0, ", r.count, ") of ring ", ring);
    const std::int64_t slot = r.slot_at_age(k);
    if (!rings_.valid(r, slot, k)) return false;
    const Inspected one = inspect(r, slot, 1.0f, 1);
    state = one.state;
    next_state = one.next_state;
    action = one.action;
    reward = one.reward;
    terminated = rings_.records()[slot].flags & terminal;
    return true;
  }

  // The n-step window that sampling forms from the k-th oldest frame of
  // `ring` (for tests and inspection); false if that slot is not sampled.
  struct Window {
    float reward = 0.0f;    // discounted reward sum
    float discount = 0.0f;  // gamma^steps, 0 after a true terminal
    int steps = 0;
    std::vector<std::uint8_t> next_state;
  };
  bool window_at(int ring, std::int64_t k, float gamma, Window& out) const {
    const ReplayRing& r = rings_.at(ring);
    require(k >= 0 && k < r.count, "transition index ", k, " outside [0, ", r.count, ") of ring ", ring);
    const std::int64_t slot = r.slot_at_age(k);
    if (!rings_.valid(r, slot, k)) return false;
    const Inspected one = inspect(r, slot, gamma, config_.n_step);
    out.reward = one.reward;
    out.discount = one.discount;
    out.steps = kernels::NStepWindow{config_.n_step, gamma}(rings_.records().data(), r.row(slot)).steps;
    out.next_state = one.next_state;
    return true;
  }

 private:
  static constexpr std::uint8_t has_transition = kernels::replay_has_transition;
  static constexpr std::uint8_t terminal = kernels::replay_terminal;

  void allocate() {
    const ReplayConfig& config = config_;
    require(config.capacity >= config.stack + 2, "replay capacity must be at least stack + 2 = ", config.stack + 2,
            " frames, got ", config.capacity);
    require(config.stack >= 1 && config.stack <= 255, "replay stack depth must lie in [1, 255], got ", config.stack);
    require(config.frame.channels == 1, "replay memory stores gray frames; got ", config.frame.channels,
            " channels (preprocess to gray first)");
    require(config.n_step >= 1 && config.n_step <= 100, "n-step horizon must lie in [1, 100], got ", config.n_step);
    require(config.rings >= 1 && config.capacity / config.rings >= config.stack + 2, "replay memory of ",
            config.capacity, " frames cannot hold ", config.rings, " rings of at least stack + 2 = ",
            config.stack + 2, " frames each (raise the capacity or use fewer envs)");
    require(config.capacity / config.rings >= config.stack + config.n_step + 1, "replay memory of ",
            config.capacity, " frames over ", config.rings, " rings is too small for stack ", config.stack,
            " and n-step ", config.n_step, ": each ring must hold a whole window (raise the capacity)");
    // The records start empty on both sides.
    rings_ = ReplayRings(config.capacity, config.rings, config.stack, config.n_step);
    storage_ = ReplayStorage<B>(config.capacity, config.frame, config.stack, *ctx_);
    publish_records(0, config.capacity);
    if (config.prioritized) prioritized_ = std::make_unique<PrioritizedSampler>(config.capacity, *config.prioritized);
  }

  // Host records [first, first + count) to the backend's copy.
  void publish_records(std::int64_t first, std::int64_t count) {
    storage_.publish_records(rings_.records().data(), first, count);
  }

  // The transition just stored at `current` completes the n-step window of
  // the one n - 1 steps earlier in its episode, or at an episode end every
  // window still open: those slots enter the prioritized sampler.
  void enter_complete_windows(const ReplayRing& r, std::int64_t current, bool episode_end) {
    const int earlier = rings_.records()[current].history;  // transitions of this episode before `current`
    const int n = config_.n_step;
    auto back = [&](int j) { return r.base + (current - r.base - j + r.capacity) % r.capacity; };
    if (episode_end) {
      for (int j = 0; j <= std::min(n - 1, earlier); ++j) prioritized_->add(back(j));
    } else if (earlier >= n - 1) {
      prioritized_->add(back(n - 1));
    }
  }

  // Stores `frame` at the ring's cursor and returns its slot; its record
  // becomes "no transition yet" (the caller publishes it).
  std::int64_t write_frame(ReplayRing& r, env::FrameView frame, int history) {
    require(frame.pixels != nullptr && frame.shape == config_.frame, "replay memory got a ", frame.shape.height, "x",
            frame.shape.width, "x", frame.shape.channels, " frame, configured for ", config_.frame.height, "x",
            config_.frame.width, "x", config_.frame.channels);
    const std::int64_t slot = rings_.next_frame_slot(r);
    if (prioritized_) prioritized_->remove(slot);
    storage_.write_frame(slot, frame.pixels);
    rings_.store_frame(r, history);
    if (prioritized_ && r.count == r.capacity) retire_lost_histories(r);
    return slot;
  }

  // In a full ring the oldest stack - 1 slots may have lost frames their
  // stacked state needs to the overwrite; they stay unusable until they are
  // overwritten themselves, so they leave the prioritized sampler now. Left
  // in, one with a large priority would take most draws and be rejected
  // every time.
  void retire_lost_histories(const ReplayRing& r) {
    const kernels::SampleValid usable{config_.stack};
    for (int age = 0; age < config_.stack - 1 && age < r.capacity; ++age) {
      const std::int64_t slot = r.slot_at_age(age);
      const kernels::SlotRecord& record = rings_.records()[slot];
      if ((record.flags & has_transition) && !usable(record.flags, record.history, age)) prioritized_->remove(slot);
    }
  }

  // Draws `count` valid slots into rows_ (replacing what it held).
  void draw_rows(Rng& rng, int count) const {
    rows_.clear();
    for (int i = 0; i < count; ++i) {
      const auto [r, slot] = rings_.draw_valid_slot(rng);
      rows_.push_back(r->row(slot));
    }
  }

  // One row gathered by the backend and brought to the host (inspection).
  struct Inspected {
    std::vector<std::uint8_t> state, next_state;
    int action = 0;
    float reward = 0.0f, discount = 0.0f;
  };
  Inspected inspect(const ReplayRing& r, std::int64_t slot, float gamma, int n_step) const {
    rows_.assign(1, r.row(slot));
    ReplayBatch<B> one;
    storage_.shape_batch(1, one);
    storage_.gather(*ctx_, rows_, 0, gamma, n_step, one);
    Inspected out;
    out.state = to_host(*ctx_, one.states);
    out.next_state = to_host(*ctx_, one.next_states);
    out.action = to_host(*ctx_, one.actions)[0];
    out.reward = to_host(*ctx_, one.rewards)[0];
    out.discount = to_host(*ctx_, one.discounts)[0];
    return out;
  }

  ReplayConfig config_;
  std::unique_ptr<Context<B>> own_ctx_;  // only for the constructor without a context
  Context<B>* ctx_ = nullptr;
  ReplayRings rings_;         // host: the rings and records the draws read
  ReplayStorage<B> storage_;  // backend: the frames and the records the gather reads
  // Drawn rows: staging, mutable so that drawing from a const memory (the
  // demonstrations, inspection) can use them.
  mutable std::vector<kernels::ReplayRow> rows_;
  std::vector<float> staging_weights_;
  std::unique_ptr<PrioritizedSampler> prioritized_;
};

}  // namespace qrl::rl
