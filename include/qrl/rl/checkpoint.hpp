#pragma once
// Training checkpoints that a run can be resumed from exactly.
//
//   <checkpoints>/step_000000050000/
//     model.safetensors     online network, PyTorch nn.Sequential names ("0.weight")
//     training.safetensors  target network ("target.0.weight") and Adam moments
//                           ("adam.exp_avg.0.weight", "adam.exp_avg_sq.0.weight")
//     state.json            counters, epsilon schedule, every RNG state, env state,
//                           replay position, configuration, qrl version
//     arrays/*.bin          replay memory and frame stack, raw little-endian, chunked
//     COMPLETE              manifest: bytes and CRC-32C of every file above; written last
//
// A checkpoint is written into "<name>.tmp-<pid>", every file fsynced, the
// manifest last, then the directory is renamed into place and its parent
// fsynced. A crash at any point leaves the previous checkpoints untouched and
// at worst a temporary directory, which the next save or resume removes.
// Loading checks the manifest (presence, sizes, CRCs) before reading anything,
// so a truncated, bit-flipped or unfinished checkpoint is an error, never used.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <concepts>
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

inline constexpr int checkpoint_format_version = 1;

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
    nlohmann::json chunks = nlohmann::json::array();
    const auto* p = static_cast<const char*>(data);
    std::uint64_t done = 0;
    int index = 0;
    do {
      const std::uint64_t n = std::min(options_.chunk_bytes, bytes - done);
      char suffix[16];
      std::snprintf(suffix, sizeof suffix, ".%05d.bin", index++);
      const std::string rel = "arrays/" + name + suffix;
      io::FileWriter out(dir_ / rel);
      out.write(p + done, n);
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
          {"score", e.score},   {"truncated", e.truncated}, {"wall_seconds", e.wall_seconds}};
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
  return e;
}

// A replay memory's used slots and positions. Stream 0 keeps the names and
// keys of the one-stream format ("replay.frames", "cursor", ...), so
// checkpoints of one stream read and write as before; stream s >= 1 adds
// "replay.stream<s>.*" arrays and an entry of "stream_positions".
template <Backend B>
nlohmann::json save_replay(CheckpointWriter& out, ReplayMemory<B>& replay, nlohmann::json& arrays) {
  const auto& rc = replay.config();
  nlohmann::json j{{"capacity", rc.capacity},
                   {"frame", {rc.frame.height, rc.frame.width, rc.frame.channels}},
                   {"stack", rc.stack}};
  nlohmann::json more = nlohmann::json::array();
  for (int s = 0; s < replay.streams(); ++s) {
    const auto pos = replay.position(s);
    const auto base = static_cast<std::size_t>(replay.stream_base(s));
    const auto used = static_cast<std::uint64_t>(pos.count);
    const std::string prefix = s == 0 ? "replay." : "replay.stream" + std::to_string(s) + ".";
    auto array = [&](const char* what, const void* data, std::uint64_t bytes, const char* dtype) {
      arrays[prefix + what] = out.array(prefix + what, data, bytes, dtype);
    };
    array("frames", replay.frame_storage().data() + base * rc.frame.bytes(), used * rc.frame.bytes(), "U8");
    array("actions", replay.action_storage().data() + base, used * 2, "I16");
    array("rewards", replay.reward_storage().data() + base, used * 4, "F32");
    array("flags", replay.flag_storage().data() + base, used, "U8");
    array("history", replay.history_storage().data() + base, used, "U8");
    nlohmann::json p{{"cursor", pos.cursor}, {"count", pos.count}, {"transitions", pos.transitions},
                     {"episode_open", pos.episode_open}};
    if (s == 0) j.update(p);
    else more.push_back(p);
  }
  if (replay.streams() > 1) {
    j["streams"] = replay.streams();
    j["stream_positions"] = more;
  }
  return j;
}

inline void read_array(const std::filesystem::path& dir, const nlohmann::json& arrays, const std::string& name,
                       void* dst, std::uint64_t expected) {
  const std::string where = (dir / "state.json").string();
  require(arrays.contains(name), where, ": no array '", name, "'");
  const auto& a = arrays[name];
  const auto bytes = io::json_get<std::uint64_t>(a, "bytes", where);
  require(bytes == expected, where, ": array '", name, "' holds ", bytes, " bytes, expected ", expected,
          " for this configuration");
  auto* p = static_cast<char*>(dst);
  std::uint64_t done = 0;
  for (const auto& chunk : a.at("chunks")) {
    const auto data = io::read_file(dir / chunk.get<std::string>());
    require(done + data.size() <= bytes, where, ": chunks of '", name, "' exceed its size");
    std::memcpy(p + done, data.data(), data.size());
    done += data.size();
  }
  require(done == bytes, where, ": chunks of '", name, "' hold ", done, " bytes, expected ", bytes);
}

