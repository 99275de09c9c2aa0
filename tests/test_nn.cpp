// Finite-difference checks of every layer and loss, templated over backends
// (for qrl::cpu, and for qrl::cuda when it is built: see the end of the file).
// Each check perturbs inputs and parameters by ±h in float32 and compares
// central differences of L = sum(y * r) (r random) with backward(); the
// stated tolerance is on the relative error ||analytic - numeric|| /
// (||analytic|| + ||numeric||).
#include <doctest/doctest.h>

#include <functional>
#include <memory>

#include <qrl/nn/heads.hpp>
#include <qrl/nn/loss.hpp>
#include <qrl/nn/models.hpp>
#include <qrl/nn/sequential.hpp>
#include <qrl/nn/serialize.hpp>

#include <unistd.h>

#include <filesystem>

#include "test_support.hpp"

using namespace qrl;

namespace {

constexpr double grad_tolerance = 2e-3;

template <class B>
struct LayerGradCheck {
  Context<B> ctx;
  Rng rng{1234};

  // Runs the check for `layer` on input shape `in_shape`. `make_input`
  // produces host input values (so kinks of ReLU/max can be avoided).
  void run(nn::Layer<B>& layer, Shape in_shape, std::function<std::vector<float>(std::size_t)> make_input,
           double h = 1e-2) {
    auto host_x = make_input(static_cast<std::size_t>(in_shape.size()));
    REQUIRE(test::norm(host_x) > 0.0);
    Tensor<B, float> x = from_host<B, float>(ctx, host_x, in_shape);
    const Shape out_shape = layer.output_shape(in_shape);
    auto r = test::random_vector(static_cast<std::size_t>(out_shape.size()), rng);
    Tensor<B, float> grad_y = from_host<B, float>(ctx, r, out_shape);

    auto loss_at = [&](const std::vector<float>& input) {
      Tensor<B, float> xi = from_host<B, float>(ctx, input, in_shape);
      const auto y = to_host(ctx, layer.forward(ctx, xi.view()));
      double l = 0;
      for (std::size_t i = 0; i < y.size(); ++i) l += double(y[i]) * r[i];
      return l;
    };

    const auto y = to_host(ctx, layer.forward(ctx, x.view()));
    CHECK(test::all_finite(y));
    CHECK(test::norm(y) > 0.0);
    REQUIRE(Shape(layer.output_shape(in_shape)) == out_shape);
    const auto grad_x = to_host(ctx, layer.backward(ctx, grad_y.view(), true));
    REQUIRE(grad_x.size() == host_x.size());
    CHECK(test::all_finite(grad_x));
    CHECK(test::norm(grad_x) > 0.0);

    // Parameter gradients from this backward, before the probes below overwrite the layer's buffers.
    std::vector<std::vector<float>> param_grads;
    for (auto& p : layer.parameters()) param_grads.push_back(to_host(ctx, *p.grad));

    std::vector<double> analytic, numeric;
    for (std::size_t i = 0; i < host_x.size(); ++i) {
      numeric.push_back(test::central_difference(host_x, i, h, loss_at));
      analytic.push_back(grad_x[i]);
    }
    const double input_error = test::relative_error(analytic, numeric);
    INFO(layer.describe(), " input gradient relative error ", input_error);
    CHECK(input_error < grad_tolerance);

    auto params = layer.parameters();
    for (std::size_t k = 0; k < params.size(); ++k) {
      auto& p = params[k];
      CHECK(test::norm(param_grads[k]) > 0.0);
      auto values = to_host(ctx, *p.value);
      const auto loss_with = [&](const std::vector<float>& v) {
        upload<B, float>(ctx, v, *p.value);
        return loss_at(host_x);
      };
      std::vector<double> pa, pn;
      for (std::size_t i = 0; i < values.size(); ++i) {
        pn.push_back(test::central_difference(values, i, h, loss_with));
        pa.push_back(param_grads[k][i]);
      }
      upload<B, float>(ctx, values, *p.value);
      const double error = test::relative_error(pa, pn);
      INFO(layer.describe(), " ", p.name, " gradient relative error ", error);
      CHECK(error < grad_tolerance);
    }
  }

  std::vector<float> normal(std::size_t n) { return test::random_vector(n, rng); }

