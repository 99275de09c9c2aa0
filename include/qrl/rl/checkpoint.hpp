#pragma once
// Training checkpoints that a run can be resumed from exactly.
//
//   <checkpoints>/step_000000050000/
//     model.safetensors     online network, PyTorch nn.Sequential names ("0.weight")
//     training.safetensors  target network ("target.0.weight") and Adam moments
//                           ("adam.exp_avg.0.weight", "adam.exp_avg_sq.0.weight")
//     state.json            each part's own section: agent (config, counters),
//                           schedule, trainer (counters, episodes, every env's
//                           tally and seed stream), epsilon, RNG states, the
//                           envs' states, replay (config, ring positions),
//                           the run's configuration, qrl version
//     arrays/*.bin          replay memory and frame stacks, raw little-endian, chunked
//     COMPLETE              manifest: bytes and CRC-32C of every file above; written last
//
// A checkpoint is written into "<name>.tmp-<pid>", every file fsynced, the
// manifest last, then the directory is renamed into place and its parent
// fsynced. A crash at any point leaves the previous checkpoints untouched and
// at worst a temporary directory, which the next save or resume removes.
// Loading checks the manifest (presence, sizes, CRCs) before reading anything,
// so a truncated, bit-flipped or unfinished checkpoint is an error, never used.
// Then every field is treated as hostile, as the safetensors reader treats
// its files: each part checks the configuration it was saved with against
// the one asked for (naming the first difference), sizes come from the
// configuration and never from the file, and every loaded value is
// range-checked (actions, rewards, flags, positions) before it is used.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <concepts>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/io/file.hpp>
#include <qrl/io/safetensors.hpp>
#include <qrl/io/state_json.hpp>
#include <qrl/nn/serialize.hpp>
#include <qrl/rl/trainer.hpp>
#include <qrl/version.hpp>

namespace qrl::rl {

// An environment whose dynamic state can be saved and restored mid-episode.
template <class E>
concept CheckpointableEnvironment = env::Environment<E> && requires(E env, const E const_env, const nlohmann::json& j) {
  { const_env.save_state() } -> std::convertible_to<nlohmann::json>;
  env.load_state(j);
};

// Any other environment (a browser game, whose state lives in another
// process) is checkpointed inexactly: everything of the learner is saved as
// for the others, and on load the episode the save interrupted is closed as
// truncated (its last frame ends it, as a step limit would) and the next
// step begins a fresh episode. Its score is read from score() where the env
// has one. Counters the env keeps across episodes (a recorder's episode
// number) survive through save_counters()/load_counters() where it has them.
namespace detail {
template <class E>
concept HasScore = requires(const E& e) {
  { e.score() } -> std::convertible_to<double>;
};
template <class E>
concept HasCounters = requires(E env, const E const_env, const nlohmann::json& j) {
  { const_env.save_counters() } -> std::convertible_to<nlohmann::json>;
  env.load_counters(j);
};
}  // namespace detail

struct CheckpointOptions {
  int keep_last = 3;                          // complete step_* checkpoints kept; 0 = all
  std::uint64_t chunk_bytes = 256ull << 20;   // largest array file
  // Called after each file is durably written (tests use it to die mid-save).
  std::function<void(const std::filesystem::path&)> after_file;
};

// Version 2: one trainer for N envs (per-env tallies, seed streams, frame
// stacks and env states), the update schedule, n-step replay.
inline constexpr int checkpoint_format_version = 2;

inline std::string checkpoint_name(std::int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%012lld", static_cast<long long>(step));
  return buf;
}

namespace detail {

// Step of a "step_<digits>" directory name, or -1.
inline std::int64_t checkpoint_step(const std::string& name) {
  if (name.size() != 17 || name.rfind("step_", 0) != 0) return -1;
  if (name.find_first_not_of("0123456789", 5) != std::string::npos) return -1;
  return std::stoll(name.substr(5));
}

class CheckpointWriter {
 public:
  CheckpointWriter(std::filesystem::path dir, const CheckpointOptions& options) : dir_(std::move(dir)), options_(options) {}

  void file(const std::string& name, std::string_view bytes) {
    io::FileWriter out(dir_ / name);
    out.write(bytes);
    finish(name, out);
  }

  // A raw array split into files of at most chunk_bytes.
  nlohmann::json array(const std::string& name, const void* data, std::uint64_t bytes, const char* dtype) {
    const auto* p = static_cast<const char*>(data);
    return array(name, bytes, dtype, [p](std::uint64_t offset, std::uint64_t n, char* out) {
      std::memcpy(out, p + offset, n);
    });
  }
  // The same for an array that is not in host memory in one piece:
  // fill(offset, n, out) puts its bytes [offset, offset + n) into out, one
  // chunk at a time, so saving needs one chunk of host memory beside it.
  template <class Fill>
  nlohmann::json array(const std::string& name, std::uint64_t bytes, const char* dtype, Fill&& fill) {
    nlohmann::json chunks = nlohmann::json::array();
    std::vector<char> buffer;
    std::uint64_t done = 0;
    int index = 0;
    do {
      const std::uint64_t n = std::min(options_.chunk_bytes, bytes - done);
      buffer.resize(static_cast<std::size_t>(n));
      fill(done, n, buffer.data());
      char suffix[16];
      std::snprintf(suffix, sizeof suffix, ".%05d.bin", index++);
      const std::string rel = "arrays/" + name + suffix;
      io::FileWriter out(dir_ / rel);
      out.write(buffer.data(), n);
      finish(rel, out);
      chunks.push_back(rel);
      done += n;
    } while (done < bytes);
    return {{"dtype", dtype}, {"bytes", bytes}, {"chunks", chunks}};
  }

