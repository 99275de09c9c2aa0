#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>

#include <qrl/kernels/op_args.hpp>
#include <qrl/kernels/categorical.cuh>
#include <qrl/rl/epsilon_schedule.hpp>
#include <qrl/rl/frame_stack.hpp>
#include <qrl/rl/replay_memory.hpp>

#include "test_support.hpp"

using namespace qrl;
using rl::EpsilonSchedule;

TEST_SUITE("rl") {
  TEST_CASE("linear epsilon schedule hits its end points and stays there") {
    const auto s = EpsilonSchedule::linear(1.0, 0.01, 1000);
    CHECK(s.value(0) == 1.0);
    CHECK(s.value(500) == doctest::Approx(0.505));
    CHECK(s.value(1000) == doctest::Approx(0.01));
    CHECK(s.value(100000) == doctest::Approx(0.01));
  }

  TEST_CASE("exponential epsilon schedule is geometric between its end points") {
    const auto s = EpsilonSchedule::exponential(0.1, 0.0001, 3000);
    CHECK(s.value(0) == doctest::Approx(0.1));
    CHECK(s.value(1500) == doctest::Approx(std::sqrt(0.1 * 0.0001)));
    CHECK(s.value(3000) == doctest::Approx(0.0001));
    CHECK(s.value(9000) == doctest::Approx(0.0001));
  }

  TEST_CASE("tutorial and CleanRL presets") {
    const auto tutorial = EpsilonSchedule::tutorial(10000, 3000000);
    CHECK(tutorial.value(0) == doctest::Approx(0.1));
    CHECK(tutorial.value(10000) == doctest::Approx(0.1));  // observing
    CHECK(tutorial.value(3010000) == doctest::Approx(0.0001));
    const auto cleanrl = EpsilonSchedule::cleanrl(10000000, 0.1);
    CHECK(cleanrl.value(0) == 1.0);
    CHECK(cleanrl.value(1000000) == doctest::Approx(0.01));
    CHECK(cleanrl.value(500000) == doctest::Approx(0.505));
  }

  TEST_CASE("epsilon schedule rejects bad values") {
    CHECK_THROWS_AS(EpsilonSchedule::linear(1.5, 0.1, 10), Error);
    CHECK_THROWS_AS(EpsilonSchedule::linear(1.0, 0.1, 0), Error);
    CHECK_THROWS_AS(EpsilonSchedule::exponential(1.0, 0.0, 10), Error);
    CHECK_THROWS_AS(EpsilonSchedule::linear_fraction(1.0, 0.1, 1.5, 100), Error);
  }

  TEST_CASE("FrameStack repeats the first frame and shifts in new ones") {
    rl::FrameStack stack({1, 2, 1}, 3);
    const std::uint8_t a[2] = {1, 2}, b[2] = {3, 4}, c[2] = {5, 6};
    stack.reset({a, {1, 2, 1}});
    CHECK(std::vector<std::uint8_t>(stack.data(), stack.data() + 6) == std::vector<std::uint8_t>{1, 2, 1, 2, 1, 2});
    stack.push({b, {1, 2, 1}});
    stack.push({c, {1, 2, 1}});
    CHECK(std::vector<std::uint8_t>(stack.data(), stack.data() + 6) == std::vector<std::uint8_t>{1, 2, 3, 4, 5, 6});
    CHECK_THROWS_AS(stack.push({a, {2, 1, 1}}), Error);
  }
}