  // Distinct values at least 0.05 apart and away from zero, so a ±h probe
  // never crosses a ReLU kink or changes a max-pool winner.
  std::vector<float> spread(std::size_t n) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = 0.05f * static_cast<float>(i + 1) * ((i % 2) ? 1.0f : -1.0f);
    for (std::size_t i = n; i-- > 1;) std::swap(v[i], v[rng.uniform_index(i + 1)]);
    return v;
  }
};

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("Conv2d gradients match finite differences", B, conv_grad) {
  if (!test::backend_available<B>()) return;
  LayerGradCheck<B> check;
  SUBCASE("valid padding, stride 1") {
    nn::Conv2d<B> conv(2, 3, 3, 1, Padding::valid);
    conv.initialize(check.ctx, check.rng, nn::Init::pytorch_default);
    check.run(conv, {2, 2, 6, 5}, [&](std::size_t n) { return check.normal(n); });
  }
  SUBCASE("same padding, stride 2 (asymmetric padding)") {
    nn::Conv2d<B> conv(3, 2, 4, 2, Padding::same);
    conv.initialize(check.ctx, check.rng, nn::Init::kaiming_normal);
    check.run(conv, {2, 3, 7, 8}, [&](std::size_t n) { return check.normal(n); });
  }
  SUBCASE("same padding, stride 4, the tutorials' first layer shape") {
    nn::Conv2d<B> conv(2, 2, 8, 4, Padding::same);
    conv.initialize(check.ctx, check.rng, nn::Init::pytorch_default);
    check.run(conv, {1, 2, 10, 10}, [&](std::size_t n) { return check.normal(n); });
  }
}

// The convolution written as its definition, in double: y[n,o,i,j] = b[o] +
// sum over c, kh, kw of w[o,c,kh,kw] * x[n,c,i*s+kh-pad_top,j*s+kw-pad_left],
// zero outside the image. Geometries cover kernels wider than the stride
// (overlap), narrower (gaps), padding on one or both sides and odd sizes.
TEST_CASE_TEMPLATE_DEFINE("Conv2d forward equals the direct convolution sum", B, conv_direct) {
  if (!test::backend_available<B>()) return;
  struct Case {
    int in_c, out_c, kernel, stride;
    Padding padding;
    Shape in;
  };
  const Case cases[] = {
      {2, 3, 3, 1, Padding::valid, {2, 2, 6, 5}},  {3, 2, 4, 2, Padding::same, {2, 3, 7, 8}},
      {2, 4, 8, 4, Padding::same, {2, 2, 13, 11}}, {4, 5, 8, 4, Padding::valid, {3, 4, 20, 21}},
      {1, 2, 1, 3, Padding::same, {2, 1, 7, 10}},  {2, 3, 5, 1, Padding::same, {1, 2, 4, 9}},
      {3, 2, 2, 3, Padding::valid, {2, 3, 11, 8}}, {2, 2, 7, 2, Padding::same, {1, 2, 3, 3}},
  };
  Context<B> ctx;
  Rng rng(99);
  for (const auto& c : cases) {
    nn::Conv2d<B> conv(c.in_c, c.out_c, c.kernel, c.stride, c.padding);
    conv.initialize(ctx, rng, nn::Init::pytorch_default);
    auto params = conv.parameters();
    const auto w = to_host(ctx, *params[0].value);
    auto bias = test::random_vector(static_cast<std::size_t>(c.out_c), rng);
    upload<B, float>(ctx, bias, *params[1].value);
    const auto x = test::random_vector(static_cast<std::size_t>(c.in.size()), rng);
    Tensor<B, float> xt = from_host<B, float>(ctx, x, c.in);
    const auto y = to_host(ctx, conv.forward(ctx, xt.view()));

    const int batch = static_cast<int>(c.in[0]), in_h = static_cast<int>(c.in[2]), in_w = static_cast<int>(c.in[3]);
    const auto rows = padded_extent(in_h, c.kernel, c.stride, c.padding);
    const auto cols = padded_extent(in_w, c.kernel, c.stride, c.padding);
    REQUIRE(y.size() == static_cast<std::size_t>(batch) * c.out_c * rows.out * cols.out);
    std::vector<float> expected(y.size());
    std::size_t k = 0;
    for (int n = 0; n < batch; ++n)
      for (int o = 0; o < c.out_c; ++o)
        for (int i = 0; i < rows.out; ++i)
          for (int j = 0; j < cols.out; ++j) {
            double sum = bias[static_cast<std::size_t>(o)];
            for (int ch = 0; ch < c.in_c; ++ch)
              for (int kh = 0; kh < c.kernel; ++kh)
                for (int kw = 0; kw < c.kernel; ++kw) {
                  const int ih = i * c.stride + kh - rows.pad_before, iw = j * c.stride + kw - cols.pad_before;
                  if (ih < 0 || ih >= in_h || iw < 0 || iw >= in_w) continue;
                  sum += double(w[static_cast<std::size_t>(((o * c.in_c + ch) * c.kernel + kh) * c.kernel + kw)]) *
                         x[static_cast<std::size_t>(((n * c.in_c + ch) * in_h + ih) * in_w + iw)];
                }
            expected[k++] = static_cast<float>(sum);
          }
    INFO(conv.describe(), " on ", c.in.str());
    CHECK(test::norm(expected) > 0.0);
    CHECK(test::all_finite(y));
    CHECK(test::all_close(y, expected, 1e-5, 0.0, conv.describe()));
  }
}

