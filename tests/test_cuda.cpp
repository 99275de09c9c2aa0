// CUDA parity tests: every operation of backend_traits<cuda> against the CPU
// backend (whose element functors are the kernels' own code) on the same
// inputs. Tolerance, as in llm.c's kernel checks: |gpu - ref| <= atol +
// rtol * |ref|, stated per test; the first mismatches are printed. Inputs
// and outputs are checked for finite values and nonzero norms, so a kernel
// that writes nothing cannot pass. Without a usable device every test but
// the error-message one prints test::skip_marker and ctest reports a skip.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <qrl/env/preprocess.hpp>
#include <qrl/nn/loss.hpp>
#include <qrl/nn/heads.hpp>
#include <qrl/nn/models.hpp>
#include <qrl/optim/adam.hpp>
#include <qrl/rl/cuda_graph.hpp>
#include <qrl/rl/dqn.hpp>
#include <qrl/rl/replay_memory.hpp>

#include "test_support.hpp"

using namespace qrl;

namespace {

using Cpu = backend_traits<cpu>;
using Gpu = backend_traits<cuda>;

using test::all_close;

bool usable(const std::vector<float>& v) { return test::all_finite(v) && test::norm(v) > 0.0; }

double rms(const std::vector<float>& v) { return v.empty() ? 0.0 : test::norm(v) / std::sqrt(double(v.size())); }

// Weights after Adam steps on two backends. Adam moves a weight by about
// lr * sign(g) per step, so one whose gradient is within rounding of zero
// may move differently on the two: allow a few such weights per tensor (one
// in 10^4, plus one), none by more than 2 lr per step; the rest must agree
// within atol 2e-6 + rtol 1e-4.
void check_weights_agree(const std::vector<float>& got, const std::vector<float>& ref, double lr, int steps,
                         const std::string& what) {
  REQUIRE(got.size() == ref.size());
  CHECK(usable(got));
  std::size_t loose = 0;
  double worst = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double diff = std::abs(double(got[i]) - ref[i]);
    if (!(diff <= 2e-6 + 1e-4 * std::abs(ref[i]))) ++loose;
    if (!(diff <= worst)) worst = diff;  // NaN-safe: a NaN difference becomes the worst
  }
  INFO(what, ": ", loose, " of ", ref.size(), " weights differ beyond atol 2e-6 + rtol 1e-4, worst ", worst);
  CHECK(loose <= ref.size() / 10000 + 1);
  CHECK(worst <= 2.0 * lr * steps + 1e-6);
}

// The same layer on both backends with the same initial weights. Sums over
// thousands of terms round differently in cuDNN and im2col + SGEMM, so atol
// is stated relative to the RMS of each reference tensor: |gpu - cpu| <=
// atol_rms * rms(cpu) + rtol * |cpu|. An indexing error is off by O(rms).
template <template <class> class L, class... Args>
void check_layer(Shape in, double atol_rms, double rtol, Args... args) {
  Context<cpu> cc;
  Context<cuda> gc;
  L<cpu> cpu_layer(args...);
  L<cuda> gpu_layer(args...);
  Rng r1(7), r2(7), data(11);
  cpu_layer.initialize(cc, r1, nn::Init::pytorch_default);
  gpu_layer.initialize(gc, r2, nn::Init::pytorch_default);
  const auto x = test::random_vector(static_cast<std::size_t>(in.size()), data);
  const Shape out = cpu_layer.output_shape(in);
  const auto gy = test::random_vector(static_cast<std::size_t>(out.size()), data);
  REQUIRE(test::norm(x) > 0.0);

  auto xc = from_host<cpu, float>(cc, x, in);
  auto xg = from_host<cuda, float>(gc, x, in);
  auto gyc = from_host<cpu, float>(cc, gy, out);
  auto gyg = from_host<cuda, float>(gc, gy, out);
  const auto yc = to_host(cc, cpu_layer.forward(cc, xc.view()));
  const auto yg = to_host(gc, gpu_layer.forward(gc, xg.view()));
  INFO(cpu_layer.describe(), " on ", in.str());
  CHECK(usable(yg));
  CHECK(all_close(yg, yc, atol_rms * rms(yc), rtol, cpu_layer.describe() + " output"));
  const auto dxc = to_host(cc, cpu_layer.backward(cc, gyc.view(), true));
  const auto dxg = to_host(gc, gpu_layer.backward(gc, gyg.view(), true));
  CHECK(usable(dxg));
  CHECK(all_close(dxg, dxc, atol_rms * rms(dxc), rtol, cpu_layer.describe() + " input gradient"));
  auto pc = cpu_layer.parameters();
  auto pg = gpu_layer.parameters();
  REQUIRE(pc.size() == pg.size());
  for (std::size_t k = 0; k < pc.size(); ++k) {
    const auto gpu_grad = to_host(gc, *pg[k].grad), cpu_grad = to_host(cc, *pc[k].grad);
    CHECK(usable(gpu_grad));
    CHECK(all_close(gpu_grad, cpu_grad, atol_rms * rms(cpu_grad), rtol,
                    cpu_layer.describe() + " " + pc[k].name + " grad"));
  }
}

// A small agent and batch for the graph tests (tutorial network: three
// 'same'-padded convolutions, so cuDNN nodes and padded copies are in the graph).
std::unique_ptr<rl::Dqn<cuda>> make_graph_agent(Context<cuda>& gc, int batch, int actions) {
  auto net = nn::tutorial_dqn<cuda>(4, 40, 40, actions, 32);
  Rng init(5);
  net.initialize(gc, init, nn::Init::kaiming_normal);
  rl::DqnConfig config;
  config.batch_size = batch;
  config.adam.learning_rate = 1e-3f;
  config.adam.max_grad_norm = 1.0f;
  return std::make_unique<rl::Dqn<cuda>>(gc, std::move(net), Shape{4, 40, 40}, actions, config);
}

