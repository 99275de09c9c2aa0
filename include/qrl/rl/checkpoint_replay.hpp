#pragma once
// A replay memory in a checkpoint: its configuration and each ring's
// position in state.json's "replay" section, and the used slots of each
// ring (frames, actions, rewards, flags, history) as raw arrays. Loading
// takes sizes from this run's configuration, never from the file, and
// checks every stored value before the memory takes it: they are used as
// indices and in the loss.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/io/state_json.hpp>
#include <qrl/kernels/replay.cuh>
#include <qrl/rl/checkpoint_config.hpp>
#include <qrl/rl/checkpoint_files.hpp>
#include <qrl/rl/replay_memory.hpp>

namespace qrl::rl::detail {

// The names of the replay section. Format-2 checkpoints written before the
// per-env rings got their name call them streams: "streams" in replay.config
// and in replay (the positions), arrays "replay.stream<i>.*". The layout is
// the same, so those are still read; saves write the ring names.
struct ReplayNames {
  bool streams = false;  // the old names
  static ReplayNames of(const nlohmann::json& jr) {
    return {jr.is_object() && !jr.contains("rings") && jr.contains("streams")};
  }
  const char* positions() const { return streams ? "streams" : "rings"; }
  std::string prefix(int ring) const { return (streams ? "replay.stream" : "replay.ring") + std::to_string(ring) + "."; }
};

// The replay configuration a checkpoint was saved with, under today's names.
inline nlohmann::json saved_replay_config(const nlohmann::json& jr, const std::string& where) {
  nlohmann::json config = section(jr, "config", where);
  if (config.is_object() && config.contains("streams") && !config.contains("rings")) {
    config["rings"] = config["streams"];
    config.erase("streams");
  }
  return config;
}

// A replay memory saves its configuration, each ring's position and the
// used slots of its arrays.
template <Backend B>
nlohmann::json save_replay(CheckpointWriter& out, ReplayMemory<B>& replay, nlohmann::json& arrays) {
  const auto& rc = replay.config();
  nlohmann::json positions = nlohmann::json::array();
  for (int i = 0; i < replay.rings(); ++i) {
    const auto pos = replay.position(i);
    const auto base = static_cast<std::size_t>(replay.ring_base(i));
    const auto used = static_cast<std::uint64_t>(pos.count);
    const std::string prefix = ReplayNames{}.prefix(i);
    auto array = [&](const char* what, const void* data, std::uint64_t bytes, const char* dtype) {
      arrays[prefix + what] = out.array(prefix + what, data, bytes, dtype);
    };
    const std::uint64_t frame_bytes = rc.frame.bytes();
    arrays[prefix + "frames"] = out.array(prefix + "frames", used * frame_bytes, "U8",
                                          [&](std::uint64_t offset, std::uint64_t n, char* into) {
                                            // chunk_bytes need not be a multiple of a frame
                                            std::vector<std::uint8_t> frames;
                                            const std::uint64_t first = offset / frame_bytes;
                                            const std::uint64_t last = (offset + n + frame_bytes - 1) / frame_bytes;
                                            frames.resize(static_cast<std::size_t>((last - first) * frame_bytes));
                                            replay.read_frames(static_cast<std::int64_t>(base + first),
                                                               static_cast<std::int64_t>(last - first), frames.data());
                                            std::memcpy(into, frames.data() + (offset - first * frame_bytes), n);
                                          });
    const auto records = replay.records().subspan(base, static_cast<std::size_t>(used));
    std::vector<std::int16_t> actions;
    std::vector<float> rewards;
    std::vector<std::uint8_t> flags, history;
    for (const auto& r : records) {
      actions.push_back(r.action);
      rewards.push_back(r.reward);
      flags.push_back(r.flags);
      history.push_back(r.history);
    }
    array("actions", actions.data(), used * 2, "I16");
    array("rewards", rewards.data(), used * 4, "F32");
    array("flags", flags.data(), used, "U8");
    array("history", history.data(), used, "U8");
    positions.push_back({{"cursor", pos.cursor}, {"count", pos.count}, {"transitions", pos.transitions},
                         {"episode_open", pos.episode_open}});
  }
  nlohmann::json j{{"config", replay_config_json(rc)}, {ReplayNames{}.positions(), positions}};
  if (replay.prioritized()) {  // the sum tree's leaves, every slot's p^alpha
    const auto leaves = replay.prioritized_sampler().leaf_priorities();
    arrays["replay.priorities"] = out.array("replay.priorities", leaves.data(), leaves.size() * sizeof(double), "F64");
    j["max_priority"] = replay.prioritized_sampler().max_priority();
  }
  return j;
}

template <Backend B>
void load_replay(const std::filesystem::path& dir, const nlohmann::json& state, ReplayMemory<B>& replay,
                 int action_count) {
  const std::string where = (dir / "state.json").string();
  const auto& jr = section(state, "replay", where);
  const auto& rc = replay.config();
  require_same_config(saved_replay_config(jr, where), replay_config_json(rc), "replay", where);
  const ReplayNames names = ReplayNames::of(jr);
  const auto& positions = section(jr, names.positions(), where);
  require(positions.is_array() && static_cast<int>(positions.size()) == rc.rings, where, ": 'replay.",
          names.positions(), "' must list ", rc.rings, " ring positions");
  const auto& arrays = section(state, "arrays", where);
  if (replay.prioritized()) {  // before the rings, whose checks read it
    std::vector<double> leaves(static_cast<std::size_t>(rc.capacity));
    read_array(dir, arrays, "replay.priorities", leaves.data(), leaves.size() * sizeof(double));
    try {
      replay.prioritized_sampler().restore(leaves, io::json_get<double>(jr, "max_priority", where));
    } catch (const Error& e) {
      fail(where, ": ", e.what());
    }
  }
  for (int i = 0; i < rc.rings; ++i) {
    const auto& jp = positions[static_cast<std::size_t>(i)];
    typename ReplayMemory<B>::Position pos;
    pos.cursor = io::json_get<std::int64_t>(jp, "cursor", where);
    pos.count = io::json_get<std::int64_t>(jp, "count", where);
    pos.transitions = io::json_get<std::int64_t>(jp, "transitions", where);
    pos.episode_open = io::json_get<bool>(jp, "episode_open", where);
    try {
      replay.set_position(pos, i);
    } catch (const Error& e) {
      fail(where, ": ", e.what(), " — the checkpoint is damaged; resume from an older one");
    }
    const auto base = static_cast<std::size_t>(replay.ring_base(i));
    const auto used = static_cast<std::uint64_t>(pos.count);
    const std::string prefix = names.prefix(i);
    const std::uint64_t frame_bytes = rc.frame.bytes();
    // Frames go to the backend's memory a chunk at a time; a chunk may end
    // inside a frame, whose head waits in `partial`.
    std::vector<std::uint8_t> partial;
    read_array_chunks(dir, arrays, prefix + "frames", used * frame_bytes,
                      [&](std::uint64_t offset, const char* data, std::uint64_t n) {
                        partial.insert(partial.end(), data, data + n);
                        const std::uint64_t whole = partial.size() / frame_bytes;
                        const std::uint64_t first = (offset + n) / frame_bytes - whole;
                        replay.write_frames(static_cast<std::int64_t>(base + first), static_cast<std::int64_t>(whole),
                                            partial.data());
                        partial.erase(partial.begin(), partial.begin() + static_cast<std::ptrdiff_t>(whole * frame_bytes));
                      });
    std::vector<std::int16_t> actions(used);
    std::vector<float> rewards(used);
    std::vector<std::uint8_t> flags(used), history(used);
    read_array(dir, arrays, prefix + "actions", actions.data(), used * 2);
    read_array(dir, arrays, prefix + "rewards", rewards.data(), used * 4);
    read_array(dir, arrays, prefix + "flags", flags.data(), used);
    read_array(dir, arrays, prefix + "history", history.data(), used);
    // The values are used as indices and in the loss: check them all before
    // the memory takes them.
    std::int64_t transitions = 0;
    for (std::uint64_t k = 0; k < used; ++k) {
      require(flags[k] == 0 || flags[k] == kernels::replay_has_transition ||
                  flags[k] == (kernels::replay_has_transition | kernels::replay_terminal),
              where, ": replay ring ", i, " slot ", k, " has invalid flags ", int{flags[k]},
              " — the checkpoint is damaged; resume from an older one");
      if (!(flags[k] & kernels::replay_has_transition)) continue;
      ++transitions;
      const int action = actions[k];
      require(action >= 0 && action < action_count, where, ": replay ring ", i, " slot ", k, " holds action ",
              action, ", outside [0, ", action_count, ") — the checkpoint is damaged or from another game");
      require(ReplayMemory<B>::reward_storable(rewards[k]), where, ": replay ring ", i, " slot ", k,
              " holds reward ", rewards[k], ", not a finite value within ±", ReplayMemory<B>::max_abs_reward,
              " — the checkpoint is damaged; resume from an older one");
    }
    require(transitions == pos.transitions, where, ": replay ring ", i, " flags ", transitions,
            " transitions, its position says ", pos.transitions, " — the checkpoint is damaged");
    // A prioritized slot must hold a transition; a slot the ring has not
    // reached yet holds none.
    if (replay.prioritized())
      for (std::int64_t k = 0; k < replay.ring_capacity(i); ++k)
        if (replay.prioritized_sampler().stored(static_cast<std::int64_t>(base) + k) > 0.0)
          require(k < pos.count && (flags[static_cast<std::size_t>(k)] & kernels::replay_has_transition), where,
                  ": replay ring ", i, " slot ", k, " has a priority but no transition",
                  k < pos.count ? "" : " (the ring has not reached it)", " — the checkpoint is damaged");
    if (pos.count > 0) {
      const auto newest = static_cast<std::size_t>((pos.cursor + replay.ring_capacity(i) - 1) %
                                                   replay.ring_capacity(i));
      require(!(flags[newest] & kernels::replay_has_transition), where, ": replay ring ", i,
              "'s newest frame holds a transition whose next frame is not stored — the checkpoint is damaged");
    }
    std::vector<kernels::SlotRecord> records(used);
    for (std::uint64_t k = 0; k < used; ++k) records[k] = {rewards[k], actions[k], flags[k], history[k]};
    replay.restore_records(static_cast<std::int64_t>(base), records);
    // A prioritized slot the sampler could draw but the memory would reject
    // (its stacked state or n-step window incomplete) could take most draws.
    if (replay.prioritized())
      for (std::int64_t k = 0; k < pos.count; ++k) {
        const std::int64_t slot = static_cast<std::int64_t>(base) + k;
        if (replay.prioritized_sampler().stored(slot) > 0.0)
          require(replay.sampleable(slot), where, ": replay ring ", i, " slot ", k,
                  " has a priority but its stacked state or n-step window is incomplete — the checkpoint is damaged");
      }
  }
}

}  // namespace qrl::rl::detail
