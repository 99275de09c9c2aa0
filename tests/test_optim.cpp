#include <doctest/doctest.h>

#include <qrl/optim/adam.hpp>

#include "test_support.hpp"

using namespace qrl;

namespace {
// A one-layer network whose parameters the tests set directly.
template <class B>
struct DenseFixture {
  Context<B> ctx;
  nn::Sequential<B> net;
  DenseFixture() { net.template add<nn::Dense>(2, 1); }
  void set(const std::vector<float>& w, const std::vector<float>& b, const std::vector<float>& gw,
           const std::vector<float>& gb) {
    auto p = net.parameters();
    upload<B, float>(ctx, w, *p[0].value);
    upload<B, float>(ctx, b, *p[1].value);
    upload<B, float>(ctx, gw, *p[0].grad);
    upload<B, float>(ctx, gb, *p[1].grad);
  }
  std::vector<float> weights() { return to_host(ctx, *net.parameters()[0].value); }
  std::vector<float> bias() { return to_host(ctx, *net.parameters()[1].value); }
};
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("Adam matches hand-computed steps with bias correction", B, adam_steps) {
  if (!test::backend_available<B>()) return;
  DenseFixture<B> f;
  f.set({1.0f, -1.0f}, {0.5f}, {0.2f, -0.4f}, {0.0f});
  optim::AdamConfig config;
  config.learning_rate = 0.1f;
  optim::Adam<B> adam(f.ctx, f.net, config);

  // Step 1: m = 0.1 g, v = 0.001 g^2; m_hat = g, v_hat = g^2: every weight
  // moves by lr * g / (|g| + eps) = lr * sign(g).
  adam.step(f.ctx);
  auto w = f.weights();
  CHECK(w[0] == doctest::Approx(1.0 - 0.1).epsilon(1e-6));
  CHECK(w[1] == doctest::Approx(-1.0 + 0.1).epsilon(1e-6));
  CHECK(f.bias()[0] == doctest::Approx(0.5));  // zero gradient, no move

  // Step 2 with g = 0.1 for w0: m = 0.9*0.02 + 0.1*0.1 = 0.028,
  // v = 0.999*4e-5 + 0.001*0.01 = 4.996e-5; m_hat = 0.028/0.19,
  // v_hat = 4.996e-5/0.001999; step = 0.1 * m_hat / sqrt(v_hat).
  f.set(w, f.bias(), {0.1f, -0.4f}, {0.0f});
  adam.step(f.ctx);
  const double m_hat = 0.028 / (1 - 0.81), v_hat = 4.996e-5 / (1 - 0.998001);
  const double expected = 0.9 - 0.1 * m_hat / (std::sqrt(v_hat) + 1e-8);
  CHECK(f.weights()[0] == doctest::Approx(expected).epsilon(1e-5));
  CHECK(adam.steps() == 2);
}

TEST_CASE_TEMPLATE_DEFINE("Global-norm clipping scales the gradient before Adam", B, adam_clipping) {
  if (!test::backend_available<B>()) return;
  // With SGD-like reasoning hidden by Adam's normalisation, check the norm and
  // scale directly, then that a clipped step equals an unclipped step taken
  // on the pre-scaled gradient.
  DenseFixture<B> a, b;
  a.set({0.3f, 0.7f}, {0.1f}, {3.0f, 4.0f}, {0.0f});  // norm 5
  b.set({0.3f, 0.7f}, {0.1f}, {0.6f, 0.8f}, {0.0f});  // the same, scaled to norm 1
  optim::AdamConfig clipped;
  clipped.learning_rate = 0.01f;
  clipped.max_grad_norm = 1.0f;
  optim::AdamConfig plain = clipped;
  plain.max_grad_norm = 0.0f;
  optim::Adam<B> adam_a(a.ctx, a.net, clipped), adam_b(b.ctx, b.net, plain);
  for (int i = 0; i < 3; ++i) {
    adam_a.step(a.ctx);
    adam_b.step(b.ctx);
    CHECK(adam_a.last_grad_norm(a.ctx) == doctest::Approx(5.0));
    CHECK(adam_b.last_grad_norm(b.ctx) == doctest::Approx(1.0));
  }
  const auto wa = a.weights(), wb = b.weights();
  CHECK(wa[0] == doctest::Approx(wb[0]).epsilon(1e-5));
  CHECK(wa[1] == doctest::Approx(wb[1]).epsilon(1e-5));
  CHECK(wa[0] != doctest::Approx(0.3));
}

TEST_CASE_TEMPLATE_DEFINE("Adam rejects nonsensical hyperparameters", B, adam_config) {
  if (!test::backend_available<B>()) return;
  DenseFixture<B> f;
  optim::AdamConfig bad;
  bad.learning_rate = -1.0f;
  CHECK_THROWS_WITH_AS(optim::Adam<B>(f.ctx, f.net, bad), doctest::Contains("learning rate"), Error);
  bad = {};
  bad.beta2 = 1.0f;
  CHECK_THROWS_WITH_AS(optim::Adam<B>(f.ctx, f.net, bad), doctest::Contains("betas"), Error);
}

QRL_TEST_ON_EVERY_BACKEND(adam_steps);
QRL_TEST_ON_EVERY_BACKEND(adam_clipping);
QRL_TEST_ON_EVERY_BACKEND(adam_config);