namespace {

// Frames whose first pixel is the episode id and second the step in the
// episode, so a stacked state shows which frames it was built from.
struct TaggedFrames {
  std::uint8_t pixels[2];
  env::FrameView make(int episode, int step) {
    pixels[0] = static_cast<std::uint8_t>(episode);
    pixels[1] = static_cast<std::uint8_t>(step);
    return {pixels, {1, 2, 1}};
  }
};

template <class B>
void fill_episodes(rl::ReplayMemory<B>& memory, const std::vector<int>& lengths) {
  TaggedFrames f;
  for (std::size_t e = 0; e < lengths.size(); ++e) {
    memory.begin_episode(f.make(static_cast<int>(e) + 1, 0));
    for (int t = 1; t <= lengths[e]; ++t) {
      const bool last = t == lengths[e];
      memory.add(t % 3, static_cast<float>(t), last, false, f.make(static_cast<int>(e) + 1, t));
    }
  }
}

// The (episode, step) tags of a stacked state.
std::vector<std::pair<int, int>> tags(const std::vector<std::uint8_t>& state) {
  std::vector<std::pair<int, int>> out;
  for (std::size_t i = 0; i < state.size(); i += 2) out.emplace_back(state[i], state[i + 1]);
  return out;
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("ReplayMemory stacks within episodes and repeats the first frame", B, replay_stacking) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  rl::ReplayMemory<B> memory({100, {1, 2, 1}, 4}, ctx);
  fill_episodes(memory, {5, 3});
  // frames: e1 s0..s5 (6 slots), e2 s0..s3 (4 slots) = 10 frames, 8 transitions.
  CHECK(memory.frames() == 10);
  CHECK(memory.transitions() == 8);
  std::vector<std::uint8_t> state, next;
  int action;
  float reward;
  bool terminated;
  REQUIRE(memory.transition_at(0, state, next, action, reward, terminated));
  CHECK(tags(state) == std::vector<std::pair<int, int>>{{1, 0}, {1, 0}, {1, 0}, {1, 0}});
  CHECK(tags(next) == std::vector<std::pair<int, int>>{{1, 0}, {1, 0}, {1, 0}, {1, 1}});
  CHECK(action == 1);
  CHECK(reward == 1.0f);
  CHECK_FALSE(terminated);
  REQUIRE(memory.transition_at(4, state, next, action, reward, terminated));
  CHECK(tags(state) == std::vector<std::pair<int, int>>{{1, 1}, {1, 2}, {1, 3}, {1, 4}});
  CHECK(tags(next) == std::vector<std::pair<int, int>>{{1, 2}, {1, 3}, {1, 4}, {1, 5}});
  CHECK(terminated);
  // Slot 5 is episode 1's final frame: no transition starts there.
  CHECK_FALSE(memory.transition_at(5, state, next, action, reward, terminated));
  // Episode 2 starts fresh: nothing of episode 1 leaks into its stacks.
  REQUIRE(memory.transition_at(7, state, next, action, reward, terminated));
  CHECK(tags(state) == std::vector<std::pair<int, int>>{{2, 0}, {2, 0}, {2, 0}, {2, 1}});
  CHECK(tags(next) == std::vector<std::pair<int, int>>{{2, 0}, {2, 0}, {2, 1}, {2, 2}});
}

// Acting on the backend reads each env's current state from the replay
// memory; it must be the FrameStack's state, step by step, across episode
// starts, for every ring and after the rings wrap.
TEST_CASE_TEMPLATE_DEFINE("The newest states gathered from the replay memory are the FrameStacks' states", B,
                          replay_newest_states) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  constexpr int rings = 3;
  rl::ReplayMemory<B> memory({rings * 9, {1, 2, 1}, 4, rings}, ctx);  // 9 slots a ring: wraps
  Tensor<B, std::uint8_t> states;
  CHECK_THROWS_WITH_AS(memory.gather_newest_states(ctx, states), doctest::Contains("begin_episode"), Error);
  std::vector<rl::FrameStack> stacks(rings, rl::FrameStack({1, 2, 1}, 4));
  std::vector<TaggedFrames> frames(rings);
  std::vector<int> episode(rings, 1), step(rings, 0);
  for (int s = 0; s < rings; ++s) {
    const auto first = frames[s].make(10 * s + episode[s], 0);
    stacks[s].reset(first);
    memory.begin_episode(first, s);
  }
  int checked = 0, starts = 0, full_stacks = 0;
  for (int t = 0; t < 40; ++t) {
    memory.gather_newest_states(ctx, states);
    REQUIRE(states.shape() == Shape{rings, 4, 1, 2});
    const auto host = to_host(ctx, states);
    for (int s = 0; s < rings; ++s) {
      CAPTURE(t);
      CAPTURE(s);
      const std::vector<std::uint8_t> expected(stacks[s].data(), stacks[s].data() + 8);
      CHECK(std::vector<std::uint8_t>(host.begin() + 8 * s, host.begin() + 8 * (s + 1)) == expected);
      ++checked;
      const auto t4 = tags(expected);
      full_stacks += std::set<std::pair<int, int>>(t4.begin(), t4.end()).size() == 4;
      // Ring s's episodes last 3 + s steps.
      ++step[s];
      const bool last = step[s] == 3 + s;
      const auto next = frames[s].make(10 * s + episode[s], step[s]);
      memory.add(1, 1.0f, last, false, next, s);
      if (last) {
        ++episode[s];
        step[s] = 0;
        const auto first = frames[s].make(10 * s + episode[s], 0);
        stacks[s].reset(first);
        memory.begin_episode(first, s);
        ++starts;
      } else {
        stacks[s].push(next);
      }
    }
  }
  CHECK(checked == 40 * rings);
  CHECK(starts > 20);
  CHECK(full_stacks > 10);              // states of four distinct frames were compared
  CHECK(memory.ring_frames(0) == 9);  // every ring wrapped
}

TEST_CASE_TEMPLATE_DEFINE("ReplayMemory wraps around and never samples a broken stack", B, replay_wrap) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  rl::ReplayMemory<B> memory({16, {1, 2, 1}, 4}, ctx);
  fill_episodes(memory, {7, 9, 4, 6, 11});  // 42 frames through a 16-frame ring
  CHECK(memory.frames() == 16);
  CHECK(memory.transitions() <= 16);
  CHECK(memory.transitions() >= 12);

  Rng rng(3);
  rl::ReplayBatch<B> batch;
  std::map<std::pair<int, int>, int> seen;
  for (int round = 0; round < 200; ++round) {
    memory.sample(ctx, rng, 8, 0.5f, batch);
    const auto states = to_host(ctx, batch.states);
    const auto nexts = to_host(ctx, batch.next_states);
    const auto discounts = to_host(ctx, batch.discounts);
    for (int i = 0; i < 8; ++i) {
      std::vector<std::uint8_t> s(states.begin() + i * 8, states.begin() + (i + 1) * 8);
      std::vector<std::uint8_t> n(nexts.begin() + i * 8, nexts.begin() + (i + 1) * 8);
      const auto ts = tags(s), tn = tags(n);
      // One episode per stack, steps consecutive (or the repeated first frame).
      for (int c = 1; c < 4; ++c) {
        CHECK(ts[c].first == ts[0].first);
        CHECK((ts[c].second == ts[c - 1].second + 1 || (ts[c].second == 0 && ts[c - 1].second == 0)));
      }
      CHECK(tn[3].first == ts[3].first);
      CHECK(tn[3].second == ts[3].second + 1);
      // Only episode 5 (11 steps) and the end of episode 4 fit in the ring.
      CHECK(ts[3].first >= 4);
      // The terminal flag is set exactly on each episode's last transition.
      const int length = std::vector<int>{7, 9, 4, 6, 11}[ts[3].first - 1];
      CHECK(discounts[i] == (tn[3].second == length ? 0.0f : 0.5f));
      ++seen[ts[3]];
    }
  }
  // Every stored transition whose history is intact gets sampled.
  CHECK(seen.size() >= 11);
}

