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
//
// This header is the entry point (save_checkpoint, load_checkpoint and the
// listing helpers); the pieces live beside it, one idea each:
//   checkpoint_files.hpp   directory layout, atomic writes, manifest and CRCs,
//                          raw-array readers, listing and verification
//   checkpoint_config.hpp  each part's configuration as JSON and the check
//                          against this run's
//   checkpoint_parts.hpp   env states, agent, epsilon, trainer sections
//   checkpoint_replay.hpp  the replay memory's rings
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>

#include <qrl/core/error.hpp>
#include <qrl/io/file.hpp>
#include <qrl/io/state_json.hpp>
#include <qrl/rl/checkpoint_config.hpp>
#include <qrl/rl/checkpoint_files.hpp>
#include <qrl/rl/checkpoint_parts.hpp>
#include <qrl/rl/checkpoint_replay.hpp>
#include <qrl/rl/trainer.hpp>
#include <qrl/version.hpp>

namespace qrl::rl {

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

// Saves everything needed to continue `trainer` exactly: each part writes
// its own section. `run_config` (the resolved command line / config file)
// is stored verbatim. Returns the checkpoint directory. `name` defaults to
// step_<step>.
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
    detail::require_same_config(detail::saved_replay_config(detail::section(state, "replay", where), where),
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
