#pragma once
// Per-element losses of the prediction error d = prediction - target. Mean
// reduction is applied by the caller, which also scales the gradient by 1/N.
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

// The one-step TD target. `terminated` is 1 for a true terminal (no
// bootstrap); truncated transitions are stored with 0 and bootstrap.
struct TdTarget {
  float gamma = 0.99f;
  QRL_HOST_DEVICE float operator()(float reward, float terminated, float next_value) const {
    return reward + gamma * (1.0f - terminated) * next_value;
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

}  // namespace qrl::kernels
