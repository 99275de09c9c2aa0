#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <qrl/kernels/geometry.hpp>
#include <qrl/core/error.hpp>
#include <qrl/nn/layer.hpp>

namespace qrl::nn {

namespace detail {

inline void require_nchw(const Shape& in, const std::string& layer) {
  require_shape(in.rank() == 4, layer, " expects NCHW input (4 dimensions), got ", in.str());
}

// The spatial part convolution and pooling share: batch, input extents,
// square kernel and stride, and the padding's output extents.
template <class Geometry>
void plan_window(Geometry& g, const Shape& in, int kernel, int stride, Padding padding, const std::string& layer) {
  require_nchw(in, layer);
  g.batch = static_cast<int>(in[0]);
  g.in_h = static_cast<int>(in[2]);
  g.in_w = static_cast<int>(in[3]);
  g.kernel_h = g.kernel_w = kernel;
  g.stride_h = g.stride_w = stride;
  try {
    const auto h = padded_extent(g.in_h, kernel, stride, padding);
    const auto w = padded_extent(g.in_w, kernel, stride, padding);
    g.out_h = h.out;
    g.pad_top = h.pad_before;
    g.out_w = w.out;
    g.pad_left = w.pad_before;
  } catch (const ShapeError& e) {
    throw ShapeError(qrl::detail::concat(layer, ": ", e.what(), " (input shape ", in.str(), ")"));
  }
}

}  // namespace detail

// 2-D convolution over NCHW input, weights [out, in, kh, kw] as in PyTorch.
template <Backend B>
class Conv2d final : public Layer<B> {
 public:
  Conv2d(int in_channels, int out_channels, int kernel, int stride = 1, Padding padding = Padding::valid)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_(kernel), stride_(stride), padding_(padding) {
    require_shape(in_channels > 0 && out_channels > 0 && kernel > 0 && stride > 0,
                  "Conv2d needs positive channels, kernel and stride, got ", describe());
    weight_.resize({out_channels, in_channels, kernel, kernel});
    bias_.resize({out_channels});
    grad_weight_.resize(weight_.shape());
    grad_bias_.resize(bias_.shape());
  }

  std::string describe() const override {
    return qrl::detail::concat("Conv2d(", in_channels_, ", ", out_channels_, ", kernel=", kernel_, ", stride=", stride_,
                          ", padding=", to_string(padding_), ")");
  }

  Shape output_shape(const Shape& in) const override {
    const auto g = make_geometry(in);
    return {g.batch, g.out_channels, g.out_h, g.out_w};
  }

  TensorView<B, const float> forward(Context<B>& ctx, TensorView<B, const float> x) override {
    geometry_ = make_geometry(x.shape());
    output_.resize({geometry_.batch, out_channels_, geometry_.out_h, geometry_.out_w});
    backend_traits<B>::conv2d_forward(ctx, state_, geometry_, x.data(), weight_.data(), bias_.data(), output_.data());
    return output_.view();
  }

  TensorView<B, const float> backward(Context<B>& ctx, TensorView<B, const float> grad_y, bool need_grad_x) override {
    require_shape(grad_y.shape() == output_.shape(), describe(), ": gradient shape ", grad_y.shape().str(),
                  " differs from the output shape ", output_.shape().str());
    float* grad_x = nullptr;
    if (need_grad_x) {
      grad_input_.resize({geometry_.batch, in_channels_, geometry_.in_h, geometry_.in_w});
      grad_x = grad_input_.data();
    }
    backend_traits<B>::conv2d_backward(ctx, state_, geometry_, weight_.data(), grad_y.data(), grad_x,
                                       grad_weight_.data(), grad_bias_.data());
    return need_grad_x ? TensorView<B, const float>(grad_input_.view()) : TensorView<B, const float>{};
  }

  std::vector<Parameter<B>> parameters() override {
    return {{"weight", &weight_, &grad_weight_}, {"bias", &bias_, &grad_bias_}};
  }

  void initialize(Context<B>& ctx, Rng& rng, Init init) override {
    detail::initialize_affine(ctx, rng, init, std::int64_t{in_channels_} * kernel_ * kernel_, weight_, bias_);
  }

