#pragma once
// Q-network head layers: noisy linear layers (Fortunato et al. 2018) and the
// dueling streams (Wang et al. 2016).
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/kernels/heads.cuh>
#include <qrl/nn/sequential.hpp>

namespace qrl::nn {

// A linear layer with factorised Gaussian noise on its weights and biases:
// W = mu_W + sigma_W ⊙ f(eps_out) f(eps_in)^T, b = mu_b + sigma_b ⊙ f(eps_out),
// f(x) = sgn(x) sqrt|x|, eps ~ N(0, 1) drawn by resample_noise(). Parameters
// are named as CleanRL's and the common PyTorch NoisyLinear ("weight_mu",
// "weight_sigma", "bias_mu", "bias_sigma"). With the noise off the layer is a
// Dense layer with the mean weights.
template <Backend B>
class NoisyDense final : public Layer<B> {
 public:
  NoisyDense(int in_features, int out_features, float sigma0 = 0.5f)
      : in_(in_features), out_(out_features), sigma0_(sigma0) {
    require_shape(in_features > 0 && out_features > 0, "NoisyDense needs positive sizes, got ", describe());
    require(sigma0 >= 0.0f && std::isfinite(sigma0), "NoisyDense: sigma0 must be >= 0, got ", sigma0);
    for (auto* t : {&weight_mu_, &weight_sigma_, &grad_weight_mu_, &grad_weight_sigma_, &weight_})
      t->resize({out_features, in_features});
    for (auto* t : {&bias_mu_, &bias_sigma_, &grad_bias_mu_, &grad_bias_sigma_, &bias_, &f_out_}) t->resize({out_features});
    f_in_.resize({in_features});
    one_.resize({1});
    host_in_.assign(static_cast<std::size_t>(in_features), 0.0f);
    host_out_.assign(static_cast<std::size_t>(out_features), 0.0f);
  }

  std::string describe() const override {
    return qrl::detail::concat("NoisyDense(", in_, ", ", out_, ", sigma0=", sigma0_, ")");
  }

  Shape output_shape(const Shape& in) const override {
    require_shape(in.rank() == 2 && in[1] == in_, describe(), " expects [batch, ", in_, "] input, got ", in.str());
    return {in[0], out_};
  }

  bool noisy() const override { return true; }

  void resample_noise(Context<B>& ctx, Rng& rng) override {
    for (auto& v : host_in_) v = kernels::noise_shape(static_cast<float>(rng.normal()));
    for (auto& v : host_out_) v = kernels::noise_shape(static_cast<float>(rng.normal()));
    enabled_ = true;
    upload_noise(ctx);
  }

  void set_noise(Context<B>& ctx, bool enabled) override {
    enabled_ = enabled;
    upload_noise(ctx);
  }

  TensorView<B, const float> forward(Context<B>& ctx, TensorView<B, const float> x) override {
    output_.resize(output_shape(x.shape()));
    input_ = x;
    compose(ctx);
    const int batch = static_cast<int>(x.dim(0));
    backend_traits<B>::gemm(ctx, false, true, batch, out_, in_, 1.0f, x.data(), in_, weight_.data(), in_, 0.0f,
                            output_.data(), out_);
    backend_traits<B>::bias_add_rows(ctx, output_.data(), bias_.data(), batch, out_);
    return output_.view();
  }

  TensorView<B, const float> backward(Context<B>& ctx, TensorView<B, const float> grad_y, bool need_grad_x) override {
    require_shape(grad_y.shape() == output_.shape(), describe(), ": gradient shape ", grad_y.shape().str(),
                  " differs from the output shape ", output_.shape().str());
    const int batch = static_cast<int>(grad_y.dim(0));
    // dW lands in mu's gradient (dW/dmu = 1); sigma's is dW times the noise.
    backend_traits<B>::gemm(ctx, true, false, out_, in_, batch, 1.0f, grad_y.data(), out_, input_.data(), in_, 0.0f,
                            grad_weight_mu_.data(), in_);
    backend_traits<B>::bias_grad_rows(ctx, grad_y.data(), grad_bias_mu_.data(), batch, out_);
    backend_traits<B>::noisy_scale(ctx, grad_weight_mu_.data(), f_out_.data(), f_in_.data(),
                                   grad_weight_sigma_.data(), out_, in_);
    backend_traits<B>::noisy_scale(ctx, grad_bias_mu_.data(), f_out_.data(), one_.data(), grad_bias_sigma_.data(),
                                   out_, 1);
    if (!need_grad_x) return {};
    grad_input_.resize(input_.shape());
    backend_traits<B>::gemm(ctx, false, false, batch, in_, out_, 1.0f, grad_y.data(), out_, weight_.data(), in_, 0.0f,
                            grad_input_.data(), in_);
    return grad_input_.view();
  }

