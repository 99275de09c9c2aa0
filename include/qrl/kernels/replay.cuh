#pragma once
// The replay memory's rules, written once for every backend: which stored
// frame fills each channel of a stacked state, whether a slot can be
// sampled, the n-step window from a slot, and the batch gather built from
// them (kernels::ReplayGather: the CPU runs it in a loop, CUDA in a kernel).
// The acting side's FrameStack gathers with the same stacking rule, so the
// agent acts on exactly the states it later learns from.
#include <cstdint>

#include <qrl/core/host_device.hpp>

namespace qrl::kernels {

// Slot flags: the slot's frame has a transition (its action, reward and the
// next frame are stored), and that transition ended in a true terminal.
inline constexpr std::uint8_t replay_has_transition = 1;
inline constexpr std::uint8_t replay_terminal = 2;

// A stacked state ends at `slot` of a ring [base, base + capacity) whose
// frame has `history` earlier frames of the same episode stored before it.
// Channel c (oldest first) takes the frame stack - 1 - c steps back, but
// never reaches past the episode's first frame: at an episode start the
// first frame is repeated, so a stack never mixes two episodes.
struct StackGather {
  int stack = 4;
  QRL_HOST_DEVICE std::int64_t source(std::int64_t base, std::int64_t capacity, std::int64_t slot, int history,
                                      int channel) const {
    const int reach = history < stack - 1 ? history : stack - 1;
    const int wanted = stack - 1 - channel;
    const int back = wanted < reach ? wanted : reach;
    return base + (slot - base - back + capacity) % capacity;
  }
};

// A slot can be sampled when it holds a transition and the frames its
// stacked state needs are still stored: the `age_rank` oldest slots of a
// full ring may have lost their history to the overwrite.
struct SampleValid {
  int stack = 4;
  QRL_HOST_DEVICE bool operator()(std::uint8_t flags, int history, std::int64_t age_rank) const {
    if (!(flags & replay_has_transition)) return false;
    const int needed = history < stack - 1 ? history : stack - 1;
    return age_rank >= needed;
  }
};

// Everything the memory keeps about a slot besides its frame, in one
// 8-byte record so that a step's write is one copy on every backend.
// history: earlier frames of the same episode stored before this one
// (capped at 255); action/reward/flags: the slot's transition, if any.
struct SlotRecord {
  float reward = 0.0f;
  std::int16_t action = 0;
  std::uint8_t flags = 0;
  std::uint8_t history = 0;
};
static_assert(sizeof(SlotRecord) == 8, "SlotRecord is the replay memory's 8 bytes of metadata per slot");

// A sampled row: its slot and the ring [base, base + capacity) it lies in.
struct ReplayRow {
  std::int64_t slot = 0, base = 0, capacity = 0;
};

// Where an n-step window from a slot ends: its discounted reward sum, the
// discount of the bootstrap value (gamma^steps, 0 after a true terminal),
// its length and the slot whose stacked state is the next state.
struct NStepEnd {
  float reward = 0.0f, discount = 0.0f;
  int steps = 0;
  std::int64_t next_slot = 0;
};

// The n-step window from a valid slot: forward over the same ring until n
// steps, a true terminal (no bootstrap) or the last frame of an episode
// that was cut (truncated: bootstrap there). With n = 1 this is (r, gamma
// or 0, the next slot): the one-step target's arithmetic, bit for bit.
struct NStepWindow {
  int n_step = 1;
  float gamma = 0.99f;
  QRL_HOST_DEVICE NStepEnd operator()(const SlotRecord* records, const ReplayRow& row) const {
    NStepEnd end;
    float factor = 1.0f;
    std::int64_t slot = row.slot;
    for (int k = 0; k < n_step; ++k) {
      end.reward += factor * records[slot].reward;
      factor *= gamma;
      end.steps = k + 1;
      end.next_slot = slot + 1 == row.base + row.capacity ? row.base : slot + 1;
      if (records[slot].flags & replay_terminal) return end;  // discount stays 0
      if (k + 1 == n_step || !(records[end.next_slot].flags & replay_has_transition)) break;
      slot = end.next_slot;
    }
    end.discount = factor;
    return end;
  }
};

// One batch gather: rows[i] (slots the host drew) becomes row i of the
// batch. `frames` and `records` are the memory's arrays and every output
// is a [batch]-row array, all in the backend's memory. With next_states
// null only the states are gathered (acting: the newest frame of each
// stream has no transition yet), and actions, rewards and discounts are
// not written.
struct ReplayGatherArgs {
  const std::uint8_t* frames = nullptr;  // [slots, frame_bytes]
  const SlotRecord* records = nullptr;   // [slots]
  const ReplayRow* rows = nullptr;       // [batch]
  int batch = 0;
  int stack = 4;
  std::int64_t frame_bytes = 0;
  NStepWindow window;
  std::uint8_t* states = nullptr;       // [batch, stack, frame_bytes]
  std::uint8_t* next_states = nullptr;  // [batch, stack, frame_bytes]
  std::int32_t* actions = nullptr;      // [batch]
  float* rewards = nullptr;             // [batch] n-step discounted reward sums
  float* discounts = nullptr;           // [batch]
};

// What row i of a gather takes from where. The backends differ only in how
// they move the bytes: the CPU copies each (row, state, channel) frame with
// memcpy, CUDA gives each one a block.
struct ReplayGather {
  ReplayGatherArgs a;
  QRL_HOST_DEVICE bool states_only() const { return a.next_states == nullptr; }
  // Gathers per row: the state, then the next state unless states_only().
  QRL_HOST_DEVICE int states_per_row() const { return states_only() ? 1 : 2; }
  QRL_HOST_DEVICE NStepEnd end(int i) const { return a.window(a.records, a.rows[i]); }
  // Row i's action, n-step reward and discount (none when states_only()).
  QRL_HOST_DEVICE void write_scalars(int i, const NStepEnd& e) const {
    if (states_only()) return;
    a.actions[i] = a.records[a.rows[i].slot].action;
    a.rewards[i] = e.reward;
    a.discounts[i] = e.discount;
  }
  // The stored frame that fills channel c of row i's state (next = false)
  // or next state, whose window ends at `e`.
  QRL_HOST_DEVICE const std::uint8_t* source(int i, bool next, const NStepEnd& e, int c) const {
    const ReplayRow& row = a.rows[i];
    const std::int64_t at = next ? e.next_slot : row.slot;
    const std::int64_t slot = StackGather{a.stack}.source(row.base, row.capacity, at, a.records[at].history, c);
    return a.frames + slot * a.frame_bytes;
  }
  QRL_HOST_DEVICE std::uint8_t* destination(int i, bool next, int c) const {
    return (next ? a.next_states : a.states) + (static_cast<std::int64_t>(i) * a.stack + c) * a.frame_bytes;
  }
};

}  // namespace qrl::kernels
