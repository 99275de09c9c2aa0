// qrl's DQN updates against PyTorch's. scripts/make_torch_reference.py ran
// three updates of a small network in PyTorch 1.13 for several variants
// (plain and Double DQN, Huber and MSE, with and without gradient clipping,
// one-step and 3-step batches, the scalar and the C51 head) and stored the
// initial weights, the batches, the weights after the updates and each
// update's loss and gradient norm in data/torch_reference.safetensors.
// Here rl::Dqn runs the same updates and every weight, loss and norm must
// agree. Torch is not needed to run this; see the script to regenerate.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include <qrl/io/safetensors.hpp>
#include <qrl/nn/serialize.hpp>
#include <qrl/rl/dqn.hpp>

#include "test_support.hpp"

using namespace qrl;

namespace {

// |qrl - torch| <= kAtol + kRtol |torch| on every weight. Both sides compute
// in float32 with the same operations but sum in different orders (OpenBLAS
// gemm and qrl's im2col here, ATen's kernels there), so gradients differ in
// their last bits, and Adam carries a relative gradient error into each step
// of about lr = 1e-2. Measured here: at most 8e-8 (a few float32 ulps of
// weights up to about 0.5), 2-3% of the bound; the 3-step and C51 variants
// 4e-8 to 7e-8, about 2%. The bound, 2e-6 at w = 0, is 1e-4 of the
// 1e-2..3e-2 that three updates move a weight: room for another CPU's BLAS
// kernels, and still each of these fails it (all tried): gamma 0.9 -> 0.91,
// Adam eps 1e-8 -> 1e-7, no clipping, terminal flags dropped, Double DQN
// flipped (also for each C51 variant, either way), C51's v_max 2 -> 2.1 or
// v_min -2 -> -2.1, a 3-step terminal row bootstrapped, a truncated window
// bootstrapped with gamma^3 instead of gamma^2 (where that row's error lies
// in Huber's linear part only the loss tells, and the loss is compared too),
// and the projection's l == u branch dropped from the kernel. The generator
// checks that rerunning the updates in float64 moves torch's own result by
// under a quarter of this bound, so the fixture is not so ill-conditioned (an
// argmax near a tie, a Huber error at the kink, a gradient near Adam's eps, a
// ReLU input near 0) that rounding alone could break it.
constexpr double kAtol = 2e-6, kRtol = 2e-5;
// Losses and gradient norms: float32 means of a handful of values (qrl
// accumulates in double, torch in float).
constexpr double kStatRtol = 1e-5;

constexpr int kStack = 2, kSize = 8, kActions = 3;

struct Fixture {
  io::SafetensorsFile file;
  nlohmann::json info;

  static const Fixture& get() {
    static const Fixture fixture = [] {
      Fixture f;
      f.file = io::load_safetensors(QRL_TORCH_REFERENCE);
      const auto it = f.file.metadata.find("qrl_torch_reference");
      require(it != f.file.metadata.end(), QRL_TORCH_REFERENCE, ": no qrl_torch_reference metadata");
      f.info = nlohmann::json::parse(it->second);
      return f;
    }();
    return fixture;
  }