rl::ReplayBatch<cuda> make_graph_batch(Context<cuda>& gc, int batch) {
  Rng data(6);
  const Shape states{batch, 4, 40, 40};
  std::vector<std::uint8_t> s(static_cast<std::size_t>(states.size())), ns(s.size());
  for (auto& b : s) b = static_cast<std::uint8_t>(data.uniform_index(256));
  for (auto& b : ns) b = static_cast<std::uint8_t>(data.uniform_index(256));
  std::vector<std::int32_t> a(batch);
  std::vector<float> r(batch), t(batch);
  for (int i = 0; i < batch; ++i) {
    a[i] = i % 3;
    r[i] = static_cast<float>(i % 3) - 1.0f;
    t[i] = i % 4 == 2 ? 1.0f : 0.0f;
  }
  rl::ReplayBatch<cuda> bg;
  bg.states = from_host<cuda, std::uint8_t>(gc, s, states);
  bg.next_states = from_host<cuda, std::uint8_t>(gc, ns, states);
  bg.actions = from_host<cuda, std::int32_t>(gc, a, {batch});
  bg.rewards = from_host<cuda, float>(gc, r, {batch});
  bg.discounts = from_host<cuda, float>(gc, test::discounts_of(t, 0.99f), {batch});
  return bg;
}

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("cuda: failed calls name the call and the status") {
    // Runs without a GPU too: the status strings come from the libraries.
    CHECK_THROWS_WITH_AS(cuda_detail::check(cudaErrorMemoryAllocation, "cudaMalloc"),
                         doctest::Contains("cudaMalloc failed: cudaErrorMemoryAllocation"), Error);
    CHECK_THROWS_WITH_AS(cuda_detail::check(CUBLAS_STATUS_INVALID_VALUE, "cublasSgemm"),
                         doctest::Contains("cublasSgemm failed: CUBLAS_STATUS_INVALID_VALUE"), Error);
    CHECK_THROWS_WITH_AS(cuda_detail::check(CUDNN_STATUS_BAD_PARAM, "cudnnConvolutionForward"),
                         doctest::Contains("cudnnConvolutionForward failed: CUDNN_STATUS_BAD_PARAM"), Error);
    CHECK_NOTHROW(cuda_detail::check(cudaSuccess, "cudaFree"));
    const std::string reason = cuda_unavailable_reason();
    if (!reason.empty()) CHECK_THROWS_WITH_AS(Context<cuda>{}, reason.c_str(), Error);
  }

  TEST_CASE("cuda: layers match the CPU backend (atol 1e-5 x RMS + rtol 1e-4)") {
    if (!test::backend_available<cuda>()) return;
    check_layer<nn::Conv2d>({2, 3, 9, 8}, 1e-5, 1e-4, 3, 4, 3, 1, Padding::valid);
    check_layer<nn::Conv2d>({2, 3, 7, 8}, 1e-5, 1e-4, 3, 2, 4, 2, Padding::same);  // odd total: padded copy
    check_layer<nn::Conv2d>({3, 4, 20, 20}, 1e-5, 1e-4, 4, 8, 8, 4, Padding::same);
    check_layer<nn::Conv2d>({32, 4, 84, 84}, 1e-5, 1e-4, 4, 32, 8, 4, Padding::valid);  // Nature DQN layer 1
    check_layer<nn::Dense>({32, 3136}, 1e-5, 1e-4, 3136, 512);
    check_layer<nn::Dense>({5, 7}, 1e-5, 1e-4, 7, 3);
    // No arithmetic to round differently: exact.
    check_layer<nn::ReLU>({4, 3, 5, 5}, 0.0, 0.0);
    check_layer<nn::MaxPool2d>({2, 3, 7, 9}, 0.0, 0.0, 2, 2, Padding::same);
    check_layer<nn::MaxPool2d>({2, 3, 8, 8}, 0.0, 0.0, 3, 1, Padding::valid);  // overlapping windows, same sum order
  }

  TEST_CASE("cuda: u8_to_float and argmax and fill match the CPU exactly") {
    if (!test::backend_available<cuda>()) return;
    Context<cpu> cc;
    Context<cuda> gc;
    Rng rng(3);
    std::vector<std::uint8_t> bytes(1000);
    for (auto& b : bytes) b = static_cast<std::uint8_t>(rng.uniform_index(256));
    auto bg = from_host<cuda, std::uint8_t>(gc, bytes, {1000});
    Tensor<cuda, float> fg({1000});
    Gpu::u8_to_float(gc, bg.data(), fg.data(), 1000, 1.0f / 255.0f);
    std::vector<float> ref(1000);
    Cpu::u8_to_float(cc, bytes.data(), ref.data(), 1000, 1.0f / 255.0f);
    CHECK(usable(ref));
    CHECK(all_close(to_host(gc, fg), ref, 0.0, 0.0, "u8_to_float"));

    auto q = test::random_vector(37 * 6, rng);
    q[5 * 6 + 2] = q[5 * 6 + 4] = 100.0f;  // a tie: the first index wins on both
    auto qg = from_host<cuda, float>(gc, q, {37, 6});
    Tensor<cuda, std::int32_t> ag({37});
    Gpu::argmax_rows(gc, qg.data(), 37, 6, ag.data());
    std::vector<std::int32_t> aref(37);
    Cpu::argmax_rows(cc, q.data(), 37, 6, aref.data());
    CHECK(to_host(gc, ag) == aref);
    CHECK(aref[5] == 2);

    Gpu::fill(gc, fg.data(), 1000, 0.25f);
    CHECK(to_host(gc, fg) == std::vector<float>(1000, 0.25f));
  }

  TEST_CASE("cuda: MSE and Huber losses match the CPU (rtol 1e-6)") {
    if (!test::backend_available<cuda>()) return;
    Context<cpu> cc;
    Context<cuda> gc;
    Rng rng(5);
    const auto p = test::random_vector(3000, rng, 2.0f), t = test::random_vector(3000, rng, 2.0f);
    auto pc = from_host<cpu, float>(cc, p, {3000});
    auto tc = from_host<cpu, float>(cc, t, {3000});
    auto pg = from_host<cuda, float>(gc, p, {3000});
    auto tg = from_host<cuda, float>(gc, t, {3000});
    Tensor<cpu, float> grad_c;
    Tensor<cuda, float> grad_g;
    const float mse_c = nn::mse_loss<cpu>(cc, pc.view(), tc.view(), &grad_c);
    const float mse_g = nn::mse_loss<cuda>(gc, pg.view(), tg.view(), &grad_g);
    CHECK(mse_g == doctest::Approx(mse_c).epsilon(1e-6));
    CHECK(all_close(to_host(gc, grad_g), to_host(cc, grad_c), 0.0, 1e-6, "mse grad"));
    const float huber_c = nn::huber_loss<cpu>(cc, pc.view(), tc.view(), &grad_c, 1.5f);
    const float huber_g = nn::huber_loss<cuda>(gc, pg.view(), tg.view(), &grad_g, 1.5f);
    CHECK(huber_g > 0.0f);
    CHECK(huber_g == doctest::Approx(huber_c).epsilon(1e-6));
    CHECK(all_close(to_host(gc, grad_g), to_host(cc, grad_c), 0.0, 1e-6, "huber grad"));
  }

  TEST_CASE("cuda: the fused TD step matches the CPU - targets and masks and Double DQN and both losses and the DQfD margin") {
    if (!test::backend_available<cuda>()) return;
    Context<cpu> cc;
    Context<cuda> gc;
    Rng rng(9);
    const int batch = 300, actions = 5;  // more rows than one block's threads
    const auto q = test::random_vector(batch * actions, rng, 3.0f);
    const auto qt = test::random_vector(batch * actions, rng, 3.0f);
    const auto qo = test::random_vector(batch * actions, rng, 3.0f);
    std::vector<std::int32_t> action(batch);
    std::vector<float> reward(batch), discount(batch), weight(batch);
    for (int i = 0; i < batch; ++i) {
      action[i] = static_cast<std::int32_t>(rng.uniform_index(actions));
      reward[i] = static_cast<float>(rng.normal());
      // Terminal windows, one-step and 3-step discounts; importance weights.
      discount[i] = i % 7 == 0 ? 0.0f : i % 3 == 0 ? 0.97f * 0.97f * 0.97f : 0.97f;
      weight[i] = 0.1f + 0.9f * static_cast<float>(rng.uniform());
    }
    float loss_without_demonstrations = 0.0f;
    for (const int demonstration_rows : {0, batch / 2})
    for (const bool double_dqn : {false, true})
      for (const LossKind loss : {LossKind::huber, LossKind::mse}) {
        CAPTURE(demonstration_rows);
        CAPTURE(double_dqn);
        CAPTURE(static_cast<int>(loss));
        std::vector<float> grad_c(batch * actions), stats_c(2), td_c(batch);
        TdLossArgs a;
        a.batch = batch;
        a.actions = actions;
        a.q = q.data();
        a.q_next_target = qt.data();
        a.q_next_online = double_dqn ? qo.data() : nullptr;
        a.action = action.data();
        a.reward = reward.data();
        a.discount = discount.data();
        a.weights = weight.data();
        a.td_error_out = td_c.data();
        a.loss = loss;
        a.huber_delta = 1.0f;
        a.demonstration_rows = demonstration_rows;
        a.margin = 0.8f;
        a.margin_weight = 0.7f;
        a.grad_q = grad_c.data();
        a.loss_out = stats_c.data();
        a.q_mean_out = stats_c.data() + 1;
        Cpu::td_loss(cc, a);

        auto qg = from_host<cuda, float>(gc, q, {batch, actions});
        auto qtg = from_host<cuda, float>(gc, qt, {batch, actions});
        auto qog = from_host<cuda, float>(gc, qo, {batch, actions});
        auto ag = from_host<cuda, std::int32_t>(gc, action, {batch});
        auto rg = from_host<cuda, float>(gc, reward, {batch});
        auto dg = from_host<cuda, float>(gc, discount, {batch});
        auto wg = from_host<cuda, float>(gc, weight, {batch});
        Tensor<cuda, float> grad_g({batch, actions}), stats_g({2}), td_g({batch});
        a.q = qg.data();
        a.q_next_target = qtg.data();
        a.q_next_online = double_dqn ? qog.data() : nullptr;
        a.action = ag.data();
        a.reward = rg.data();
        a.discount = dg.data();
        a.weights = wg.data();
        a.td_error_out = td_g.data();
        a.grad_q = grad_g.data();
        a.loss_out = stats_g.data();
        a.q_mean_out = stats_g.data() + 1;
        Gpu::td_loss(gc, a);
        CHECK(usable(grad_c));
        // nvcc contracts the target's multiply-add into an FMA (g++ in ISO
        // mode does not): d = q - y may differ by an ulp of y, which is
        // 1e-7 / batch in the gradient.
        CHECK(all_close(to_host(gc, grad_g), grad_c, 1e-8, 1e-5, "td grad_q"));
        CHECK(usable(td_c));
        CHECK(all_close(to_host(gc, td_g), td_c, 1e-6, 1e-5, "td |error|"));
        CHECK(all_close(to_host(gc, stats_g), stats_c, 1e-7, 1e-6, "td loss and q mean"));
        // The margin must be active on some demonstration rows, or the
        // comparison above would not cover it.
        if (!double_dqn && loss == LossKind::huber) {
          if (demonstration_rows == 0) loss_without_demonstrations = stats_c[0];
          else CHECK(stats_c[0] > loss_without_demonstrations + 0.1f);
        }
      }
  }

  TEST_CASE("cuda: gradient norm and clipping and fused Adam match the CPU (atol 1e-7 + rtol 1e-6)") {
    if (!test::backend_available<cuda>()) return;
    Context<cpu> cc;
    Context<cuda> gc;
    auto nc = nn::tutorial_dqn<cpu>(2, 20, 20, 3, 16);
    auto ng = nn::tutorial_dqn<cuda>(2, 20, 20, 3, 16);
    Rng r1(1), r2(1), grads(2);
    nc.initialize(cc, r1, nn::Init::kaiming_normal);
    ng.initialize(gc, r2, nn::Init::kaiming_normal);
    optim::AdamConfig config;
    config.learning_rate = 1e-2f;
    config.max_grad_norm = 0.5f;  // the random gradients' norm is far above: clipping is active
    config.weight_decay = 1e-3f;
    optim::Adam<cpu> ac(cc, nc, config);
    optim::Adam<cuda> ag(gc, ng, config);
    for (int step = 0; step < 3; ++step) {
      auto pc = nc.parameters();
      auto pg = ng.parameters();
      for (std::size_t k = 0; k < pc.size(); ++k) {
        const auto g = test::random_vector(static_cast<std::size_t>(pc[k].grad->size()), grads, 0.1f);
        upload<cpu, float>(cc, g, *pc[k].grad);
        upload<cuda, float>(gc, g, *pg[k].grad);
      }
      ac.step(cc);
      ag.step(gc);
      const float norm_c = ac.last_grad_norm(cc), norm_g = ag.last_grad_norm(gc);
      CHECK(norm_c > config.max_grad_norm);
      CHECK(norm_g == doctest::Approx(norm_c).epsilon(1e-6));
    }
    auto pc = nc.parameters();
    auto pg = ng.parameters();
    for (std::size_t k = 0; k < pc.size(); ++k) {
      const auto wg = to_host(gc, *pg[k].value);
      CHECK(usable(wg));
      CHECK(all_close(wg, to_host(cc, *pc[k].value), 1e-7, 1e-6, pc[k].name + " after 3 Adam steps"));
      CHECK(all_close(to_host(gc, ag.second_moments()[k]), to_host(cc, ac.second_moments()[k]), 1e-12, 1e-5,
                      pc[k].name + " second moment"));
    }
  }

  TEST_CASE("cuda: batched preprocessing equals the CPU functor on every pixel") {
    if (!test::backend_available<cuda>()) return;
    Context<cuda> gc;
    Rng rng(21);
    const env::FrameShape shape{150, 600, 4};  // the Dino canvas, RGBA
    const int frames = 5;
    std::vector<std::uint8_t> host(shape.bytes() * frames);
    for (auto& b : host) b = static_cast<std::uint8_t>(rng.uniform_index(256));
    for (const bool threshold : {false, true}) {
      env::PreprocessSpec spec;
      spec.layout = kernels::PixelLayout::Rgba;
      spec.crop = env::CropRect{10, 20, 130, 560};
      spec.out_height = spec.out_width = 80;
      if (threshold) spec.threshold = 100;
      std::vector<env::FrameView> views;
      for (int f = 0; f < frames; ++f) views.push_back({host.data() + f * shape.bytes(), shape});
      std::vector<std::uint8_t> ref(80 * 80 * frames);
      env::preprocess(std::span<const env::FrameView>(views), spec, ref.data());

      auto src = from_host<cuda, std::uint8_t>(gc, host, {static_cast<std::int64_t>(host.size())});
      Tensor<cuda, std::uint8_t> out({frames, 80, 80});
      const auto functor = env::make_preprocess_functor({src.data(), shape}, spec);
      kernels::launch_preprocess(functor, shape.bytes(), frames, out.data(), gc.stream());
      cuda_detail::check_launch("launch_preprocess");
      const auto got = to_host(gc, out);
      CHECK(got == ref);
      CHECK(std::count(ref.begin(), ref.end(), std::uint8_t{0}) < static_cast<long>(ref.size()));
    }
  }

  TEST_CASE("cuda: epsilon-greedy on the device equals the CPU functor and explores at rate epsilon") {
    if (!test::backend_available<cuda>()) return;
    Context<cuda> gc;
    Rng rng(4);
    const int envs = 4096, actions = 4;
    const auto q = test::random_vector(envs * actions, rng);
    auto qg = from_host<cuda, float>(gc, q, {envs, actions});
    Tensor<cuda, std::int32_t> out({envs});
    const kernels::EpsilonGreedy policy{0.25f, kernels::CounterRng{1234, 7}};
    Gpu::epsilon_greedy(gc, qg.data(), envs, actions, policy, out.data());
    const auto got = to_host(gc, out);
    int greedy = 0;
    for (int e = 0; e < envs; ++e) {
      const float* row = q.data() + e * actions;
      CHECK(got[e] == policy(row, actions, e));
      greedy += got[e] == static_cast<int>(std::max_element(row, row + actions) - row);
    }
    // Greedy with probability 0.75 + 0.25 / 4 = 0.8125; 4096 draws: sd 0.006.
    CHECK(greedy / double(envs) == doctest::Approx(0.8125).epsilon(0.04));
  }

  TEST_CASE("cuda: ReplayMemory<cuda> samples the CPU's batches - uniform, prioritized, demonstrations, n-step 3, 2 rings, wrapped (bytes exact, rewards rtol 1e-6)") {
    if (!test::backend_available<cuda>()) return;
    // 63-byte frames take the kernel's byte path, 256-byte ones its 16-byte path.
    for (const env::FrameShape frame : {env::FrameShape{7, 9, 1}, env::FrameShape{16, 16, 1}}) {
      CAPTURE(frame.bytes());
      rl::ReplayConfig config{150, frame, 4, 2};
      config.n_step = 3;
      config.prioritized = rl::PrioritizedConfig{};
      Context<cpu> cc;
      Context<cuda> gc;
      rl::ReplayMemory<cpu> host(config, cc);
      rl::ReplayMemory<cuda> device(config, gc);
      rl::ReplayConfig demo_config = config;
      demo_config.capacity = 60;
      demo_config.rings = 1;
      demo_config.prioritized.reset();
      rl::ReplayMemory<cpu> host_demos(demo_config, cc);
      rl::ReplayMemory<cuda> device_demos(demo_config, gc);
      Rng data(11);
      std::vector<std::uint8_t> pixels(frame.bytes());
      auto next_frame = [&] {
        for (auto& p : pixels) p = static_cast<std::uint8_t>(data.uniform_index(256));
        return env::FrameView{pixels.data(), frame};
      };
      // Episodes of 1..12 steps, some truncated, through rings of 75 slots (they wrap).
      auto feed = [&](auto& a, auto& b, int rings, int episodes) {
        for (int e = 0; e < episodes; ++e)
          for (int s = 0; s < rings; ++s) {
            const auto first = next_frame();
            a.begin_episode(first, s);
            b.begin_episode(first, s);
            const int length = 1 + static_cast<int>(data.uniform_index(12));
            const bool truncated = data.uniform_index(4) == 0;
            for (int t = 1; t <= length; ++t) {
              const int action = static_cast<int>(data.uniform_index(3));
              const float reward = static_cast<float>(data.uniform_index(7)) * 0.37f - 1.0f;
              const bool end = t == length;
              const auto next = next_frame();
              a.add(action, reward, end && !truncated, end && truncated, next, s);
              b.add(action, reward, end && !truncated, end && truncated, next, s);
            }
          }
      };
      feed(host, device, 2, 30);
      feed(host_demos, device_demos, 1, 8);
      REQUIRE(host.ring_frames(0) == 75);  // wrapped

      auto same_batch = [&](rl::ReplayBatch<cpu>& a, rl::ReplayBatch<cuda>& b) {
        CHECK(to_host(cc, a.states) == to_host(gc, b.states));
        CHECK(to_host(cc, a.next_states) == to_host(gc, b.next_states));
        CHECK(to_host(cc, a.actions) == to_host(gc, b.actions));
        CHECK(all_close(to_host(gc, b.rewards), to_host(cc, a.rewards), 1e-7, 1e-6, "rewards"));
        CHECK(all_close(to_host(gc, b.discounts), to_host(cc, a.discounts), 1e-7, 1e-6, "discounts"));
        CHECK(a.slots == b.slots);
        CHECK(test::norm(to_host(cc, a.rewards)) > 0.0);  // not a batch of zeros
      };
      Rng ra(5), rb(5);
      rl::ReplayBatch<cpu> ha;
      rl::ReplayBatch<cuda> db;
      for (int round = 0; round < 5; ++round) {
        host.sample(cc, ra, 32, 0.9f, ha);
        device.sample(gc, rb, 32, 0.9f, db);
        same_batch(ha, db);
        host.sample_prioritized(cc, ra, 32, 0.9f, 0.5, ha);
        device.sample_prioritized(gc, rb, 32, 0.9f, 0.5, db);
        same_batch(ha, db);
        CHECK(to_host(cc, ha.weights) == to_host(gc, db.weights));
        std::vector<float> errors(32);
        for (auto& e : errors) e = static_cast<float>(data.uniform_index(100)) * 0.1f;
        host.update_priorities(ha.slots, errors);
        device.update_priorities(db.slots, errors);
        host.sample_with_demonstrations(cc, ra, 32, 0.9f, host_demos, 8, ha);
        device.sample_with_demonstrations(gc, rb, 32, 0.9f, device_demos, 8, db);
        same_batch(ha, db);
      }
      // Inspection goes through the same gather.
      std::vector<std::uint8_t> s1, n1, s2, n2;
      int a1 = 0, a2 = 0;
      float r1 = 0, r2 = 0;
      bool t1 = false, t2 = false;
      int compared = 0;
      for (std::int64_t k = 0; k < host.frames(); ++k) {
        const bool v1 = host.transition_at(k, s1, n1, a1, r1, t1);
        const bool v2 = device.transition_at(k, s2, n2, a2, r2, t2);
        REQUIRE(v1 == v2);
        if (!v1) continue;
        ++compared;
        CHECK(s1 == s2);
        CHECK(n1 == n2);
        CHECK(a1 == a2);
        CHECK(r1 == r2);
        CHECK(t1 == t2);
      }
      CHECK(compared > 100);
    }
  }

  TEST_CASE("cuda: the head ops alone - noisy_compose, noisy_scale, dueling_forward/backward, add_into - match the CPU (atol 1e-6 + rtol 1e-6)") {
    if (!test::backend_available<cuda>()) return;
    // One multiply-add per element (a fused one on the GPU, which may round
    // once where the CPU rounds twice), and the dueling mean over a few
    // actions: a few ulps at most.
    Context<cpu> cc;
    Context<cuda> gc;
    Rng rng(11);
    constexpr std::int64_t rows = 37, cols = 53;  // not multiples of a block or a warp
    const auto mu = test::random_vector(rows * cols, rng), sigma = test::random_vector(rows * cols, rng);
    const auto f_rows = test::random_vector(rows, rng), f_cols = test::random_vector(cols, rng);
    auto g = [&](const std::vector<float>& v) { return from_host<cuda, float>(gc, v, {std::int64_t(v.size())}); };
    auto mug = g(mu), sigmag = g(sigma), frg = g(f_rows), fcg = g(f_cols);
    Tensor<cuda, float> outg({rows * cols});
    std::vector<float> ref(rows * cols);
    Gpu::noisy_compose(gc, mug.data(), sigmag.data(), frg.data(), fcg.data(), outg.data(), rows, cols);
    Cpu::noisy_compose(cc, mu.data(), sigma.data(), f_rows.data(), f_cols.data(), ref.data(), rows, cols);
    CHECK(usable(ref));
    CHECK(all_close(to_host(gc, outg), ref, 1e-6, 1e-6, "noisy_compose"));
    Gpu::noisy_scale(gc, mug.data(), frg.data(), fcg.data(), outg.data(), rows, cols);
    Cpu::noisy_scale(cc, mu.data(), f_rows.data(), f_cols.data(), ref.data(), rows, cols);
    CHECK(usable(ref));
    CHECK(all_close(to_host(gc, outg), ref, 1e-6, 1e-6, "noisy_scale"));

    for (const int atoms : {1, 51}) {
      CAPTURE(atoms);
      constexpr std::int64_t batch = 33;
      constexpr int actions = 6;
      const auto v = test::random_vector(batch * atoms, rng), a = test::random_vector(batch * actions * atoms, rng);
      auto vg = g(v), ag = g(a);
      Tensor<cuda, float> qg({batch * actions * atoms});
      std::vector<float> qref(batch * actions * atoms);
      Gpu::dueling_forward(gc, vg.data(), ag.data(), qg.data(), batch, actions, atoms);
      Cpu::dueling_forward(cc, v.data(), a.data(), qref.data(), batch, actions, atoms);
      CHECK(usable(qref));
      CHECK(all_close(to_host(gc, qg), qref, 1e-6, 1e-6, "dueling_forward"));
      const auto gy = test::random_vector(batch * actions * atoms, rng);
      auto gyg = g(gy);
      Tensor<cuda, float> gvg({batch * atoms}), gag({batch * actions * atoms});
      std::vector<float> gvref(batch * atoms), garef(batch * actions * atoms);
      Gpu::dueling_backward(gc, gyg.data(), gvg.data(), gag.data(), batch, actions, atoms);
      Cpu::dueling_backward(cc, gy.data(), gvref.data(), garef.data(), batch, actions, atoms);
      CHECK(usable(gvref));
      CHECK(usable(garef));
      CHECK(all_close(to_host(gc, gvg), gvref, 1e-6, 1e-6, "dueling_backward value"));
      CHECK(all_close(to_host(gc, gag), garef, 1e-6, 1e-6, "dueling_backward advantage"));
    }

    auto dst = test::random_vector(1000, rng);
    const auto src = test::random_vector(1000, rng);
    auto dstg = g(dst), srcg = g(src);
    Gpu::add_into(gc, srcg.data(), dstg.data(), 1000);
    Cpu::add_into(cc, src.data(), dst.data(), 1000);
    CHECK(usable(dst));
    CHECK(all_close(to_host(gc, dstg), dst, 0.0, 0.0, "add_into"));
  }

  TEST_CASE("cuda: the noisy dueling C51 head gives the CPU's outputs and gradients (atol 1e-5 rms + rtol 1e-4)") {
    if (!test::backend_available<cuda>()) return;
    // (Not check_layer: with the noise off, sigma's gradients are exactly 0,
    // which its nonzero-gradient guard would reject; the head below draws noise.)
    Context<cpu> cc;
    Context<cuda> gc;
    auto build = [](auto tag, auto& ctx) {
      using B = decltype(tag);
      nn::Sequential<B> net;
      net.template add<nn::Flatten>();
      nn::add_q_head(net, 12, 16, nn::QHeadShape{3, 5, true, true});
      Rng init(3), noise(4);
      net.initialize(ctx, init, nn::Init::pytorch_default);
      net.resample_noise(ctx, noise);
      return net;
    };
    auto nc = build(cpu{}, cc);
    auto ng = build(cuda{}, gc);
    Rng data(5);
    const auto x = test::random_vector(8 * 12, data), gy = test::random_vector(8 * 15, data);
    auto xc = from_host<cpu, float>(cc, x, {8, 12});
    auto xg = from_host<cuda, float>(gc, x, {8, 12});
    const auto yc = to_host(cc, nc.forward(cc, xc.view()));
    const auto yg = to_host(gc, ng.forward(gc, xg.view()));
    CHECK(usable(yc));
    CHECK(all_close(yg, yc, 1e-5 * rms(yc), 1e-4, "noisy dueling head output"));
    auto gyc = from_host<cpu, float>(cc, gy, {8, 15});
    auto gyg = from_host<cuda, float>(gc, gy, {8, 15});
    nc.backward(cc, gyc.view());
    ng.backward(gc, gyg.view());
    auto pc = nc.parameters();
    auto pg = ng.parameters();
    REQUIRE(pc.size() == pg.size());
    for (std::size_t i = 0; i < pc.size(); ++i) {
      const auto a = to_host(cc, *pc[i].grad), b = to_host(gc, *pg[i].grad);
      CHECK(usable(a));
      CHECK(all_close(b, a, 1e-5 * rms(a), 1e-4, pc[i].name + " gradient"));
    }
  }

  TEST_CASE("cuda: a whole Double-DQN update gives the CPU's new weights (atol 2e-6 + rtol 1e-4)") {
    if (!test::backend_available<cuda>()) return;
    Context<cpu> cc;
    Context<cuda> gc;
    const int batch = 32, actions = 6;
    auto nc = nn::nature_dqn<cpu>(4, 84, 84, actions);
    auto ng = nn::nature_dqn<cuda>(4, 84, 84, actions);
    Rng r1(17), r2(17), data(18);
    nc.initialize(cc, r1, nn::Init::pytorch_default);
    ng.initialize(gc, r2, nn::Init::pytorch_default);
    rl::DqnConfig config;
    config.batch_size = batch;
    config.double_dqn = true;
    config.adam.learning_rate = 1e-4f;
    config.adam.max_grad_norm = 10.0f;
    rl::Dqn<cpu> agent_c(cc, std::move(nc), {4, 84, 84}, actions, config);
    rl::Dqn<cuda> agent_g(gc, std::move(ng), {4, 84, 84}, actions, config);

    const Shape states{batch, 4, 84, 84};
    std::vector<std::uint8_t> s(static_cast<std::size_t>(states.size())), ns(s.size());
    for (auto& b : s) b = static_cast<std::uint8_t>(data.uniform_index(256));
    for (auto& b : ns) b = static_cast<std::uint8_t>(data.uniform_index(256));
    std::vector<std::int32_t> a(batch);
    std::vector<float> r(batch), t(batch);
    for (int i = 0; i < batch; ++i) {
      a[i] = static_cast<std::int32_t>(data.uniform_index(actions));
      r[i] = static_cast<float>(data.uniform_index(3)) - 1.0f;
      t[i] = i % 5 == 0 ? 1.0f : 0.0f;
    }
    rl::ReplayBatch<cpu> bc;
    rl::ReplayBatch<cuda> bg;
    bc.states = from_host<cpu, std::uint8_t>(cc, s, states);
    bc.next_states = from_host<cpu, std::uint8_t>(cc, ns, states);
    bc.actions = from_host<cpu, std::int32_t>(cc, a, {batch});
    bc.rewards = from_host<cpu, float>(cc, r, {batch});
    bc.discounts = from_host<cpu, float>(cc, test::discounts_of(t, 0.99f), {batch});
    bg.states = from_host<cuda, std::uint8_t>(gc, s, states);
    bg.next_states = from_host<cuda, std::uint8_t>(gc, ns, states);
    bg.actions = from_host<cuda, std::int32_t>(gc, a, {batch});
    bg.rewards = from_host<cuda, float>(gc, r, {batch});
    bg.discounts = from_host<cuda, float>(gc, test::discounts_of(t, 0.99f), {batch});

    for (int u = 0; u < 2; ++u) {
      agent_c.update(bc);
      agent_g.update(bg);
      const auto sc = agent_c.last_stats(), sg = agent_g.last_stats();
      CHECK(sc.loss > 0.0f);
      CHECK(sg.loss == doctest::Approx(sc.loss).epsilon(1e-4));
      CHECK(sg.q_mean == doctest::Approx(sc.q_mean).epsilon(1e-4));
      CHECK(sg.grad_norm == doctest::Approx(sc.grad_norm).epsilon(1e-4));
    }
    auto pc = agent_c.online().parameters();
    auto pg = agent_g.online().parameters();
    for (std::size_t k = 0; k < pc.size(); ++k)
      check_weights_agree(to_host(gc, *pg[k].value), to_host(cc, *pc[k].value), config.adam.learning_rate, 2,
                          pc[k].name + " after 2 updates");
  }

  TEST_CASE("cuda: updates replayed from a CUDA graph equal eager updates, and count as updates") {
    if (!test::backend_available<cuda>()) return;
    Context<cuda> gc;
    REQUIRE(gc.options().deterministic);  // the default: same algorithms, so bit-identical results
    const int batch = 8, actions = 3;
    auto eager = make_graph_agent(gc, batch, actions);
    auto graphed = make_graph_agent(gc, batch, actions);
    auto bg = make_graph_batch(gc, batch);

    // The network has cuDNN (and cuBLAS) nodes: constructing the graph must
    // not inspect them (it used to throw cudaErrorInvalidDeviceFunction).
    rl::DqnUpdateGraph graph(gc, *graphed, bg);  // runs update 1, captures update 2
    CHECK(graph.node_count() > 10);
    CHECK(graph.watched_allocations() > 10);
    CHECK_FALSE(graph.buffers_moved());
    CHECK(graphed->optimizer().steps() == 1);
    CHECK(graphed->updates() == 1);  // the capture does not count
    for (int u = 0; u < 4; ++u) eager->update(bg);
    for (int u = 0; u < 3; ++u) graph.replay();
    CHECK(graphed->optimizer().steps() == 4);
    CHECK(graphed->updates() == 4);
    CHECK(graphed->updates() == eager->updates());
    CHECK(graphed->last_stats().loss == eager->last_stats().loss);
    auto pe = eager->online().parameters();
    auto pg = graphed->online().parameters();
    // Deterministic algorithms, no atomics in the norm, Adam's bias
    // corrections from the same device formula: bit for bit.
    for (std::size_t k = 0; k < pe.size(); ++k) {
      INFO(pe[k].name, " graph vs eager");
      CHECK(usable(to_host(gc, *pg[k].value)));
      CHECK(to_host(gc, *pg[k].value) == to_host(gc, *pe[k].value));
    }
    // Eager updates and replays interleave on the same agent.
    graphed->update(bg);
    graph.replay();
    eager->update(bg);
    eager->update(bg);
    CHECK(graphed->optimizer().steps() == 6);
    CHECK(graphed->updates() == 6);
    for (std::size_t k = 0; k < pe.size(); ++k) CHECK(to_host(gc, *pg[k].value) == to_host(gc, *pe[k].value));
  }

  TEST_CASE("cuda: a replayed graph follows set_steps (a checkpoint's Adam step count)") {
    if (!test::backend_available<cuda>()) return;
    Context<cuda> gc;
    const int batch = 8, actions = 3;
    auto eager = make_graph_agent(gc, batch, actions);
    auto graphed = make_graph_agent(gc, batch, actions);
    auto bg = make_graph_batch(gc, batch);
    rl::DqnUpdateGraph graph(gc, *graphed, bg);
    eager->update(bg);
    // As checkpoint loading does; step 101's bias correction (lr / 1) is far
    // from step 2's (lr / 0.19), so a device count left at 1 would show.
    eager->optimizer().set_steps(100);
    graphed->optimizer().set_steps(100);
    eager->update(bg);
    graph.replay();
    CHECK(graphed->optimizer().steps() == 101);
    auto pe = eager->online().parameters();
    auto pg = graphed->online().parameters();
    for (std::size_t k = 0; k < pe.size(); ++k) CHECK(to_host(gc, *pg[k].value) == to_host(gc, *pe[k].value));
  }

  TEST_CASE("cuda: replay refuses once a buffer of the capture was freed") {
    if (!test::backend_available<cuda>()) return;
    Context<cuda> gc;
    const int batch = 8, actions = 3;
    auto agent = make_graph_agent(gc, batch, actions);
    auto bg = make_graph_batch(gc, batch);
    rl::DqnUpdateGraph graph(gc, *agent, bg);
    const std::vector<std::uint8_t> states(static_cast<std::size_t>(4 * 40 * 40 * 2 * batch), 7);
    // Acting at batch 1 (a new plan, maybe a larger cuDNN workspace) and at
    // the training batch keeps every captured buffer.
    (void)agent->q_values(states.data(), 1);
    (void)agent->q_values(states.data(), batch);
    CHECK_FALSE(graph.buffers_moved());
    CHECK_NOTHROW(graph.replay());
    // A larger batch grows the online network's activations past their
    // capacity: the captured update would read freed memory.
    (void)agent->q_values(states.data(), 2 * batch);
    CHECK(graph.buffers_moved());
    const std::int64_t updates = agent->updates();
    CHECK_THROWS_WITH_AS(graph.replay(), doctest::Contains("build a new DqnUpdateGraph"), Error);
    CHECK(agent->updates() == updates);
    // A new graph over the new buffers works.
    rl::DqnUpdateGraph again(gc, *agent, bg);
    CHECK_NOTHROW(again.replay());
    backend_traits<cuda>::synchronize(gc);
  }

  TEST_CASE("cuda: two identical agents on two Contexts stay bit-identical (deterministic mode)") {
    if (!test::backend_available<cuda>()) return;
    Context<cuda> c1, c2;
    REQUIRE(c1.options().deterministic);
    const int batch = 16, actions = 4;
    auto make = [&](Context<cuda>& ctx) {
      auto net = nn::nature_dqn<cuda>(4, 84, 84, actions);
      Rng init(3);
      net.initialize(ctx, init, nn::Init::pytorch_default);
      rl::DqnConfig config;
      config.batch_size = batch;
      config.double_dqn = true;
      config.adam.max_grad_norm = 10.0f;
      return std::make_unique<rl::Dqn<cuda>>(ctx, std::move(net), Shape{4, 84, 84}, actions, config);
    };
    auto a1 = make(c1);
    auto a2 = make(c2);
    Rng data(4);
    const Shape states{batch, 4, 84, 84};
    std::vector<std::uint8_t> s(static_cast<std::size_t>(states.size())), ns(s.size());
    for (auto& b : s) b = static_cast<std::uint8_t>(data.uniform_index(256));
    for (auto& b : ns) b = static_cast<std::uint8_t>(data.uniform_index(256));
    std::vector<std::int32_t> a(batch);
    std::vector<float> r(batch), t(batch);
    for (int i = 0; i < batch; ++i) {
      a[i] = static_cast<std::int32_t>(data.uniform_index(actions));
      r[i] = static_cast<float>(data.uniform_index(3)) - 1.0f;
      t[i] = i % 5 == 0 ? 1.0f : 0.0f;
    }
    auto batch_on = [&](Context<cuda>& ctx) {
      rl::ReplayBatch<cuda> b;
      b.states = from_host<cuda, std::uint8_t>(ctx, s, states);
      b.next_states = from_host<cuda, std::uint8_t>(ctx, ns, states);
      b.actions = from_host<cuda, std::int32_t>(ctx, a, {batch});
      b.rewards = from_host<cuda, float>(ctx, r, {batch});
      b.discounts = from_host<cuda, float>(ctx, test::discounts_of(t, 0.99f), {batch});
      return b;
    };
    auto b1 = batch_on(c1);
    auto b2 = batch_on(c2);
    for (int u = 0; u < 3; ++u) {
      a1->update(b1);
      a2->update(b2);
      const auto s1 = a1->last_stats(), s2 = a2->last_stats();
      CHECK(s1.loss > 0.0f);
      CHECK(s1.loss == s2.loss);
      CHECK(s1.grad_norm == s2.grad_norm);
    }
    CHECK(a1->q_values(s.data(), 1) == a2->q_values(s.data(), 1));
    auto p1 = a1->online().parameters();
    auto p2 = a2->online().parameters();
    for (std::size_t k = 0; k < p1.size(); ++k) {
      INFO(p1[k].name);
      CHECK(to_host(c1, *p1[k].value) == to_host(c2, *p2[k].value));
    }
    // The online and target networks' layers of one geometry share one
    // cached choice: 3 convolutions x 2 batch sizes (16 and 1).
    CHECK(c1.conv_algorithms().size() == 6);
  }
}

