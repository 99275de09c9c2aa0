#pragma once
// Argument structs of backend operations, shared by every backend.
#include <cstdint>

#include <qrl/core/host_device.hpp>

namespace qrl {

enum class LossKind { huber, mse };

// Arguments of the fused TD step (kernels::TdRow): Q(s, a) gathered from `q`,
// the bootstrap value from the target network's Q(s') (its max, or for
// Double DQN its value at the online network's argmax), the target
// r + discount * bootstrap, loss and dLoss/dQ.
struct TdLossArgs {
  int batch = 0;
  int actions = 0;
  const float* q = nullptr;              // [batch, actions] online Q(s)
  const float* q_next_target = nullptr;  // [batch, actions] target Q(s')
  const float* q_next_online = nullptr;  // [batch, actions] online Q(s'), Double DQN only
  const std::int32_t* action = nullptr;
  const float* reward = nullptr;    // [batch] the window's discounted reward sum
  const float* discount = nullptr;  // [batch] gamma^k, 0 after a true terminal
  const float* weights = nullptr;   // [batch] importance weights, or null for 1
  LossKind loss = LossKind::huber;
  float huber_delta = 1.0f;
  // Rows [0, demonstration_rows) are demonstrations: their action is the
  // demonstrator's, and they add margin_weight * LargeMarginElement{margin}.
  int demonstration_rows = 0;
  float margin = 0.8f;
  float margin_weight = 1.0f;
  float* grad_q = nullptr;        // [batch, actions] out: dLoss/dQ
  float* td_error_out = nullptr;  // [batch] out: |Q(s, a) - y| (prioritized replay), or null
  float* loss_out = nullptr;    // 1 float out: mean loss
  float* q_mean_out = nullptr;  // 1 float out: mean Q(s, a), for logging
};

// Arguments of the categorical (C51) TD step (kernels::CategoricalTdRow).
// Logits are [batch, actions * atoms], action-major; the support is
// atoms values evenly spaced on [v_min, v_max].
struct CategoricalSupport {
  int atoms = 51;
  float v_min = -10.0f, v_max = 10.0f;
  QRL_HOST_DEVICE float delta() const { return (v_max - v_min) / static_cast<float>(atoms - 1); }
  QRL_HOST_DEVICE float z(int j) const { return v_min + static_cast<float>(j) * delta(); }
};
struct CategoricalTdArgs {
  int batch = 0;
  int actions = 0;
  CategoricalSupport support;
  const float* logits = nullptr;       // [batch, actions * atoms] online network at s
  const float* next_logits = nullptr;  // [batch, actions * atoms] target network at s'
  const float* q_select = nullptr;     // [batch, actions] expected Q at s' that picks a*
  const std::int32_t* action = nullptr;
  const float* reward = nullptr;    // [batch] the window's discounted reward sum
  const float* discount = nullptr;  // [batch] gamma^k, 0 after a true terminal
  const float* weights = nullptr;   // [batch] importance weights, or null for 1
  float* grad_logits = nullptr;     // [batch, actions * atoms] out
  float* td_error_out = nullptr;    // [batch] out: each row's cross-entropy, or null
  float* loss_out = nullptr;        // 1 float out: mean weighted cross-entropy
  float* q_mean_out = nullptr;      // 1 float out: mean expected Q(s, a)
};

// One parameter tensor as the optimizer and the clipper see it.
struct ParameterSlice {
  float* value = nullptr;
  float* grad = nullptr;
  std::int64_t size = 0;
};

}  // namespace qrl