  std::vector<Parameter<B>> parameters() override {
    return {{"weight_mu", &weight_mu_, &grad_weight_mu_},
            {"weight_sigma", &weight_sigma_, &grad_weight_sigma_},
            {"bias_mu", &bias_mu_, &grad_bias_mu_},
            {"bias_sigma", &bias_sigma_, &grad_bias_sigma_}};
  }

  // Fortunato et al. §3.2 (factorised): mu ~ U(-1/sqrt(in), 1/sqrt(in)),
  // sigma = sigma0 / sqrt(in), whatever `init` asks for: the noise scale is
  // part of the method, not a choice of weight initialisation.
  void initialize(Context<B>& ctx, Rng& rng, Init) override {
    detail::initialize_affine(ctx, rng, Init::pytorch_default, in_, weight_mu_, bias_mu_);
    const float s = sigma0_ / std::sqrt(static_cast<float>(in_));
    backend_traits<B>::fill(ctx, weight_sigma_.data(), static_cast<std::size_t>(weight_sigma_.size()), s);
    backend_traits<B>::fill(ctx, bias_sigma_.data(), static_cast<std::size_t>(bias_sigma_.size()), s);
    upload_noise(ctx);
  }

  std::unique_ptr<Layer<B>> clone(Context<B>& ctx) const override {
    auto copy = std::make_unique<NoisyDense>(in_, out_, sigma0_);
    detail::copy_tensor(ctx, weight_mu_, copy->weight_mu_);
    detail::copy_tensor(ctx, weight_sigma_, copy->weight_sigma_);
    detail::copy_tensor(ctx, bias_mu_, copy->bias_mu_);
    detail::copy_tensor(ctx, bias_sigma_, copy->bias_sigma_);
    copy->host_in_ = host_in_;
    copy->host_out_ = host_out_;
    copy->enabled_ = enabled_;
    copy->upload_noise(ctx);
    return copy;
  }

  // The noise factors f(eps_in), f(eps_out) in use (zeros with the noise off).
  std::vector<float> input_noise() const { return enabled_ ? host_in_ : std::vector<float>(host_in_.size(), 0.0f); }
  std::vector<float> output_noise() const {
    return enabled_ ? host_out_ : std::vector<float>(host_out_.size(), 0.0f);
  }

 private:
  // The noise off is a zero factor: W = mu + sigma * 0 = mu exactly.
  void upload_noise(Context<B>& ctx) {
    const std::vector<float> in = input_noise(), out = output_noise();
    upload<B, float>(ctx, in, f_in_);
    upload<B, float>(ctx, out, f_out_);
    upload<B, float>(ctx, std::vector<float>{1.0f}, one_);
  }
  void compose(Context<B>& ctx) {
    backend_traits<B>::noisy_compose(ctx, weight_mu_.data(), weight_sigma_.data(), f_out_.data(), f_in_.data(),
                                     weight_.data(), out_, in_);
    backend_traits<B>::noisy_compose(ctx, bias_mu_.data(), bias_sigma_.data(), f_out_.data(), one_.data(),
                                     bias_.data(), out_, 1);
  }

  int in_, out_;
  float sigma0_;
  bool enabled_ = false;
  Tensor<B, float> weight_mu_, weight_sigma_, bias_mu_, bias_sigma_;
  Tensor<B, float> grad_weight_mu_, grad_weight_sigma_, grad_bias_mu_, grad_bias_sigma_;
  Tensor<B, float> weight_, bias_, f_in_, f_out_, one_;
  std::vector<float> host_in_, host_out_;
  Tensor<B, float> output_, grad_input_;
  TensorView<B, const float> input_;
};

// The dueling head: a value stream V [B, atoms] and an advantage stream
// A [B, actions * atoms] on the same features, combined as
// Q[b, a, j] = V[b, j] + A[b, a, j] - mean_a' A[b, a', j] (atoms = 1 for
// scalar Q, C51's atoms for the distributional head, action-major).
// Parameters are "value.<i>.<name>" and "advantage.<i>.<name>", as a PyTorch
// module with two nn.Sequential members names them.
template <Backend B>
class Dueling final : public Layer<B> {
 public:
  Dueling(Sequential<B> value, Sequential<B> advantage, int actions, int atoms)
      : value_(std::move(value)), advantage_(std::move(advantage)), actions_(actions), atoms_(atoms) {
    require_shape(actions >= 1 && atoms >= 1, "Dueling needs actions and atoms >= 1, got ", actions, " and ", atoms);
  }

