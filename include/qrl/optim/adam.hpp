#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/kernels/op_args.hpp>
#include <qrl/kernels/adam.cuh>
#include <qrl/nn/sequential.hpp>

namespace qrl::optim {

// Hyperparameters only: plain values a config file or checkpoint can carry.
// Defaults are torch.optim.Adam's, with CleanRL's DQN learning rate.
struct AdamConfig {
  float learning_rate = 1e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  // Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_); 0 = off.
  float max_grad_norm = 0.0f;
};

namespace detail {

// A backend whose Adam keeps the step count in its own memory (CUDA: a
// device counter the update kernel advances, so a captured graph replays
// without patching) declares backend_traits<B>::AdamStepState and the ops
// set_adam_step / adam_update_counted; the CPU backend takes the step's
// bias corrections from the host (adam_update).
template <class B>
concept DeviceStepAdam = requires { typename backend_traits<B>::AdamStepState; };

struct NoStepState {};
template <class B>
struct AdamStepStateOf {
  using type = NoStepState;
};
template <class B>
  requires DeviceStepAdam<B>
struct AdamStepStateOf<B> {
  using type = typename backend_traits<B>::AdamStepState;
};

}  // namespace detail

// Adam with bias correction over a network's parameters. The moments live in
// backend memory beside the parameters; the gradient-norm scale is applied
// inside the update instead of rewriting the gradients.
//
// steps() is the host's count (checkpoints save it). On a backend with a
// device step count the device copy follows it: set_steps() marks the device
// copy stale and the next step() (or sync_device_step()) sets it first.
template <Backend B>
class Adam {
 public:
  Adam(Context<B>& ctx, nn::Sequential<B>& net, AdamConfig config) : config_(config) {
    require(config.learning_rate > 0.0f && std::isfinite(config.learning_rate),
            "Adam: learning rate must be a positive number, got ", config.learning_rate);
    require(config.beta1 >= 0.0f && config.beta1 < 1.0f && config.beta2 >= 0.0f && config.beta2 < 1.0f,
            "Adam: betas must lie in [0, 1), got ", config.beta1, ", ", config.beta2);
    require(config.eps > 0.0f, "Adam: eps must be positive, got ", config.eps);
    require(config.max_grad_norm >= 0.0f, "Adam: max_grad_norm must be >= 0 (0 = no clipping), got ",
            config.max_grad_norm);
    for (auto& p : net.parameters()) {
      auto& m = first_.emplace_back(p.value->shape());
      auto& v = second_.emplace_back(p.value->shape());
      backend_traits<B>::fill(ctx, m.data(), static_cast<std::size_t>(m.size()), 0.0f);
      backend_traits<B>::fill(ctx, v.data(), static_cast<std::size_t>(v.size()), 0.0f);
      slices_.push_back({p.value->data(), p.grad->data(), p.value->size()});
      first_ptrs_.push_back(m.data());
      second_ptrs_.push_back(v.data());
    }
    norm_.resize({2});
  }

  // One update from the gradients the last backward() left. Returns nothing
  // to the host: the gradient norm stays in backend memory (grad_norm()).
  void step(Context<B>& ctx) {
    if constexpr (detail::DeviceStepAdam<B>) {
      sync_device_step(ctx);
      ++steps_;
      backend_traits<B>::grad_norm(ctx, slices_, config_.max_grad_norm, norm_.data(), norm_.data() + 1);
      // The device advances its count to steps_ and derives the step's bias
      // corrections from it (hyperparameters().for_step, on the device).
      backend_traits<B>::adam_update_counted(ctx, step_state_, slices_, first_ptrs_, second_ptrs_, hyperparameters(),
                                             norm_.data() + 1);
    } else {
      ++steps_;
      backend_traits<B>::grad_norm(ctx, slices_, config_.max_grad_norm, norm_.data(), norm_.data() + 1);
      backend_traits<B>::adam_update(ctx, slices_, first_ptrs_, second_ptrs_, update_for_step(steps_),
                                     norm_.data() + 1);
    }
  }

  // The element update of step `step` (1-based): its bias corrections,
  // computed on the host in double and rounded to float.
  kernels::AdamUpdate update_for_step(std::int64_t step) const { return hyperparameters().for_step(step); }

  kernels::AdamHyperparameters hyperparameters() const {
    return {config_.learning_rate, config_.beta1, config_.beta2, config_.eps, config_.weight_decay};
  }

  // Global gradient norm before clipping, of the last step (host read).
  float last_grad_norm(Context<B>& ctx) const { return to_host(ctx, norm_.view())[0]; }

  std::int64_t steps() const { return steps_; }
  // Checkpoint load: the device copy of the count (if any) is set from this
  // before the next step.
  void set_steps(std::int64_t steps) {
    steps_ = steps;
    device_step_current_ = false;
  }

  // Makes a device step count equal steps() (enqueued on ctx's stream; a
  // no-op on backends without one, and when it already is). A captured CUDA
  // graph calls this before each replay; it must not run inside a capture.
  void sync_device_step(Context<B>& ctx) {
    if constexpr (detail::DeviceStepAdam<B>) {
      if (!device_step_current_) {
        backend_traits<B>::set_adam_step(ctx, step_state_, steps_);
        device_step_current_ = true;
      }
    } else {
      (void)ctx;
    }
  }

  // A step that ran on the device without step() (a replayed CUDA graph):
  // the device count advanced itself, the host count follows.
  void count_replayed_step() { ++steps_; }

  const AdamConfig& config() const { return config_; }
  std::vector<Tensor<B, float>>& first_moments() { return first_; }
  std::vector<Tensor<B, float>>& second_moments() { return second_; }

 private:
  AdamConfig config_;
  std::int64_t steps_ = 0;
  std::vector<Tensor<B, float>> first_, second_;
  std::vector<ParameterSlice> slices_;
  std::vector<float*> first_ptrs_, second_ptrs_;
  Tensor<B, float> norm_;  // [norm, scale]
  [[no_unique_address]] typename detail::AdamStepStateOf<B>::type step_state_;
  bool device_step_current_ = false;  // the device count equals steps_ (backends with one)
};

}  // namespace qrl::optim
