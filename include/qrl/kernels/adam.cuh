#pragma once
#include <cmath>
#include <cstdint>

#include <qrl/core/host_device.hpp>

namespace qrl::kernels {

// One Adam step for one parameter, in PyTorch's exact operation order
// (torch.optim.Adam, foreach=False) so results can be compared bit-for-bit
// closely: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
// `grad_scale` carries global-norm clipping (1 when not clipping) so the
// clipped gradient is never materialised.
struct AdamUpdate {
  float step_size = 1e-3f;        // lr / (1 - beta1^t)
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float sqrt_bias_correction2 = 1.0f;  // sqrt(1 - beta2^t)
  float weight_decay = 0.0f;      // L2 added to the gradient, as torch.optim.Adam

  QRL_HOST_DEVICE void operator()(float& param, float grad, float& m, float& v, float grad_scale) const {
    float g = grad * grad_scale;
    if (weight_decay != 0.0f) g += weight_decay * param;
    m = beta1 * m + (1.0f - beta1) * g;
    v = beta2 * v + (1.0f - beta2) * g * g;
    const float denom = sqrtf(v) / sqrt_bias_correction2 + eps;
    param -= step_size * (m / denom);
  }
};

// The step-independent part of Adam. for_step(t) is the one rule for the
// bias corrections of step t (1-based), in double, then rounded to float:
// the CPU computes it on the host at every step; the CUDA backend computes
// it on the device from a device-resident step count (so a captured graph
// needs no patching). The expressions are the same; the host's pow is
// correctly rounded, CUDA's double pow within 2 ulp, so the floats agree but
// for a rounding tie once in a great while.
struct AdamHyperparameters {
  float learning_rate = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;

  QRL_HOST_DEVICE AdamUpdate for_step(std::int64_t step) const {
    const double bias_correction1 = 1.0 - pow(double(beta1), double(step));
    const double bias_correction2 = 1.0 - pow(double(beta2), double(step));
    return {static_cast<float>(learning_rate / bias_correction1), beta1, beta2, eps,
            static_cast<float>(sqrt(bias_correction2)), weight_decay};
  }
};

}  // namespace qrl::kernels