  std::unique_ptr<Layer<B>> clone(Context<B>& ctx) const override {
    auto copy = std::make_unique<Conv2d>(in_channels_, out_channels_, kernel_, stride_, padding_);
    detail::copy_tensor(ctx, weight_, copy->weight_);
    detail::copy_tensor(ctx, bias_, copy->bias_);
    return copy;
  }

 private:
  Conv2dGeometry make_geometry(const Shape& in) const {
    detail::require_nchw(in, describe());
    require_shape(in[1] == in_channels_, describe(), " expects ", in_channels_, " input channels, got ", in[1],
                  " (input shape ", in.str(), ")");
    Conv2dGeometry g;
    g.in_channels = in_channels_;
    g.out_channels = out_channels_;
    detail::plan_window(g, in, kernel_, stride_, padding_, describe());
    return g;
  }

  int in_channels_, out_channels_, kernel_, stride_;
  Padding padding_;
  Tensor<B, float> weight_, bias_, grad_weight_, grad_bias_;
  Tensor<B, float> output_, grad_input_;
  Conv2dGeometry geometry_;
  Conv2dState<B> state_;
};

// Max pooling (Keras MaxPooling2D semantics for padding='same').
template <Backend B>
class MaxPool2d final : public Layer<B> {
 public:
  explicit MaxPool2d(int kernel, int stride = 0, Padding padding = Padding::valid)
      : kernel_(kernel), stride_(stride > 0 ? stride : kernel), padding_(padding) {
    require_shape(kernel > 0, "MaxPool2d needs a positive kernel, got ", kernel);
  }

  std::string describe() const override {
    return qrl::detail::concat("MaxPool2d(kernel=", kernel_, ", stride=", stride_, ", padding=", to_string(padding_), ")");
  }

  Shape output_shape(const Shape& in) const override {
    const auto g = make_geometry(in);
    return {g.batch, g.channels, g.out_h, g.out_w};
  }

  TensorView<B, const float> forward(Context<B>& ctx, TensorView<B, const float> x) override {
    geometry_ = make_geometry(x.shape());
    const Shape out{geometry_.batch, geometry_.channels, geometry_.out_h, geometry_.out_w};
    output_.resize(out);
    argmax_.resize(out);
    backend_traits<B>::maxpool2d_forward(ctx, geometry_, x.data(), output_.data(), argmax_.data());
    return output_.view();
  }

  TensorView<B, const float> backward(Context<B>& ctx, TensorView<B, const float> grad_y, bool need_grad_x) override {
    require_shape(grad_y.shape() == output_.shape(), describe(), ": gradient shape ", grad_y.shape().str(),
                  " differs from the output shape ", output_.shape().str());
    if (!need_grad_x) return {};
    grad_input_.resize({geometry_.batch, geometry_.channels, geometry_.in_h, geometry_.in_w});
    backend_traits<B>::maxpool2d_backward(ctx, geometry_, grad_y.data(), argmax_.data(), grad_input_.data());
    return grad_input_.view();
  }

  std::unique_ptr<Layer<B>> clone(Context<B>&) const override {
    return std::make_unique<MaxPool2d>(kernel_, stride_, padding_);
  }

 private:
  Pool2dGeometry make_geometry(const Shape& in) const {
    Pool2dGeometry g;
    detail::plan_window(g, in, kernel_, stride_, padding_, describe());
    g.channels = static_cast<int>(in[1]);
    return g;
  }

  int kernel_, stride_;
  Padding padding_;
  Pool2dGeometry geometry_;
  Tensor<B, float> output_, grad_input_;
  Tensor<B, std::int32_t> argmax_;
};

template <Backend B>
class ReLU final : public Layer<B> {
 public:
  std::string describe() const override { return "ReLU()"; }
  Shape output_shape(const Shape& in) const override { return in; }

  TensorView<B, const float> forward(Context<B>& ctx, TensorView<B, const float> x) override {
    output_.resize(x.shape());
    backend_traits<B>::relu_forward(ctx, x.data(), output_.data(), static_cast<std::size_t>(x.size()));
    return output_.view();
  }

