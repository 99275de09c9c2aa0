#pragma once
#include <algorithm>
#include <optional>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <qrl/kernels/op_args.hpp>
#include <qrl/kernels/categorical.cuh>
#include <qrl/kernels/loss.cuh>
#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/nn/sequential.hpp>
#include <qrl/optim/adam.hpp>
#include <qrl/rl/replay_memory.hpp>

namespace qrl::rl {

// DQN hyperparameters of the update itself; when updates run is the
// trainer's UpdateSchedule. Defaults are CleanRL's dqn_atari.py.
struct DqnConfig {
  float gamma = 0.99f;
  int batch_size = 32;
  // The value head. Unset: scalar Q values with the `loss` below. Set: C51's
  // categorical distributions over `atoms` returns on [v_min, v_max]
  // (Bellemare et al. 2017) with a cross-entropy loss; the network then
  // outputs actions * atoms logits.
  std::optional<CategoricalSupport> distributional = std::nullopt;
  LossKind loss = LossKind::huber;  // the scalar head's TD loss
  float huber_delta = 1.0f;
  // The target rule: Double DQN (the online network picks the next action,
  // the target network values it) or the max of the target network.
  bool double_dqn = true;
  // Noisy layers' noise stream (exploration by noisy nets): a new sample for
  // every acting forward of act_batch() and for both networks at every
  // update. Unused by networks without noisy layers.
  std::uint64_t noise_seed = Rng::derive(0, SeedPurpose::layer_noise);
  optim::AdamConfig adam{};
  // DQfD (Hester et al. 2018), used once demonstrations are attached: the
  // share of every batch drawn from them, and their large-margin term.
  int demonstration_rows = 8;
  float demonstration_margin = 0.8f;
  float demonstration_weight = 1.0f;
};

// Losses and Q statistics of the last update, read back on request.
struct UpdateStats {
  float loss = 0.0f;
  float q_mean = 0.0f;
  float grad_norm = 0.0f;
};

namespace detail {

// A value head turns the network's outputs into Q values and runs the TD
// step on them; Dqn holds one of these, chosen from DqnConfig.

// Scalar Q values, one output per action; the TD step is kernels::TdRow.
template <Backend B>
class ScalarQHead {
 public:
  static constexpr const char* name = "scalar";
  int outputs_per_action() const { return 1; }
  // Q values of a network output: the output itself.
  const float* q_values(Context<B>&, TensorView<B, const float> out, Tensor<B, float>&, int) const {
    return out.data();
  }
};

// C51's categorical distributions, `atoms` logits per action; the TD step is
// kernels::CategoricalTdRow, Q values the distributions' means.
template <Backend B>
class CategoricalQHead {
 public:
  static constexpr const char* name = "categorical";
  explicit CategoricalQHead(CategoricalSupport support) : support_(support) {
    require(support.atoms >= 2 && support.atoms <= kernels::max_categorical_atoms,
            "C51: atoms must lie in [2, ", kernels::max_categorical_atoms, "], got ", support.atoms);
    require(std::isfinite(support.v_min) && std::isfinite(support.v_max) && support.v_min < support.v_max,
            "C51: the support needs v_min < v_max, got [", support.v_min, ", ", support.v_max, "]");
  }
  int outputs_per_action() const { return support_.atoms; }
  const CategoricalSupport& support() const { return support_; }
  const float* q_values(Context<B>& ctx, TensorView<B, const float> out, Tensor<B, float>& q, int actions) const {
    const int rows = static_cast<int>(out.shape()[0]);
    q.resize({rows, actions});
    backend_traits<B>::categorical_q(ctx, out.data(), rows, actions, support_, q.data());
    return q.data();
  }

