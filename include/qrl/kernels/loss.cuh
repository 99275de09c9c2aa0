#pragma once
// Per-element losses of the prediction error d = prediction - target. Mean
// reduction is applied by the caller, which also scales the gradient by 1/N.
#include <cstdint>

#include <qrl/kernels/op_args.hpp>
#include <qrl/core/host_device.hpp>

namespace qrl::kernels {

// PyTorch's HuberLoss(delta): 0.5 d^2 inside |d| <= delta, linear outside.
// With delta = 1 it equals SmoothL1Loss(beta = 1), the clipped-error of
// Nature DQN.
struct HuberElement {
  float delta = 1.0f;
  QRL_HOST_DEVICE float value(float d) const {
    const float a = d < 0.0f ? -d : d;
    return a <= delta ? 0.5f * d * d : delta * (a - 0.5f * delta);
  }
  QRL_HOST_DEVICE float grad(float d) const {
    if (d > delta) return delta;
    if (d < -delta) return -delta;
    return d;
  }
};

// Squared error, the element of MSELoss (Keras tutorials, CleanRL).
struct SquaredElement {
  QRL_HOST_DEVICE float value(float d) const { return d * d; }
  QRL_HOST_DEVICE float grad(float d) const { return 2.0f * d; }
};

// The TD target y = r + discount * next_value. The replay memory folds the
// horizon into the row: for an n-step window of k <= n rewards, r is their
// discounted sum and discount is gamma^k, or 0 when the window ends in a true
// terminal (truncated windows bootstrap). With n = 1, discount is
// gamma * (1 - terminated), so the one-step target's arithmetic is unchanged.
struct TdTarget {
  QRL_HOST_DEVICE float operator()(float reward, float discount, float next_value) const {
    return reward + discount * next_value;
  }
};

// Index of a row's largest value, the first of equal ones (std::max_element's
// rule), for greedy actions and Double DQN's argmax on every backend.
struct ArgmaxRow {
  QRL_HOST_DEVICE int operator()(const float* row, int count) const {
    int best = 0;
    for (int k = 1; k < count; ++k)
      if (row[k] > row[best]) best = k;
    return best;
  }
};

// DQfD's large-margin loss on a demonstrated action a_E (Hester et al. 2018):
// max_a [Q(s,a) + margin·(a != a_E)] - Q(s,a_E). TD targets alone never say
// that the demonstrator's action beats the ones it did not take (those never
// appear in the data); this term does, and is zero once Q(s,a_E) leads every
// other action by the margin. Ties go to the lowest action, as max_element.
struct LargeMarginElement {
  float margin = 0.8f;
  // Adds scale * dLoss/dQ into one row of grad; returns the row's loss.
  QRL_HOST_DEVICE float accumulate(const float* q, int actions, int demonstrated, float scale, float* grad) const {
    int best = 0;
    float best_value = q[0] + (demonstrated == 0 ? 0.0f : margin);
    for (int k = 1; k < actions; ++k) {
      const float value = q[k] + (demonstrated == k ? 0.0f : margin);
      if (value > best_value) {
        best = k;
        best_value = value;
      }
    }
    if (best == demonstrated) return 0.0f;
    grad[best] += scale;
    grad[demonstrated] -= scale;
    return best_value - q[demonstrated];
  }
};

// One row of the fused TD step of a scalar Q head (TdLossArgs): the
// bootstrap value (max of the target's Q(s'), or for Double DQN the target's
// value at the online argmax), the target, the weighted loss element, the
// row's dLoss/dQ written whole (zero but at the taken action) and DQfD's
// margin on demonstration rows. The CPU backend loops over rows, the CUDA
// kernel runs one thread per row; both reduce `loss` and `q` per row.
struct TdRow {
  struct Out {
    float loss = 0.0f;    // the (weighted) TD loss element, before the mean
    float margin = 0.0f;  // margin_weight times DQfD's margin term
    float q = 0.0f;       // Q(s, a)
  };
  QRL_HOST_DEVICE Out operator()(const TdLossArgs& a, int i) const {
    const std::int64_t row = std::int64_t{i} * a.actions;
    const float* next_target = a.q_next_target + row;
    float next_value;
    if (a.q_next_online) {
      next_value = next_target[ArgmaxRow{}(a.q_next_online + row, a.actions)];
    } else {
      next_value = next_target[0];
      for (int k = 1; k < a.actions; ++k) next_value = next_target[k] > next_value ? next_target[k] : next_value;
    }
    const float y = TdTarget{}(a.reward[i], a.discount[i], next_value);
    const int action = a.action[i];
    const float d = a.q[row + action] - y;
    const bool is_huber = a.loss == LossKind::huber;
    const HuberElement huber{a.huber_delta};
    const float inv_batch = 1.0f / static_cast<float>(a.batch);
    Out out;
    out.loss = is_huber ? huber.value(d) : SquaredElement{}.value(d);
    float grad = (is_huber ? huber.grad(d) : SquaredElement{}.grad(d)) * inv_batch;
    if (a.weights) {  // prioritized replay's importance weights
      out.loss *= a.weights[i];
      grad *= a.weights[i];
    }
    for (int k = 0; k < a.actions; ++k) a.grad_q[row + k] = k == action ? grad : 0.0f;
    if (a.td_error_out) a.td_error_out[i] = d < 0.0f ? -d : d;
    if (i < a.demonstration_rows)
      out.margin = a.margin_weight * LargeMarginElement{a.margin}.accumulate(a.q + row, a.actions, action,
                                                                             a.margin_weight * inv_batch, a.grad_q + row);
    out.q = a.q[row + action];
    return out;
  }
};

}  // namespace qrl::kernels
