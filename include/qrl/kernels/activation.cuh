#pragma once
// Element functors for activations. The CPU backend applies them in loops;
// kernels/*.cu wraps the same functors in __global__ functions, so the CPU
// result is the reference the CUDA parity tests compare against.
#include <qrl/core/host_device.hpp>

namespace qrl::kernels {

struct ReluForward {
  QRL_HOST_DEVICE float operator()(float x) const { return x > 0.0f ? x : 0.0f; }
};

// Written in terms of the output: y > 0 exactly where x > 0, and the layer
// keeps y (which the next layer needs anyway), not x.
struct ReluBackward {
  QRL_HOST_DEVICE float operator()(float y, float grad_y) const { return y > 0.0f ? grad_y : 0.0f; }
};

// Observation bytes to network input in [0, 1].
struct ByteToUnitFloat {
  float scale = 1.0f / 255.0f;
  QRL_HOST_DEVICE float operator()(unsigned char v) const { return static_cast<float>(v) * scale; }
};

// Polyak averaging of a target network: target <- tau * online + (1 - tau) *
// target (CleanRL's soft update; tau = 1 is a copy).
struct PolyakAverage {
  float tau = 1.0f;
  QRL_HOST_DEVICE float operator()(float online, float target) const { return tau * online + (1.0f - tau) * target; }
};

}  // namespace qrl::kernels
