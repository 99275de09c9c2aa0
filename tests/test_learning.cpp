// The DQN agent must learn, not just run: Catch from 10x10 pixels, seeded,
// on the CPU in seconds, from one env and from four stepped together. The
// learned greedy policy's return is compared with the random policy's on the
// same evaluation seeds. The trainer must also take exactly the steps of a
// plain DQN loop written out below with one env, and store each env's own
// transitions with several.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include <qrl/env/vector_env.hpp>
#include <qrl/envs/catch.hpp>
#include <qrl/envs/flappy_bird.hpp>
#include <qrl/nn/models.hpp>
#include <qrl/rl/dqn.hpp>
#include <qrl/rl/trainer.hpp>

#include "test_support.hpp"

using namespace qrl;

namespace {

template <class Policy>
double mean_return(Policy&& policy, int episodes, std::uint64_t first_seed) {
  envs::Catch env(10);
  rl::FrameStack stack(env.observation_shape(), 2);
  double total = 0;
  for (int e = 0; e < episodes; ++e) {
    stack.reset(env.reset(first_seed + e));
    for (;;) {
      const auto r = env.step(policy(stack.data()));
      stack.push(r.observation);
      total += r.reward;
      if (r.terminated || r.truncated) break;
    }
  }
  return total / episodes;
}

template <class B>
nn::Sequential<B> catch_network() {
  nn::Sequential<B> net;
  net.template add<nn::Conv2d>(2, 16, 3, 1, Padding::same).template add<nn::ReLU>();
  net.template add<nn::Flatten>();
  net.template add<nn::Dense>(16 * 10 * 10, 64).template add<nn::ReLU>();
  net.template add<nn::Dense>(64, 3);
  return net;
}

template <class B>
rl::DqnConfig catch_dqn_config() {
  rl::DqnConfig config;
  config.batch_size = 32;
  config.gamma = 0.99f;
  config.adam.learning_rate = 1e-3f;
  return config;
}

// The Catch agent of these tests, initialised from a fixed seed.
template <class B>
std::unique_ptr<rl::Dqn<B>> catch_agent(Context<B>& ctx) {
  Rng init_rng(2024);
  auto net = catch_network<B>();
  net.initialize(ctx, init_rng, nn::Init::pytorch_default);
  return std::make_unique<rl::Dqn<B>>(ctx, std::move(net), Shape{2, 10, 10}, 3, catch_dqn_config<B>());
}

rl::TrainerConfig catch_trainer_config(std::int64_t exploration_steps) {
  rl::TrainerConfig config;
  config.seed = 7;
  config.epsilon = rl::EpsilonSchedule::linear(1.0, 0.05, exploration_steps);
  config.schedule.learning_starts = 500;
  config.schedule.train_frequency = 1;
  config.schedule.target_update_interval = 200;
  return config;
}

template <class B>
std::vector<std::vector<float>> weights(Context<B>& ctx, rl::Dqn<B>& agent) {
  std::vector<std::vector<float>> out;
  for (auto& p : agent.online().parameters()) out.push_back(to_host(ctx, *p.value));
  for (auto& p : agent.target().parameters()) out.push_back(to_host(ctx, *p.value));
  return out;
}

// Every stored transition of ring `sa` of `a` equals the one at the same
// rank of ring `sb` of `b`; returns how many were compared.
template <class B>
int compare_rings(const rl::ReplayMemory<B>& a, int sa, const rl::ReplayMemory<B>& b, int sb) {
  REQUIRE(a.ring_frames(sa) == b.ring_frames(sb));
  CHECK(a.ring_transitions(sa) == b.ring_transitions(sb));
  int compared = 0;
  std::vector<std::uint8_t> s1, n1, s2, n2;
  int a1 = 0, a2 = 0;
  float r1 = 0, r2 = 0;
  bool t1 = false, t2 = false;
  for (std::int64_t k = 0; k < a.ring_frames(sa); ++k) {
    const bool v1 = a.transition_at(sa, k, s1, n1, a1, r1, t1);
    const bool v2 = b.transition_at(sb, k, s2, n2, a2, r2, t2);
    REQUIRE(v1 == v2);
    if (!v1) continue;
    ++compared;
    CHECK((s1 == s2 && n1 == n2 && a1 == a2 && r1 == r2 && t1 == t2));
  }
  return compared;
}

// The greedy policy's mean return on 200 evaluation episodes against the
// random policy's. Evaluation seeds (1e6 + k) are disjoint from the
// trainers' episode seeds.
template <class B>
void check_learned(rl::Dqn<B>& agent, const char* what) {
  constexpr int episodes = 200;
  Rng random_actions(1);
  const double random = mean_return([&](const std::uint8_t*) { return int(random_actions.uniform_index(3)); },
                                    episodes, 1000000);
  const double learned = mean_return([&](const std::uint8_t* s) { return agent.greedy_action(s); }, episodes, 1000000);
  MESSAGE("Catch (", std::string(what), ") mean return over ", episodes, " episodes: random ", random, ", DQN ", learned);
  CHECK(random < -0.4);
  CHECK(learned > 0.9);
}

// A perfect Catch player that reads the frame: it moves the paddle (bottom
// row) toward the ball's column. Its play, recorded, is DQfD's demonstrations.
std::uint8_t pixel_column(const std::uint8_t* row, int size) {
  return static_cast<std::uint8_t>(std::find(row, row + size, std::uint8_t{255}) - row);
}
int catch_demonstrator(env::FrameView frame) {
  const int size = frame.shape.width;
  int ball = -1;
  for (int r = 0; r < size - 1 && ball < 0; ++r)
    if (pixel_column(frame.pixels + r * size, size) < size) ball = pixel_column(frame.pixels + r * size, size);
  const int paddle = pixel_column(frame.pixels + (size - 1) * size, size);
  return ball < 0 || ball == paddle ? envs::Catch::stay : ball < paddle ? envs::Catch::left : envs::Catch::right;
}

template <class B>
void record_catch_demonstrations(rl::ReplayMemory<B>& memory, int episodes) {
  envs::Catch env(10);
  for (int e = 0; e < episodes; ++e) {
    env::FrameView frame = env.reset(5000 + e);
    memory.begin_episode(frame);
    for (;;) {
      const int action = catch_demonstrator(frame);
      const auto r = env.step(action);
      memory.add(action, static_cast<float>(r.reward), r.terminated, r.truncated, r.observation);
      frame = r.observation;
      if (r.terminated) break;
    }
  }
}

}  // namespace

