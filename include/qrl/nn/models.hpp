#pragma once
#include <qrl/nn/sequential.hpp>

namespace qrl::nn {

// The DeepMind Nature DQN (Mnih et al. 2015) for [frames, 84, 84] input.
template <Backend B>
Sequential<B> nature_dqn(int frames, int height, int width, int actions) {
  Sequential<B> net;
  net.template add<Conv2d>(frames, 32, 8, 4).template add<ReLU>();
  net.template add<Conv2d>(32, 64, 4, 2).template add<ReLU>();
  net.template add<Conv2d>(64, 64, 3, 1).template add<ReLU>();
  net.template add<Flatten>();
  const Shape features = net.output_shape({1, frames, height, width});
  net.template add<Dense>(static_cast<int>(features[1]), 512).template add<ReLU>();
  net.template add<Dense>(512, actions);
  return net;
}

// The network of the DQN Flappy Bird / Dino tutorials: 'same' convolutions
// with 2x2 max pooling, then a 256-unit hidden layer (the Keras versions use
// 512; pass hidden = 512 for those).
template <Backend B>
Sequential<B> tutorial_dqn(int frames, int height, int width, int actions, int hidden = 256) {
  Sequential<B> net;
  net.template add<Conv2d>(frames, 32, 8, 4, Padding::same).template add<ReLU>();
  net.template add<MaxPool2d>(2, 2, Padding::same);
  net.template add<Conv2d>(32, 64, 4, 2, Padding::same).template add<ReLU>();
  net.template add<MaxPool2d>(2, 2, Padding::same);
  net.template add<Conv2d>(64, 64, 3, 1, Padding::same).template add<ReLU>();
  net.template add<MaxPool2d>(2, 2, Padding::same);
  net.template add<Flatten>();
  const Shape features = net.output_shape({1, frames, height, width});
  net.template add<Dense>(static_cast<int>(features[1]), hidden).template add<ReLU>();
  net.template add<Dense>(hidden, actions);
  return net;
}

}  // namespace qrl::nn
