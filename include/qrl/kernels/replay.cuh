#pragma once
// The replay memory's rules for one slot, written once for every backend:
// which stored frame fills each channel of a stacked state, and whether a
// slot can be sampled. The acting side's FrameStack gathers with the same
// rule, so the agent acts on exactly the states it later learns from.
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

}  // namespace qrl::kernels
