#pragma once
// Launchers of the hand-written CUDA kernels (kernels/*.cu). Each wraps one
// element functor from qrl/kernels in a __global__ function and enqueues it
// on the given stream; none synchronises. Declared in a header g++ can read
// (cudaStream_t comes from the C runtime header) so the CUDA backend, itself
// plain C++, calls them without seeing any device code.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include <qrl/kernels/geometry.hpp>
#include <qrl/kernels/op_args.hpp>
#include <qrl/kernels/activation.cuh>
#include <qrl/kernels/adam.cuh>
#include <qrl/kernels/categorical.cuh>
#include <qrl/kernels/heads.cuh>
#include <qrl/kernels/loss.cuh>
#include <qrl/kernels/preprocess.cuh>
#include <qrl/kernels/random.cuh>
#include <qrl/kernels/replay.cuh>

namespace qrl::kernels {

// One parameter tensor as the fused optimizer kernels see it: a row of a
// device-resident table, so one launch covers every tensor of a network.
struct DeviceParameter {
  float* value = nullptr;
  const float* grad = nullptr;
  float* first_moment = nullptr;   // Adam m (null for the norm-only table)
  float* second_moment = nullptr;  // Adam v
  std::int64_t size = 0;
  friend bool operator==(const DeviceParameter&, const DeviceParameter&) = default;
};

// The first launch error of this thread, or cudaSuccess; used to tell "no
// kernel image for this device" (a build for other architectures) apart
// from a working device.
cudaError_t probe_kernel_image();

void launch_fill(float* data, std::int64_t n, float value, cudaStream_t stream);
void launch_relu_forward(const float* x, float* y, std::int64_t n, cudaStream_t stream);
void launch_relu_backward(const float* y, const float* grad_y, float* grad_x, std::int64_t n, cudaStream_t stream);
void launch_u8_to_float(const std::uint8_t* src, float* dst, std::int64_t n, ByteToUnitFloat convert,
                        cudaStream_t stream);
void launch_argmax_rows(const float* x, int rows, int cols, std::int32_t* out, cudaStream_t stream);
void launch_polyak_average(const float* online, float* target, std::int64_t n, PolyakAverage f,
                           cudaStream_t stream);

// y[(o * channels + c) * inner + i] += bias[c]: dense layers use inner = 1,
// convolutions outer = batch and inner = output pixels.
void launch_bias_add(float* y, const float* bias, std::int64_t outer, int channels, std::int64_t inner,
                     cudaStream_t stream);
// grad_bias[c] = sum over o, i of grad_y[(o * channels + c) * inner + i].
void launch_bias_grad(const float* grad_y, float* grad_bias, std::int64_t outer, int channels, std::int64_t inner,
                      cudaStream_t stream);

// Zero-extends `planes` h x w planes to dst_h x dst_w (data top-left), and
// crops them back: cuDNN takes symmetric padding only, so Keras 'same' with
// an odd total gets its extra bottom/right row from a padded copy.
void launch_pad_planes(const float* src, float* dst, std::int64_t planes, int h, int w, int dst_h, int dst_w,
                       cudaStream_t stream);
void launch_crop_planes(const float* src, float* dst, std::int64_t planes, int src_h, int src_w, int h, int w,
                        cudaStream_t stream);

void launch_maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, std::int32_t* argmax,
                              cudaStream_t stream);
void launch_maxpool2d_backward(const Pool2dGeometry& g, const float* grad_y, const std::int32_t* argmax,
                               float* grad_x, cudaStream_t stream);

// Mean loss into *loss_out (device); grad (may be null) = dLoss/dprediction.
void launch_elementwise_loss(HuberElement element, const float* prediction, const float* target, std::int64_t n,
                             float* grad, float* loss_out, cudaStream_t stream);
void launch_elementwise_loss(SquaredElement element, const float* prediction, const float* target, std::int64_t n,
                             float* grad, float* loss_out, cudaStream_t stream);

// The fused TD step of TdLossArgs, one launch; all pointers are device memory.
void launch_td_loss(const TdLossArgs& args, cudaStream_t stream);
// The Q-network heads (kernels/heads.cu): noisy weights, the dueling combination, dst += src.
void launch_noisy_compose(const float* mu, const float* sigma, const float* f_rows, const float* f_cols, float* out,
                          std::int64_t rows, std::int64_t cols, cudaStream_t stream);
void launch_noisy_scale(const float* grad, const float* f_rows, const float* f_cols, float* out, std::int64_t rows,
                        std::int64_t cols, cudaStream_t stream);
void launch_dueling_forward(DuelingCombine f, const float* value, const float* advantage, float* out,
                            std::int64_t batch, cudaStream_t stream);
void launch_dueling_backward(DuelingCombineBackward f, const float* grad_out, float* grad_value,
                             float* grad_advantage, std::int64_t batch, cudaStream_t stream);
void launch_add_into(const float* src, float* dst, std::int64_t n, cudaStream_t stream);
// The categorical (C51) TD step, one launch; and expected Q from logits.
void launch_categorical_td_loss(const CategoricalTdArgs& args, cudaStream_t stream);
void launch_categorical_q(const float* logits, int rows, int actions, CategoricalSupport support, float* q,
                          cudaStream_t stream);

// Global L2 norm of every table row's gradient; *scale_out as in
// backend_traits<cpu>::grad_norm. `partials` is device scratch of
// grad_norm_partials(count, max_size) doubles: each block writes its sum to
// its own slot and one block adds the slots in a fixed order, so the norm is
// run-to-run identical (no atomics).
std::int64_t grad_norm_partials(int count, std::int64_t max_size);
void launch_grad_norm(const DeviceParameter* table, int count, std::int64_t max_size, double* partials,
                      float max_norm, float* norm_out, float* scale_out, cudaStream_t stream);
// AdamUpdate over every row of the table in one launch; grad_scale (device,
// may be null) carries the clipping factor. The bias corrections come in
// `update`, computed by the host.
void launch_adam_update(const DeviceParameter* table, int count, std::int64_t max_size, AdamUpdate update,
                        const float* grad_scale, cudaStream_t stream);
// The same with the step count on the device: a one-thread kernel advances
// *step and writes hyper.for_step(*step) to *update (device scratch), then
// the update kernel reads it. No argument changes from step to step, so a
// captured graph replays it as it is.
void launch_adam_update_counted(const DeviceParameter* table, int count, std::int64_t max_size,
                                AdamHyperparameters hyper, std::int64_t* step, AdamUpdate* update,
                                const float* grad_scale, cudaStream_t stream);
// *step = value (a checkpoint's count), in stream order.
void launch_adam_set_step(std::int64_t* step, std::int64_t value, cudaStream_t stream);

// Frame f of `frames` starts at base.src + f * src_frame_stride (device) and
// is written to dst + f * out_height * out_width.
void launch_preprocess(PreprocessFunctor base, std::size_t src_frame_stride, int frames, std::uint8_t* dst,
                       cudaStream_t stream);

// out[e] = random action with probability epsilon, else argmax_a q[e, a].
void launch_epsilon_greedy(const float* q, int batch, int actions, EpsilonGreedy policy, std::int32_t* out,
                           cudaStream_t stream);

// The replay batch gather of kernels::ReplayGather; all pointers in `args`
// are device memory.
void launch_replay_gather(const ReplayGatherArgs& args, cudaStream_t stream);

}  // namespace qrl::kernels