TEST_CASE_TEMPLATE_DEFINE("Dense gradients match finite differences", B, dense_grad) {
  if (!test::backend_available<B>()) return;
  LayerGradCheck<B> check;
  nn::Dense<B> dense(7, 5);
  dense.initialize(check.ctx, check.rng, nn::Init::pytorch_default);
  check.run(dense, {4, 7}, [&](std::size_t n) { return check.normal(n); });
}

TEST_CASE_TEMPLATE_DEFINE("ReLU gradients match finite differences", B, relu_grad) {
  if (!test::backend_available<B>()) return;
  LayerGradCheck<B> check;
  nn::ReLU<B> relu;
  check.run(relu, {3, 2, 4, 4}, [&](std::size_t n) { return check.spread(n); });
}

TEST_CASE_TEMPLATE_DEFINE("MaxPool2d gradients match finite differences", B, pool_grad) {
  if (!test::backend_available<B>()) return;
  LayerGradCheck<B> check;
  SUBCASE("2x2 valid") {
    nn::MaxPool2d<B> pool(2);
    check.run(pool, {2, 3, 6, 6}, [&](std::size_t n) { return check.spread(n); });
  }
  SUBCASE("2x2 same on odd sizes") {
    nn::MaxPool2d<B> pool(2, 2, Padding::same);
    check.run(pool, {2, 2, 5, 7}, [&](std::size_t n) { return check.spread(n); });
  }
  SUBCASE("3x3 stride 2 overlapping windows") {
    nn::MaxPool2d<B> pool(3, 2);
    check.run(pool, {1, 2, 7, 7}, [&](std::size_t n) { return check.spread(n); });
  }
}

TEST_CASE_TEMPLATE_DEFINE("Flatten passes values and gradients through in NCHW order", B, flatten_grad) {
  if (!test::backend_available<B>()) return;
  LayerGradCheck<B> check;
  nn::Flatten<B> flatten;
  CHECK(flatten.output_shape({2, 3, 4, 5}) == Shape{2, 60});
  check.run(flatten, {2, 3, 4, 5}, [&](std::size_t n) { return check.normal(n); });
  // Row n of the output is image n's C*H*W values in NCHW order, as torch.flatten(x, 1).
  std::vector<float> values(2 * 3 * 4 * 5);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  auto x = from_host<B, float>(check.ctx, values, {2, 3, 4, 5});
  const auto y = flatten.forward(check.ctx, x.view());
  CHECK(y.shape() == Shape{2, 60});
  const auto flat = to_host(check.ctx, y);
  CHECK(flat[61] == 61.0f);  // n=1, c=0, h=0, w=1
  CHECK(flat == values);
}