// ---- host-only parts of the CUDA backend: these run without a device ------

TEST_CASE("cuda host: Adam's bias corrections equal the former host formula bit for bit") {
  Context<cpu> cc;
  nn::Sequential<cpu> net;
  net.add<nn::Dense>(2, 1);
  for (const auto& [beta1, beta2, lr] : {std::tuple{0.9f, 0.999f, 1e-4f}, std::tuple{0.5f, 0.9f, 0.3f},
                                        std::tuple{0.0f, 0.0f, 6.25e-5f}, std::tuple{0.95f, 0.9999f, 2.5e-4f}}) {
    optim::AdamConfig config;
    config.beta1 = beta1;
    config.beta2 = beta2;
    config.learning_rate = lr;
    config.weight_decay = 1e-3f;
    optim::Adam<cpu> adam(cc, net, config);
    int differ = 0;
    for (std::int64_t step = 1; step <= 20000; ++step) {
      // What optim::Adam::update_for_step computed before the formula moved
      // to kernels::AdamHyperparameters::for_step (shared with the device).
      const double bc1 = 1.0 - std::pow(double(config.beta1), double(step));
      const double bc2 = 1.0 - std::pow(double(config.beta2), double(step));
      const kernels::AdamUpdate old{static_cast<float>(config.learning_rate / bc1), config.beta1, config.beta2,
                                    config.eps, static_cast<float>(std::sqrt(bc2)), config.weight_decay};
      const kernels::AdamUpdate now = adam.update_for_step(step);
      differ += std::memcmp(&old, &now, sizeof(old)) != 0;
    }
    CHECK(differ == 0);
  }
}