  TensorView<B, const float> backward(Context<B>& ctx, TensorView<B, const float> grad_y, bool need_grad_x) override {
    require_shape(grad_y.shape() == output_.shape(), "ReLU: gradient shape ", grad_y.shape().str(),
                  " differs from the output shape ", output_.shape().str());
    if (!need_grad_x) return {};
    grad_input_.resize(grad_y.shape());
    backend_traits<B>::relu_backward(ctx, output_.data(), grad_y.data(), grad_input_.data(),
                                     static_cast<std::size_t>(grad_y.size()));
    return grad_input_.view();
  }

  std::unique_ptr<Layer<B>> clone(Context<B>&) const override { return std::make_unique<ReLU>(); }

 private:
  Tensor<B, float> output_, grad_input_;
};

// [N, C, H, W] -> [N, C*H*W] in PyTorch's order; a view, no copy.
template <Backend B>
class Flatten final : public Layer<B> {
 public:
  std::string describe() const override { return "Flatten()"; }
  Shape output_shape(const Shape& in) const override {
    require_shape(in.rank() >= 2, "Flatten expects a batch dimension and at least one more, got ", in.str());
    return {in[0], in.size() / std::max<std::int64_t>(in[0], 1)};
  }
  TensorView<B, const float> forward(Context<B>&, TensorView<B, const float> x) override {
    input_shape_ = x.shape();
    return x.reshaped(output_shape(x.shape()));
  }
  TensorView<B, const float> backward(Context<B>&, TensorView<B, const float> grad_y, bool need_grad_x) override {
    if (!need_grad_x) return {};
    return grad_y.reshaped(input_shape_);
  }
  std::unique_ptr<Layer<B>> clone(Context<B>&) const override { return std::make_unique<Flatten>(); }

 private:
  Shape input_shape_;
};

// Fully connected: y = x W^T + b with W [out, in], as torch.nn.Linear.
template <Backend B>
class Dense final : public Layer<B> {
 public:
  Dense(int in_features, int out_features) : in_(in_features), out_(out_features) {
    require_shape(in_features > 0 && out_features > 0, "Dense needs positive sizes, got ", describe());
    weight_.resize({out_features, in_features});
    bias_.resize({out_features});
    grad_weight_.resize(weight_.shape());
    grad_bias_.resize(bias_.shape());
  }

  std::string describe() const override { return qrl::detail::concat("Dense(", in_, ", ", out_, ")"); }

  Shape output_shape(const Shape& in) const override {
    require_shape(in.rank() == 2, describe(), " expects [batch, features] input, got ", in.str(),
                  " (add a Flatten layer before it)");
    require_shape(in[1] == in_, describe(), " expects ", in_, " input features, got ", in[1]);
    return {in[0], out_};
  }

  TensorView<B, const float> forward(Context<B>& ctx, TensorView<B, const float> x) override {
    output_.resize(output_shape(x.shape()));
    input_ = x;
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
    backend_traits<B>::gemm(ctx, true, false, out_, in_, batch, 1.0f, grad_y.data(), out_, input_.data(), in_, 0.0f,
                            grad_weight_.data(), in_);
    backend_traits<B>::bias_grad_rows(ctx, grad_y.data(), grad_bias_.data(), batch, out_);
    if (!need_grad_x) return {};
    grad_input_.resize(input_.shape());
    backend_traits<B>::gemm(ctx, false, false, batch, in_, out_, 1.0f, grad_y.data(), out_, weight_.data(), in_, 0.0f,
                            grad_input_.data(), in_);
    return grad_input_.view();
  }

  std::vector<Parameter<B>> parameters() override {
    return {{"weight", &weight_, &grad_weight_}, {"bias", &bias_, &grad_bias_}};
  }

  void initialize(Context<B>& ctx, Rng& rng, Init init) override {
    detail::initialize_affine(ctx, rng, init, in_, weight_, bias_);
  }

  std::unique_ptr<Layer<B>> clone(Context<B>& ctx) const override {
    auto copy = std::make_unique<Dense>(in_, out_);
    detail::copy_tensor(ctx, weight_, copy->weight_);
    detail::copy_tensor(ctx, bias_, copy->bias_);
    return copy;
  }

 private:
  int in_, out_;
  Tensor<B, float> weight_, bias_, grad_weight_, grad_bias_;
  Tensor<B, float> output_, grad_input_;
  TensorView<B, const float> input_;
};

}  // namespace qrl::nn