TEST_CASE_TEMPLATE_DEFINE("Sequential tutorial network backpropagates end to end", B, sequential_grad) {
  if (!test::backend_available<B>()) return;
  // The whole tutorial network on a small input, probing a sample of
  // parameters: the chain rule across layers, not just each layer alone.
  Context<B> ctx;
  Rng rng(5);
  auto net = nn::tutorial_dqn<B>(2, 16, 16, 3, 8);
  net.initialize(ctx, rng, nn::Init::kaiming_normal);
  auto host_x = test::random_vector(2 * 2 * 16 * 16, rng);
  auto x = from_host<B, float>(ctx, host_x, {2, 2, 16, 16});
  auto r = test::random_vector(2 * 3, rng);
  auto grad = from_host<B, float>(ctx, r, {2, 3});
  auto loss = [&] {
    const auto y = to_host(ctx, net.forward(ctx, x.view()));
    double l = 0;
    for (std::size_t i = 0; i < y.size(); ++i) l += double(y[i]) * r[i];
    return l;
  };
  net.forward(ctx, x.view());
  net.backward(ctx, grad.view());
  const double h = 1e-2;
  std::vector<double> analytic, numeric;
  for (auto& p : net.parameters()) {
    const auto g = to_host(ctx, *p.grad);
    auto values = to_host(ctx, *p.value);
    const auto loss_with = [&](const std::vector<float>& v) {
      upload<B, float>(ctx, v, *p.value);
      return loss();
    };
    for (int probe = 0; probe < 6; ++probe) {
      const std::size_t i = rng.uniform_index(values.size());
      numeric.push_back(test::central_difference(values, i, h, loss_with));
      analytic.push_back(g[i]);
    }
    upload<B, float>(ctx, values, *p.value);
  }
  const double error = test::relative_error(analytic, numeric);
  INFO("network parameter gradient relative error ", error);
  CHECK(error < 2e-2);
  double analytic_norm = 0;
  for (double a : analytic) analytic_norm += a * a;
  CHECK(analytic_norm > 0.0);
}

TEST_CASE_TEMPLATE_DEFINE("MSE and Huber losses match hand values and finite differences", B, loss_grad) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  const std::vector<float> pred{0.5f, -2.0f, 3.0f, 0.0f}, target{0.0f, 0.0f, 0.5f, 0.25f};
  auto p = from_host<B, float>(ctx, pred, {4});
  auto t = from_host<B, float>(ctx, target, {4});
  Tensor<B, float> grad;
  // d = [0.5, -2, 2.5, -0.25]
  const float mse = nn::mse_loss<B>(ctx, p.view(), t.view(), &grad);
  CHECK(mse == doctest::Approx((0.25 + 4 + 6.25 + 0.0625) / 4));
  auto g = to_host(ctx, grad);
  CHECK(g[1] == doctest::Approx(2 * -2.0 / 4));
  const float huber = nn::huber_loss<B>(ctx, p.view(), t.view(), &grad);
  CHECK(huber == doctest::Approx((0.125 + 1.5 + 2.0 + 0.03125) / 4));
  g = to_host(ctx, grad);
  CHECK(g[0] == doctest::Approx(0.5 / 4));
  CHECK(g[1] == doctest::Approx(-1.0 / 4));
  CHECK(g[2] == doctest::Approx(1.0 / 4));
  CHECK(g[3] == doctest::Approx(-0.25 / 4));

  Rng rng(9);
  for (int kind = 0; kind < 2; ++kind) {
    auto a = test::random_vector(12, rng, 2.0f), b = test::random_vector(12, rng, 2.0f);
    auto loss = [&](const std::vector<float>& x) {
      auto xt = from_host<B, float>(ctx, x, {12});
      auto bt = from_host<B, float>(ctx, b, {12});
      return kind == 0 ? double(nn::mse_loss<B>(ctx, xt.view(), bt.view()))
                       : double(nn::huber_loss<B>(ctx, xt.view(), bt.view(), nullptr, 1.0f));
    };
    auto at = from_host<B, float>(ctx, a, {12});
    auto bt = from_host<B, float>(ctx, b, {12});
    if (kind == 0)
      nn::mse_loss<B>(ctx, at.view(), bt.view(), &grad);
    else
      nn::huber_loss<B>(ctx, at.view(), bt.view(), &grad, 1.0f);
    const auto analytic_f = to_host(ctx, grad);
    std::vector<double> analytic(analytic_f.begin(), analytic_f.end()), numeric;
    const double h = 1e-3;
    for (std::size_t i = 0; i < a.size(); ++i) numeric.push_back(test::central_difference(a, i, h, loss));
    CHECK(test::relative_error(analytic, numeric) < grad_tolerance);
  }
}