TEST_CASE_TEMPLATE_DEFINE("ReplayMemory sampling is reproducible from the seed", B, replay_seeded) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  rl::ReplayMemory<B> memory({64, {1, 2, 1}, 2}, ctx);
  fill_episodes(memory, {20, 20, 20});
  rl::ReplayBatch<B> a, b;
  Rng r1(99), r2(99), r3(100);
  memory.sample(ctx, r1, 16, 0.99f, a);
  memory.sample(ctx, r2, 16, 0.99f, b);
  CHECK(to_host(ctx, a.states) == to_host(ctx, b.states));
  CHECK(to_host(ctx, a.actions) == to_host(ctx, b.actions));
  memory.sample(ctx, r3, 16, 0.99f, b);
  CHECK(to_host(ctx, a.states) != to_host(ctx, b.states));
}

TEST_CASE_TEMPLATE_DEFINE("ReplayMemory reports its size up front and checks its input", B, replay_size) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  const rl::ReplayConfig million{1000000, {84, 84, 1}, 4};
  const auto bytes = rl::ReplayMemory<B>::bytes_required(million);
  CHECK(bytes > 7'000'000'000ULL);
  CHECK(bytes < 7'100'000'000ULL);  // frames stored once: 84*84 bytes + 8 of metadata each
  rl::ReplayMemory<B> memory({8, {1, 2, 1}, 4}, ctx);
  TaggedFrames f;
  CHECK_THROWS_WITH_AS(memory.add(0, 0.0f, false, false, f.make(1, 1)), doctest::Contains("begin_episode"), Error);
  const std::uint8_t wrong[4] = {};
  CHECK_THROWS_AS(memory.begin_episode({wrong, {2, 2, 1}}), Error);
  CHECK_THROWS_AS(rl::ReplayMemory<B>({8, {2, 2, 3}, 4}, ctx), Error);
  Rng rng(1);
  rl::ReplayBatch<B> batch;
  CHECK_THROWS_WITH_AS(memory.sample(ctx, rng, 4, 0.99f, batch), doctest::Contains("too few"), Error);
}

TEST_CASE_TEMPLATE_DEFINE("ReplayMemory draws the first rows from the demonstrations, the rest from itself", B,
                          replay_demonstrations) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  rl::ReplayMemory<B> memory({64, {1, 2, 1}, 2}, ctx), demonstrations({64, {1, 2, 1}, 2}, ctx);
  fill_episodes(memory, {20, 20});  // episodes 1 and 2
  TaggedFrames f;
  demonstrations.begin_episode(f.make(9, 0));
  for (int t = 1; t <= 30; ++t) demonstrations.add(1, 0.5f, false, t == 30, f.make(9, t));
  rl::ReplayBatch<B> batch;
  Rng rng(3);
  memory.sample_with_demonstrations(ctx, rng, 16, 0.99f, demonstrations, 6, batch);
  const auto states = to_host(ctx, batch.states);
  const auto actions = to_host(ctx, batch.actions);
  const auto rewards = to_host(ctx, batch.rewards);
  REQUIRE(actions.size() == 16);
  for (int i = 0; i < 16; ++i) {
    CAPTURE(i);
    const int episode = states[static_cast<std::size_t>(i) * 4 + 2];  // the newest frame's tag
    if (i < 6) {
      CHECK(episode == 9);
      CHECK(actions[i] == 1);
      CHECK(rewards[i] == 0.5f);
    } else {
      CHECK((episode == 1 || episode == 2));
    }
  }
  // Reproducible from the seed, like sample().
  rl::ReplayBatch<B> again;
  Rng same(3);
  memory.sample_with_demonstrations(ctx, same, 16, 0.99f, demonstrations, 6, again);
  CHECK(to_host(ctx, again.states) == states);

  rl::ReplayMemory<B> other_frames({64, {2, 1, 1}, 2}, ctx);
  CHECK_THROWS_WITH_AS(memory.sample_with_demonstrations(ctx, rng, 16, 0.99f, other_frames, 6, batch),
                       doctest::Contains("must match"), Error);
  CHECK_THROWS_WITH_AS(memory.sample_with_demonstrations(ctx, rng, 16, 0.99f, demonstrations, 17, batch),
                       doctest::Contains("[0, 16]"), Error);
  rl::ReplayMemory<B> empty({64, {1, 2, 1}, 2}, ctx);
  CHECK_THROWS_WITH_AS(memory.sample_with_demonstrations(ctx, rng, 16, 0.99f, empty, 6, batch),
                       doctest::Contains("record more"), Error);
}