  void complete() {
    io::fsync_directory(dir_ / "arrays");
    nlohmann::json manifest{{"format", "qrl-checkpoint"}, {"format_version", checkpoint_format_version},
                            {"files", manifest_}};
    io::FileWriter out(dir_ / "COMPLETE");
    out.write(manifest.dump(1));
    out.commit();
    io::fsync_directory(dir_);
    if (options_.after_file) options_.after_file(dir_ / "COMPLETE");
  }

 private:
  void finish(const std::string& name, io::FileWriter& out) {
    out.commit();
    manifest_[name] = {{"bytes", out.bytes()}, {"crc32c", io::hex_u64(out.crc())}};
    if (options_.after_file) options_.after_file(dir_ / name);
  }

  std::filesystem::path dir_;
  const CheckpointOptions& options_;
  nlohmann::json manifest_ = nlohmann::json::object();
};

inline bool process_alive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

template <Backend B>
io::StoredTensor stored(Context<B>& ctx, Tensor<B, float>& t) {
  io::StoredTensor s;
  for (int i = 0; i < t.shape().rank(); ++i) s.shape.push_back(t.shape()[i]);
  s.values = to_host(ctx, t);
  return s;
}

template <Backend B>
void load_tensor(Context<B>& ctx, const io::SafetensorsFile& file, const std::string& name, Tensor<B, float>& t,
                 const std::string& where) {
  const auto it = file.tensors.find(name);
  require(it != file.tensors.end(), where, ": no tensor '", name, "' — saved for a different network");
  nn::require_stored_shape(it->second, t.shape(), where, name, " — saved for a different network");
  upload<B, float>(ctx, it->second.values, t);
}

inline nlohmann::json episode_json(const EpisodeRecord& e) {
  return {{"index", e.index},   {"end_step", e.end_step}, {"return", e.episode_return}, {"length", e.length},
          {"score", e.score},   {"truncated", e.truncated}, {"wall_seconds", e.wall_seconds}, {"env", e.env}};
}

inline EpisodeRecord episode_from_json(const nlohmann::json& j, const std::string& where) {
  EpisodeRecord e;
  e.index = io::json_get<std::int64_t>(j, "index", where);
  e.end_step = io::json_get<std::int64_t>(j, "end_step", where);
  e.episode_return = io::json_get<double>(j, "return", where);
  e.length = io::json_get<std::int64_t>(j, "length", where);
  e.score = io::json_get<double>(j, "score", where);
  e.truncated = io::json_get<bool>(j, "truncated", where);
  e.wall_seconds = io::json_get<double>(j, "wall_seconds", where);
  e.env = j.contains("env") ? io::json_get<int>(j, "env", where) : 0;
  // The recent-episode window feeds the progress line's means and the best
  // return: an impossible record would print as a real result.
  require(e.index >= 0 && e.end_step >= 0 && e.length >= 0 && e.env >= 0 && std::isfinite(e.episode_return) &&
              std::isfinite(e.score) && std::isfinite(e.wall_seconds) && e.wall_seconds >= 0.0,
          where, ": episode record ", e.index, " is impossible (negative count or non-finite value): the "
          "checkpoint was edited or damaged; resume from an older one");
  return e;
}

// A JSON section that must be there: an error naming the file and the key
// (not nlohmann's "key not found").
inline const nlohmann::json& section(const nlohmann::json& j, const char* key, const std::string& where) {
  require(j.is_object() && j.contains(key), where, ": missing '", key,
          "' — not a checkpoint this qrl writes; resume from another checkpoint");
  return j[key];
}

// The first field where `saved` and `wanted` differ ("a.b: 0.99 vs 0.9"), or
// "" when they agree. Both are the same part's config as JSON.
inline std::string first_difference(const nlohmann::json& saved, const nlohmann::json& wanted,
                                    const std::string& path) {
  if (saved.is_object() && wanted.is_object()) {
    for (auto it = wanted.begin(); it != wanted.end(); ++it) {
      if (!saved.contains(it.key())) return path + it.key() + ": missing in the checkpoint";
      const auto d = first_difference(saved[it.key()], it.value(), path + it.key() + ".");
      if (!d.empty()) return d;
    }
    for (auto it = saved.begin(); it != saved.end(); ++it)
      if (!wanted.contains(it.key())) return path + it.key() + ": in the checkpoint, unknown to this run";
    return "";
  }
  if (saved == wanted) return "";
  std::string key = path.empty() ? path : path.substr(0, path.size() - 1);
  return key + ": " + saved.dump() + " in the checkpoint, " + wanted.dump() + " in this run";
}

inline void require_same_config(const nlohmann::json& saved, const nlohmann::json& wanted, const std::string& part,
                                const std::string& where) {
  const std::string d = first_difference(saved, wanted, part + ".");
  require(d.empty(), where, ": saved with another configuration: ", d,
          " (resume with the run's own config: --resume RUN_DIR reads RUN_DIR/config.toml)");
}

inline nlohmann::json replay_config_json(const ReplayConfig& rc) {
  nlohmann::json prioritized = nullptr;
  if (rc.prioritized) {
    const auto& p = *rc.prioritized;
    prioritized = {{"alpha", p.alpha},         {"beta_start", p.beta_start}, {"beta_end", p.beta_end},
                   {"beta_steps", p.beta_steps}, {"epsilon", p.epsilon}};
  }
  return {{"capacity", rc.capacity}, {"frame", {rc.frame.height, rc.frame.width, rc.frame.channels}},
          {"stack", rc.stack},       {"streams", rc.streams},
          {"n_step", rc.n_step},     {"prioritized", prioritized}};
}

inline std::string stream_prefix(int s) { return "replay.stream" + std::to_string(s) + "."; }

// A replay memory saves its configuration, each ring's position and the
// used slots of its arrays.
template <Backend B>
nlohmann::json save_replay(CheckpointWriter& out, ReplayMemory<B>& replay, nlohmann::json& arrays) {
  const auto& rc = replay.config();
  nlohmann::json positions = nlohmann::json::array();
  for (int s = 0; s < replay.streams(); ++s) {
    const auto pos = replay.position(s);
    const auto base = static_cast<std::size_t>(replay.stream_base(s));
    const auto used = static_cast<std::uint64_t>(pos.count);
    const std::string prefix = stream_prefix(s);
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
  nlohmann::json j{{"config", replay_config_json(rc)}, {"streams", positions}};
  if (replay.prioritized()) {  // the sum tree's leaves, every slot's p^alpha
    const auto leaves = replay.prioritized_sampler().leaf_priorities();
    arrays["replay.priorities"] = out.array("replay.priorities", leaves.data(), leaves.size() * sizeof(double), "F64");
    j["max_priority"] = replay.prioritized_sampler().max_priority();
  }
  return j;
}

// Reads a raw array chunk by chunk into sink(offset, bytes, n); see
// read_array below for what is checked.
template <class Sink>
void read_array_chunks(const std::filesystem::path& dir, const nlohmann::json& arrays, const std::string& name,
                       std::uint64_t expected, Sink&& sink) {
  namespace fs = std::filesystem;
  const std::string where = (dir / "state.json").string();
  require(arrays.is_object() && arrays.contains(name), where, ": no array '", name, "'");
  const auto& a = arrays[name];
  const auto bytes = io::json_get<std::uint64_t>(a, "bytes", where);
  require(bytes == expected, where, ": array '", name, "' holds ", bytes, " bytes, expected ", expected,
          " for this configuration");
  require(a.contains("chunks") && a["chunks"].is_array(), where, ": array '", name, "' lists no chunks");
  std::uint64_t done = 0;
  for (const auto& chunk : a["chunks"]) {
    require(chunk.is_string(), where, ": a chunk of '", name, "' is not a file name");
    const std::string rel = chunk.get<std::string>();
    require(!rel.empty() && rel[0] != '/' && rel.find("..") == std::string::npos, where, ": chunk '", rel,
            "' of '", name, "' leaves the checkpoint directory");
    const fs::path path = dir / rel;
    std::error_code ec;
    require(fs::is_regular_file(path, ec), path.string(), ": a chunk of '", name,
            "' must be a regular file of the checkpoint (missing, or a device or directory)");
    const auto size = fs::file_size(path, ec);
    require(!ec && done + size <= bytes, path.string(), ": chunks of '", name, "' exceed its ", bytes, " bytes");
    const auto data = io::read_file(path);
    require(data.size() == size, path.string(), ": changed size while being read");
    sink(done, data.data(), static_cast<std::uint64_t>(data.size()));
    done += data.size();
  }
  require(done == bytes, where, ": chunks of '", name, "' hold ", done, " bytes, expected ", bytes);
}

// Reads a raw array whose size this run's configuration fixes. Its chunks
// must be regular files inside the checkpoint that add up to exactly that
// size: a chunk that is a device (/dev/zero) or larger than stated is an
// error before anything is allocated for it.
inline void read_array(const std::filesystem::path& dir, const nlohmann::json& arrays, const std::string& name,
                       void* dst, std::uint64_t expected) {
  auto* p = static_cast<char*>(dst);
  read_array_chunks(dir, arrays, name, expected,
                    [p](std::uint64_t offset, const char* data, std::uint64_t n) { std::memcpy(p + offset, data, n); });
}

template <Backend B>
void load_replay(const std::filesystem::path& dir, const nlohmann::json& state, ReplayMemory<B>& replay,
                 int action_count) {
  const std::string where = (dir / "state.json").string();
  const auto& jr = section(state, "replay", where);
  const auto& rc = replay.config();
  require_same_config(section(jr, "config", where), replay_config_json(rc), "replay", where);
  const auto& positions = section(jr, "streams", where);
  require(positions.is_array() && static_cast<int>(positions.size()) == rc.streams, where,
          ": 'replay.streams' must list ", rc.streams, " ring positions");
  const auto& arrays = section(state, "arrays", where);
  if (replay.prioritized()) {  // before the streams, whose checks read it
    std::vector<double> leaves(static_cast<std::size_t>(rc.capacity));
    read_array(dir, arrays, "replay.priorities", leaves.data(), leaves.size() * sizeof(double));
    try {
      replay.prioritized_sampler().restore(leaves, io::json_get<double>(jr, "max_priority", where));
    } catch (const Error& e) {
      fail(where, ": ", e.what());
    }
  }
  for (int s = 0; s < rc.streams; ++s) {
    const auto& jp = positions[static_cast<std::size_t>(s)];
    typename ReplayMemory<B>::Position pos;
    pos.cursor = io::json_get<std::int64_t>(jp, "cursor", where);
    pos.count = io::json_get<std::int64_t>(jp, "count", where);
    pos.transitions = io::json_get<std::int64_t>(jp, "transitions", where);
    pos.episode_open = io::json_get<bool>(jp, "episode_open", where);
    try {
      replay.set_position(pos, s);
    } catch (const Error& e) {
      fail(where, ": ", e.what(), " — the checkpoint is damaged; resume from an older one");
    }
    const auto base = static_cast<std::size_t>(replay.stream_base(s));
    const auto used = static_cast<std::uint64_t>(pos.count);
    const std::string prefix = stream_prefix(s);
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
              where, ": replay stream ", s, " slot ", k, " has invalid flags ", int{flags[k]},
              " — the checkpoint is damaged; resume from an older one");
      if (!(flags[k] & kernels::replay_has_transition)) continue;
      ++transitions;
      const int action = actions[k];
      require(action >= 0 && action < action_count, where, ": replay stream ", s, " slot ", k, " holds action ",
              action, ", outside [0, ", action_count, ") — the checkpoint is damaged or from another game");
      require(ReplayMemory<B>::reward_storable(rewards[k]), where, ": replay stream ", s, " slot ", k,
              " holds reward ", rewards[k], ", not a finite value within ±", ReplayMemory<B>::max_abs_reward,
              " — the checkpoint is damaged; resume from an older one");
    }
    require(transitions == pos.transitions, where, ": replay stream ", s, " flags ", transitions,
            " transitions, its position says ", pos.transitions, " — the checkpoint is damaged");
    // A prioritized slot must hold a transition; a slot the ring has not
    // reached yet holds none.
    if (replay.prioritized())
      for (std::int64_t k = 0; k < replay.stream_capacity(s); ++k)
        if (replay.prioritized_sampler().stored(static_cast<std::int64_t>(base) + k) > 0.0)
          require(k < pos.count && (flags[static_cast<std::size_t>(k)] & kernels::replay_has_transition), where,
                  ": replay stream ", s, " slot ", k, " has a priority but no transition",
                  k < pos.count ? "" : " (the ring has not reached it)", " — the checkpoint is damaged");
    if (pos.count > 0) {
      const auto newest = static_cast<std::size_t>((pos.cursor + replay.stream_capacity(s) - 1) %
                                                   replay.stream_capacity(s));
      require(!(flags[newest] & kernels::replay_has_transition), where, ": replay stream ", s,
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
          require(replay.sampleable(slot), where, ": replay stream ", s, " slot ", k,
                  " has a priority but its stacked state or n-step window is incomplete — the checkpoint is damaged");
      }
  }
}

inline const char* epsilon_kind_name(EpsilonSchedule::Kind k) {
  return k == EpsilonSchedule::Kind::constant ? "constant" : k == EpsilonSchedule::Kind::linear ? "linear" : "exponential";
}

}  // namespace detail

// Removes "<name>.tmp-<pid>" / ".old-<pid>" directories left by saves whose
// process is gone. Returns how many were removed.
inline int remove_stale_checkpoint_temporaries(const std::filesystem::path& checkpoints_dir) {
  namespace fs = std::filesystem;
  int removed = 0;
  std::error_code ec;
  if (!fs::is_directory(checkpoints_dir, ec)) return 0;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir)) {
    const auto name = entry.path().filename().string();
    for (const char* marker : {".tmp-", ".old-"}) {
      const auto at = name.find(marker);
      if (at == std::string::npos) continue;
      const long pid = std::atol(name.c_str() + at + 5);
      if (pid != ::getpid() && detail::process_alive(pid)) continue;  // another live process is saving
      fs::remove_all(entry.path(), ec);
      ++removed;
    }
  }
  return removed;
}