TEST_CASE_TEMPLATE_DEFINE("Shape errors name the layer and the shapes", B, shape_errors) {
  if (!test::backend_available<B>()) return;
  auto net = nn::nature_dqn<B>(4, 84, 84, 6);
  CHECK(net.output_shape({32, 4, 84, 84}) == Shape{32, 6});
  CHECK_THROWS_AS(net.output_shape({32, 3, 84, 84}), ShapeError);
  try {
    net.output_shape({32, 3, 84, 84});
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("expects 4 input channels, got 3") != std::string::npos);
  }
  nn::Dense<B> dense(10, 2);
  CHECK_THROWS_WITH_AS(dense.output_shape({3, 2, 5}), doctest::Contains("add a Flatten layer"), ShapeError);
  nn::Conv2d<B> conv(1, 1, 5, 1, Padding::valid);
  CHECK_THROWS_WITH_AS(conv.output_shape({1, 1, 3, 3}), doctest::Contains("smaller than the kernel"), ShapeError);
}

TEST_CASE_TEMPLATE_DEFINE("Padding 'same' follows Keras: ceil(in / stride) outputs", B, same_padding) {
  if (!test::backend_available<B>()) return;
  nn::Conv2d<B> conv(4, 32, 8, 4, Padding::same);
  CHECK(conv.output_shape({1, 4, 80, 80}) == Shape{1, 32, 20, 20});
  nn::MaxPool2d<B> pool(2, 2, Padding::same);
  CHECK(pool.output_shape({1, 32, 5, 5}) == Shape{1, 32, 3, 3});
  auto tutorial = nn::tutorial_dqn<B>(4, 80, 80, 2);
  // 80 -> conv/4 20 -> pool 10 -> conv/2 5 -> pool 3 -> conv 3 -> pool 2: 64*2*2
  CHECK(tutorial.output_shape({1, 4, 80, 80}) == Shape{1, 2});
  CHECK(tutorial.summary({1, 4, 80, 80}).find("Dense(256, 256)") != std::string::npos);
  auto nature = nn::nature_dqn<B>(4, 84, 84, 6);
  CHECK(nature.summary({1, 4, 84, 84}).find("Dense(3136, 512)") != std::string::npos);
  CHECK(nature.parameter_count() == 8 * 8 * 4 * 32 + 32 + 4 * 4 * 32 * 64 + 64 + 3 * 3 * 64 * 64 + 64 +
                                        3136 * 512 + 512 + 512 * 6 + 6);
}

TEST_CASE_TEMPLATE_DEFINE("Initialisers have the documented statistics", B, initialisers) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  Rng rng(11);
  nn::Dense<B> dense(400, 300);
  auto moments = [&](nn::Init init) {
    dense.initialize(ctx, rng, init);
    auto params = dense.parameters();
    const auto w = to_host(ctx, *params[0].value);
    const auto b = to_host(ctx, *params[1].value);
    double mean = 0, sq = 0, max_abs = 0;
    for (float v : w) {
      mean += v;
      sq += double(v) * v;
      max_abs = std::max(max_abs, std::abs(double(v)));
    }
    mean /= w.size();
    return std::tuple{mean, std::sqrt(sq / w.size() - mean * mean), max_abs, b};
  };
  auto [m1, s1, a1, b1] = moments(nn::Init::normal_0_01);
  CHECK(std::abs(m1) < 1e-3);
  CHECK(s1 == doctest::Approx(0.01).epsilon(0.02));
  CHECK(b1[0] == doctest::Approx(0.01f));
  auto [m2, s2, a2, b2] = moments(nn::Init::kaiming_normal);
  CHECK(s2 == doctest::Approx(std::sqrt(2.0 / 400)).epsilon(0.02));
  CHECK(b2[7] == 0.0f);
  auto [m3, s3, a3, b3] = moments(nn::Init::pytorch_default);
  CHECK(a3 <= 1.0 / 20.0);
  CHECK(s3 == doctest::Approx(1.0 / 20.0 / std::sqrt(3.0)).epsilon(0.02));  // U(-b, b) has sd b/sqrt(3)
}

