#pragma once
#include <qrl/core/error.hpp>
#include <qrl/kernels/loss.cuh>
#include <qrl/tensor.hpp>

namespace qrl::nn {

// Mean squared error, mean over all elements (torch.nn.MSELoss). When grad is
// given it receives dLoss/dprediction.
template <Backend B>
float mse_loss(Context<B>& ctx, TensorView<B, const float> prediction, TensorView<B, const float> target,
               Tensor<B, float>* grad = nullptr) {
  require_shape(prediction.shape() == target.shape(), "mse_loss: prediction ", prediction.shape().str(),
                " and target ", target.shape().str(), " differ");
  if (grad) grad->resize(prediction.shape());
  return backend_traits<B>::elementwise_loss(ctx, prediction.data(), target.data(),
                                             static_cast<std::size_t>(prediction.size()), kernels::SquaredElement{},
                                             grad ? grad->data() : nullptr);
}

// Huber loss with threshold delta, mean over all elements (torch.nn.HuberLoss).
template <Backend B>
float huber_loss(Context<B>& ctx, TensorView<B, const float> prediction, TensorView<B, const float> target,
                 Tensor<B, float>* grad = nullptr, float delta = 1.0f) {
  require_shape(prediction.shape() == target.shape(), "huber_loss: prediction ", prediction.shape().str(),
                " and target ", target.shape().str(), " differ");
  require(delta > 0.0f, "huber_loss: delta must be positive, got ", delta);
  if (grad) grad->resize(prediction.shape());
  return backend_traits<B>::elementwise_loss(ctx, prediction.data(), target.data(),
                                             static_cast<std::size_t>(prediction.size()), kernels::HuberElement{delta},
                                             grad ? grad->data() : nullptr);
}

}  // namespace qrl::nn
