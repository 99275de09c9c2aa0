#pragma once
// Element functors of the Q-network heads: noisy linear layers (Fortunato et
// al. 2018, factorised Gaussian noise) and the dueling combination (Wang et
// al. 2016). The CPU backend loops over them; kernels/heads.cu runs them per
// element, so the CPU result is the reference of the CUDA parity tests.
#include <cmath>
#include <cstdint>

#include <qrl/core/host_device.hpp>

namespace qrl::kernels {

// Factorised noise's f(x) = sgn(x) sqrt(|x|).
QRL_HOST_DEVICE inline float noise_shape(float x) { return x < 0.0f ? -sqrtf(-x) : sqrtf(x); }

// The noisy weight of row r, column c: mu + sigma * f(eps_out[r]) f(eps_in[c]),
// with the f values precomputed (f_rows, f_cols).
struct NoisyCompose {
  QRL_HOST_DEVICE float operator()(float mu, float sigma, float f_row, float f_col) const {
    return mu + sigma * (f_row * f_col);
  }
};

// dLoss/dsigma from dLoss/dW: the same noise product.
struct NoisyScale {
  QRL_HOST_DEVICE float operator()(float grad, float f_row, float f_col) const { return grad * (f_row * f_col); }
};

// One (row b, atom j) column of the dueling combination over `actions`
// advantages: out[b,a,j] = V[b,j] + A[b,a,j] - mean_a' A[b,a',j]. The mean is
// summed in action order, so every backend gives the same bits.
struct DuelingCombine {
  int actions = 2, atoms = 1;
  QRL_HOST_DEVICE void operator()(const float* value, const float* advantage, float* out, std::int64_t b,
                                  int j) const {
    const float* a = advantage + b * actions * atoms;
    float sum = 0.0f;
    for (int k = 0; k < actions; ++k) sum += a[k * atoms + j];
    const float base = value[b * atoms + j] - sum / static_cast<float>(actions);
    for (int k = 0; k < actions; ++k) out[(b * actions + k) * atoms + j] = base + a[k * atoms + j];
  }
};

// Its backward for the same column: dV[b,j] = sum_a g[b,a,j],
// dA[b,a,j] = g[b,a,j] - dV[b,j] / actions.
struct DuelingCombineBackward {
  int actions = 2, atoms = 1;
  QRL_HOST_DEVICE void operator()(const float* grad_out, float* grad_value, float* grad_advantage, std::int64_t b,
                                  int j) const {
    const float* g = grad_out + b * actions * atoms;
    float sum = 0.0f;
    for (int k = 0; k < actions; ++k) sum += g[k * atoms + j];
    grad_value[b * atoms + j] = sum;
    const float mean = sum / static_cast<float>(actions);
    for (int k = 0; k < actions; ++k) grad_advantage[(b * actions + k) * atoms + j] = g[k * atoms + j] - mean;
  }
};

}  // namespace qrl::kernels