  const io::StoredTensor& tensor(const std::string& name) const {
    const auto it = file.tensors.find(name);
    require(it != file.tensors.end(), QRL_TORCH_REFERENCE, ": no tensor '", name, "'");
    return it->second;
  }
};

// The network of the generator's network(outputs), layer for layer: torch's
// Conv2d(2, 4, 3, padding=1) is qrl's 'same' padding at stride 1. `outputs`
// is kActions, or kActions * atoms for C51.
template <Backend B>
nn::Sequential<B> make_network(int outputs) {
  nn::Sequential<B> net;
  net.template add<nn::Conv2d>(kStack, 4, 3, 1, Padding::same);
  net.template add<nn::ReLU>();
  net.template add<nn::Flatten>();
  net.template add<nn::Dense>(4 * kSize * kSize, 16);
  net.template add<nn::ReLU>();
  net.template add<nn::Dense>(16, outputs);
  return net;
}

// Every parameter from "<prefix>/<name>", shapes checked.
template <Backend B>
void load_parameters(Context<B>& ctx, nn::Sequential<B>& net, const Fixture& f, const std::string& prefix) {
  for (auto& p : net.parameters()) {
    const auto& stored = f.tensor(prefix + "/" + p.name);
    nn::require_stored_shape(stored, p.value->shape(), QRL_TORCH_REFERENCE, prefix + "/" + p.name, "");
    upload<B, float>(ctx, stored.values, *p.value);
  }
}

std::vector<std::uint8_t> to_bytes(const io::StoredTensor& t, const std::string& name) {
  std::vector<std::uint8_t> out;
  for (float v : t.values) {
    require(v >= 0.0f && v <= 255.0f && v == std::floor(v), name, ": ", v, " is not a uint8 pixel value");
    out.push_back(static_cast<std::uint8_t>(v));
  }
  return out;
}

// gamma^k as ReplayMemory's window() forms it: a float product, step by step.
float discount_after(float gamma, int steps) {
  float factor = 1.0f;
  for (int k = 0; k < steps; ++k) factor *= gamma;
  return factor;
}

// The one place a fixture batch becomes a ReplayBatch, with the rewards and
// per-row discounts the fixture stores: r + discount * next value, discount
// gamma^k for a window of k <= n_step transitions (k < n_step where the
// episode was truncated inside the window, and there "<prefix>/steps" says
// k), 0 where it terminated.
template <Backend B>
rl::ReplayBatch<B> make_batch(Context<B>& ctx, const Fixture& f, const std::string& prefix, float gamma,
                              int n_step) {
  const auto& actions = f.tensor(prefix + "/actions");
  const auto n = static_cast<std::int64_t>(actions.values.size());
  const Shape states_shape{n, kStack, kSize, kSize};
  rl::ReplayBatch<B> batch;
  for (auto [field, tensor] : {std::pair{"/states", &batch.states}, std::pair{"/next_states", &batch.next_states}}) {
    const auto bytes = to_bytes(f.tensor(prefix + field), prefix + field);
    REQUIRE(static_cast<std::int64_t>(bytes.size()) == states_shape.size());
    REQUIRE(std::any_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b != 0; }));
    *tensor = from_host<B, std::uint8_t>(ctx, bytes, states_shape);
  }
  std::vector<std::int32_t> action_ids;
  for (float a : actions.values) {
    REQUIRE((a >= 0.0f && a < kActions && a == std::floor(a)));
    action_ids.push_back(static_cast<std::int32_t>(a));
  }
  batch.actions = from_host<B, std::int32_t>(ctx, action_ids, {n});
  const auto& rewards = f.tensor(prefix + "/rewards").values;
  const auto& terminated = f.tensor(prefix + "/terminated").values;
  const auto& discounts = f.tensor(prefix + "/discounts").values;
  REQUIRE(static_cast<std::int64_t>(rewards.size()) == n);
  REQUIRE(static_cast<std::int64_t>(terminated.size()) == n);
  REQUIRE(static_cast<std::int64_t>(discounts.size()) == n);
  const auto steps_it = f.file.tensors.find(prefix + "/steps");
  if (n_step > 1) REQUIRE(steps_it != f.file.tensors.end());  // n-step batches say each window's length
  for (std::int64_t i = 0; i < n; ++i) {
    INFO(prefix, " row ", i);
    REQUIRE((discounts[i] == 0.0f) == (terminated[i] == 1.0f));
    const float steps = steps_it == f.file.tensors.end() ? 1.0f : steps_it->second.values.at(i);
    REQUIRE((steps >= 1.0f && steps <= static_cast<float>(n_step) && steps == std::floor(steps)));
    if (terminated[i] == 0.0f) REQUIRE(discounts[i] == discount_after(gamma, static_cast<int>(steps)));
  }
  batch.rewards = from_host<B, float>(ctx, rewards, {n});
  batch.discounts = from_host<B, float>(ctx, discounts, {n});
  return batch;
}

