#pragma once
// The distributional (C51) value head of Bellemare et al. 2017, as Rainbow
// and Dopamine use it: per action, a softmax over `atoms` logits gives the
// probabilities of returns on a fixed support z_j = v_min + j * delta_z.
// Written once for every backend: the CPU loops over rows, the CUDA kernels
// run a thread per row (or per (row, action)).
#include <cmath>
#include <cstdint>

#include <qrl/kernels/op_args.hpp>
#include <qrl/core/host_device.hpp>
#include <qrl/kernels/loss.cuh>

namespace qrl::kernels {

// Most atoms a row may have: the projection keeps the target distribution
// in a per-thread array (C51 uses 51).
inline constexpr int max_categorical_atoms = 256;

using qrl::CategoricalSupport;

// Softmax of one action's logits into p (max subtracted first, so large
// logits do not overflow); returns log of the normaliser after the shift,
// from which log p_j = logits_j - max - log_sum.
QRL_HOST_DEVICE inline float categorical_softmax(const float* logits, int atoms, float* p, float& max_out) {
  float m = logits[0];
  for (int j = 1; j < atoms; ++j) m = logits[j] > m ? logits[j] : m;
  float sum = 0.0f;
  for (int j = 0; j < atoms; ++j) {
    p[j] = expf(logits[j] - m);
    sum += p[j];
  }
  for (int j = 0; j < atoms; ++j) p[j] /= sum;
  max_out = m;
  return logf(sum);
}

// Q(s, a) = sum_j z_j p_j(s, a) from one action's logits.
struct CategoricalExpectation {
  CategoricalSupport support;
  QRL_HOST_DEVICE float operator()(const float* logits) const {
    float p[max_categorical_atoms];
    float m;
    categorical_softmax(logits, support.atoms, p, m);
    float q = 0.0f;
    for (int j = 0; j < support.atoms; ++j) q += support.z(j) * p[j];
    return q;
  }
};

// Projects the distribution p on the support, shifted to r + discount * z_j
// and clipped to [v_min, v_max], back onto the support (Bellemare et al.
// 2017, Algorithm 1; Dopamine's project_distribution): each shifted atom's
// mass is split between its two neighbours in proportion to closeness. m
// must hold `atoms` zeros on entry.
QRL_HOST_DEVICE inline void categorical_projection(const CategoricalSupport& s, const float* p, float reward,
                                                   float discount, float* m) {
  const float dz = s.delta();
  for (int j = 0; j < s.atoms; ++j) {
    float tz = reward + discount * s.z(j);
    tz = tz < s.v_min ? s.v_min : tz > s.v_max ? s.v_max : tz;
    const float b = (tz - s.v_min) / dz;
    int l = static_cast<int>(floorf(b));
    int u = static_cast<int>(ceilf(b));
    l = l < 0 ? 0 : l >= s.atoms ? s.atoms - 1 : l;
    u = u < 0 ? 0 : u >= s.atoms ? s.atoms - 1 : u;
    if (l == u) {
      m[l] += p[j];
    } else {
      m[l] += p[j] * (static_cast<float>(u) - b);
      m[u] += p[j] * (b - static_cast<float>(l));
    }
  }
}

// One row of the categorical TD step (CategoricalTdArgs): the next action
// a* = argmax of `q_select` (the target's expected Q, or for Double DQN the
// online network's), the target distribution p_target(s', a*) projected
// through r + discount * z, and the cross-entropy -sum_j m_j log p_j(s, a)
// of the online distribution at the taken action. dLoss/dlogits is
// (p_j - m_j) * weight / batch at the taken action, 0 elsewhere. The
// cross-entropy is also the row's priority for prioritized replay (Rainbow's
// KL loss up to the target's entropy, which does not depend on the weights).
struct CategoricalTdRow {
  struct Out {
    float loss = 0.0f;    // weighted cross-entropy
    float margin = 0.0f;  // no DQfD margin on this head
    float q = 0.0f;       // expected Q(s, a)
  };
  QRL_HOST_DEVICE Out operator()(const CategoricalTdArgs& a, int i) const {
    const CategoricalSupport s = a.support;
    const int atoms = s.atoms;
    const std::int64_t stride = std::int64_t{a.actions} * atoms;
    const int best = ArgmaxRow{}(a.q_select + std::int64_t{i} * a.actions, a.actions);
    float p_next[max_categorical_atoms], m[max_categorical_atoms], p[max_categorical_atoms];
    float shift;
    categorical_softmax(a.next_logits + i * stride + std::int64_t{best} * atoms, atoms, p_next, shift);
    for (int j = 0; j < atoms; ++j) m[j] = 0.0f;
    categorical_projection(s, p_next, a.reward[i], a.discount[i], m);

    const int action = a.action[i];
    const float* logits = a.logits + i * stride + std::int64_t{action} * atoms;
    const float log_sum = categorical_softmax(logits, atoms, p, shift);
    float cross_entropy = 0.0f, q = 0.0f;
    for (int j = 0; j < atoms; ++j) {
      cross_entropy -= m[j] * (logits[j] - shift - log_sum);
      q += s.z(j) * p[j];
    }
    const float weight = a.weights ? a.weights[i] : 1.0f;
    const float scale = weight / static_cast<float>(a.batch);
    float* grad = a.grad_logits + i * stride;
    for (std::int64_t k = 0; k < stride; ++k) grad[k] = 0.0f;
    for (int j = 0; j < atoms; ++j) grad[std::int64_t{action} * atoms + j] = (p[j] - m[j]) * scale;
    if (a.td_error_out) a.td_error_out[i] = cross_entropy;
    return {cross_entropy * weight, 0.0f, q};
  }
};

}  // namespace qrl::kernels
