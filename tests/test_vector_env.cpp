#include <doctest/doctest.h>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/env/vector_env.hpp>

#include <cstdint>
#include <string>
#include <vector>

using qrl::env::FrameShape;
using qrl::env::FrameView;
using qrl::env::StepResult;
using qrl::env::VectorEnv;

namespace {

// A 1x1 frame that names its episode and step: pixel = 16 * episode + step
// within the episode. Episodes end (terminated) after 2 + seed % 3 steps, so
// envs with different seeds reset at different times.
class CountingEnv {
 public:
  explicit CountingEnv(int id) : id_(id) {}
  FrameView reset(std::uint64_t seed) {
    ++episode_;
    length_ = 2 + static_cast<int>(seed % 3);
    step_ = 0;
    pixel_ = static_cast<std::uint8_t>(16 * episode_);
    return {&pixel_, {1, 1, 1}};
  }
  StepResult step(int action) {
    if (action == 2) throw qrl::Error("CountingEnv " + std::to_string(id_) + ": action 2 is forbidden");
    ++step_;
    pixel_ = static_cast<std::uint8_t>(16 * episode_ + step_);
    StepResult r;
    r.observation = {&pixel_, {1, 1, 1}};
    r.reward = action;
    r.terminated = step_ == length_;
    r.info.episode_frame = step_;
    return r;
  }
  int action_count() const { return 3; }
  FrameShape observation_shape() const { return {1, 1, 1}; }

 private:
  int id_;
  int episode_ = 0, length_ = 0, step_ = 0;
  std::uint8_t pixel_ = 0;
};

struct Trace {
  std::vector<int> before, after, next;  // pixels: state acted on, result frame, next state
  std::vector<bool> resets;
};

Trace run(int envs, int threads, int steps) {
  VectorEnv<CountingEnv> vec(envs, [](int i) { return CountingEnv(i); }, threads);
  vec.reset(42);
  Trace trace;
  const std::vector<int> actions(envs, 1);
  for (int s = 0; s < steps; ++s) {
    std::vector<int> before;
    for (int i = 0; i < envs; ++i) before.push_back(vec.observation(i).pixels[0]);
    const auto results = vec.step(actions);
    for (int i = 0; i < envs; ++i) {
      trace.before.push_back(before[i]);
      trace.after.push_back(results[i].result.observation.pixels[0]);
      trace.next.push_back(vec.observation(i).pixels[0]);
      trace.resets.push_back(results[i].autoreset);
    }
  }
  return trace;
}

}  // namespace

TEST_CASE("VectorEnv autoreset keeps every transition inside one episode") {
  const int envs = 3, steps = 20;
  const Trace t = run(envs, 3, steps);
  int resets = 0;
  for (std::size_t k = 0; k < t.before.size(); ++k) {
    // The result frame is the next step of the episode acted in.
    CHECK(t.after[k] / 16 == t.before[k] / 16);
    CHECK(t.after[k] % 16 == t.before[k] % 16 + 1);
    if (t.resets[k]) {
      ++resets;
      // The next state is the first frame (step 0) of the following episode.
      CHECK(t.next[k] / 16 == t.after[k] / 16 + 1);
      CHECK(t.next[k] % 16 == 0);
    } else {
      CHECK(t.next[k] == t.after[k]);
    }
  }
  // Episodes of 2..4 steps over 20 steps: at least 5 resets per env.
  CHECK(resets >= 5 * envs);
}

TEST_CASE("VectorEnv gives the same results on 1 2 and 3 threads") {
  const Trace one = run(3, 1, 25);
  const Trace two = run(3, 2, 25);
  const Trace three = run(3, 3, 25);
  CHECK(one.after == two.after);
  CHECK(one.after == three.after);
  CHECK(one.next == three.next);
  CHECK(one.resets == three.resets);
}

TEST_CASE("VectorEnv reports bad input and an env's error and stays usable") {
  VectorEnv<CountingEnv> vec(2, [](int i) { return CountingEnv(i); }, 2);
  const std::vector<int> ok{1, 1};
  CHECK_THROWS_WITH_AS(vec.step(ok), doctest::Contains("call reset(seed) first"), qrl::Error);
  vec.reset(1);
  CHECK_THROWS_WITH_AS(vec.step(std::vector<int>{1}), doctest::Contains("got 1 actions for 2 envs"), qrl::Error);
  CHECK_THROWS_WITH_AS(vec.step(std::vector<int>{1, 3}), doctest::Contains("action 3 for env 1"), qrl::Error);
  CHECK_THROWS_WITH_AS(vec.step(std::vector<int>{1, 2}), doctest::Contains("CountingEnv 1: action 2 is forbidden"),
                       qrl::Error);
  const auto results = vec.step(ok);
  CHECK(results.size() == 2);
  CHECK(results[0].result.reward == 1.0);
  CHECK_THROWS_WITH_AS(VectorEnv<CountingEnv>(0, [](int i) { return CountingEnv(i); }),
                       doctest::Contains("at least one env"), qrl::Error);
}
