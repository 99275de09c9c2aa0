#pragma once
// Argument structs of backend operations, shared by every backend.
#include <cstdint>

namespace qrl {

enum class LossKind { huber, mse };

// Arguments of the fused TD step: Q(s, a) gathered from `q`, the bootstrap
// value from the target network's Q(s') (its max, or for Double DQN its value
// at the online network's argmax), target, loss and dLoss/dQ.
struct TdLossArgs {
  int batch = 0;
  int actions = 0;
  const float* q = nullptr;              // [batch, actions] online Q(s)
  const float* q_next_target = nullptr;  // [batch, actions] target Q(s')
  const float* q_next_online = nullptr;  // [batch, actions] online Q(s'), Double DQN only
  const std::int32_t* action = nullptr;
  const float* reward = nullptr;
  const float* terminated = nullptr;
  float gamma = 0.99f;
  LossKind loss = LossKind::huber;
  float huber_delta = 1.0f;
  // Rows [0, demonstration_rows) are demonstrations: their action is the
  // demonstrator's, and they add margin_weight * LargeMarginElement{margin}.
  int demonstration_rows = 0;
  float margin = 0.8f;
  float margin_weight = 1.0f;
  float* grad_q = nullptr;      // [batch, actions] out: dLoss/dQ
  float* loss_out = nullptr;    // 1 float out: mean loss
  float* q_mean_out = nullptr;  // 1 float out: mean Q(s, a), for logging
};

// One parameter tensor as the optimizer and the clipper see it.
struct ParameterSlice {
  float* value = nullptr;
  float* grad = nullptr;
  std::int64_t size = 0;
};

}  // namespace qrl