TEST_CASE_TEMPLATE_DEFINE("The TD step adds DQfD's large margin on demonstration rows only", B, td_margin) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  constexpr int batch = 3, actions = 3;
  // gamma 0 and terminal rows: each TD target is the reward, set to Q(s, a),
  // so the TD error is zero and only the margin term remains.
  const std::vector<float> q{1.0f, 0.2f, 0.5f,   // demonstrated 2: 0 + margin leads by 1.3
                             0.1f, 2.0f, 0.3f,   // demonstrated 1: already leads by more than the margin
                             0.0f, 5.0f, 5.0f};  // not a demonstration row
  const std::vector<std::int32_t> action{2, 1, 0};
  const std::vector<float> reward{0.5f, 2.0f, 0.0f}, discount{0.0f, 0.0f, 0.0f};
  auto q_t = from_host<B, float>(ctx, q, {batch, actions});
  auto action_t = from_host<B, std::int32_t>(ctx, action, {batch});
  auto reward_t = from_host<B, float>(ctx, reward, {batch});
  auto discount_t = from_host<B, float>(ctx, discount, {batch});
  Tensor<B, float> grad({batch, actions}), stats({2});
  for (const int rows : {0, 2, 3}) {
    CAPTURE(rows);
    TdLossArgs a;
    a.batch = batch;
    a.actions = actions;
    a.q = q_t.data();
    a.q_next_target = q_t.data();
    a.action = action_t.data();
    a.reward = reward_t.data();
    a.discount = discount_t.data();
    a.demonstration_rows = rows;
    a.margin = 0.8f;
    a.margin_weight = 0.5f;
    a.grad_q = grad.data();
    a.loss_out = stats.data();
    a.q_mean_out = stats.data() + 1;
    backend_traits<B>::td_loss(ctx, a);
    const auto g = to_host(ctx, grad);
    const auto st = to_host(ctx, stats);
    // Row 0: max over a of Q + 0.8 [a != 2] is action 0's 1.8; loss 1.8 - 0.5.
    // Row 2 as a demonstration of action 0: actions 1 and 2 tie at 5.8 and
    // the lower one takes the gradient, as max_element picks it.
    const float row0 = rows > 0 ? 1.3f : 0.0f, row2 = rows > 2 ? 5.8f : 0.0f;
    CHECK(st[0] == doctest::Approx(0.5f * (row0 + row2) / batch).epsilon(1e-6));
    CHECK(st[1] == doctest::Approx((0.5f + 2.0f + 0.0f) / batch).epsilon(1e-6));
    const float step0 = rows > 0 ? 0.5f / batch : 0.0f, step2 = rows > 2 ? 0.5f / batch : 0.0f;
    const std::vector<float> expected{step0, 0.0f, -step0, 0.0f, 0.0f, 0.0f, -step2, step2, 0.0f};
    for (std::size_t i = 0; i < g.size(); ++i) CHECK(g[i] == doctest::Approx(expected[i]).epsilon(1e-6));
  }
}