// The DQN loop as the one-env trainer ran it before there was one trainer
// for N envs, written out with the primitives: the trainer with one env must
// take exactly these steps (weights bitwise, every stored transition, every
// episode), so the change to one trainer left uniform DQN runs untouched.
template <class B>
struct PlainDqnLoop {
  rl::Dqn<B>& agent;
  rl::ReplayMemory<B>& replay;
  rl::TrainerConfig config;
  std::vector<rl::EpisodeRecord> episodes;

  void run(envs::Catch& env, std::int64_t steps) {
    Rng episode_seeds(rl::Trainer<B, envs::Catch>::episode_seed_stream(config.seed, 0));
    Rng exploration(config.seed, SeedPurpose::exploration), sampling(config.seed, SeedPurpose::sampling);
    rl::FrameStack stack(env.observation_shape(), 2);
    rl::ReplayBatch<B> batch;
    const auto& s = config.schedule;
    double episode_return = 0.0;
    std::int64_t length = 0;
    auto begin = [&] {
      const env::FrameView first = env.reset(episode_seeds.next_u64());
      stack.reset(first);
      replay.begin_episode(first);
    };
    begin();
    for (std::int64_t step = 0; step < steps;) {
      const int action = agent.act(stack.data(), config.epsilon.value(step), exploration);
      const auto r = env.step(action);
      episode_return += r.reward;
      ++length;
      replay.add(action, static_cast<float>(r.reward), r.terminated, r.truncated, r.observation);
      ++step;
      if (step >= s.learning_starts && step % s.train_frequency == 0 &&
          replay.can_sample(agent.config().batch_size)) {
        replay.sample(agent.context(), sampling, agent.config().batch_size, agent.config().gamma, batch);
        agent.update(batch);
      }
      if (step >= s.learning_starts && step % s.target_update_interval == 0) agent.sync_target();
      if (r.terminated || r.truncated) {
        episodes.push_back({static_cast<std::int64_t>(episodes.size()), step, episode_return, length, r.info.score,
                            r.truncated, 0.0, 0});
        episode_return = 0.0;
        length = 0;
        begin();
      } else {
        stack.push(r.observation);
      }
    }
  }
};

