#pragma once
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <qrl/nn/layer.hpp>
#include <qrl/nn/layers.hpp>

namespace qrl::nn {

template <Backend B>
class Sequential {
 public:
  Sequential() = default;
  Sequential(Sequential&&) noexcept = default;
  Sequential& operator=(Sequential&&) noexcept = default;

  template <template <Backend> class L, class... Args>
  Sequential& add(Args&&... args) {
    layers_.push_back(std::make_unique<L<B>>(std::forward<Args>(args)...));
    return *this;
  }
  Sequential& add(std::unique_ptr<Layer<B>> layer) {
    layers_.push_back(std::move(layer));
    return *this;
  }

  std::size_t size() const { return layers_.size(); }
  Layer<B>& operator[](std::size_t i) { return *layers_[i]; }

  // Checks every layer against the input shape; throws a ShapeError naming
  // the first layer that does not fit.
  Shape output_shape(Shape input) const {
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      try {
        input = layers_[i]->output_shape(input);
      } catch (const ShapeError& e) {
        throw ShapeError(qrl::detail::concat("layer ", i, " ", e.what()));
      }
    }
    return input;
  }

  TensorView<B, const float> forward(Context<B>& ctx, TensorView<B, const float> x) {
    for (auto& layer : layers_) x = layer->forward(ctx, x);
    return x;
  }

  // Backpropagates dLoss/doutput through the layers of the last forward().
  // The input gradient is not computed: the input is an observation.
  void backward(Context<B>& ctx, TensorView<B, const float> grad) {
    for (std::size_t i = layers_.size(); i-- > 0;) grad = layers_[i]->backward(ctx, grad, i > 0);
  }

  // The same, returning dLoss/dinput (for a Sequential inside a layer).
  TensorView<B, const float> backward_to_input(Context<B>& ctx, TensorView<B, const float> grad) {
    for (std::size_t i = layers_.size(); i-- > 0;) grad = layers_[i]->backward(ctx, grad, true);
    return grad;
  }

  // Noisy layers, in layer order (each draws its input noise, then its
  // output noise, from `rng`, so a seed fixes the sample).
  bool noisy() const {
    for (const auto& layer : layers_)
      if (layer->noisy()) return true;
    return false;
  }
  void resample_noise(Context<B>& ctx, Rng& rng) {
    for (auto& layer : layers_) layer->resample_noise(ctx, rng);
  }
  void set_noise(Context<B>& ctx, bool enabled) {
    for (auto& layer : layers_) layer->set_noise(ctx, enabled);
  }

  // Named "<layer index>.weight" as in a PyTorch nn.Sequential state_dict, so a
  // qrl checkpoint loads into the same torch.nn.Sequential without renaming.
  std::vector<Parameter<B>> parameters() {
    std::vector<Parameter<B>> out;
    for (std::size_t i = 0; i < layers_.size(); ++i)
      for (auto& p : layers_[i]->parameters()) out.push_back({std::to_string(i) + "." + p.name, p.value, p.grad});
    return out;
  }

  std::int64_t parameter_count() {
    std::int64_t n = 0;
    for (auto& p : parameters()) n += p.value->size();
    return n;
  }

  void initialize(Context<B>& ctx, Rng& rng, Init init) {
    for (auto& layer : layers_) layer->initialize(ctx, rng, init);
  }

  Sequential clone(Context<B>& ctx) const {
    Sequential copy;
    for (const auto& layer : layers_) copy.layers_.push_back(layer->clone(ctx));
    return copy;
  }

  // Target-network sync: copy every parameter of `source` (same architecture).
  void copy_parameters_from(Context<B>& ctx, Sequential& source) {
    for_matching_parameters(source, "copy_parameters_from", [&](Tensor<B, float>& to, Tensor<B, float>& from) {
      backend_traits<B>::copy(ctx, from.data(), to.data(), static_cast<std::size_t>(to.size()));
    });
  }

  // Polyak averaging: every parameter p <- tau * source + (1 - tau) * p.
  void average_parameters_from(Context<B>& ctx, Sequential& source, float tau) {
    for_matching_parameters(source, "average_parameters_from", [&](Tensor<B, float>& to, Tensor<B, float>& from) {
      backend_traits<B>::polyak_average(ctx, from.data(), to.data(), static_cast<std::size_t>(to.size()), tau);
    });
  }

  std::string summary(Shape input) const {
    std::ostringstream out;
    out << "input " << input.str() << '\n';
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      input = layers_[i]->output_shape(input);
      out << "  " << i << ": " << layers_[i]->describe() << " -> " << input.str() << '\n';
    }
    return out.str();
  }

 private:
  template <class Apply>
  void for_matching_parameters(Sequential& source, const char* what, Apply apply) {
    auto to = parameters();
    auto from = source.parameters();
    require_shape(to.size() == from.size(), what, ": networks differ (", from.size(), " vs ", to.size(),
                  " parameters)");
    for (std::size_t i = 0; i < to.size(); ++i) {
      require_shape(to[i].value->shape() == from[i].value->shape(), what, ": ", to[i].name, " is ",
                    to[i].value->shape().str(), " here but ", from[i].value->shape().str(), " in the source");
      apply(*to[i].value, *from[i].value);
    }
  }

  std::vector<std::unique_ptr<Layer<B>>> layers_;
};

}  // namespace qrl::nn