  std::string describe() const override {
    return qrl::detail::concat("Dueling(actions=", actions_, ", atoms=", atoms_, ", value: ", value_.size(),
                               " layers, advantage: ", advantage_.size(), " layers)");
  }

  Shape output_shape(const Shape& in) const override {
    const Shape v = value_.output_shape(in), a = advantage_.output_shape(in);
    require_shape(v.rank() == 2 && v[1] == atoms_, describe(), ": the value stream gives ", v.str(), ", expected [",
                  in[0], ", ", atoms_, "]");
    require_shape(a.rank() == 2 && a[1] == std::int64_t{actions_} * atoms_, describe(),
                  ": the advantage stream gives ", a.str(), ", expected [", in[0], ", ", actions_ * atoms_, "]");
    return {in[0], std::int64_t{actions_} * atoms_};
  }

  TensorView<B, const float> forward(Context<B>& ctx, TensorView<B, const float> x) override {
    output_.resize(output_shape(x.shape()));
    const auto v = value_.forward(ctx, x);
    const auto a = advantage_.forward(ctx, x);
    backend_traits<B>::dueling_forward(ctx, v.data(), a.data(), output_.data(), x.dim(0), actions_, atoms_);
    return output_.view();
  }

  TensorView<B, const float> backward(Context<B>& ctx, TensorView<B, const float> grad_y, bool need_grad_x) override {
    require_shape(grad_y.shape() == output_.shape(), describe(), ": gradient shape ", grad_y.shape().str(),
                  " differs from the output shape ", output_.shape().str());
    const std::int64_t batch = grad_y.dim(0);
    grad_value_.resize({batch, atoms_});
    grad_advantage_.resize(grad_y.shape());
    backend_traits<B>::dueling_backward(ctx, grad_y.data(), grad_value_.data(), grad_advantage_.data(), batch,
                                        actions_, atoms_);
    const auto gv = value_.backward_to_input(ctx, grad_value_.view());
    grad_input_.resize(gv.shape());
    backend_traits<B>::copy(ctx, gv.data(), grad_input_.data(), static_cast<std::size_t>(gv.size()));
    const auto ga = advantage_.backward_to_input(ctx, grad_advantage_.view());
    backend_traits<B>::add_into(ctx, ga.data(), grad_input_.data(), static_cast<std::size_t>(ga.size()));
    if (!need_grad_x) return {};
    return grad_input_.view();
  }

  std::vector<Parameter<B>> parameters() override {
    std::vector<Parameter<B>> out;
    for (auto& p : value_.parameters()) out.push_back({"value." + p.name, p.value, p.grad});
    for (auto& p : advantage_.parameters()) out.push_back({"advantage." + p.name, p.value, p.grad});
    return out;
  }

  void initialize(Context<B>& ctx, Rng& rng, Init init) override {
    value_.initialize(ctx, rng, init);
    advantage_.initialize(ctx, rng, init);
  }

  std::unique_ptr<Layer<B>> clone(Context<B>& ctx) const override {
    return std::make_unique<Dueling>(value_.clone(ctx), advantage_.clone(ctx), actions_, atoms_);
  }

  bool noisy() const override { return value_.noisy() || advantage_.noisy(); }
  void resample_noise(Context<B>& ctx, Rng& rng) override {
    value_.resample_noise(ctx, rng);
    advantage_.resample_noise(ctx, rng);
  }
  void set_noise(Context<B>& ctx, bool enabled) override {
    value_.set_noise(ctx, enabled);
    advantage_.set_noise(ctx, enabled);
  }

 private:
  Sequential<B> value_, advantage_;
  int actions_, atoms_;
  Tensor<B, float> output_, grad_value_, grad_advantage_, grad_input_;
};

}  // namespace qrl::nn