TEST_CASE_TEMPLATE_DEFINE("The trainer with one env takes exactly the plain DQN loop's steps", B, one_env_trainer) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  auto trainer_config = catch_trainer_config(800);
  trainer_config.progress_interval = 100;
  trainer_config.acting = rl::ActingPath::host;  // the plain loop's act(); automatic is backend on CUDA

  auto plain_agent = catch_agent<B>(ctx);
  rl::ReplayMemory<B> plain_replay({600, {10, 10, 1}, 2}, ctx);  // wraps
  envs::Catch plain_env(10);
  PlainDqnLoop<B> plain{*plain_agent, plain_replay, trainer_config, {}};
  plain.run(plain_env, 1500);

  // A borrowed env (as the examples wrap theirs in recorders) and an owned one.
  for (const bool borrowed : {true, false}) {
    CAPTURE(borrowed);
    auto agent = catch_agent<B>(ctx);
    rl::ReplayMemory<B> replay({600, {10, 10, 1}, 2, 1}, ctx);
    envs::Catch env(10);
    auto envs = borrowed ? std::make_unique<env::VectorEnv<envs::Catch>>(env)
                         : std::make_unique<env::VectorEnv<envs::Catch>>(1, [](int) { return envs::Catch(10); });
    rl::Trainer<B, envs::Catch> trainer(*envs, *agent, replay, trainer_config);
    std::vector<rl::EpisodeRecord> episodes;
    trainer.on_episode = [&](const rl::EpisodeRecord& e) { episodes.push_back(e); };
    int reports = 0;
    trainer.on_progress = [&](const rl::Progress&) { ++reports; };
    trainer.run(700);  // in two calls, as a run is sliced between saves
    trainer.run(1500);

    CHECK(trainer.step() == 1500);
    CHECK(plain_agent->updates() == 1500 - 500 + 1);
    CHECK(agent->updates() == plain_agent->updates());
    CHECK(reports == 15);
    const auto wp = weights(ctx, *plain_agent), wt = weights(ctx, *agent);
    REQUIRE(wp.size() == wt.size());
    for (std::size_t i = 0; i < wp.size(); ++i) {
      REQUIRE(wp[i].size() == wt[i].size());
      CHECK(std::memcmp(wp[i].data(), wt[i].data(), wp[i].size() * sizeof(float)) == 0);
    }
    CHECK(test::norm(wp.front()) > 0.0);
    CHECK(compare_rings(plain_replay, 0, replay, 0) > 500);
    REQUIRE(plain.episodes.size() == episodes.size());
    CHECK(episodes.size() == 1500 / 9);
    for (std::size_t i = 0; i < episodes.size(); ++i) {
      CHECK(plain.episodes[i].episode_return == episodes[i].episode_return);
      CHECK(plain.episodes[i].end_step == episodes[i].end_step);
      CHECK(episodes[i].env == 0);
    }
    CHECK(trainer.progress().epsilon == trainer_config.epsilon.value(1500));
  }
}