TEST_CASE("cuda host: the allocation registry flags a watcher when a watched buffer is freed") {
  cuda_detail::AllocationRegistry registry;
  alignas(64) static std::uint8_t memory[4096];  // stands in for device addresses
  std::uint8_t* a = memory;
  std::uint8_t* b = memory + 1024;
  std::uint8_t* c = memory + 2048;
  registry.add(a, 1024);
  registry.add(b, 512);
  registry.add(c, 256);
  CHECK(registry.size() == 3);
  CHECK(registry.contains(a + 1023));
  CHECK_FALSE(registry.contains(b + 512));  // the gap after b
  CHECK_FALSE(registry.contains(nullptr));
  {
    // Interior pointers count for their allocation; null and outside
    // pointers are skipped; a pointer seen twice is one allocation.
    const std::vector<const void*> used{a + 8, a + 100, b, nullptr, memory + 1800, &registry};
    cuda_detail::AllocationWatch watch(registry, used);
    CHECK(watch.allocations() == 2);
    CHECK_FALSE(watch.freed());
    registry.remove(c);  // not watched
    CHECK_FALSE(watch.freed());
    registry.remove(b);
    CHECK(watch.freed());
    registry.add(b, 512);  // the address comes back for a new allocation: still freed
    CHECK(watch.freed());
  }
  // A destroyed watch is forgotten: freeing `a` touches no stale flag.
  auto flag = std::make_shared<std::atomic<bool>>(false);
  CHECK(registry.watch(std::vector<const void*>{a}, flag) == 1);
  registry.unwatch(flag);
  registry.remove(a);
  CHECK_FALSE(flag->load());
  CHECK(registry.size() == 1);
}

