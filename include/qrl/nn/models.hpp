#pragma once
#include <qrl/nn/heads.hpp>
#include <qrl/nn/sequential.hpp>

namespace qrl::nn {

// What the last layers of a Q-network produce: per action one Q value, or
// C51's `atoms` logits; through one stream, or the dueling value and
// advantage streams; with plain or noisy linear layers.
struct QHeadShape {
  int actions = 2;
  int atoms = 1;
  bool dueling = false;
  bool noisy = false;
  int outputs() const { return actions * atoms; }
};

// Appends the head: features -> hidden -> ReLU -> actions * atoms, through
// plain or noisy linear layers; with `dueling`, as two such streams (value:
// atoms outputs, advantage: actions * atoms), each with its own hidden
// layer as in Wang et al. 2016.
template <Backend B>
void add_q_head(Sequential<B>& net, int features, int hidden, const QHeadShape& head) {
  auto stream = [&](Sequential<B>& s, int outputs) {
    if (head.noisy) {
      s.template add<NoisyDense>(features, hidden).template add<ReLU>();
      s.template add<NoisyDense>(hidden, outputs);
    } else {
      s.template add<Dense>(features, hidden).template add<ReLU>();
      s.template add<Dense>(hidden, outputs);
    }
  };
  if (!head.dueling) {
    stream(net, head.outputs());
    return;
  }
  Sequential<B> value, advantage;
  stream(value, head.atoms);
  stream(advantage, head.outputs());
  net.add(std::make_unique<Dueling<B>>(std::move(value), std::move(advantage), head.actions, head.atoms));
}

// The DeepMind Nature DQN (Mnih et al. 2015) for [frames, 84, 84] input.
template <Backend B>
Sequential<B> nature_dqn(int frames, int height, int width, const QHeadShape& head) {
  Sequential<B> net;
  net.template add<Conv2d>(frames, 32, 8, 4).template add<ReLU>();
  net.template add<Conv2d>(32, 64, 4, 2).template add<ReLU>();
  net.template add<Conv2d>(64, 64, 3, 1).template add<ReLU>();
  net.template add<Flatten>();
  const Shape features = net.output_shape({1, frames, height, width});
  add_q_head(net, static_cast<int>(features[1]), 512, head);
  return net;
}
template <Backend B>
Sequential<B> nature_dqn(int frames, int height, int width, int actions) {
  return nature_dqn<B>(frames, height, width, QHeadShape{actions});
}

// The network of the DQN Flappy Bird / Dino tutorials: 'same' convolutions
// with 2x2 max pooling, then a 256-unit hidden layer (the Keras versions use
// 512; pass hidden = 512 for those).
template <Backend B>
Sequential<B> tutorial_dqn(int frames, int height, int width, const QHeadShape& head, int hidden = 256) {
  Sequential<B> net;
  net.template add<Conv2d>(frames, 32, 8, 4, Padding::same).template add<ReLU>();
  net.template add<MaxPool2d>(2, 2, Padding::same);
  net.template add<Conv2d>(32, 64, 4, 2, Padding::same).template add<ReLU>();
  net.template add<MaxPool2d>(2, 2, Padding::same);
  net.template add<Conv2d>(64, 64, 3, 1, Padding::same).template add<ReLU>();
  net.template add<MaxPool2d>(2, 2, Padding::same);
  net.template add<Flatten>();
  const Shape features = net.output_shape({1, frames, height, width});
  add_q_head(net, static_cast<int>(features[1]), hidden, head);
  return net;
}
template <Backend B>
Sequential<B> tutorial_dqn(int frames, int height, int width, int actions, int hidden = 256) {
  return tutorial_dqn<B>(frames, height, width, QHeadShape{actions}, hidden);
}

}  // namespace qrl::nn