TEST_CASE_TEMPLATE_DEFINE("The trainer stores env i's transitions as one env with its seeds plays them", B,
                          vector_transitions) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  // Flappy Bird: episodes of different lengths, so the envs' boundaries
  // never line up; partly greedy, with updates, so the batched forward pass
  // and the training schedule run between steps.
  auto flappy = [] {
    envs::FlappyBirdConfig c;
    c.observation_height = c.observation_width = 12;
    return envs::FlappyBird(c);
  };
  constexpr int n = 3;
  Rng init_rng(5);
  nn::Sequential<B> net;
  net.template add<nn::Flatten>().template add<nn::Dense>(2 * 12 * 12, 16).template add<nn::ReLU>();
  net.template add<nn::Dense>(16, 2);
  net.initialize(ctx, init_rng, nn::Init::pytorch_default);
  auto config = catch_dqn_config<B>();
  config.batch_size = 8;
  rl::Dqn<B> agent(ctx, std::move(net), {2, 12, 12}, 2, config);
  rl::ReplayMemory<B> replay({n * 1000, {12, 12, 1}, 2, n}, ctx);  // no wrap: every transition stays
  env::VectorEnv<envs::FlappyBird> envs(n, [&](int) { return flappy(); });
  rl::TrainerConfig trainer_config;
  trainer_config.seed = 3;
  trainer_config.epsilon = rl::EpsilonSchedule::linear(1.0, 0.3, 300);
  trainer_config.schedule.learning_starts = 100;
  trainer_config.schedule.train_frequency = 4;
  trainer_config.schedule.target_update_interval = 50;
  rl::Trainer<B, envs::FlappyBird> trainer(envs, agent, replay, trainer_config);
  std::vector<int> episodes_of(n, 0);
  std::vector<double> returns_of(n, 0.0);
  std::int64_t last_end = 0;
  trainer.on_episode = [&](const rl::EpisodeRecord& e) {
    ++episodes_of.at(e.env);
    returns_of.at(e.env) += e.episode_return;
    CHECK(e.end_step >= last_end);
    last_end = e.end_step;
  };
  trainer.run(1800);
  CHECK(trainer.step() == 1800);
  CHECK(agent.updates() == (1800 - 100) / 4 + 1);
  CHECK(trainer.episodes() == episodes_of[0] + episodes_of[1] + episodes_of[2]);

  for (int i = 0; i < n; ++i) {
    CAPTURE(i);
    REQUIRE(replay.ring_transitions(i) == 1800 / n);
    CHECK(episodes_of[i] >= 3);
    // Replays env i's actions on one env fed env i's episode seeds.
    std::vector<int> actions;
    std::vector<std::uint8_t> state, next;
    int action;
    float reward;
    bool terminated;
    for (std::int64_t k = 0; k < replay.ring_frames(i); ++k)
      if (replay.transition_at(i, k, state, next, action, reward, terminated)) actions.push_back(action);
    REQUIRE(actions.size() == 1800 / n);
    envs::FlappyBird env = flappy();
    Rng seeds(rl::Trainer<B, envs::FlappyBird>::episode_seed_stream(trainer_config.seed, i));
    rl::ReplayMemory<B> reference({1000, {12, 12, 1}, 2}, ctx);
    reference.begin_episode(env.reset(seeds.next_u64()));
    int episodes = 0;
    double episode_return = 0.0, finished_returns = 0.0;
    for (int a : actions) {
      const auto r = env.step(a);
      episode_return += r.reward;
      reference.add(a, static_cast<float>(r.reward), r.terminated, r.truncated, r.observation);
      if (r.terminated || r.truncated) {
        ++episodes;
        finished_returns += episode_return;
        episode_return = 0.0;
        reference.begin_episode(env.reset(seeds.next_u64()));
      }
    }
    CHECK(episodes == episodes_of[i]);
    CHECK(finished_returns == returns_of[i]);
    CHECK(compare_rings(reference, 0, replay, i) == 1800 / n);
  }
}

