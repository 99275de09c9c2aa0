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

}  // namespace qrl::kernels