TEST_CASE_TEMPLATE_DEFINE("NoisyDense: the composed weights by hand, gradients by finite differences", B, noisy_dense) {
  if (!test::backend_available<B>()) return;
  LayerGradCheck<B> check;
  nn::NoisyDense<B> layer(3, 2, 0.5f);
  layer.initialize(check.ctx, check.rng, nn::Init::pytorch_default);
  // Noise off (never drawn): the mean weights, exactly a Dense layer.
  const auto mu = to_host(check.ctx, *layer.parameters()[0].value), mu_b = to_host(check.ctx, *layer.parameters()[2].value);
  const auto sigma = to_host(check.ctx, *layer.parameters()[1].value);
  CHECK(sigma == std::vector<float>(6, 0.5f / std::sqrt(3.0f)));  // sigma0 / sqrt(in)
  const std::vector<float> x{0.3f, -1.2f, 2.0f};
  auto xt = from_host<B, float>(check.ctx, x, {1, 3});
  auto expect = [&](const std::vector<float>& fi, const std::vector<float>& fo) {
    std::vector<float> y(2);
    for (int r = 0; r < 2; ++r) {
      float acc = 0.0f;
      for (int c = 0; c < 3; ++c) acc += x[c] * (mu[r * 3 + c] + sigma[r * 3 + c] * (fo[r] * fi[c]));
      y[r] = acc + mu_b[r] + sigma[0] * fo[r];
    }
    return y;
  };
  auto y = to_host(check.ctx, layer.forward(check.ctx, xt.view()));
  auto e = expect({0, 0, 0}, {0, 0});
  for (int r = 0; r < 2; ++r) CHECK(y[r] == doctest::Approx(e[r]).epsilon(1e-5));
  // A noise sample: y by hand from the factors f(eps) the layer reports.
  Rng noise(5);
  layer.resample_noise(check.ctx, noise);
  const auto fi = layer.input_noise(), fo = layer.output_noise();
  CHECK(test::norm(fi) > 0.0);
  y = to_host(check.ctx, layer.forward(check.ctx, xt.view()));
  e = expect(fi, fo);
  for (int r = 0; r < 2; ++r) CHECK(y[r] == doctest::Approx(e[r]).epsilon(1e-5));
  // The same seed draws the same noise; another seed another.
  Rng again(5), other(6);
  layer.resample_noise(check.ctx, again);
  CHECK(layer.input_noise() == fi);
  layer.resample_noise(check.ctx, other);
  CHECK(layer.input_noise() != fi);
  // All four parameters' gradients with the noise on (sigma's is dW times the noise).
  layer.resample_noise(check.ctx, noise);
  check.run(layer, {4, 3}, [&](std::size_t n) { return check.normal(n); });
  // Switched off again: the mean output.
  layer.set_noise(check.ctx, false);
  y = to_host(check.ctx, layer.forward(check.ctx, xt.view()));
  e = expect({0, 0, 0}, {0, 0});
  for (int r = 0; r < 2; ++r) CHECK(y[r] == doctest::Approx(e[r]).epsilon(1e-5));
}

TEST_CASE_TEMPLATE_DEFINE("NoisyDense's weight noise has variance sigma^2 * 2/pi", B, noisy_statistics) {
  if (!test::backend_available<B>()) return;
  // W - mu = sigma f(e1) f(e2) with f(e)^2 = |e|, E|e| = sqrt(2/pi): Var = sigma^2 * 2/pi.
  Context<B> ctx;
  Rng init(1), noise(2);
  nn::NoisyDense<B> layer(1, 1, 1.0f);  // sigma = 1
  layer.initialize(ctx, init, nn::Init::pytorch_default);
  auto zero = from_host<B, float>(ctx, std::vector<float>{1.0f}, {1, 1});
  const float mu = to_host(ctx, *layer.parameters()[0].value)[0], mu_b = to_host(ctx, *layer.parameters()[2].value)[0];
  double sum = 0, sum2 = 0;
  constexpr int draws = 20000;
  for (int k = 0; k < draws; ++k) {
    layer.resample_noise(ctx, noise);
    const float w = layer.input_noise()[0] * layer.output_noise()[0];
    const float y = to_host(ctx, layer.forward(ctx, zero.view()))[0];
    CHECK(y == doctest::Approx(mu + w + mu_b + layer.output_noise()[0]).epsilon(1e-5));
    sum += w;
    sum2 += double(w) * w;
  }
  const double mean = sum / draws, variance = sum2 / draws - mean * mean;
  CHECK(std::abs(mean) < 0.03);                                      // 4.5 standard errors of the mean
  CHECK(variance == doctest::Approx(2.0 / 3.14159265358979).epsilon(0.05));
}