template <Backend B>
void load_replay(const std::filesystem::path& dir, const nlohmann::json& state, ReplayMemory<B>& replay) {
  const std::string where = (dir / "state.json").string();
  const auto& jr = state.at("replay");
  const auto& rc = replay.config();
  const auto capacity = io::json_get<std::int64_t>(jr, "capacity", where);
  const auto frame = io::json_get<std::vector<int>>(jr, "frame", where);
  const auto stack = io::json_get<int>(jr, "stack", where);
  const int streams = jr.contains("streams") ? io::json_get<int>(jr, "streams", where) : 1;
  require(capacity == rc.capacity, where, ": the checkpoint's replay memory holds ", capacity,
          " frames, this run is configured for ", rc.capacity, " (resume with the run's own config)");
  require(frame == std::vector<int>{rc.frame.height, rc.frame.width, rc.frame.channels} && stack == rc.stack, where,
          ": the checkpoint was saved for other frames or stack depth (resume with the run's own config)");
  require(streams == rc.streams, where, ": the checkpoint's replay memory has ", streams,
          " streams (one per env), this run has ", rc.streams, " (resume with the same number of envs)");
  const auto& arrays = state.at("arrays");
  for (int s = 0; s < streams; ++s) {
    const auto& jp = s == 0 ? jr : jr.at("stream_positions").at(static_cast<std::size_t>(s - 1));
    typename ReplayMemory<B>::Position pos;
    pos.cursor = io::json_get<std::int64_t>(jp, "cursor", where);
    pos.count = io::json_get<std::int64_t>(jp, "count", where);
    pos.transitions = io::json_get<std::int64_t>(jp, "transitions", where);
    pos.episode_open = io::json_get<bool>(jp, "episode_open", where);
    replay.set_position(pos, s);
    const auto base = static_cast<std::size_t>(replay.stream_base(s));
    const auto used = static_cast<std::uint64_t>(pos.count);
    const std::string prefix = s == 0 ? "replay." : "replay.stream" + std::to_string(s) + ".";
    read_array(dir, arrays, prefix + "frames", replay.frame_storage().data() + base * rc.frame.bytes(),
               used * rc.frame.bytes());
    read_array(dir, arrays, prefix + "actions", replay.action_storage().data() + base, used * 2);
    read_array(dir, arrays, prefix + "rewards", replay.reward_storage().data() + base, used * 4);
    read_array(dir, arrays, prefix + "flags", replay.flag_storage().data() + base, used);
    read_array(dir, arrays, prefix + "history", replay.history_storage().data() + base, used);
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
          checkpoint_format_version);
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
// state.json's "env": the env's own state, or for an env without one,
// {"exact": false, "score": ..., "counters": ...} (see HasScore).
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
}  // namespace detail