TEST_CASE_TEMPLATE_DEFINE("DQN learns Catch from pixels far above the random policy", B, learns_catch) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  auto agent_owner = catch_agent<B>(ctx);
  auto& agent = *agent_owner;
  rl::ReplayMemory<B> replay({20000, {10, 10, 1}, 2}, ctx);
  envs::Catch env(10);
  env::VectorEnv<envs::Catch> one_env(env);
  rl::Trainer<B, envs::Catch> trainer(one_env, agent, replay, catch_trainer_config(3000));
  trainer.run(6000);
  CHECK(trainer.step() == 6000);
  CHECK(trainer.episodes() == 6000 / 9);
  CHECK(agent.updates() == 6000 - 500 + 1);
  const auto stats = agent.last_stats();
  CHECK(std::isfinite(stats.loss));
  CHECK(stats.grad_norm > 0.0f);

  check_learned(agent, "1 env");
}

TEST_CASE_TEMPLATE_DEFINE("DQfD pre-training on demonstrations alone plays Catch; without the margin it does not", B,
                          dqfd_catch) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  rl::ReplayMemory<B> demonstrations({2000, {10, 10, 1}, 2}, ctx);
  record_catch_demonstrations(demonstrations, 100);
  REQUIRE(demonstrations.transitions() == 900);
  // The demonstrations hold only the demonstrator's actions: TD targets say
  // nothing about the others, so only the margin can rank them below.
  double without_margin = 0.0;
  for (const float weight : {1.0f, 0.0f}) {
    CAPTURE(weight);
    Rng init_rng(2024), sampling(11);
    auto net = catch_network<B>();
    net.initialize(ctx, init_rng, nn::Init::pytorch_default);
    auto config = catch_dqn_config<B>();
    config.demonstration_weight = weight;
    rl::Dqn<B> agent(ctx, std::move(net), Shape{2, 10, 10}, 3, config);
    // Pre-training needs no env step; the trainer brings the schedule.
    rl::ReplayMemory<B> replay({64, {10, 10, 1}, 2}, ctx);
    envs::Catch env(10);
    env::VectorEnv<envs::Catch> one_env(env);
    rl::Trainer<B, envs::Catch> trainer(one_env, agent, replay, catch_trainer_config(3000));
    trainer.pretrain(demonstrations, 600, sampling);
    CHECK(agent.updates() == 600);
    CHECK(std::isfinite(agent.last_stats().loss));
    if (weight > 0.0f) {
      check_learned(agent, "DQfD pre-training");
    } else {
      without_margin = mean_return([&](const std::uint8_t* s) { return agent.greedy_action(s); }, 200, 1000000);
      MESSAGE("Catch after pre-training without the margin (TD on demonstrations only): ", without_margin);
    }
  }
  CHECK(without_margin < 0.5);
}

TEST_CASE_TEMPLATE_DEFINE("DQN learns Catch from four envs stepped together", B, learns_catch_vector) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  auto agent_owner = catch_agent<B>(ctx);
  auto& agent = *agent_owner;
  rl::ReplayMemory<B> replay({20000, {10, 10, 1}, 2, 4}, ctx);
  env::VectorEnv<envs::Catch> envs(4, [](int) { return envs::Catch(10); });
  rl::Trainer<B, envs::Catch> trainer(envs, agent, replay, catch_trainer_config(3000));
  std::vector<int> per_env(4, 0);
  trainer.on_episode = [&](const rl::EpisodeRecord& e) { ++per_env.at(e.env); };
  trainer.run(6000);
  // 6000 env steps = 1500 steps of each env; the same updates as one env.
  CHECK(trainer.step() == 6000);
  CHECK(per_env == std::vector<int>(4, 1500 / 9));
  CHECK(trainer.episodes() == 4 * (1500 / 9));
  CHECK(agent.updates() == 6000 - 500 + 1);
  for (int i = 0; i < 4; ++i) CHECK(replay.ring_transitions(i) == 1500);
  check_learned(agent, "4 envs");
}