// Complete-looking step_* checkpoints (named ones, e.g. debug_*, excluded),
// oldest first.
inline std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& checkpoints_dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::int64_t, fs::path>> found;
  std::error_code ec;
  if (fs::is_directory(checkpoints_dir, ec))
    for (const auto& entry : fs::directory_iterator(checkpoints_dir)) {
      const auto step = detail::checkpoint_step(entry.path().filename().string());
      if (step >= 0 && entry.is_directory()) found.emplace_back(step, entry.path());
    }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

// The newest step_* checkpoint, whether or not it is valid: a damaged newest
// checkpoint must be reported, not skipped in favour of an older one.
inline std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& checkpoints_dir) {
  auto all = list_checkpoints(checkpoints_dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

// Checks a checkpoint's manifest against its files (existence, size,
// CRC-32C) and returns its parsed state.json. Every failure names the file.
inline nlohmann::json verify_checkpoint(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  const std::string where = dir.string();
  const std::string advice = " — the checkpoint is damaged; resume from an older one (--resume " +
                             (dir.parent_path() / "step_...").string() + ") or delete this one";
  require(fs::is_directory(dir), where, ": no such checkpoint directory");
  const auto marker = dir / "COMPLETE";
  require(fs::exists(marker), where, ": no COMPLETE marker, so the save that wrote it never finished", advice);
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(io::read_file(marker));
  } catch (const nlohmann::json::exception& e) {
    fail(marker.string(), ": not valid JSON (", e.what(), ")", advice);
  }
  require(manifest.is_object() && manifest.value("format", "") == "qrl-checkpoint" && manifest.contains("files") &&
              manifest["files"].is_object(),
          marker.string(), ": not a qrl checkpoint manifest", advice);
  require(manifest.value("format_version", 0) == checkpoint_format_version, marker.string(),
          ": checkpoint format version ", manifest.value("format_version", 0), ", this qrl reads version ",
          checkpoint_format_version, " (version 1 predates the one trainer for N envs): continue that run with the "
          "qrl that wrote it, or start a new run");
  for (auto& [name, entry] : manifest["files"].items()) {
    require(name.find("..") == std::string::npos && !name.empty() && name[0] != '/', marker.string(),
            ": file name '", name, "' leaves the checkpoint directory");
    const auto path = dir / name;
    require(fs::is_regular_file(path), path.string(), ": missing", advice);
    const auto bytes = io::json_get<std::uint64_t>(entry, "bytes", marker.string());
    const auto size = fs::file_size(path);
    require(size == bytes, path.string(), ": ", size, " bytes, the manifest says ", bytes, " (truncated?)", advice);
    const auto crc = io::parse_hex_u64(entry.at("crc32c"), marker.string().c_str());
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    require(fd >= 0, path.string(), ": cannot open for reading");
    std::vector<char> buf(1 << 20);
    std::uint32_t c = 0;
    for (;;) {
      const auto n = ::read(fd, buf.data(), buf.size());
      if (n <= 0) break;
      c = io::crc32c_extend(c, buf.data(), static_cast<std::size_t>(n));
    }
    ::close(fd);
    require(c == crc, path.string(), ": CRC-32C ", io::hex_u64(c), " does not match the manifest's ",
            io::hex_u64(crc), " (corrupted on disk)", advice);
  }
  require(manifest["files"].contains("state.json"), marker.string(), ": the manifest lists no state.json", advice);
  try {
    return nlohmann::json::parse(io::read_file(dir / "state.json"));
  } catch (const nlohmann::json::exception& e) {
    fail((dir / "state.json").string(), ": not valid JSON (", e.what(), ")");
  }
}

namespace detail {
// An env's entry of state.json's "envs": its own state, or for an env
// without one, {"exact": false, "score": ..., "counters": ...} (see HasScore).
template <env::Environment E>
nlohmann::json env_state(const E& env) {
  if constexpr (CheckpointableEnvironment<E>) {
    return env.save_state();
  } else {
    nlohmann::json j{{"exact", false}};
    if constexpr (HasScore<E>) j["score"] = env.score();
    if constexpr (HasCounters<E>) j["counters"] = env.save_counters();
    return j;
  }
}

inline nlohmann::json adam_config_json(const optim::AdamConfig& a) {
  return {{"learning_rate", a.learning_rate}, {"beta1", a.beta1},
          {"beta2", a.beta2},                 {"eps", a.eps},
          {"weight_decay", a.weight_decay},   {"max_grad_norm", a.max_grad_norm}};
}

template <Backend B>
nlohmann::json agent_config_json(Dqn<B>& agent) {
  const auto& c = agent.config();
  const auto& o = agent.observation_shape();
  nlohmann::json distributional = nullptr;
  if (c.distributional)
    distributional = {{"atoms", c.distributional->atoms},
                      {"v_min", c.distributional->v_min},
                      {"v_max", c.distributional->v_max}};
  return {{"observation_shape", {o[0], o[1], o[2]}},
          {"actions", agent.action_count()},
          {"head", agent.head_name()},
          {"noisy", agent.online().noisy()},
          {"distributional", distributional},
          {"gamma", c.gamma},
          {"batch_size", c.batch_size},
          {"loss", c.loss == LossKind::huber ? "huber" : "mse"},
          {"huber_delta", c.huber_delta},
          {"double_dqn", c.double_dqn},
          {"demonstration_rows", c.demonstration_rows},
          {"demonstration_margin", c.demonstration_margin},
          {"demonstration_weight", c.demonstration_weight},
          {"adam", adam_config_json(c.adam)}};
}

inline nlohmann::json schedule_json(const UpdateSchedule& s) {
  return {{"learning_starts", s.learning_starts},
          {"train_frequency", s.train_frequency},
          {"gradient_steps", s.gradient_steps},
          {"target_update_interval", s.target_update_interval},
          {"tau", s.tau}};
}

// The networks and the optimizer: model.safetensors (online, PyTorch names)
// and training.safetensors (target, Adam moments); counters in "agent".
template <Backend B>
nlohmann::json save_agent(CheckpointWriter& out, Dqn<B>& agent, Context<B>& ctx, std::int64_t step) {
  io::SafetensorsFile model;
  model.metadata = {{"format", "pt"}, {"qrl_version", version}, {"step", std::to_string(step)}};
  io::SafetensorsFile training;
  training.metadata = model.metadata;
  auto online = agent.online().parameters();
  auto target = agent.target().parameters();
  auto& m = agent.optimizer().first_moments();
  auto& v = agent.optimizer().second_moments();
  for (std::size_t i = 0; i < online.size(); ++i) {
    model.tensors[online[i].name] = stored(ctx, *online[i].value);
    training.tensors["target." + target[i].name] = stored(ctx, *target[i].value);
    training.tensors["adam.exp_avg." + online[i].name] = stored(ctx, m[i]);
    training.tensors["adam.exp_avg_sq." + online[i].name] = stored(ctx, v[i]);
  }
  out.file("model.safetensors", io::encode_safetensors(model));
  out.file("training.safetensors", io::encode_safetensors(training));
  return {{"updates", agent.updates()},
          {"adam_steps", agent.optimizer().steps()},
          {"noise_rng", io::rng_state_json(agent.noise_state())},
          {"config", agent_config_json(agent)}};
}

template <Backend B>
void load_agent(const std::filesystem::path& dir, const nlohmann::json& state, Dqn<B>& agent, Context<B>& ctx) {
  const std::string where = (dir / "state.json").string();
  const auto& ja = section(state, "agent", where);
  require_same_config(section(ja, "config", where), agent_config_json(agent), "agent", where);
  const auto updates = io::json_get<std::int64_t>(ja, "updates", where);
  const auto adam_steps = io::json_get<std::int64_t>(ja, "adam_steps", where);
  require(updates >= 0 && adam_steps >= 0, where, ": negative update counts (", updates, ", ", adam_steps, ")");
  nn::load_weights(ctx, agent.online(), dir / "model.safetensors");
  const auto training_path = dir / "training.safetensors";
  const auto training = io::load_safetensors(training_path);
  auto online = agent.online().parameters();
  auto target = agent.target().parameters();
  auto& m = agent.optimizer().first_moments();
  auto& v = agent.optimizer().second_moments();
  require(training.tensors.size() == 3 * online.size(), training_path.string(), ": holds ", training.tensors.size(),
          " tensors, expected ", 3 * online.size());
  for (std::size_t i = 0; i < online.size(); ++i) {
    load_tensor(ctx, training, "target." + target[i].name, *target[i].value, training_path.string());
    load_tensor(ctx, training, "adam.exp_avg." + online[i].name, m[i], training_path.string());
    load_tensor(ctx, training, "adam.exp_avg_sq." + online[i].name, v[i], training_path.string());
  }
  agent.set_updates(updates);
  agent.optimizer().set_steps(adam_steps);
  agent.set_noise_state(io::rng_state_from_json(section(ja, "noise_rng", where), "state.json agent.noise_rng"));
}

inline nlohmann::json epsilon_json(const EpsilonSchedule& e, std::int64_t step) {
  return {{"kind", epsilon_kind_name(e.kind)}, {"start", e.start},       {"end", e.end},
          {"duration", e.duration},            {"delay", e.delay},       {"value_at_step", e.value(step)}};
}

inline EpsilonSchedule epsilon_from_json(const nlohmann::json& je, const std::string& where) {
  EpsilonSchedule e;
  const auto kind = io::json_get<std::string>(je, "kind", where);
  require(kind == "constant" || kind == "linear" || kind == "exponential", where, ": unknown epsilon kind '", kind,
          "'");
  e.kind = kind == "constant" ? EpsilonSchedule::Kind::constant
           : kind == "linear" ? EpsilonSchedule::Kind::linear
                              : EpsilonSchedule::Kind::exponential;
  e.start = io::json_get<double>(je, "start", where);
  e.end = io::json_get<double>(je, "end", where);
  e.duration = io::json_get<std::int64_t>(je, "duration", where);
  e.delay = io::json_get<std::int64_t>(je, "delay", where);
  require(e.start >= 0 && e.start <= 1 && e.end >= 0 && e.end <= 1 && e.duration >= 0 && e.delay >= 0, where,
          ": epsilon schedule out of range (start ", e.start, ", end ", e.end, ", duration ", e.duration, ", delay ",
          e.delay, ")");
  return e;
}

// The loop: counters, episodes, RNG streams and each env's tally, seed
// stream and frame stack.
inline nlohmann::json save_trainer(CheckpointWriter& out, const TrainerState& ts, nlohmann::json& arrays) {
  nlohmann::json recent = nlohmann::json::array();
  for (const auto& e : ts.recent) recent.push_back(episode_json(e));
  nlohmann::json envs = nlohmann::json::array();
  for (std::size_t i = 0; i < ts.envs.size(); ++i) {
    const auto& slot = ts.envs[i];
    const std::string name = "trainer.frame_stack." + std::to_string(i);
    arrays[name] = out.array(name, slot.frame_stack.data(), slot.frame_stack.size(), "U8");
    envs.push_back({{"episode_length", slot.tally.length},
                    {"episode_return", slot.tally.episode_return},
                    {"episode_seeds", io::rng_state_json(slot.episode_seeds)}});
  }
  return {{"started", ts.started},        {"have_stats", ts.have_stats}, {"wall_seconds", ts.wall_seconds},
          {"recent_episodes", recent},     {"envs", envs}};
}

inline TrainerState load_trainer(const std::filesystem::path& dir, const nlohmann::json& state, int env_count,
                                 std::size_t frame_stack_bytes) {
  const std::string where = (dir / "state.json").string();
  TrainerState ts;
  ts.step = io::json_get<std::int64_t>(state, "step", where);
  ts.episodes = io::json_get<std::int64_t>(state, "episodes", where);
  require(ts.step >= 0 && ts.episodes >= 0, where, ": negative step or episode count");
  const auto& jt = section(state, "trainer", where);
  ts.started = io::json_get<bool>(jt, "started", where);
  ts.have_stats = io::json_get<bool>(jt, "have_stats", where);
  ts.wall_seconds = io::json_get<double>(jt, "wall_seconds", where);
  require(std::isfinite(ts.wall_seconds) && ts.wall_seconds >= 0, where, ": impossible wall time ", ts.wall_seconds);
  const auto& recent = section(jt, "recent_episodes", where);
  require(recent.is_array(), where, ": 'trainer.recent_episodes' is not a list");
  for (const auto& e : recent) ts.recent.push_back(episode_from_json(e, where));
  const auto& envs = section(jt, "envs", where);
  require(envs.is_array() && static_cast<int>(envs.size()) == env_count, where, ": the checkpoint holds ",
          envs.is_array() ? envs.size() : 0, " envs, this run has ", env_count,
          " (resume with the same --envs / --browsers)");
  const auto& arrays = section(state, "arrays", where);
  for (int i = 0; i < env_count; ++i) {
    const auto& je = envs[static_cast<std::size_t>(i)];
    TrainerState::EnvSlot slot;
    slot.tally.length = io::json_get<std::int64_t>(je, "episode_length", where);
    slot.tally.episode_return = io::json_get<double>(je, "episode_return", where);
    slot.episode_seeds = io::rng_state_from_json(section(je, "episode_seeds", where), "state.json trainer.envs");
    slot.frame_stack.resize(frame_stack_bytes);
    read_array(dir, arrays, "trainer.frame_stack." + std::to_string(i), slot.frame_stack.data(), frame_stack_bytes);
    ts.envs.push_back(std::move(slot));
  }
  ts.epsilon = epsilon_from_json(section(state, "epsilon", where), where);
  const auto& jrng = section(state, "rng", where);
  ts.exploration = io::rng_state_from_json(section(jrng, "exploration", where), "state.json rng.exploration");
  ts.sampling = io::rng_state_from_json(section(jrng, "replay_sampling", where), "state.json rng.replay_sampling");
  return ts;
}
}  // namespace detail

// Saves everything needed to continue `trainer` exactly: each part writes
// its own section. `run_config` (the resolved command line / config file)
// is stored verbatim. Returns the checkpoint directory. `name` defaults to
// step_<step>.
// About how many bytes a checkpoint of `trainer` writes: the replay memory's
// stored frames and slot records, and the networks with Adam's two moments.
// Checked against the free space before a save starts.
template <Backend B, env::Environment E>
std::uint64_t checkpoint_bytes_estimate(Trainer<B, E>& trainer) {
  const auto& replay = trainer.replay();
  const std::uint64_t frames = static_cast<std::uint64_t>(replay.frames()) * replay.config().frame.bytes();
  const std::uint64_t records = static_cast<std::uint64_t>(replay.capacity()) * 2 * sizeof(kernels::SlotRecord);
  const std::uint64_t networks = 4ull * sizeof(float) * static_cast<std::uint64_t>(trainer.agent().online().parameter_count());
  return frames + records + networks + (1u << 20);
}

template <Backend B, env::Environment E>
std::filesystem::path save_checkpoint(const std::filesystem::path& checkpoints_dir, Trainer<B, E>& trainer,
                                      Context<B>& ctx, const nlohmann::json& run_config = nlohmann::json::object(),
                                      const CheckpointOptions& options = {}, std::string name = {}) {
  namespace fs = std::filesystem;
  fs::create_directories(checkpoints_dir);
  remove_stale_checkpoint_temporaries(checkpoints_dir);
  if (name.empty()) name = checkpoint_name(trainer.step());
  const fs::path final_dir = checkpoints_dir / name;
  const std::uint64_t needed = checkpoint_bytes_estimate(trainer);
  if (const auto free = io::free_bytes(checkpoints_dir); free && *free < needed)
    fail("not enough disk space for the checkpoint of step ", trainer.step(), " in ", checkpoints_dir.string(),
         ": it needs about ", io::byte_size_text(needed), ", ", io::byte_size_text(*free),
         " are free; free some space, or lower --keep-checkpoints or --buffer-size");
  const fs::path tmp = checkpoints_dir / (name + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  // A save that fails (a full disk, an I/O error) leaves no half-written
  // directory to fill the disk further.
  struct RemoveOnFailure {
    const fs::path& dir;
    bool armed = true;
    ~RemoveOnFailure() {
      std::error_code ignored;
      if (armed) fs::remove_all(dir, ignored);
    }
  } cleanup{tmp};
  fs::create_directories(tmp / "arrays");
  detail::CheckpointWriter out(tmp, options);

  const TrainerState ts = trainer.state();
  nlohmann::json arrays = nlohmann::json::object();
  const nlohmann::json agent = detail::save_agent(out, trainer.agent(), ctx, ts.step);
  const nlohmann::json replay = detail::save_replay(out, trainer.replay(), arrays);
  const nlohmann::json trainer_json = detail::save_trainer(out, ts, arrays);
  nlohmann::json envs = nlohmann::json::array();
  for (int i = 0; i < trainer.env_count(); ++i) envs.push_back(detail::env_state(trainer.envs().env(i)));

  nlohmann::json state{
      {"format", "qrl-checkpoint"},
      {"format_version", checkpoint_format_version},
      {"qrl_version", version},
      {"step", ts.step},
      {"episodes", ts.episodes},
      {"agent", agent},
      {"schedule", detail::schedule_json(trainer.config().schedule)},
      {"trainer", trainer_json},
      {"epsilon", detail::epsilon_json(ts.epsilon, ts.step)},
      {"rng",
       {{"exploration", io::rng_state_json(ts.exploration)},
        {"replay_sampling", io::rng_state_json(ts.sampling)},
        {"episode_seeds", "in trainer.envs[i].episode_seeds"},
        {"env", "in envs[i].rng where an environment draws numbers"},
        {"device", nullptr}}},  // no backend draws random numbers on the device
      {"envs", envs},
      {"replay", replay},
      {"arrays", arrays},
      {"config", run_config}};
  out.file("state.json", state.dump(1));
  out.complete();

  // Into place. An existing checkpoint of the same name is moved aside first
  // and removed only once the new one is in place.
  std::error_code ec;
  const fs::path old = checkpoints_dir / (name + ".old-" + std::to_string(::getpid()));
  if (fs::exists(final_dir)) fs::rename(final_dir, old);
  fs::rename(tmp, final_dir, ec);
  if (ec) fail("cannot rename ", tmp.string(), " to ", final_dir.string(), ": ", ec.message());
  cleanup.armed = false;
  io::fsync_directory(checkpoints_dir);
  fs::remove_all(old, ec);

  if (options.keep_last > 0) {
    auto all = list_checkpoints(checkpoints_dir);
    for (std::size_t i = 0; i + options.keep_last < all.size(); ++i) fs::remove_all(all[i], ec);
  }
  return final_dir;
}

// Restores `trainer` (and the agent, replay memory and envs it drives) from
// a checkpoint directory. The trainer must have been built with the
// configuration the checkpoint was saved with; any difference is an error
// naming the first differing setting. The returned JSON is state.json, plus
// "interrupted_episodes" for envs without save_state().
template <Backend B, env::Environment E>
nlohmann::json load_checkpoint(const std::filesystem::path& dir, Trainer<B, E>& trainer, Context<B>& ctx) {
  const nlohmann::json state = verify_checkpoint(dir);
  const std::string where = (dir / "state.json").string();
  try {
    auto& agent = trainer.agent();
    auto& replay = trainer.replay();
    const int n = trainer.env_count();
    // Every part's configuration first: a mismatch restores nothing.
    detail::require_same_config(detail::section(state, "schedule", where),
                                detail::schedule_json(trainer.config().schedule), "schedule", where);
    detail::require_same_config(detail::section(detail::section(state, "agent", where), "config", where),
                                detail::agent_config_json(agent), "agent", where);
    detail::require_same_config(detail::section(detail::section(state, "replay", where), "config", where),
                                detail::replay_config_json(replay.config()), "replay", where);
    detail::load_agent(dir, state, agent, ctx);
    detail::load_replay(dir, state, replay, agent.action_count());
    TrainerState ts = detail::load_trainer(dir, state, n, replay.config().frame.bytes() *
                                                              static_cast<std::size_t>(agent.observation_shape()[0]));
    const auto& jenvs = detail::section(state, "envs", where);
    require(jenvs.is_array() && static_cast<int>(jenvs.size()) == n, where, ": 'envs' must list ", n, " env states");
    nlohmann::json result = state;
    if constexpr (CheckpointableEnvironment<E>) {
      for (int i = 0; i < n; ++i) {
        const auto& je = jenvs[static_cast<std::size_t>(i)];
        require(!(je.is_object() && je.contains("exact") && je["exact"] == false), where,
                ": saved from an environment without save_state(), so it holds no env state to restore; resume "
                "with the same kind of environment");
        trainer.envs().env(i).load_state(je);
      }
    } else {
      // The episodes cannot continue in fresh envs: each one in progress is
      // closed as truncated at the saved step (its last frame is already
      // stored; closing the replay episode leaves that slot without a
      // transition, as a step limit does), and every env begins a fresh
      // episode with the next seed of its restored stream.
      nlohmann::json interrupted = nlohmann::json::array();
      for (int i = 0; i < n; ++i) {
        const auto& je = jenvs[static_cast<std::size_t>(i)];
        if constexpr (detail::HasCounters<E>)
          if (je.is_object() && je.contains("counters")) trainer.envs().env(i).load_counters(je["counters"]);
        auto& slot = ts.envs[static_cast<std::size_t>(i)];
        if (ts.started && slot.tally.length > 0) {
          EpisodeRecord record;
          record.index = ts.episodes++;
          record.end_step = ts.step;
          record.episode_return = slot.tally.episode_return;
          record.length = slot.tally.length;
          record.score = je.is_object() && je.contains("score") && je["score"].is_number() ? je["score"].get<double>()
                                                                                          : 0.0;
          record.truncated = true;
          record.wall_seconds = ts.wall_seconds;
          record.env = i;
          ts.recent.push_back(record);
          interrupted.push_back(detail::episode_json(record));
        }
        slot.tally = {};
        auto pos = replay.position(i);
        pos.episode_open = false;
        replay.set_position(pos, i);
      }
      while (static_cast<int>(ts.recent.size()) > std::max(trainer.config().score_window, 1))
        ts.recent.erase(ts.recent.begin());
      ts.started = false;
      if (!interrupted.empty()) result["interrupted_episodes"] = interrupted;
    }
    trainer.restore(ts);
    return result;
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": ", e.what(), " — not a checkpoint this qrl writes; resume from another checkpoint");
  }
}

}  // namespace qrl::rl
