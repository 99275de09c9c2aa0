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

// A TD step's row functor (TdRow, CategoricalTdRow) over the batch, one
// thread per row in one block; loss and Q reduced in double, as the CPU does.
template <class Row, class Args>
__global__ void td_rows_kernel(Row row, Args a) {
  double loss = 0.0, q_sum = 0.0;
  for (int i = threadIdx.x; i < a.batch; i += blockDim.x) {
    const auto out = row(a, i);
    loss += out.loss;
    loss += out.margin;
    q_sum += out.q;
  }
  loss = block_sum(loss);
  q_sum = block_sum(q_sum);
  if (threadIdx.x == 0) {
    *a.loss_out = static_cast<float>(loss / a.batch);
    if (a.q_mean_out) *a.q_mean_out = static_cast<float>(q_sum / a.batch);
  }
}

__global__ void categorical_q_kernel(const float* logits, std::int64_t count, CategoricalExpectation expectation,
                                     float* q) {
  for (std::int64_t k = global_index(); k < count; k += grid_stride())
    q[k] = expectation(logits + k * expectation.support.atoms);
}

}  // namespace

void launch_categorical_td_loss(const CategoricalTdArgs& args, cudaStream_t stream) {
  td_rows_kernel<<<1, threads_per_block, 0, stream>>>(CategoricalTdRow{}, args);
}
void launch_categorical_q(const float* logits, int rows, int actions, CategoricalSupport support, float* q,
                          cudaStream_t stream) {
  const std::int64_t count = std::int64_t{rows} * actions;
  if (count == 0) return;
  categorical_q_kernel<<<blocks_for(count), threads_per_block, 0, stream>>>(logits, count,
                                                                             CategoricalExpectation{support}, q);
}

void launch_elementwise_loss(HuberElement element, const float* prediction, const float* target, std::int64_t n,
                             float* grad, float* loss_out, cudaStream_t stream) {
  elementwise_loss_kernel<<<1, reduce_threads, 0, stream>>>(element, prediction, target, n, grad, loss_out);
}
void launch_elementwise_loss(SquaredElement element, const float* prediction, const float* target, std::int64_t n,
                             float* grad, float* loss_out, cudaStream_t stream) {
  elementwise_loss_kernel<<<1, reduce_threads, 0, stream>>>(element, prediction, target, n, grad, loss_out);
}
void launch_td_loss(const TdLossArgs& args, cudaStream_t stream) {
  td_rows_kernel<<<1, threads_per_block, 0, stream>>>(TdRow{}, args);
}

}  // namespace qrl::kernels