// What a variant entry may say, by head ("q": scalar Q values, "c51": the
// categorical head); an unknown key is a variant this test does not know how
// to run yet, and must fail rather than pass by being ignored.
const std::set<std::string> kCommonKeys{"name",       "init", "batches",       "head",         "gamma",
                                        "double_dqn", "loss", "learning_rate", "max_grad_norm", "n_step"};
const std::set<std::string> kScalarKeys{"huber_delta"};
const std::set<std::string> kC51Keys{"atoms", "v_min", "v_max"};

bool known_key(const std::string& head, const std::string& key) {
  if (kCommonKeys.count(key) == 1) return true;
  if (head == "q") return kScalarKeys.count(key) == 1;
  if (head == "c51") return kC51Keys.count(key) == 1;
  return false;
}

rl::DqnConfig dqn_config(const nlohmann::json& v, int batch_size) {
  rl::DqnConfig config;
  config.gamma = v.at("gamma").get<float>();
  config.batch_size = batch_size;
  config.demonstration_rows = 0;  // update() is called without demonstrations
  config.double_dqn = v.at("double_dqn").get<bool>();
  const auto head = v.at("head").get<std::string>();
  const auto loss = v.at("loss").get<std::string>();
  if (head == "c51") {
    // C51's cross-entropy of the projected target (kernels::CategoricalTdRow).
    require(loss == "cross_entropy", "C51 variant with loss '", loss, "'");
    config.distributional =
        CategoricalSupport{v.at("atoms").get<int>(), v.at("v_min").get<float>(), v.at("v_max").get<float>()};
  } else {
    require(head == "q", "unknown head '", head, "'");
    require(loss == "huber" || loss == "mse", "unknown loss '", loss, "'");
    config.loss = loss == "huber" ? LossKind::huber : LossKind::mse;
    config.huber_delta = v.at("huber_delta").get<float>();
  }
  config.adam.learning_rate = v.at("learning_rate").get<float>();
  config.adam.beta1 = 0.9f;  // torch.optim.Adam's defaults, which the generator uses
  config.adam.beta2 = 0.999f;
  config.adam.eps = 1e-8f;
  config.adam.weight_decay = 0.0f;
  config.adam.max_grad_norm = v.at("max_grad_norm").get<float>();
  return config;
}

struct Comparison {
  double worst_error = 0.0;  // largest |qrl - torch|
  double worst_share = 0.0;  // largest |qrl - torch| / (atol + rtol |torch|)
  std::string worst_at;
  std::size_t mismatches = 0;
};

// Counts the elements outside the tolerance and prints the first few.
void compare(const std::vector<float>& got, const std::vector<float>& ref, const std::string& name,
             double atol, double rtol, Comparison& c) {
  REQUIRE(got.size() == ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double g = got[i], r = ref[i], error = std::abs(g - r);
    const double bound = std::max(atol + rtol * std::abs(r), 1e-30);
    if (!(error <= bound)) {
      if (c.mismatches < 8)
        std::printf("  mismatch %s[%zu]: qrl %.9g, torch %.9g, |difference| %.3g > %.3g\n", name.c_str(), i, g, r,
                    error, bound);
      ++c.mismatches;
    }
    if (!(error / bound <= c.worst_share)) {
      c.worst_share = std::isfinite(error) ? error / bound : INFINITY;
      c.worst_at = name + "[" + std::to_string(i) + "]";
    }
    c.worst_error = std::max(c.worst_error, std::isfinite(error) ? error : INFINITY);
  }
}

