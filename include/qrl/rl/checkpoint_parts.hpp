#pragma once
// The parts of a checkpoint besides the replay memory, each saving and
// loading its own section: the environments' states, the agent (networks
// in safetensors, Adam's moments, counters, noise RNG), the exploration
// schedule and the trainer's loop (counters, recent episodes, each env's
// tally, seed stream and frame stack). Every loaded value is range-checked
// before it is used.
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/env/env.hpp>
#include <qrl/io/safetensors.hpp>
#include <qrl/io/state_json.hpp>
#include <qrl/nn/serialize.hpp>
#include <qrl/rl/checkpoint_config.hpp>
#include <qrl/rl/checkpoint_files.hpp>
#include <qrl/rl/dqn.hpp>
#include <qrl/rl/epsilon_schedule.hpp>
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

inline const char* epsilon_kind_name(EpsilonSchedule::Kind k) {
  return k == EpsilonSchedule::Kind::constant ? "constant" : k == EpsilonSchedule::Kind::linear ? "linear" : "exponential";
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

}  // namespace qrl::rl