// Saves everything needed to continue `trainer` exactly. `run_config` (the
// resolved command line / config file) is stored verbatim. Returns the
// checkpoint directory. `name` defaults to step_<step>.
template <Backend B, env::Environment E>
std::filesystem::path save_checkpoint(const std::filesystem::path& checkpoints_dir, DqnTrainer<B, E>& trainer,
                                      Context<B>& ctx, const nlohmann::json& run_config = nlohmann::json::object(),
                                      const CheckpointOptions& options = {}, std::string name = {}) {
  namespace fs = std::filesystem;
  fs::create_directories(checkpoints_dir);
  remove_stale_checkpoint_temporaries(checkpoints_dir);
  if (name.empty()) name = checkpoint_name(trainer.step());
  const fs::path final_dir = checkpoints_dir / name;
  const fs::path tmp = checkpoints_dir / (name + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp / "arrays");
  detail::CheckpointWriter out(tmp, options);

  auto& agent = trainer.agent();
  auto& replay = trainer.replay();
  const TrainerState ts = trainer.state();

  io::SafetensorsFile model;
  model.metadata = {{"format", "pt"}, {"qrl_version", version}, {"step", std::to_string(ts.step)}};
  io::SafetensorsFile training;
  training.metadata = model.metadata;
  {
    auto online = agent.online().parameters();
    auto target = agent.target().parameters();
    auto& m = agent.optimizer().first_moments();
    auto& v = agent.optimizer().second_moments();
    for (std::size_t i = 0; i < online.size(); ++i) {
      model.tensors[online[i].name] = detail::stored(ctx, *online[i].value);
      training.tensors["target." + target[i].name] = detail::stored(ctx, *target[i].value);
      training.tensors["adam.exp_avg." + online[i].name] = detail::stored(ctx, m[i]);
      training.tensors["adam.exp_avg_sq." + online[i].name] = detail::stored(ctx, v[i]);
    }
  }
  out.file("model.safetensors", io::encode_safetensors(model));
  out.file("training.safetensors", io::encode_safetensors(training));

  nlohmann::json arrays;
  const nlohmann::json replay_json = detail::save_replay(out, replay, arrays);
  arrays["trainer.frame_stack"] = out.array("trainer.frame_stack", ts.frame_stack.data(), ts.frame_stack.size(), "U8");

  nlohmann::json recent = nlohmann::json::array();
  for (const auto& e : ts.recent) recent.push_back(detail::episode_json(e));
  const auto& dc = agent.config();
  nlohmann::json state{
      {"format", "qrl-checkpoint"},
      {"format_version", checkpoint_format_version},
      {"qrl_version", version},
      {"step", ts.step},
      {"episodes", ts.episodes},
      {"trainer",
       {{"episode_length", ts.episode_length},
        {"episode_return", ts.episode_return},
        {"in_episode", ts.in_episode},
        {"have_stats", ts.have_stats},
        {"wall_seconds", ts.wall_seconds},
        {"recent_episodes", recent}}},
      {"agent",
       {{"updates", agent.updates()},
        {"adam_steps", agent.optimizer().steps()},
        {"observation_shape", {agent.observation_shape()[0], agent.observation_shape()[1], agent.observation_shape()[2]}},
        {"actions", agent.action_count()},
        {"gamma", dc.gamma},
        {"batch_size", dc.batch_size},
        {"loss", dc.loss == LossKind::huber ? "huber" : "mse"},
        {"huber_delta", dc.huber_delta},
        {"double_dqn", dc.double_dqn},
        {"learning_starts", dc.learning_starts},
        {"train_frequency", dc.train_frequency},
        {"target_update_interval", dc.target_update_interval},
        {"adam",
         {{"learning_rate", dc.adam.learning_rate},
          {"beta1", dc.adam.beta1},
          {"beta2", dc.adam.beta2},
          {"eps", dc.adam.eps},
          {"weight_decay", dc.adam.weight_decay},
          {"max_grad_norm", dc.adam.max_grad_norm}}}}},
      {"epsilon",
       {{"kind", detail::epsilon_kind_name(ts.epsilon.kind)},
        {"start", ts.epsilon.start},
        {"end", ts.epsilon.end},
        {"duration", ts.epsilon.duration},
        {"delay", ts.epsilon.delay},
        {"value_at_step", ts.epsilon.value(ts.step)}}},
      {"rng",
       {{"episode_seeds", io::rng_state_json(ts.episode_seeds)},
        {"exploration", io::rng_state_json(ts.exploration)},
        {"replay_sampling", io::rng_state_json(ts.sampling)},
        {"env", "in env.rng where the environment draws numbers"},
        {"device", nullptr}}},  // no backend draws random numbers on the device
      {"env", detail::env_state(trainer.env())},
      {"replay", replay_json},
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
  io::fsync_directory(checkpoints_dir);
  fs::remove_all(old, ec);

  if (options.keep_last > 0) {
    auto all = list_checkpoints(checkpoints_dir);
    for (std::size_t i = 0; i + options.keep_last < all.size(); ++i) fs::remove_all(all[i], ec);
  }
  return final_dir;
}


// Restores `trainer` (and the agent, replay memory and environment it drives)
// from a checkpoint directory. The trainer must have been built with the
// configuration the checkpoint was saved with; differences that would make
// the restored state meaningless are errors naming the setting.
template <Backend B, env::Environment E>
nlohmann::json load_checkpoint(const std::filesystem::path& dir, DqnTrainer<B, E>& trainer, Context<B>& ctx) {
  const nlohmann::json state = verify_checkpoint(dir);
  const std::string where = (dir / "state.json").string();
  auto& agent = trainer.agent();
  auto& replay = trainer.replay();

  const auto& rc = replay.config();
  const auto& ja = state.at("agent");
  const auto actions = io::json_get<int>(ja, "actions", where);
  require(actions == agent.action_count(), where, ": saved for ", actions, " actions, the agent has ",
          agent.action_count());

  nn::load_weights(ctx, agent.online(), dir / "model.safetensors");
  {
    const auto training_path = dir / "training.safetensors";
    const auto training = io::load_safetensors(training_path);
    auto online = agent.online().parameters();
    auto target = agent.target().parameters();
    auto& m = agent.optimizer().first_moments();
    auto& v = agent.optimizer().second_moments();
    require(training.tensors.size() == 3 * online.size(), training_path.string(), ": holds ",
            training.tensors.size(), " tensors, expected ", 3 * online.size());
    for (std::size_t i = 0; i < online.size(); ++i) {
      detail::load_tensor(ctx, training, "target." + target[i].name, *target[i].value, training_path.string());
      detail::load_tensor(ctx, training, "adam.exp_avg." + online[i].name, m[i], training_path.string());
      detail::load_tensor(ctx, training, "adam.exp_avg_sq." + online[i].name, v[i], training_path.string());
    }
  }
  agent.set_updates(io::json_get<std::int64_t>(ja, "updates", where));
  agent.optimizer().set_steps(io::json_get<std::int64_t>(ja, "adam_steps", where));

  detail::load_replay(dir, state, replay);
  const auto& arrays = state.at("arrays");

  TrainerState ts;
  ts.step = io::json_get<std::int64_t>(state, "step", where);
  ts.episodes = io::json_get<std::int64_t>(state, "episodes", where);
  const auto& jt = state.at("trainer");
  ts.episode_length = io::json_get<std::int64_t>(jt, "episode_length", where);
  ts.episode_return = io::json_get<double>(jt, "episode_return", where);
  ts.in_episode = io::json_get<bool>(jt, "in_episode", where);
  ts.have_stats = io::json_get<bool>(jt, "have_stats", where);
  ts.wall_seconds = io::json_get<double>(jt, "wall_seconds", where);
  for (const auto& e : jt.at("recent_episodes")) ts.recent.push_back(detail::episode_from_json(e, where));
  const auto& je = state.at("epsilon");
  const auto kind = io::json_get<std::string>(je, "kind", where);
  ts.epsilon.kind = kind == "constant" ? EpsilonSchedule::Kind::constant
                    : kind == "linear" ? EpsilonSchedule::Kind::linear
                                       : EpsilonSchedule::Kind::exponential;
  require(kind == "constant" || kind == "linear" || kind == "exponential", where, ": unknown epsilon kind '", kind, "'");
  ts.epsilon.start = io::json_get<double>(je, "start", where);
  ts.epsilon.end = io::json_get<double>(je, "end", where);
  ts.epsilon.duration = io::json_get<std::int64_t>(je, "duration", where);
  ts.epsilon.delay = io::json_get<std::int64_t>(je, "delay", where);
  const auto& jrng = state.at("rng");
  ts.episode_seeds = io::rng_state_from_json(jrng.at("episode_seeds"), "state.json rng.episode_seeds");
  ts.exploration = io::rng_state_from_json(jrng.at("exploration"), "state.json rng.exploration");
  ts.sampling = io::rng_state_from_json(jrng.at("replay_sampling"), "state.json rng.replay_sampling");
  ts.frame_stack.resize(rc.frame.bytes() * static_cast<std::size_t>(agent.observation_shape()[0]));
  detail::read_array(dir, arrays, "trainer.frame_stack", ts.frame_stack.data(), ts.frame_stack.size());
  nlohmann::json result = state;
  if constexpr (CheckpointableEnvironment<E>) {
    const auto& je_env = state.at("env");
    require(!(je_env.is_object() && je_env.contains("exact") && je_env["exact"] == false), where,
            ": saved from an environment without save_state(), so it holds no env state to restore; resume "
            "with the same kind of environment");
    trainer.env().load_state(je_env);
  } else {
    const auto& je_env = state.at("env");
    if constexpr (detail::HasCounters<E>)
      if (je_env.is_object() && je_env.contains("counters")) trainer.env().load_counters(je_env["counters"]);
    if (ts.in_episode) {
      // The episode cannot continue in a fresh env: close it as truncated at
      // the saved step. Its last frame is already stored; closing the replay
      // episode leaves that slot without a transition, as a step limit does.
      EpisodeRecord record;
      record.index = ts.episodes;
      record.end_step = ts.step;
      record.episode_return = ts.episode_return;
      record.length = ts.episode_length;
      record.score = je_env.is_object() && je_env.contains("score") ? je_env["score"].get<double>() : 0.0;
      record.truncated = true;
      record.wall_seconds = ts.wall_seconds;
      ++ts.episodes;
      ts.in_episode = false;
      ts.episode_return = 0.0;
      ts.episode_length = 0;
      ts.recent.push_back(record);
      while (static_cast<int>(ts.recent.size()) > std::max(trainer.config().score_window, 1))
        ts.recent.erase(ts.recent.begin());
      auto pos = replay.position();
      pos.episode_open = false;
      replay.set_position(pos);
      result["interrupted_episode"] = detail::episode_json(record);
    }
  }
  trainer.restore(ts);
  return result;
}

}  // namespace qrl::rl