TEST_CASE_TEMPLATE_DEFINE("ReplayMemory rings keep each env's episodes apart", B, replay_rings) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  // 2 rings of 21 and 20 frames; both envs step in turn, with episodes of
  // different lengths so their boundaries never line up.
  rl::ReplayMemory<B> memory({41, {1, 2, 1}, 4, 2}, ctx);
  CHECK(memory.ring_capacity(0) == 21);
  CHECK(memory.ring_capacity(1) == 20);
  CHECK(memory.ring_base(1) == 21);
  const std::vector<std::vector<int>> lengths{{5, 8, 3, 9, 6, 7}, {4, 10, 6, 5, 11, 2}};
  // Episode tags: env 0 uses 1..99, env 1 uses 101..199.
  TaggedFrames frames[2];
  int episode[2] = {0, 0}, t[2] = {0, 0};
  auto begin = [&](int env) { memory.begin_episode(frames[env].make(env * 100 + episode[env] + 1, 0), env); };
  begin(0);
  begin(1);
  std::int64_t added = 0;
  for (int round = 0; round < 38; ++round) {
    for (int env = 0; env < 2; ++env) {
      const int length = lengths[env][episode[env] % lengths[env].size()];
      const bool last = ++t[env] == length;
      memory.add(t[env] % 3, static_cast<float>(env * 100 + t[env]), last, false,
                 frames[env].make(env * 100 + episode[env] + 1, t[env]), env);
      ++added;
      if (last) {
        ++episode[env];
        t[env] = 0;
        begin(env);
      }
    }
  }
  CHECK(added == 76);
  CHECK(memory.frames() == 41);  // both rings wrapped
  CHECK(memory.transitions() == memory.ring_transitions(0) + memory.ring_transitions(1));
  CHECK(memory.ring_transitions(0) >= 15);
  CHECK(memory.ring_transitions(1) >= 14);

  // Every stored transition, ring by ring: one env, one episode,
  // consecutive steps (or the repeated first frame).
  std::vector<std::uint8_t> state, next;
  int action;
  float reward;
  bool terminated;
  for (int env = 0; env < 2; ++env) {
    int found = 0;
    for (std::int64_t k = 0; k < memory.ring_frames(env); ++k) {
      if (!memory.transition_at(env, k, state, next, action, reward, terminated)) continue;
      ++found;
      const auto ts = tags(state), tn = tags(next);
      for (int c = 0; c < 4; ++c) {
        CHECK(ts[c].first / 100 == env);
        CHECK(ts[c].first == ts[3].first);
        CHECK(tn[c].first == ts[3].first);
      }
      for (int c = 1; c < 4; ++c)
        CHECK((ts[c].second == ts[c - 1].second + 1 || (ts[c].second == 0 && ts[c - 1].second == 0)));
      CHECK(tn[3].second == ts[3].second + 1);
      CHECK(reward == static_cast<float>(env * 100 + tn[3].second));
      CHECK(action == tn[3].second % 3);
      const int length = lengths[env][(ts[3].first % 100 - 1) % lengths[env].size()];
      CHECK(terminated == (tn[3].second == length));
    }
    // Only the oldest frames of a wrapped ring can lose their stack.
    CHECK(found >= memory.ring_transitions(env) - 3);
    CHECK(found <= memory.ring_transitions(env));
  }

  // Sampling reaches both rings, roughly in proportion, never mixing them.
  Rng rng(5);
  rl::ReplayBatch<B> batch;
  int per_env[2] = {0, 0};
  for (int round = 0; round < 100; ++round) {
    memory.sample(ctx, rng, 8, 0.99f, batch);
    const auto states = to_host(ctx, batch.states);
    const auto nexts = to_host(ctx, batch.next_states);
    for (int i = 0; i < 8; ++i) {
      const auto ts = tags({states.begin() + i * 8, states.begin() + (i + 1) * 8});
      const auto tn = tags({nexts.begin() + i * 8, nexts.begin() + (i + 1) * 8});
      for (int c = 0; c < 4; ++c) {
        CHECK(ts[c].first == ts[3].first);
        CHECK(tn[c].first == ts[3].first);
      }
      ++per_env[ts[3].first / 100];
    }
  }
  CHECK(per_env[0] > 300);
  CHECK(per_env[1] > 300);

  // Positions are per ring and checked against the ring's own capacity.
  const auto p1 = memory.position(1);
  CHECK(p1.count == 20);
  CHECK_THROWS_AS(memory.set_position({0, 21, 0, false}, 1), Error);
  memory.set_position(p1, 1);
  CHECK(memory.frames() == 41);
  CHECK_THROWS_WITH_AS(memory.add(0, 0.0f, false, false, frames[0].make(1, 1), 2), doctest::Contains("replay ring 2"), Error);
  CHECK_THROWS_WITH_AS(rl::ReplayMemory<B>({11, {1, 2, 1}, 4, 2}, ctx), doctest::Contains("rings"), Error);
}

TEST_CASE_TEMPLATE_DEFINE("n-step windows by hand: across a terminal, a truncation and an open episode", B, n_step) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  rl::ReplayConfig config{64, {1, 2, 1}, 2};
  config.n_step = 3;
  rl::ReplayMemory<B> memory(config, ctx);
  TaggedFrames f;
  // Episode 1: rewards 1, 2, 4, 8, terminated at its 4th step.
  memory.begin_episode(f.make(1, 0));
  for (int t = 1; t <= 4; ++t) memory.add(0, float(1 << (t - 1)), t == 4, false, f.make(1, t));
  // Episode 2: rewards 1, 1, truncated at its 2nd step (a time limit).
  memory.begin_episode(f.make(2, 0));
  for (int t = 1; t <= 2; ++t) memory.add(1, 1.0f, false, t == 2, f.make(2, t));
  // Episode 3, still being played: rewards 3, 5, 7.
  memory.begin_episode(f.make(3, 0));
  for (int t = 1; t <= 3; ++t) memory.add(0, float(2 * t + 1), false, false, f.make(3, t));

  const float g = 0.5f;
  typename rl::ReplayMemory<B>::Window w;
  auto newest_tag = [&](const std::vector<std::uint8_t>& state) { return std::pair<int, int>{state[2], state[3]}; };
  // Episode 1, from step 0: 1 + 0.5*2 + 0.25*4 = 3, bootstrap from step 3 with 0.5^3.
  REQUIRE(memory.window_at(0, 0, g, w));
  CHECK(w.reward == 3.0f);
  CHECK(w.discount == 0.125f);
  CHECK(w.steps == 3);
  CHECK(newest_tag(w.next_state) == std::pair<int, int>{1, 3});
  // From step 1: 2 + 0.5*4 + 0.25*8 = 6, and the window ends in the terminal: no bootstrap.
  REQUIRE(memory.window_at(0, 1, g, w));
  CHECK(w.reward == 6.0f);
  CHECK(w.discount == 0.0f);
  // From step 3: the terminal step alone, 8.
  REQUIRE(memory.window_at(0, 3, g, w));
  CHECK(w.reward == 8.0f);
  CHECK(w.discount == 0.0f);
  CHECK(w.steps == 1);
  // The terminal's own frame holds no transition.
  CHECK_FALSE(memory.window_at(0, 4, g, w));
  // Episode 2 (frames 5..7): cut after 2 steps, so 1 + 0.5 bootstraps from its last frame with 0.5^2.
  REQUIRE(memory.window_at(0, 5, g, w));
  CHECK(w.reward == 1.5f);
  CHECK(w.discount == 0.25f);
  CHECK(w.steps == 2);
  CHECK(newest_tag(w.next_state) == std::pair<int, int>{2, 2});
  REQUIRE(memory.window_at(0, 6, g, w));
  CHECK(w.reward == 1.0f);
  CHECK(w.discount == 0.5f);
  // Episode 3 (frames 8..11): only the first window is complete (3 + 2.5 + 1.75).
  REQUIRE(memory.window_at(0, 8, g, w));
  CHECK(w.reward == 7.25f);
  CHECK(w.discount == 0.125f);
  CHECK_FALSE(memory.window_at(0, 9, g, w));
  CHECK_FALSE(memory.window_at(0, 10, g, w));
  // A sampled batch holds only complete windows, with the same values.
  Rng rng(4);
  rl::ReplayBatch<B> batch;
  std::set<float> rewards;
  for (int round = 0; round < 50; ++round) {
    memory.sample(ctx, rng, 4, g, batch);
    for (float r : to_host(ctx, batch.rewards)) rewards.insert(r);
  }
  CHECK(rewards == std::set<float>{3.0f, 6.0f, 8.0f, 1.5f, 1.0f, 7.25f});
  // The ring must hold a whole window.
  rl::ReplayConfig tiny{8, {1, 2, 1}, 2};
  tiny.n_step = 6;
  CHECK_THROWS_WITH_AS(rl::ReplayMemory<B>(tiny, ctx), doctest::Contains("too small"), Error);
}

