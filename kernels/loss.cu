// Losses: the element-wise mean losses and the fused TD step of the DQN
// update (gather Q(s,a), bootstrap value, target, Huber/MSE, DQfD's margin on
// demonstration rows and dLoss/dQ) in one launch. Reductions are in double, as the CPU backend's.
#include <qrl/backend/cuda_launch.hpp>

#include "launch_config.cuh"

namespace qrl::kernels {
namespace {

constexpr int reduce_threads = 1024;

// One block: the DQN's losses cover a minibatch, and one block reduces
// without a second launch or atomics.
template <class Element>
__global__ void elementwise_loss_kernel(Element element, const float* prediction, const float* target,
                                        std::int64_t n, float* grad, float* loss_out) {
  const float inv_n = 1.0f / static_cast<float>(n);
  double total = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float d = prediction[i] - target[i];
    total += element.value(d);
    if (grad) grad[i] = element.grad(d) * inv_n;
  }
  total = block_sum(total);
  if (threadIdx.x == 0) *loss_out = static_cast<float>(total / static_cast<double>(n));
}

__global__ void td_loss_kernel(TdLossArgs a) {
  const TdTarget target{a.gamma};
  const HuberElement huber{a.huber_delta};
  const SquaredElement squared;
  const LargeMarginElement margin{a.margin};
  const float inv_batch = 1.0f / static_cast<float>(a.batch);
  double loss = 0.0, q_sum = 0.0;
  for (int i = threadIdx.x; i < a.batch; i += blockDim.x) {
    const float* next_target = a.q_next_target + std::int64_t{i} * a.actions;
    float next_value;
    if (a.q_next_online) {
      const float* next_online = a.q_next_online + std::int64_t{i} * a.actions;
      int best = 0;
      for (int k = 1; k < a.actions; ++k)
        if (next_online[k] > next_online[best]) best = k;
      next_value = next_target[best];
    } else {
      next_value = next_target[0];
      for (int k = 1; k < a.actions; ++k) next_value = fmaxf(next_value, next_target[k]);
    }
    const float y = target(a.reward[i], a.terminated[i], next_value);
    const std::int64_t row = std::int64_t{i} * a.actions;
    const int action = a.action[i];
    const float d = a.q[row + action] - y;
    q_sum += a.q[row + action];
    const bool is_huber = a.loss == LossKind::huber;
    loss += is_huber ? huber.value(d) : squared.value(d);
    const float grad = (is_huber ? huber.grad(d) : squared.grad(d)) * inv_batch;
    for (int k = 0; k < a.actions; ++k) a.grad_q[row + k] = k == action ? grad : 0.0f;
    if (i < a.demonstration_rows)
      loss += a.margin_weight * margin.accumulate(a.q + row, a.actions, action, a.margin_weight * inv_batch,
                                                  a.grad_q + row);
  }
  loss = block_sum(loss);
  q_sum = block_sum(q_sum);
  if (threadIdx.x == 0) {
    *a.loss_out = static_cast<float>(loss / a.batch);
    if (a.q_mean_out) *a.q_mean_out = static_cast<float>(q_sum / a.batch);
  }
}

}  // namespace

void launch_elementwise_loss(HuberElement element, const float* prediction, const float* target, std::int64_t n,
                             float* grad, float* loss_out, cudaStream_t stream) {
  elementwise_loss_kernel<<<1, reduce_threads, 0, stream>>>(element, prediction, target, n, grad, loss_out);
}
void launch_elementwise_loss(SquaredElement element, const float* prediction, const float* target, std::int64_t n,
                             float* grad, float* loss_out, cudaStream_t stream) {
  elementwise_loss_kernel<<<1, reduce_threads, 0, stream>>>(element, prediction, target, n, grad, loss_out);
}
void launch_td_loss(const TdLossArgs& args, cudaStream_t stream) {
  td_loss_kernel<<<1, threads_per_block, 0, stream>>>(args);
}

}  // namespace qrl::kernels