TEST_CASE_TEMPLATE_DEFINE("Dueling: V + A - mean(A) per atom, gradients, names, noisy streams", B, dueling) {
  if (!test::backend_available<B>()) return;
  LayerGradCheck<B> check;
  for (const int atoms : {1, 3}) {
    CAPTURE(atoms);
    nn::Sequential<B> value, advantage;
    value.template add<nn::Dense>(4, atoms);
    advantage.template add<nn::Dense>(4, 2 * atoms);
    nn::Dueling<B> head(std::move(value), std::move(advantage), 2, atoms);
    head.initialize(check.ctx, check.rng, nn::Init::pytorch_default);
    const auto params = head.parameters();
    REQUIRE(params.size() == 4);
    CHECK(params[0].name == "value.0.weight");
    CHECK(params[3].name == "advantage.0.bias");
    // By hand for one row: the streams' outputs are affine maps of x.
    const std::vector<float> x{0.5f, -1.0f, 2.0f, 0.25f};
    auto xt = from_host<B, float>(check.ctx, x, {1, 4});
    const auto y = to_host(check.ctx, head.forward(check.ctx, xt.view()));
    auto affine = [&](const nn::Parameter<B>& w, const nn::Parameter<B>& b) {
      const auto wv = to_host(check.ctx, *w.value), bv = to_host(check.ctx, *b.value);
      std::vector<float> out(bv.size());
      for (std::size_t o = 0; o < out.size(); ++o) {
        out[o] = bv[o];
        for (int i = 0; i < 4; ++i) out[o] += wv[o * 4 + i] * x[i];
      }
      return out;
    };
    const auto v = affine(params[0], params[1]), a = affine(params[2], params[3]);
    for (int act = 0; act < 2; ++act)
      for (int j = 0; j < atoms; ++j) {
        const float mean = (a[j] + a[atoms + j]) / 2;
        CHECK(y[act * atoms + j] == doctest::Approx(v[j] + a[act * atoms + j] - mean).epsilon(1e-5));
      }
    // A constant added to every action's advantage at one atom changes nothing.
    auto bias = to_host(check.ctx, *params[3].value);
    for (int act = 0; act < 2; ++act) bias[act * atoms] += 3.0f;
    upload<B, float>(check.ctx, bias, *params[3].value);
    const auto shifted = to_host(check.ctx, head.forward(check.ctx, xt.view()));
    for (std::size_t i = 0; i < y.size(); ++i) CHECK(shifted[i] == doctest::Approx(y[i]).epsilon(1e-5));
    check.run(head, {3, 4}, [&](std::size_t n) { return check.normal(n); });
  }
  // The builder's dueling + noisy head inside a network: parameter names and noise control reach the streams.
  nn::Sequential<B> net;
  net.template add<nn::Flatten>();
  nn::add_q_head(net, 6, 5, nn::QHeadShape{3, 4, true, true});
  net.initialize(check.ctx, check.rng, nn::Init::pytorch_default);
  CHECK(net.noisy());
  CHECK(net.output_shape({2, 6}) == Shape{2, 12});
  bool found = false;
  for (auto& p : net.parameters()) found = found || p.name == "1.advantage.2.weight_sigma";
  CHECK(found);
  net.resample_noise(check.ctx, check.rng);
  // A smaller step: the streams' ReLUs must not see a probe cross their kink.
  check.run(net[1], {2, 6}, [&](std::size_t n) { return check.normal(n); }, 2e-3);
}