TEST_CASE_TEMPLATE_DEFINE("prioritized replay: complete windows enter at max priority, TD errors steer the draws",
                          B, replay_prioritized) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  rl::ReplayConfig config{16, {1, 2, 1}, 2};
  config.n_step = 2;
  config.prioritized = rl::PrioritizedConfig{};
  rl::ReplayMemory<B> memory(config, ctx);
  auto& sampler = memory.prioritized_sampler();
  TaggedFrames f;
  memory.begin_episode(f.make(1, 0));
  memory.add(0, 1.0f, false, false, f.make(1, 1));
  CHECK(sampler.size() == 0);  // slot 0's 2-step window is not complete yet
  memory.add(1, 1.0f, false, false, f.make(1, 2));
  CHECK(sampler.size() == 1);
  CHECK(sampler.stored(0) > 0.0);
  memory.add(0, 1.0f, true, false, f.make(1, 3));  // the end completes every window
  CHECK(sampler.size() == 3);
  memory.begin_episode(f.make(2, 0));
  for (int t = 1; t <= 6; ++t) memory.add(t % 2, 0.0f, false, false, f.make(2, t));
  CHECK(sampler.size() == 3 + 5);

  Rng rng(9);
  rl::ReplayBatch<B> batch;
  memory.sample_prioritized(ctx, rng, 4, 0.9f, 0.4, batch);
  REQUIRE(batch.slots.size() == 4);
  const auto weights = to_host(ctx, batch.weights);
  for (float w : weights) CHECK(w == 1.0f);  // all at the same (max) priority
  // One transition with a large TD error is drawn far more often than its share.
  const std::int64_t favourite = 5;  // episode 2, step 1
  std::vector<std::int64_t> slots{favourite};
  std::vector<float> errors{50.0f};
  memory.update_priorities(slots, errors);
  int drawn = 0, rows = 0;
  for (int round = 0; round < 200; ++round) {
    memory.sample_prioritized(ctx, rng, 4, 0.9f, 1.0, batch);
    const auto w = to_host(ctx, batch.weights);
    for (int i = 0; i < 4; ++i, ++rows) {
      if (batch.slots[i] == favourite) {
        ++drawn;
        CHECK(w[i] < 0.5f);  // its weight corrects for the over-sampling
      }
    }
  }
  // p = 50 against 1 for 7 others, alpha 0.5: P = sqrt(50) / (sqrt(50) + 7) = 0.50.
  CHECK(double(drawn) / rows == doctest::Approx(0.5).epsilon(0.1));
  // Overwritten slots leave the sampler: 40 more frames through a 16-frame ring.
  for (int t = 7; t <= 46; ++t) memory.add(0, 0.0f, false, false, f.make(2, t));
  CHECK(sampler.size() <= 16);
  for (int round = 0; round < 50; ++round) {
    memory.sample_prioritized(ctx, rng, 4, 0.9f, 1.0, batch);
    const auto states = to_host(ctx, batch.states);
    for (int i = 0; i < 4; ++i) CHECK(states[i * 4 + 2] == 2);  // episode 1 is gone
  }
  // TD errors must be finite: a NaN would poison the tree.
  errors = {std::nanf("")};
  slots = {batch.slots[0]};
  CHECK_THROWS_AS(memory.update_priorities(slots, errors), Error);
}