// Acting on the backend: the states come from the replay memory, the
// epsilon-greedy draws from kernels::EpsilonGreedy on the backend, and only
// the actions come back. Each action must be the functor's choice on the
// Q-values the host path computes, at epsilon 0, 0.5 and 1.
TEST_CASE_TEMPLATE_DEFINE("Dqn::act_on_backend takes kernels::EpsilonGreedy's actions on the agent's Q-values", B,
                          act_on_backend) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  auto agent = catch_agent<B>(ctx);
  constexpr int count = 64;
  std::vector<std::uint8_t> host_states(static_cast<std::size_t>(count) * 2 * 10 * 10);
  Rng pixels(9);
  for (auto& p : host_states) p = pixels.uniform() < 0.1 ? 255 : 0;
  Tensor<B, std::uint8_t> states({count, 2, 10, 10});
  backend_traits<B>::upload(ctx, host_states.data(), states.data(), host_states.size());
  const auto q = agent->q_values(host_states.data(), count);
  int greedy_differs = 0;
  for (int i = 0; i < count; ++i)
    greedy_differs += kernels::ArgmaxRow{}(q.data() + 3 * i, 3) != kernels::ArgmaxRow{}(q.data(), 3);
  CHECK(greedy_differs > 0);  // the states lead to different greedy actions
  for (const float epsilon : {0.0f, 0.5f, 1.0f}) {
    CAPTURE(epsilon);
    const kernels::EpsilonGreedy policy{epsilon, kernels::CounterRng{77, 1234}};
    std::vector<int> actions(count, -1);
    agent->act_on_backend(states.data(), count, policy, actions);
    int explored = 0;
    for (int i = 0; i < count; ++i) {
      CHECK(actions[i] == policy(q.data() + 3 * i, 3, i));
      explored += actions[i] != kernels::ArgmaxRow{}(q.data() + 3 * i, 3);
    }
    if (epsilon == 0.0f) CHECK(explored == 0);
    if (epsilon == 1.0f) CHECK(explored > count / 2 - 12);  // 2/3 of random actions differ from the greedy one
  }
  std::vector<int> wrong(3);
  CHECK_THROWS_AS(agent->act_on_backend(states.data(), count, {}, wrong), Error);
}

// The trainer acting on the backend learns as the host path does
// (test_checkpoint resumes such a run exactly).
TEST_CASE_TEMPLATE_DEFINE("DQN acting on the backend learns Catch from four envs", B, learns_catch_backend_acting) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  auto trainer_config = catch_trainer_config(3000);
  trainer_config.acting = rl::ActingPath::backend;
  auto agent = catch_agent<B>(ctx);
  rl::ReplayMemory<B> replay({20000, {10, 10, 1}, 2, 4}, ctx);
  env::VectorEnv<envs::Catch> envs(4, [](int) { return envs::Catch(10); });
  rl::Trainer<B, envs::Catch> trainer(envs, *agent, replay, trainer_config);
  CHECK(trainer.acts_on_backend());
  trainer.run(6000);
  CHECK(agent->updates() == 6000 - 500 + 1);
  for (int i = 0; i < 4; ++i) CHECK(replay.ring_transitions(i) == 1500);
  check_learned(*agent, "4 envs, acting on the backend");
}