TEST_CASE_TEMPLATE_DEFINE("A noisy dueling C51 network: safetensors round trip, clone, shape errors", B, noisy_dueling_io) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  auto build = [&](std::uint64_t seed) {
    nn::Sequential<B> net;
    net.template add<nn::Flatten>();
    nn::add_q_head(net, 10, 8, nn::QHeadShape{3, 5, true, true});
    Rng init(seed);
    net.initialize(ctx, init, nn::Init::pytorch_default);
    return net;
  };
  auto net = build(1);
  Rng data(2);
  const auto x = test::random_vector(4 * 10, data);
  auto xt = from_host<B, float>(ctx, x, {4, 10});
  auto output = [&](nn::Sequential<B>& n) { return to_host(ctx, n.forward(ctx, xt.view())); };
  const auto mean_output = output(net);  // noise off until drawn
  CHECK(test::all_finite(mean_output));
  CHECK(test::norm(mean_output) > 0.0);
  Rng noise(3);
  net.resample_noise(ctx, noise);
  const auto noisy_output = output(net);
  CHECK(noisy_output != mean_output);

  // A clone keeps the weights and the noise sample in use, and is a copy:
  // new noise in the original leaves it alone.
  auto copy = net.clone(ctx);
  CHECK(output(copy) == noisy_output);
  net.resample_noise(ctx, noise);
  CHECK(output(net) != noisy_output);
  CHECK(output(copy) == noisy_output);
  copy.set_noise(ctx, false);
  CHECK(output(copy) == mean_output);

  // Safetensors keeps mu and sigma of both streams under their PyTorch names;
  // a network loaded from them acts as the saved one with the noise off, and
  // with the same noise sample gives the same output.
  const auto dir = std::filesystem::temp_directory_path() / ("qrl_test_nn_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  nn::save_weights(ctx, net, dir / "w.safetensors", {});
  const auto raw = io::load_safetensors(dir / "w.safetensors");
  for (const char* name : {"1.value.0.weight_mu", "1.value.0.weight_sigma", "1.value.2.bias_sigma",
                           "1.advantage.2.weight_mu", "1.advantage.2.bias_mu"})
    CHECK_MESSAGE(raw.tensors.count(name) == 1, name);
  CHECK(raw.tensors.at("1.advantage.2.weight_mu").shape == std::vector<std::int64_t>{15, 8});
  auto loaded = build(9);
  CHECK(output(loaded) != mean_output);
  nn::load_weights(ctx, loaded, dir / "w.safetensors");
  auto a = net.parameters(), b = loaded.parameters();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(to_host(ctx, *a[i].value) == to_host(ctx, *b[i].value));
  net.set_noise(ctx, false);
  CHECK(output(loaded) == output(net));
  Rng same_a(7), same_b(7);
  net.resample_noise(ctx, same_a);
  loaded.resample_noise(ctx, same_b);
  CHECK(output(loaded) == output(net));
  // The same file does not load into a plain (not noisy) or a not-dueling head.
  nn::Sequential<B> plain;
  plain.template add<nn::Flatten>();
  nn::add_q_head(plain, 10, 8, nn::QHeadShape{3, 5, true, false});
  CHECK_THROWS_AS(nn::load_weights(ctx, plain, dir / "w.safetensors"), Error);
  std::filesystem::remove_all(dir);

  // Streams that do not fit the head are refused by name.
  auto stream = [](int in, int out) {
    nn::Sequential<B> s;
    s.template add<nn::Dense>(in, out);
    return s;
  };
  nn::Dueling<B> short_value(stream(10, 4), stream(10, 15), 3, 5);
  CHECK_THROWS_WITH_AS(short_value.output_shape({2, 10}), doctest::Contains("the value stream gives [2, 4], expected [2, 5]"),
                       ShapeError);
  nn::Dueling<B> short_advantage(stream(10, 5), stream(10, 12), 3, 5);
  CHECK_THROWS_WITH_AS(short_advantage.output_shape({2, 10}),
                       doctest::Contains("the advantage stream gives [2, 12], expected [2, 15]"), ShapeError);
  CHECK_THROWS_AS(nn::Dueling<B>(stream(10, 5), stream(10, 15), 0, 5), ShapeError);
  nn::NoisyDense<B> noisy(10, 3);
  CHECK_THROWS_WITH_AS(noisy.output_shape({2, 9}), doctest::Contains("expects [batch, 10] input, got [2, 9]"), ShapeError);
  CHECK_THROWS_AS(nn::NoisyDense<B>(10, 3, -0.1f), Error);
}

QRL_TEST_ON_EVERY_BACKEND(conv_grad);
QRL_TEST_ON_EVERY_BACKEND(conv_direct);
QRL_TEST_ON_EVERY_BACKEND(dense_grad);
QRL_TEST_ON_EVERY_BACKEND(relu_grad);
QRL_TEST_ON_EVERY_BACKEND(pool_grad);
QRL_TEST_ON_EVERY_BACKEND(flatten_grad);
QRL_TEST_ON_EVERY_BACKEND(sequential_grad);
QRL_TEST_ON_EVERY_BACKEND(loss_grad);
QRL_TEST_ON_EVERY_BACKEND(shape_errors);
QRL_TEST_ON_EVERY_BACKEND(same_padding);
QRL_TEST_ON_EVERY_BACKEND(initialisers);
QRL_TEST_ON_EVERY_BACKEND(noisy_dense);
QRL_TEST_ON_EVERY_BACKEND(noisy_statistics);
QRL_TEST_ON_EVERY_BACKEND(dueling);
QRL_TEST_ON_EVERY_BACKEND(noisy_dueling_io);