 private:
  CategoricalSupport support_;
};

template <Backend B>
using ValueHead = std::variant<ScalarQHead<B>, CategoricalQHead<B>>;

template <Backend B>
ValueHead<B> make_value_head(const DqnConfig& c) {
  if (c.distributional) return CategoricalQHead<B>(*c.distributional);
  return ScalarQHead<B>{};
}

}  // namespace detail

// Deep Q-learning with a target network and optional Double DQN, over any
// backend. The agent owns the online and target networks and the optimizer;
// it acts and updates. The replay memory, the environment loop and the
// update schedule belong to the trainer.
template <Backend B>
class Dqn {
 public:
  // `observation` is the stacked state without the batch: [stack, H, W].
  Dqn(Context<B>& ctx, nn::Sequential<B> online, Shape observation, int actions, DqnConfig config)
      : ctx_(&ctx),
        online_(std::move(online)),
        target_(online_.clone(ctx)),
        observation_(observation),
        actions_(actions),
        config_(config),
        head_(detail::make_value_head<B>(config)),
        optimizer_(ctx, online_, config.adam),
        noise_rng_(config.noise_seed) {
    require(observation.rank() == 3, "Dqn: observation shape must be [stack, height, width], got ",
            observation.str());
    require(actions >= 2, "Dqn: need at least two actions, got ", actions);
    require(config.gamma >= 0.0f && config.gamma <= 1.0f, "Dqn: gamma must lie in [0, 1], got ", config.gamma);
    require(config.batch_size > 0, "Dqn: batch size must be positive, got ", config.batch_size);
    require(config.demonstration_rows >= 0 && config.demonstration_rows <= config.batch_size,
            "Dqn: demonstration rows must lie in [0, batch size ", config.batch_size, "], got ",
            config.demonstration_rows);
    require(config.demonstration_margin >= 0.0f && config.demonstration_weight >= 0.0f,
            "Dqn: the demonstration margin and weight must be non-negative, got ", config.demonstration_margin,
            " and ", config.demonstration_weight);
    const int per_action = std::visit([](const auto& h) { return h.outputs_per_action(); }, head_);
    const Shape out = online_.output_shape({1, observation[0], observation[1], observation[2]});
    require_shape(out.rank() == 2 && out[1] == std::int64_t{actions} * per_action, "Dqn: the network maps ",
                  observation.str(), " to ", out.str(), " but the environment has ", actions, " actions",
                  per_action > 1 ? qrl::detail::concat(" of ", per_action, " atoms each (C51)") : std::string());
    stats_.resize({2});
  }

  Dqn(const Dqn&) = delete;
  Dqn& operator=(const Dqn&) = delete;

  Context<B>& context() { return *ctx_; }
  int action_count() const { return actions_; }
  const Shape& observation_shape() const { return observation_; }
  const DqnConfig& config() const { return config_; }
  nn::Sequential<B>& online() { return online_; }
  nn::Sequential<B>& target() { return target_; }
  optim::Adam<B>& optimizer() { return optimizer_; }
  std::int64_t updates() const { return updates_; }
  // The noisy layers' noise stream, for checkpoints.
  const Rng::State& noise_state() const { return noise_rng_.state(); }
  void set_noise_state(const Rng::State& s) { noise_rng_.set_state(s); }
  void set_updates(std::int64_t updates) { updates_ = updates; }

  // Q(s, ·) for a batch of stacked uint8 states [N, stack, H, W] on the host.
  std::vector<float> q_values(const std::uint8_t* states, int count = 1) {
    const Shape shape{count, observation_[0], observation_[1], observation_[2]};
    act_states_.resize(shape);
    backend_traits<B>::upload(*ctx_, states, act_states_.data(), static_cast<std::size_t>(shape.size()));
    const float* q = backend_q_values(act_states_.data(), count);
    std::vector<float> host(static_cast<std::size_t>(count) * static_cast<std::size_t>(actions_));
    backend_traits<B>::download(*ctx_, q, host.data(), host.size());
    backend_traits<B>::synchronize(*ctx_);
    return host;
  }

  // The value head in use: "scalar" or "categorical".
  const char* head_name() const {
    return std::visit([](const auto& h) { return h.name; }, head_);
  }

  int greedy_action(const std::uint8_t* state) {
    const auto q = q_values(state, 1);
    return kernels::ArgmaxRow{}(q.data(), actions_);
  }

  // Epsilon-greedy: a uniformly random action with probability epsilon.
  int act(const std::uint8_t* state, double epsilon, Rng& rng) {
    int action = 0;
    act_batch(state, 1, std::span<const double>(&epsilon, 1), rng, std::span<int>(&action, 1));
    return action;
  }