TEST_CASE_TEMPLATE_DEFINE("C51 with n-step returns and prioritized replay learns Catch far above random", B,
                          learns_catch_rainbow_parts) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  Rng init_rng(2024);
  constexpr int atoms = 11;
  nn::Sequential<B> net;
  net.template add<nn::Conv2d>(2, 16, 3, 1, Padding::same).template add<nn::ReLU>();
  net.template add<nn::Flatten>();
  net.template add<nn::Dense>(16 * 10 * 10, 64).template add<nn::ReLU>();
  net.template add<nn::Dense>(64, 3 * atoms);
  net.initialize(ctx, init_rng, nn::Init::pytorch_default);
  auto config = catch_dqn_config<B>();
  config.distributional = CategoricalSupport{atoms, -1.0f, 1.0f};  // Catch's returns lie in [-1, 1]
  rl::Dqn<B> agent(ctx, std::move(net), Shape{2, 10, 10}, 3, config);
  CHECK(std::string(agent.head_name()) == "categorical");
  rl::ReplayConfig replay_config{20000, {10, 10, 1}, 2};
  replay_config.n_step = 3;
  replay_config.prioritized = rl::PrioritizedConfig{0.5, 0.4, 1.0, 9000};
  rl::ReplayMemory<B> replay(replay_config, ctx);
  envs::Catch env(10);
  env::VectorEnv<envs::Catch> one_env(env);
  rl::Trainer<B, envs::Catch> trainer(one_env, agent, replay, catch_trainer_config(3000));
  trainer.run(9000);
  CHECK(agent.updates() == 9000 - 500 + 1);
  const auto stats = agent.last_stats();
  CHECK(std::isfinite(stats.loss));
  CHECK(stats.grad_norm > 0.0f);
  CHECK(replay.prioritized_sampler().max_priority() != 1.0);  // the TD errors came back
  check_learned(agent, "C51 + 3-step + prioritized");
}

TEST_CASE_TEMPLATE_DEFINE("Rainbow (Double, dueling, noisy nets without epsilon, C51, 3-step, prioritized) learns Catch",
                          B, learns_catch_rainbow) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  Rng init_rng(2024);
  constexpr int atoms = 11;
  nn::Sequential<B> net;
  net.template add<nn::Conv2d>(2, 16, 3, 1, Padding::same).template add<nn::ReLU>();
  net.template add<nn::Flatten>();
  nn::add_q_head(net, 16 * 10 * 10, 64, nn::QHeadShape{3, atoms, true, true});
  net.initialize(ctx, init_rng, nn::Init::pytorch_default);
  auto config = catch_dqn_config<B>();
  config.distributional = CategoricalSupport{atoms, -1.0f, 1.0f};
  rl::Dqn<B> agent(ctx, std::move(net), Shape{2, 10, 10}, 3, config);
  CHECK(agent.online().noisy());
  rl::ReplayConfig replay_config{20000, {10, 10, 1}, 2};
  replay_config.n_step = 3;
  replay_config.prioritized = rl::PrioritizedConfig{0.5, 0.4, 1.0, 9000};
  rl::ReplayMemory<B> replay(replay_config, ctx);
  envs::Catch env(10);
  env::VectorEnv<envs::Catch> one_env(env);
  auto trainer_config = catch_trainer_config(3000);
  trainer_config.epsilon = rl::EpsilonSchedule::constant(0.0);  // the noise explores
  rl::Trainer<B, envs::Catch> trainer(one_env, agent, replay, trainer_config);
  trainer.run(9000);
  CHECK(std::isfinite(agent.last_stats().loss));
  agent.online().set_noise(ctx, false);  // evaluated on the mean weights
  check_learned(agent, "Rainbow");
}

QRL_TEST_ON_EVERY_BACKEND(learns_catch);
QRL_TEST_ON_EVERY_BACKEND(learns_catch_rainbow);
QRL_TEST_ON_EVERY_BACKEND(learns_catch_rainbow_parts);
QRL_TEST_ON_EVERY_BACKEND(dqfd_catch);
QRL_TEST_ON_EVERY_BACKEND(learns_catch_vector);
QRL_TEST_ON_EVERY_BACKEND(act_on_backend);
QRL_TEST_ON_EVERY_BACKEND(learns_catch_backend_acting);
QRL_TEST_ON_EVERY_BACKEND(one_env_trainer);
QRL_TEST_ON_EVERY_BACKEND(vector_transitions);