TEST_CASE_TEMPLATE_DEFINE("prioritized replay: slots whose stack lost its history to the overwrite leave the sampler",
                          B, replay_prioritized_edge) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  rl::ReplayConfig config{12, {1, 2, 1}, 4};
  config.prioritized = rl::PrioritizedConfig{};
  rl::ReplayMemory<B> memory(config, ctx);
  auto& sampler = memory.prioritized_sampler();
  TaggedFrames f;
  memory.begin_episode(f.make(1, 0));
  for (int t = 1; t <= 11; ++t) memory.add(0, 0.0f, false, false, f.make(1, t));  // full: slots 0..11
  CHECK(sampler.size() == 11);
  // Slot 1's state needs slot 0; give it most of the probability, then
  // overwrite slot 0.
  const std::vector<std::int64_t> favourite{1};
  const std::vector<float> error{1e6f};
  memory.update_priorities(favourite, error);
  memory.add(0, 0.0f, false, false, f.make(1, 12));
  // Ages 0, 1, 2 now hold slots 1, 2, 3, each one frame short of its stack;
  // slot 4 (age 3) still has its three earlier frames.
  CHECK(sampler.stored(1) == 0.0);
  CHECK(sampler.stored(2) == 0.0);
  CHECK(sampler.stored(3) == 0.0);
  CHECK(sampler.stored(4) > 0.0);
  CHECK_FALSE(memory.sampleable(1));
  CHECK(memory.sampleable(4));
  Rng rng(4);
  rl::ReplayBatch<B> batch;
  for (int round = 0; round < 20; ++round) {
    memory.sample_prioritized(ctx, rng, 4, 0.9f, 0.4, batch);
    const auto states = to_host(ctx, batch.states);
    for (int i = 0; i < 4; ++i) CHECK(states[i * 8 + 1] >= 1);  // oldest channel: step 1 or later, never lost
  }
  // Rewards must stay finite through n-step sums, TD errors and priorities.
  CHECK_THROWS_WITH_AS(memory.add(0, std::nanf(""), false, false, f.make(1, 13)), doctest::Contains("scale its rewards"),
                       Error);
  CHECK_THROWS_AS(memory.add(0, 2e9f, false, false, f.make(1, 13)), Error);
  memory.add(0, -1e9f, false, false, f.make(1, 13));
}

TEST_CASE_TEMPLATE_DEFINE("The TD step with per-row discounts and importance weights, by hand", B, td_discounts) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  constexpr int batch = 2, actions = 2;
  // Row 0: Q(s,0) = 1, target 0.5 + 0.25 * max(2, 4) = 1.5, d = -0.5, weight 0.5.
  // Row 1: Q(s,1) = 3, target 1 + 0 * 4 = 1 (a terminal window), d = 2, weight 1: Huber's linear part.
  auto q = from_host<B, float>(ctx, std::vector<float>{1, 9, 7, 3}, {batch, actions});
  auto next = from_host<B, float>(ctx, std::vector<float>{2, 4, 4, 0}, {batch, actions});
  auto action = from_host<B, std::int32_t>(ctx, std::vector<std::int32_t>{0, 1}, {batch});
  auto reward = from_host<B, float>(ctx, std::vector<float>{0.5f, 1.0f}, {batch});
  auto discount = from_host<B, float>(ctx, std::vector<float>{0.25f, 0.0f}, {batch});
  auto weight = from_host<B, float>(ctx, std::vector<float>{0.5f, 1.0f}, {batch});
  Tensor<B, float> grad({batch, actions}), stats({2}), td({batch});
  TdLossArgs a;
  a.batch = batch;
  a.actions = actions;
  a.q = q.data();
  a.q_next_target = next.data();
  a.action = action.data();
  a.reward = reward.data();
  a.discount = discount.data();
  a.weights = weight.data();
  a.grad_q = grad.data();
  a.loss_out = stats.data();
  a.q_mean_out = stats.data() + 1;
  a.td_error_out = td.data();
  backend_traits<B>::td_loss(ctx, a);
  const auto g = to_host(ctx, grad), st = to_host(ctx, stats), e = to_host(ctx, td);
  // Huber: 0.5 * 0.25 = 0.125 weighted 0.5; 2 - 0.5 = 1.5 weighted 1; mean over 2.
  CHECK(st[0] == doctest::Approx((0.0625f + 1.5f) / 2));
  CHECK(st[1] == doctest::Approx(2.0f));
  CHECK(g == std::vector<float>{-0.5f * 0.5f / 2, 0.0f, 0.0f, 1.0f / 2});
  CHECK(e == std::vector<float>{0.5f, 2.0f});
}

TEST_CASE("C51's projection on a 3-atom support, by hand") {
  const CategoricalSupport s{3, -1.0f, 1.0f};  // z = -1, 0, 1
  const float p[3] = {0.2f, 0.5f, 0.3f};
  auto project = [&](float reward, float discount) {
    std::vector<float> m(3, 0.0f);
    kernels::categorical_projection(s, p, reward, discount, m.data());
    return m;
  };
  // r + 0.5 z = 0, 0.5, 1: the middle atom's mass splits evenly between 0 and 1.
  auto m = project(0.5f, 0.5f);
  CHECK(m[0] == doctest::Approx(0.0f));
  CHECK(m[1] == doctest::Approx(0.2f + 0.25f));
  CHECK(m[2] == doctest::Approx(0.25f + 0.3f));
  // Beyond v_max everything lands on the last atom.
  m = project(2.0f, 1.0f);
  CHECK(m == std::vector<float>{0.0f, 0.0f, 1.0f});
  // A terminal window (discount 0): all mass at r = -0.3, split 0.3 / 0.7 between z = -1 and 0.
  m = project(-0.3f, 0.0f);
  CHECK(m[0] == doctest::Approx(0.3f));
  CHECK(m[1] == doctest::Approx(0.7f));
  CHECK(m[2] == doctest::Approx(0.0f));
  // Mass is conserved.
  m = project(0.37f, 0.9f);
  CHECK(m[0] + m[1] + m[2] == doctest::Approx(1.0f));
}