namespace {
// A host allocator for GrowingWorkspace that can be told to fail.
struct FakeDeviceMemory {
  static inline bool fail_next = false;
  static inline int live = 0;
  static void* allocate(std::size_t bytes) {
    if (fail_next) {
      fail_next = false;
      throw Error("cudaMalloc of " + std::to_string(bytes) + " bytes failed: out of memory");
    }
    ++live;
    return ::operator new(bytes);
  }
  static void release(void* p) noexcept {
    --live;
    ::operator delete(p);
  }
};
}  // namespace

TEST_CASE("cuda host: the cuDNN workspace grows only on success and keeps replaced blocks") {
  FakeDeviceMemory::live = 0;
  {
    cuda_detail::GrowingWorkspace<FakeDeviceMemory> ws;
    CHECK(ws.get(0) == nullptr);
    void* first = ws.get(100);
    REQUIRE(first != nullptr);
    CHECK(ws.bytes() == 100);
    CHECK(ws.generation() == 1);
    CHECK(ws.get(60) == first);  // fits: no change
    FakeDeviceMemory::fail_next = true;
    CHECK_THROWS_WITH_AS(ws.get(1000), doctest::Contains("out of memory"), Error);
    // The failed growth left the old block and its size, still usable.
    CHECK(ws.bytes() == 100);
    CHECK(ws.data() == first);
    CHECK(ws.generation() == 1);
    CHECK(ws.get(100) == first);
    void* second = ws.get(1000);
    CHECK(second != first);
    CHECK(ws.bytes() == 1000);
    CHECK(ws.generation() == 2);
    CHECK(ws.retired_blocks() == 1);  // a graph captured before may still use `first`
    CHECK(FakeDeviceMemory::live == 2);
  }
  CHECK(FakeDeviceMemory::live == 0);
}

