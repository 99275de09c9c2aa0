#pragma once
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <qrl/backend/backend.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/tensor.hpp>

namespace qrl::nn {

// How a layer's weights start.
//  normal_0_01:     weights ~ N(0, 0.01^2), biases 0.01 — the DQN Flappy Bird
//                   and Dino tutorials' initialisation.
//  kaiming_normal:  weights ~ N(0, 2 / fan_in), biases 0 (He et al., for ReLU).
//  pytorch_default: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
//                   what torch.nn.Conv2d/Linear do (kaiming_uniform, a=sqrt(5)).
enum class Init { normal_0_01, kaiming_normal, pytorch_default };

inline const char* to_string(Init init) {
  switch (init) {
    case Init::normal_0_01: return "normal_0_01";
    case Init::kaiming_normal: return "kaiming_normal";
    case Init::pytorch_default: return "pytorch_default";
  }
  return "?";
}

// A trainable tensor and its gradient, named as PyTorch names them: "weight"
// inside a layer, "3.weight" inside a Sequential, so checkpoints map
// one-to-one onto a state_dict.
template <Backend B>
struct Parameter {
  std::string name;
  Tensor<B, float>* value = nullptr;
  Tensor<B, float>* grad = nullptr;
};

// A layer of a Sequential network. Activations flow as views into buffers the
// layers own, reused from batch to batch; backward() uses what the last
// forward() kept, so forward and backward must alternate per batch.
template <Backend B>
class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string describe() const = 0;
  // The output shape for an input shape (batch first); throws ShapeError,
  // naming the layer, when the input does not fit.
  virtual Shape output_shape(const Shape& input) const = 0;
  virtual TensorView<B, const float> forward(Context<B>& ctx, TensorView<B, const float> x) = 0;
  // Returns dLoss/dx (empty when !need_grad_x) and sets the parameters' grads.
  virtual TensorView<B, const float> backward(Context<B>& ctx, TensorView<B, const float> grad_y,
                                              bool need_grad_x) = 0;
  virtual std::vector<Parameter<B>> parameters() { return {}; }
  virtual void initialize(Context<B>&, Rng&, Init) {}
  // A new layer with the same configuration and a copy of the weights.
  virtual std::unique_ptr<Layer> clone(Context<B>& ctx) const = 0;
  // Noisy layers (NoisyDense, and layers holding them): draw a new noise
  // sample, used by every forward until the next draw; or switch the noise
  // off (the mean weights, for greedy evaluation). No-ops elsewhere.
  virtual bool noisy() const { return false; }
  virtual void resample_noise(Context<B>&, Rng&) {}
  virtual void set_noise(Context<B>&, bool) {}
};

namespace detail {

template <Backend B>
void initialize_affine(Context<B>& ctx, Rng& rng, Init init, std::int64_t fan_in, Tensor<B, float>& weight,
                       Tensor<B, float>& bias) {
  std::vector<float> w(static_cast<std::size_t>(weight.size())), b(static_cast<std::size_t>(bias.size()));
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  switch (init) {
    case Init::normal_0_01:
      for (auto& v : w) v = static_cast<float>(0.01 * rng.normal());
      for (auto& v : b) v = 0.01f;
      break;
    case Init::kaiming_normal: {
      const double stddev = std::sqrt(2.0 / static_cast<double>(fan_in));
      for (auto& v : w) v = static_cast<float>(stddev * rng.normal());
      for (auto& v : b) v = 0.0f;
      break;
    }
    case Init::pytorch_default:
      for (auto& v : w) v = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
      for (auto& v : b) v = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
      break;
  }
  upload<B, float>(ctx, w, weight);
  upload<B, float>(ctx, b, bias);
}

template <Backend B>
void copy_tensor(Context<B>& ctx, const Tensor<B, float>& from, Tensor<B, float>& to) {
  to.resize(from.shape());
  backend_traits<B>::copy(ctx, from.data(), to.data(), static_cast<std::size_t>(from.size()));
}

}  // namespace detail
}  // namespace qrl::nn