TEST_CASE_TEMPLATE_DEFINE("The categorical TD step by hand: next action, projection, cross-entropy, gradient", B,
                          td_categorical) {
  if (!test::backend_available<B>()) return;
  Context<B> ctx;
  constexpr int batch = 2, actions = 2, atoms = 3;
  const CategoricalSupport support{atoms, -1.0f, 1.0f};
  auto log3 = [](float a, float b, float c) { return std::vector<float>{std::log(a), std::log(b), std::log(c)}; };
  std::vector<float> logits, next_logits;
  for (auto v : {log3(0.2f, 0.3f, 0.5f), log3(0.6f, 0.2f, 0.2f), log3(0.1f, 0.1f, 0.8f), log3(0.3f, 0.4f, 0.3f)})
    logits.insert(logits.end(), v.begin(), v.end());
  // Row 0's next state: action 1 has the higher mean (0.1 vs -0.4); row 1's: action 0 (0.0 vs -0.2).
  for (auto v : {log3(0.5f, 0.4f, 0.1f), log3(0.2f, 0.5f, 0.3f), log3(0.25f, 0.5f, 0.25f), log3(0.4f, 0.4f, 0.2f)})
    next_logits.insert(next_logits.end(), v.begin(), v.end());
  auto lg = from_host<B, float>(ctx, logits, {batch, actions * atoms});
  auto nlg = from_host<B, float>(ctx, next_logits, {batch, actions * atoms});
  Tensor<B, float> q_select({batch, actions});
  backend_traits<B>::categorical_q(ctx, nlg.data(), batch, actions, support, q_select.data());
  const auto qs = to_host(ctx, q_select);
  CHECK(qs[0] == doctest::Approx(-0.4f));
  CHECK(qs[1] == doctest::Approx(0.1f));
  CHECK(qs[2] == doctest::Approx(0.0f));
  CHECK(qs[3] == doctest::Approx(-0.2f));

  auto action = from_host<B, std::int32_t>(ctx, std::vector<std::int32_t>{0, 1}, {batch});
  auto reward = from_host<B, float>(ctx, std::vector<float>{0.5f, -0.3f}, {batch});
  auto discount = from_host<B, float>(ctx, std::vector<float>{0.5f, 0.0f}, {batch});
  Tensor<B, float> grad({batch, actions * atoms}), stats({2}), td({batch});
  CategoricalTdArgs a;
  a.batch = batch;
  a.actions = actions;
  a.support = support;
  a.logits = lg.data();
  a.next_logits = nlg.data();
  a.q_select = q_select.data();
  a.action = action.data();
  a.reward = reward.data();
  a.discount = discount.data();
  a.grad_logits = grad.data();
  a.td_error_out = td.data();
  a.loss_out = stats.data();
  a.q_mean_out = stats.data() + 1;
  backend_traits<B>::categorical_td_loss(ctx, a);
  // Row 0: a* = 1, p' = (0.2, 0.5, 0.3), r 0.5, discount 0.5: m = (0, 0.45, 0.55) (as above);
  // online p at action 0 = (0.2, 0.3, 0.5). Row 1: terminal, m = (0.3, 0.7, 0); p at action 1 = (0.3, 0.4, 0.3).
  const float ce0 = -(0.45f * std::log(0.3f) + 0.55f * std::log(0.5f));
  const float ce1 = -(0.3f * std::log(0.3f) + 0.7f * std::log(0.4f));
  const auto e = to_host(ctx, td), st = to_host(ctx, stats), g = to_host(ctx, grad);
  CHECK(e[0] == doctest::Approx(ce0).epsilon(1e-5));
  CHECK(e[1] == doctest::Approx(ce1).epsilon(1e-5));
  CHECK(st[0] == doctest::Approx((ce0 + ce1) / 2).epsilon(1e-5));
  CHECK(st[1] == doctest::Approx((0.3f + 0.0f) / 2).epsilon(1e-5));  // means: 0.3 and 0.0
  const std::vector<float> expected{(0.2f - 0.0f) / 2, (0.3f - 0.45f) / 2, (0.5f - 0.55f) / 2, 0, 0, 0,
                                    0, 0, 0, (0.3f - 0.3f) / 2, (0.4f - 0.7f) / 2, (0.3f - 0.0f) / 2};
  REQUIRE(g.size() == expected.size());
  for (std::size_t i = 0; i < g.size(); ++i) CHECK(g[i] == doctest::Approx(expected[i]).epsilon(1e-5));
}

QRL_TEST_ON_EVERY_BACKEND(replay_stacking);
QRL_TEST_ON_EVERY_BACKEND(replay_newest_states);
QRL_TEST_ON_EVERY_BACKEND(replay_demonstrations);
QRL_TEST_ON_EVERY_BACKEND(td_margin);
QRL_TEST_ON_EVERY_BACKEND(replay_rings);
QRL_TEST_ON_EVERY_BACKEND(replay_wrap);
QRL_TEST_ON_EVERY_BACKEND(replay_seeded);
QRL_TEST_ON_EVERY_BACKEND(replay_size);
QRL_TEST_ON_EVERY_BACKEND(n_step);
QRL_TEST_ON_EVERY_BACKEND(replay_prioritized);
QRL_TEST_ON_EVERY_BACKEND(replay_prioritized_edge);
QRL_TEST_ON_EVERY_BACKEND(td_discounts);
QRL_TEST_ON_EVERY_BACKEND(td_categorical);
