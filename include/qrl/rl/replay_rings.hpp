#pragma once
// The replay memory's host bookkeeping: how its capacity is split into one
// ring per env, where each ring stands, and every slot's record as the host
// keeps it. Everything that decides which slots a batch may use lives here,
// on the host (the draws, the rejection test, the completeness of an n-step
// window), so every backend draws the same slots from the same seed; the
// frames and the backend's copy of the records stay with ReplayMemory.
//
// Rings. With N envs each env writes its own ring: the capacity is split
// into N contiguous rings (ring i holds slots [base, base + capacity) of
// at(i), the first capacity % N rings one slot longer). A ring only ever
// holds consecutive frames of one env, so the stacking rule of
// kernels::StackGather needs no change, and frames are still stored once.
// Sampling draws uniformly over the used slots of all rings and rejects the
// ones without a complete transition, which is uniform over all valid
// transitions. With one ring it is the single ring it always was, draw for
// draw.
#include <cstdint>
#include <utility>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/kernels/replay.cuh>

namespace qrl::rl {

// Where a ring stands, as a checkpoint stores it beside the arrays (the
// cursor relative to the ring's first slot).
struct ReplayRingPosition {
  std::int64_t cursor = 0, count = 0, transitions = 0;
  bool episode_open = false;
};

// One env's ring: slots [base, base + capacity); cursor and the oldest frame
// are relative to base, slots are absolute.
struct ReplayRing {
  std::int64_t base = 0, capacity = 0, cursor = 0, count = 0, transitions = 0;
  bool episode_open = false;

  // The slot after `slot`, wrapping at the ring's end.
  std::int64_t next(std::int64_t slot) const { return slot + 1 == base + capacity ? base : slot + 1; }
  // The slot before the relative position `at`.
  std::int64_t previous(std::int64_t at) const { return base + (at == 0 ? capacity - 1 : at - 1); }
  std::int64_t oldest() const { return (cursor - count + capacity) % capacity; }  // relative
  std::int64_t newest() const { return previous(cursor); }
  // The slot of the k-th oldest stored frame, and the age rank of a slot.
  std::int64_t slot_at_age(std::int64_t k) const { return base + (oldest() + k) % capacity; }
  std::int64_t age_of(std::int64_t slot) const { return (slot - base - oldest() + capacity) % capacity; }
  kernels::ReplayRow row(std::int64_t slot) const { return {slot, base, capacity}; }
};

class ReplayRings {
 public:
  ReplayRings() = default;
  // `capacity` slots as `count` rings, for stacked states of `stack` frames
  // and n-step windows of `n_step` steps. The caller has checked that each
  // ring holds a whole window.
  ReplayRings(std::int64_t capacity, int count, int stack, int n_step)
      : rings_(static_cast<std::size_t>(count)),
        records_(static_cast<std::size_t>(capacity), kernels::SlotRecord{}),
        stack_(stack),
        n_step_(n_step) {
    std::int64_t base = 0;
    for (int i = 0; i < count; ++i) {
      rings_[i].base = base;
      rings_[i].capacity = capacity / count + (i < capacity % count ? 1 : 0);
      base += rings_[i].capacity;
    }
  }

  int ring_count() const { return static_cast<int>(rings_.size()); }
  ReplayRing& at(int ring) {
    require(ring >= 0 && ring < ring_count(), "replay ring ", ring, " outside [0, ", ring_count(), ")");
    return rings_[ring];
  }
  const ReplayRing& at(int ring) const { return const_cast<ReplayRings*>(this)->at(ring); }
  const ReplayRing& of_slot(std::int64_t slot) const {
    const ReplayRing* r = rings_.data();
    while (slot >= r->base + r->capacity) ++r;
    return *r;
  }
  std::int64_t age_rank(std::int64_t slot) const { return of_slot(slot).age_of(slot); }

  // Stored frames and transitions, summed over the rings.
  std::int64_t frames() const { return frames_; }
  std::int64_t transitions() const { return transitions_; }

  // Every slot's record, slot-indexed: the draws and the bookkeeping read
  // these; ReplayMemory copies them to the backend after each change.
  std::vector<kernels::SlotRecord>& records() { return records_; }
  const std::vector<kernels::SlotRecord>& records() const { return records_; }

  // The transition of ring r's newest frame (whose next frame is about to
  // be stored); returns that frame's slot.
  std::int64_t record_transition(ReplayRing& r, int action, float reward, bool terminated) {
    const std::int64_t current = r.newest();
    kernels::SlotRecord& record = records_[current];
    record.action = static_cast<std::int16_t>(action);
    record.reward = reward;
    record.flags = kernels::replay_has_transition | (terminated ? kernels::replay_terminal : 0);
    ++r.transitions;
    ++transitions_;
    return current;
  }

