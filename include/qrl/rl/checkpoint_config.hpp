#pragma once
// The configuration each part of a checkpoint was saved with, as JSON, and
// the check that it is the configuration this run asks for. A checkpoint is
// only ever resumed under the settings it was written with: load_checkpoint
// compares every part's section before it restores anything, and a mismatch
// names the first differing field ("agent.gamma: 0.99 in the checkpoint,
// 0.9 in this run") rather than loading arrays of the wrong shape or
// continuing a run under other hyperparameters.
#include <nlohmann/json.hpp>
#include <string>

#include <qrl/core/error.hpp>
#include <qrl/optim/adam.hpp>
#include <qrl/rl/dqn.hpp>
#include <qrl/rl/replay_memory.hpp>
#include <qrl/rl/trainer.hpp>

namespace qrl::rl::detail {

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

inline nlohmann::json replay_config_json(const ReplayConfig& rc) {
  nlohmann::json prioritized = nullptr;
  if (rc.prioritized) {
    const auto& p = *rc.prioritized;
    prioritized = {{"alpha", p.alpha},         {"beta_start", p.beta_start}, {"beta_end", p.beta_end},
                   {"beta_steps", p.beta_steps}, {"epsilon", p.epsilon}};
  }
  return {{"capacity", rc.capacity}, {"frame", {rc.frame.height, rc.frame.width, rc.frame.channels}},
          {"stack", rc.stack},       {"rings", rc.rings},
          {"n_step", rc.n_step},     {"prioritized", prioritized}};
}

}  // namespace qrl::rl::detail