namespace {
cudnnConvolutionFwdAlgoPerf_t perf(cudnnConvolutionFwdAlgo_t algo, cudnnDeterminism_t determinism,
                                   cudnnMathType_t math, cudnnStatus_t status = CUDNN_STATUS_SUCCESS) {
  cudnnConvolutionFwdAlgoPerf_t p{};
  p.algo = algo;
  p.status = status;
  p.determinism = determinism;
  p.mathType = math;
  p.memory = 0;  // the Find result's figure is not used: workspace_for asks cuDNN again
  return p;
}
}  // namespace

TEST_CASE("cuda host: cuDNN algorithm choice - determinism, math types, the workspace asked for the winner") {
  const cudnnConvolutionFwdAlgoPerf_t ranked[] = {
      perf(CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_DETERMINISTIC, CUDNN_FMA_MATH, CUDNN_STATUS_NOT_SUPPORTED),
      perf(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_DETERMINISTIC,
           CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION),
      perf(CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, CUDNN_NON_DETERMINISTIC, CUDNN_FMA_MATH),
      perf(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_DETERMINISTIC, CUDNN_TENSOR_OP_MATH),
      perf(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH),
      perf(CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, CUDNN_DETERMINISTIC, CUDNN_FMA_MATH),
  };
  const int n = static_cast<int>(std::size(ranked));
  std::vector<std::pair<cudnnConvolutionFwdAlgo_t, cudnnMathType_t>> asked;
  auto workspace_for = [&](cudnnConvolutionFwdAlgo_t algo, cudnnMathType_t math) -> std::optional<std::size_t> {
    asked.emplace_back(algo, math);
    if (algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM) return std::size_t{64} << 20;
    return std::size_t{1} << 20;
  };
  using cuda_detail::ConvSearch;
  {
    // FP32, deterministic (the default): the GEMM's default math runs as FMA.
    const ConvSearch s{};
    const auto c = cuda_detail::pick_algorithm(ranked, n, s, workspace_for);
    REQUIRE(c);
    CHECK(c->algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM);
    CHECK(c->math == CUDNN_FMA_MATH);
    CHECK(c->workspace_bytes == (std::size_t{64} << 20));  // what cuDNN says for that pair, not perf.memory
    REQUIRE(asked.size() == 1);
    CHECK(asked[0].second == CUDNN_FMA_MATH);
  }
  {
    // The GEMM's workspace over the cap: the next one, queried in its turn.
    asked.clear();
    const ConvSearch s{false, true, false, std::size_t{32} << 20};
    const auto c = cuda_detail::pick_algorithm(ranked, n, s, workspace_for);
    REQUIRE(c);
    CHECK(c->algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT);
    CHECK(asked.size() == 2);
  }
  {
    // Not deterministic: the timed winner that the math rules allow.
    const ConvSearch s{false, false, false, std::size_t{256} << 20};
    const auto c = cuda_detail::pick_algorithm(ranked, n, s, workspace_for);
    REQUIRE(c);
    CHECK(c->algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED);
  }
  {
    // TF32 allowed: tensor-op math yes (kept on the descriptor), FP16
    // conversion still no.
    const ConvSearch s{true, true, false, std::size_t{256} << 20};
    const auto c = cuda_detail::pick_algorithm(ranked, n, s, workspace_for);
    REQUIRE(c);
    CHECK(c->algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
    CHECK(c->math == CUDNN_TENSOR_OP_MATH);
    const ConvSearch conversion{true, true, true, std::size_t{256} << 20};
    const auto d = cuda_detail::pick_algorithm(ranked, n, conversion, workspace_for);
    REQUIRE(d);
    CHECK(d->algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
    CHECK(d->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
  }
  {
    // cuDNN refusing the pair's workspace query skips the candidate; none left.
    auto refuse = [](cudnnConvolutionFwdAlgo_t, cudnnMathType_t) { return std::optional<std::size_t>(); };
    CHECK_FALSE(cuda_detail::pick_algorithm(ranked, n, ConvSearch{}, refuse));
    CHECK_FALSE(cuda_detail::pick_algorithm(ranked, 0, ConvSearch{}, workspace_for));
  }
  CHECK_FALSE(cuda_detail::acceptable_math(CUDNN_TENSOR_OP_MATH, ConvSearch{}));
  CHECK_FALSE(cuda_detail::acceptable_math(CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, ConvSearch{true, true, false, 0}));
  CHECK(cuda_detail::search_math(ConvSearch{}) == CUDNN_FMA_MATH);
  CHECK(cuda_detail::search_math(ConvSearch{true, true, false, 0}) == CUDNN_DEFAULT_MATH);
  CHECK(cuda_detail::search_math(ConvSearch{true, true, true, 0}) == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
  CHECK(cuda_detail::search_math(ConvSearch{false, true, true, 0}) == CUDNN_FMA_MATH);  // conversion needs TF32
}

TEST_CASE("cuda host: convolution algorithms are cached per geometry and settings") {
  cuda_detail::ConvAlgorithmCache cache;
  Conv2dGeometry g;
  g.batch = 32;
  g.in_channels = 4;
  g.in_h = g.in_w = 84;
  g.out_channels = 32;
  g.kernel_h = g.kernel_w = 8;
  g.stride_h = g.stride_w = 4;
  g.out_h = g.out_w = 20;
  const cuda_detail::ConvSearch fp32{};
  CHECK(cache.find(g, fp32) == nullptr);
  cuda_detail::ConvAlgorithms chosen;
  chosen.forward = {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_FMA_MATH, 0};
  chosen.backward_data = {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_FMA_MATH, 4096};
  chosen.backward_filter = {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_FMA_MATH, 1 << 20};
  cache.insert(g, fp32, chosen);
  // Another layer (the target network's) of the same geometry: the same choice.
  const Conv2dGeometry same = g;
  const auto* found = cache.find(same, fp32);
  REQUIRE(found != nullptr);
  CHECK(found->backward_filter.algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
  CHECK(found->workspace_bytes() == (std::size_t{1} << 20));
  // Another batch size, or other settings, is another entry.
  Conv2dGeometry acting = g;
  acting.batch = 1;
  CHECK(cache.find(acting, fp32) == nullptr);
  CHECK(cache.find(g, cuda_detail::ConvSearch{true, true, false, fp32.max_workspace_bytes}) == nullptr);
  CHECK(cache.find(g, cuda_detail::ConvSearch{false, false, false, fp32.max_workspace_bytes}) == nullptr);
  CHECK(cache.size() == 1);
}