template <Backend B>
void check_variant(const Fixture& f, const nlohmann::json& v) {
  const auto name = v.at("name").get<std::string>();
  INFO("variant ", name);
  const auto head = v.at("head").get<std::string>();
  REQUIRE((head == "q" || head == "c51"));
  for (const auto& [key, value] : v.items()) {
    INFO("key ", key);
    CHECK(known_key(head, key));
  }
  const int outputs = head == "c51" ? kActions * v.at("atoms").get<int>() : kActions;
  const float gamma = v.at("gamma").get<float>();
  const int n_step = v.at("n_step").get<int>();
  REQUIRE(n_step >= 1);

  Context<B> ctx;
  const auto init_prefix = v.at("init").get<std::string>();
  auto net = make_network<B>(outputs);
  load_parameters<B>(ctx, net, f, init_prefix);
  const auto batch_names = v.at("batches").get<std::vector<std::string>>();
  REQUIRE(!batch_names.empty());
  const auto rows = static_cast<int>(f.tensor(batch_names[0] + "/actions").values.size());
  rl::Dqn<B> agent(ctx, std::move(net), {kStack, kSize, kSize}, kActions, dqn_config(v, rows));
  REQUIRE(std::string(agent.head_name()) == (head == "c51" ? "categorical" : "scalar"));

  const auto& losses = f.tensor(name + "/losses").values;
  const auto& norms = f.tensor(name + "/grad_norms").values;
  REQUIRE(losses.size() == batch_names.size());
  REQUIRE(norms.size() == batch_names.size());
  Comparison stats;
  std::vector<float> got_losses, got_norms;
  for (const auto& batch_name : batch_names) {
    const auto batch = make_batch<B>(ctx, f, batch_name, gamma, n_step);
    agent.update(batch);
    const auto s = agent.last_stats();
    got_losses.push_back(s.loss);
    got_norms.push_back(s.grad_norm);
  }
  compare(got_losses, losses, name + "/losses", 0.0, kStatRtol, stats);
  compare(got_norms, norms, name + "/grad_norms", 0.0, kStatRtol, stats);
  CHECK(stats.mismatches == 0);
  CHECK(test::all_finite(got_losses));

  Comparison weights;
  for (auto& p : agent.online().parameters()) {
    const auto got = to_host(ctx, *p.value);
    const auto& ref = f.tensor(name + "/after/" + p.name).values;
    const auto& init = f.tensor(init_prefix + "/" + p.name).values;
    INFO("parameter ", p.name);
    REQUIRE(test::all_finite(got));
    REQUIRE(test::all_finite(ref));
    compare(got, ref, name + "/after/" + p.name, kAtol, kRtol, weights);
    // Not trivially passing: torch moved every tensor by far more than the
    // tolerance, and so did qrl.
    double torch_move = 0.0, qrl_move = 0.0, bound = 0.0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      torch_move = std::max(torch_move, double(std::abs(ref[i] - init[i])));
      qrl_move = std::max(qrl_move, double(std::abs(got[i] - init[i])));
      bound = std::max(bound, kAtol + kRtol * std::abs(ref[i]));
    }
    CHECK(torch_move > 100 * bound);
    CHECK(qrl_move > 100 * bound);
  }
  // The target network stays at the initial weights during the updates.
  for (auto& p : agent.target().parameters()) {
    INFO("target parameter ", p.name);
    CHECK(to_host(ctx, *p.value) == f.tensor(init_prefix + "/" + p.name).values);
  }
  CHECK(weights.mismatches == 0);
  std::printf("torch reference %-19s max |qrl - torch| %.3g (%.3f of the tolerance, at %s); "
              "losses and norms %.3f of their tolerance\n",
              name.c_str(), weights.worst_error, weights.worst_share, weights.worst_at.c_str(), stats.worst_share);
}

}  // namespace

// Only the CPU backend for now: a CUDA run against the same fixture needs its
// tolerance measured on a device first.
TEST_CASE_TEMPLATE("DQN updates match PyTorch's on a stored fixture", B, cpu) {
  if (!test::backend_available<B>()) return;
  const auto& f = Fixture::get();
  REQUIRE(f.info.at("format").get<int>() == 1);
  const auto& variants = f.info.at("variants");
  std::set<std::string> names;
  for (const auto& v : variants) names.insert(v.at("name").get<std::string>());
  // The variants this test was written against must stay in the fixture.
  for (const char* expected : {"dqn_huber", "double_huber", "double_mse", "double_huber_clip", "double_huber_nstep3",
                               "c51", "c51_double_nstep3"}) {
    INFO("variant ", expected);
    CHECK(names.count(expected) == 1);
  }
  for (const auto& v : variants) check_variant<B>(f, v);
}