  // Epsilon-greedy for `count` stacked states [count, stack, H, W] at once,
  // state i with epsilons[i]. The draws are those of act() on each state in
  // turn; the greedy ones share one forward pass, skipped when all explore.
  void act_batch(const std::uint8_t* states, int count, std::span<const double> epsilons, Rng& rng,
                 std::span<int> actions) {
    require(static_cast<int>(epsilons.size()) == count && static_cast<int>(actions.size()) == count,
            "Dqn::act_batch: ", count, " states need as many epsilons and actions, got ", epsilons.size(), " and ",
            actions.size());
    bool any_greedy = false;
    for (int i = 0; i < count; ++i) {
      if (rng.uniform() < epsilons[i]) {
        actions[i] = static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(actions_)));
      } else {
        actions[i] = -1;
        any_greedy = true;
      }
    }
    if (!any_greedy) return;
    resample_acting_noise();
    const auto q = q_values(states, count);
    for (int i = 0; i < count; ++i) {
      if (actions[i] >= 0) continue;
      actions[i] = kernels::ArgmaxRow{}(q.data() + static_cast<std::ptrdiff_t>(i) * actions_, actions_);
    }
  }

  // Epsilon-greedy for `count` stacked states already in backend memory
  // ([count, stack, H, W] uint8, e.g. ReplayMemory::gather_newest_states):
  // the Q-values, the draws (kernels::EpsilonGreedy's counter-based ones,
  // state i takes draws 2i and 2i + 1 of `policy.rng`) and the argmax all run
  // on the backend, and only the actions come back. Noisy nets draw a new
  // noise sample for every call, as act_batch() does for a greedy one.
  void act_on_backend(const std::uint8_t* states, int count, kernels::EpsilonGreedy policy, std::span<int> actions) {
    require(count > 0 && static_cast<int>(actions.size()) == count, "Dqn::act_on_backend: ", count,
            " states need as many actions, got ", actions.size());
    resample_acting_noise();
    const float* q = backend_q_values(states, count);
    act_actions_.resize({count});
    backend_traits<B>::epsilon_greedy(*ctx_, q, count, actions_, policy, act_actions_.data());
    static_assert(std::is_same_v<std::int32_t, int>, "the actions come back into the caller's ints as they are");
    backend_traits<B>::download(*ctx_, act_actions_.data(), actions.data(), actions.size());
    backend_traits<B>::synchronize(*ctx_);
  }

  // One gradient step on a sampled batch; its first `demonstration_rows`
  // rows are demonstrations (DQfD's margin term). Nothing is read back to
  // the host; call last_stats() for logging.
  void update(const ReplayBatch<B>& batch, int demonstration_rows = 0) {
    auto& ctx = *ctx_;
    const int n = batch.size();
    const Shape shape{n, observation_[0], observation_[1], observation_[2]};
    require_shape(batch.states.shape() == shape, "Dqn::update: batch states are ", batch.states.shape().str(),
                  ", expected ", shape.str());
    input_.resize(shape);
    next_input_.resize(shape);
    const auto count = static_cast<std::size_t>(shape.size());
    backend_traits<B>::u8_to_float(ctx, batch.states.data(), input_.data(), count, 1.0f / 255.0f);
    backend_traits<B>::u8_to_float(ctx, batch.next_states.data(), next_input_.data(), count, 1.0f / 255.0f);

    require_shape(batch.discounts.size() == n && batch.rewards.size() == n, "Dqn::update: a batch of ", n,
                  " states holds ", batch.rewards.size(), " rewards and ", batch.discounts.size(), " discounts");
    const float* weights = batch.weights.size() == n ? batch.weights.data() : nullptr;
    float* td_errors = nullptr;
    if (!batch.slots.empty()) {  // prioritized replay wants each row's priority
      td_errors_.resize({n});
      td_errors = td_errors_.data();
    }
    if (online_.noisy()) {  // independent samples for the two networks (Fortunato et al. 2018, Algorithm 1)
      online_.resample_noise(ctx, noise_rng_);
      target_.resample_noise(ctx, noise_rng_);
      noise_rng_.discard_spare();
    }
    std::visit([&](const auto& head) { td_step(head, batch, weights, td_errors, demonstration_rows); }, head_);
    online_.backward(ctx, grad_q_.view());
    optimizer_.step(ctx);
    ++updates_;
  }

  // |Q(s, a) - y| per row of the last update of a prioritized batch.
  std::vector<float> last_td_errors() { return to_host(*ctx_, td_errors_.view()); }

  UpdateStats last_stats() {
    const auto host = to_host(*ctx_, stats_.view());
    return {host[0], host[1], optimizer_.last_grad_norm(*ctx_)};
  }

  void sync_target() { target_.copy_parameters_from(*ctx_, online_); }
  // The target network toward the online one: a copy with tau = 1, else
  // Polyak averaging target <- tau * online + (1 - tau) * target.
  void update_target(float tau) {
    if (tau >= 1.0f) sync_target();
    else target_.average_parameters_from(*ctx_, online_, tau);
  }

 private:
  // Noisy nets: a new noise sample for an acting forward pass.
  void resample_acting_noise() {
    if (!online_.noisy()) return;
    online_.resample_noise(*ctx_, noise_rng_);
    noise_rng_.discard_spare();  // the generator's state() stays complete for checkpoints
  }

  // Q(s, ·) [count, actions] in backend memory for `count` stacked uint8
  // states in backend memory; valid until the next forward pass.
  const float* backend_q_values(const std::uint8_t* states, int count) {
    const Shape shape{count, observation_[0], observation_[1], observation_[2]};
    act_input_.resize(shape);
    backend_traits<B>::u8_to_float(*ctx_, states, act_input_.data(), static_cast<std::size_t>(shape.size()),
                                   1.0f / 255.0f);
    const auto out = online_.forward(*ctx_, act_input_.view());
    return std::visit([&](const auto& h) { return h.q_values(*ctx_, out, act_q_, actions_); }, head_);
  }

  // The scalar head's TD step: kernels::TdRow over Q(s) and the target's
  // (for Double DQN also the online network's) Q(s').
  void td_step(const detail::ScalarQHead<B>&, const ReplayBatch<B>& batch, const float* weights, float* td_errors,
               int demonstration_rows) {
    auto& ctx = *ctx_;
    const int n = batch.size();
    const auto q_next_target = target_.forward(ctx, next_input_.view());
    const float* q_next_online = nullptr;
    if (config_.double_dqn) {
      const auto q = online_.forward(ctx, next_input_.view());
      q_next_online_.resize(q.shape());
      backend_traits<B>::copy(ctx, q.data(), q_next_online_.data(), static_cast<std::size_t>(q.size()));
      q_next_online = q_next_online_.data();
    }
    const auto q = online_.forward(ctx, input_.view());
    grad_q_.resize(q.shape());

    TdLossArgs args;
    args.batch = n;
    args.actions = actions_;
    args.q = q.data();
    args.q_next_target = q_next_target.data();
    args.q_next_online = q_next_online;
    args.action = batch.actions.data();
    args.reward = batch.rewards.data();
    args.discount = batch.discounts.data();
    args.weights = weights;
    args.td_error_out = td_errors;
    args.loss = config_.loss;
    args.huber_delta = config_.huber_delta;
    args.demonstration_rows = demonstration_rows;
    args.margin = config_.demonstration_margin;
    args.margin_weight = config_.demonstration_weight;
    args.grad_q = grad_q_.data();
    args.loss_out = stats_.data();
    args.q_mean_out = stats_.data() + 1;
    backend_traits<B>::td_loss(ctx, args);
  }

  // C51's TD step: the next action from expected Q at s' (the target's, or
  // for Double DQN the online network's, as Rainbow does), the target's
  // distribution there projected, the cross-entropy at s.
  void td_step(const detail::CategoricalQHead<B>& head, const ReplayBatch<B>& batch, const float* weights,
               float* td_errors, int demonstration_rows) {
    require(demonstration_rows == 0, "DQfD's large-margin term needs the scalar Q head; train demonstrations "
                                     "without the distributional head");
    auto& ctx = *ctx_;
    const int n = batch.size();
    // The target's output stays valid through the online network's forwards
    // (each network owns its buffers).
    const auto next_logits = target_.forward(ctx, next_input_.view());
    const float* q_select = config_.double_dqn
                                ? head.q_values(ctx, online_.forward(ctx, next_input_.view()), q_next_online_, actions_)
                                : head.q_values(ctx, next_logits, q_next_online_, actions_);
    const auto logits = online_.forward(ctx, input_.view());
    grad_q_.resize(logits.shape());

    CategoricalTdArgs args;
    args.batch = n;
    args.actions = actions_;
    args.support = head.support();
    args.logits = logits.data();
    args.next_logits = next_logits.data();
    args.q_select = q_select;
    args.action = batch.actions.data();
    args.reward = batch.rewards.data();
    args.discount = batch.discounts.data();
    args.weights = weights;
    args.td_error_out = td_errors;
    args.grad_logits = grad_q_.data();
    args.loss_out = stats_.data();
    args.q_mean_out = stats_.data() + 1;
    backend_traits<B>::categorical_td_loss(ctx, args);
  }

  Context<B>* ctx_;
  nn::Sequential<B> online_, target_;
  Shape observation_;
  int actions_;
  DqnConfig config_;
  detail::ValueHead<B> head_;
  optim::Adam<B> optimizer_;
  std::int64_t updates_ = 0;
  Rng noise_rng_;
  Tensor<B, float> input_, next_input_, q_next_online_, grad_q_, stats_, act_input_, act_q_, td_errors_;
  Tensor<B, std::uint8_t> act_states_;
  Tensor<B, std::int32_t> act_actions_;
};

}  // namespace qrl::rl