  // The slot the next frame of ring r goes to; its previous contents (and
  // transition) are dropped.
  std::int64_t next_frame_slot(const ReplayRing& r) const { return r.base + r.cursor; }
  // Takes that slot for a frame with `history` earlier frames of its
  // episode: its record becomes "no transition yet" and the ring advances.
  // Returns the slot.
  std::int64_t store_frame(ReplayRing& r, int history) {
    const std::int64_t slot = next_frame_slot(r);
    kernels::SlotRecord& record = records_[slot];
    if (r.count == r.capacity && (record.flags & kernels::replay_has_transition)) {
      --r.transitions;
      --transitions_;
    }
    record.flags = 0;
    record.history = static_cast<std::uint8_t>(history);
    r.cursor = r.cursor + 1 == r.capacity ? 0 : r.cursor + 1;
    if (r.count < r.capacity) {
      ++r.count;
      ++frames_;
    }
    return slot;
  }

  ReplayRingPosition position(int ring) const {
    const ReplayRing& r = at(ring);
    return {r.cursor, r.count, r.transitions, r.episode_open};
  }
  // Restores a saved position, checked against the ring's capacity so a
  // checkpoint of another configuration cannot be half-used.
  void set_position(const ReplayRingPosition& p, int ring) {
    ReplayRing& r = at(ring);
    require(p.count >= 0 && p.count <= r.capacity && p.cursor >= 0 && p.cursor < r.capacity &&
                (p.count == r.capacity || p.cursor == p.count) && p.transitions >= 0 && p.transitions <= p.count,
            "replay memory position (cursor ", p.cursor, ", count ", p.count, ", transitions ", p.transitions,
            ") is impossible for ring ", ring, " of capacity ", r.capacity);
    frames_ += p.count - r.count;
    transitions_ += p.transitions - r.transitions;
    r.cursor = p.cursor;
    r.count = p.count;
    r.transitions = p.transitions;
    r.episode_open = p.episode_open;
  }

  // A transition is usable when the frames its state needs are still stored
  // (the oldest slots may have lost their history to the ring's overwrite)
  // and its n-step window is complete.
  bool valid(const ReplayRing& r, std::int64_t slot, std::int64_t age_rank) const {
    const kernels::SlotRecord& record = records_[slot];
    if (!kernels::SampleValid{stack_}(record.flags, record.history, age_rank)) return false;
    return n_step_ == 1 || window_complete(r, slot);
  }

  // The ring and the age within it of the k-th oldest stored frame over all
  // rings (ring 0's frames first).
  std::pair<int, std::int64_t> locate(std::int64_t k) const {
    int ring = 0;
    while (k >= rings_[ring].count) k -= rings_[ring++].count;
    return {ring, k};
  }

  // A uniform draw over the stored frames, redrawn until it holds a valid
  // transition: the ring and the slot.
  std::pair<const ReplayRing*, std::int64_t> draw_valid_slot(Rng& rng) const {
    // Rejection ends quickly whenever a fair share of the slots is valid; a
    // bound turns a memory of almost only unusable slots (a tiny ring of
    // short episodes with a long n-step horizon) into an error, not a hang.
    for (std::int64_t attempt = 0; attempt < 1000 + 100 * frames_; ++attempt) {
      const auto k = static_cast<std::int64_t>(rng.uniform_index(static_cast<std::uint64_t>(frames_)));
      const auto [ring, age] = locate(k);
      const ReplayRing& r = rings_[ring];
      const std::int64_t slot = r.slot_at_age(age);
      if (valid(r, slot, age)) return {&r, slot};
    }
    fail("replay memory: no sampleable transition among ", frames_, " stored frames (stack ", stack_, ", n-step ",
         n_step_, "): raise learning_starts or the capacity");
  }

 private:
  // Whether the window from `slot` ends before it reaches the newest frame
  // of an episode still being played.
  bool window_complete(const ReplayRing& r, std::int64_t slot) const {
    for (int k = 0; k < n_step_ - 1; ++k) {
      if (records_[slot].flags & kernels::replay_terminal) return true;
      const std::int64_t after = r.next(slot);
      if (!(records_[after].flags & kernels::replay_has_transition)) return !(r.episode_open && after == r.newest());
      slot = after;
    }
    return true;
  }

  std::vector<ReplayRing> rings_;
  std::vector<kernels::SlotRecord> records_;
  int stack_ = 4, n_step_ = 1;
  std::int64_t frames_ = 0, transitions_ = 0;
};

}  // namespace qrl::rl
