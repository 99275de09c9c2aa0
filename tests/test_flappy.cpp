#include <doctest/doctest.h>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/env/preprocess.hpp>
#include <qrl/envs/flappy_bird.hpp>
#include <qrl/envs/flappy_bird_state.hpp>  // save_state/load_state
#include <qrl/envs/flappy_planner.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

using qrl::envs::FlappyBird;
using qrl::envs::FlappyBirdConfig;
using qrl::envs::ObservationMode;

namespace {

std::vector<std::uint8_t> bytes_of(qrl::env::FrameView view) { return {view.bytes().begin(), view.bytes().end()}; }

// Flaps when the bird sinks towards the lower pipe of the next pipe pair not
// yet fully behind it. A flap lifts the bird by at most 9+8+...+1 = 45 px, so
// flapping 60 px under the gap top cannot reach the upper pipe.
int scripted_action(const FlappyBird& env) {
  int gap_top = FlappyBird::kBaseY / 2;
  for (const auto& pipe : env.pipes()) {
    if (pipe.x + FlappyBird::kPipeWidth > FlappyBird::kBirdX) {
      gap_top = pipe.gap_top;
      break;
    }
  }
  return env.bird_y() > gap_top + 60 ? 1 : 0;
}

std::array<std::uint8_t, 3> pixel(qrl::env::FrameView frame, int y, int x) {
  const std::uint8_t* p = frame.pixels + (static_cast<std::size_t>(y) * frame.shape.width + x) * 3;
  return {p[0], p[1], p[2]};
}

std::array<std::uint8_t, 3> rgb(qrl::envs::Rgb8 c) { return {c.r, c.g, c.b}; }

}  // namespace

TEST_SUITE("flappy") {
  TEST_CASE("flappy: contract - shapes and action count and config checks") {
    FlappyBird env;
    CHECK(env.action_count() == 2);
    CHECK(env.observation_shape() == qrl::env::FrameShape{80, 80, 1});
    const auto first = env.reset(0);
    CHECK(first.shape == env.observation_shape());
    CHECK(first.pixels != nullptr);
    FlappyBirdConfig config;
    config.observation_height = config.observation_width = 84;
    CHECK(FlappyBird(config).observation_shape() == qrl::env::FrameShape{84, 84, 1});
    config.observation_height = 405;  // taller than the 404-row playfield
    CHECK_THROWS_AS(FlappyBird{config}, qrl::Error);
    config.observation_height = 0;
    CHECK_THROWS_AS(FlappyBird{config}, qrl::Error);
  }

  TEST_CASE("flappy: same seed and actions give identical episodes and other seeds differ") {
    FlappyBird a, b, c;
    a.reset(123);
    b.reset(123);
    c.reset(124);
    qrl::Rng policy(9);
    std::uint64_t episode = 0;
    bool differs_from_c = false;
    int terminals = 0;
    for (int t = 0; t < 600; ++t) {
      const int action = policy.uniform() < 0.15 ? 1 : 0;
      const auto ra = a.step(action);
      const auto rb = b.step(action);
      const auto rc = c.step(action);
      REQUIRE(bytes_of(ra.observation) == bytes_of(rb.observation));
      REQUIRE(ra.reward == rb.reward);
      REQUIRE(ra.terminated == rb.terminated);
      REQUIRE(ra.info.episode_frame == rb.info.episode_frame);
      differs_from_c = differs_from_c || bytes_of(ra.observation) != bytes_of(rc.observation);
      if (ra.terminated || rc.terminated) {
        terminals += ra.terminated;
        ++episode;
        a.reset(123 + 1000 * episode);
        b.reset(123 + 1000 * episode);
        c.reset(124 + 1000 * episode);
      }
    }
    CHECK(terminals >= 3);  // several episodes, so resets are covered too
    CHECK(differs_from_c);

    // Gaps differ between seeds and repeat with the same seed.
    FlappyBird d;
    d.reset(5);
    const std::vector<int> gaps5{d.pipes()[0].gap_top, d.pipes()[1].gap_top};
    d.reset(6);
    const std::vector<int> gaps6{d.pipes()[0].gap_top, d.pipes()[1].gap_top};
    d.reset(5);
    CHECK(std::vector<int>{d.pipes()[0].gap_top, d.pipes()[1].gap_top} == gaps5);
    CHECK(gaps5 != gaps6);
  }

  TEST_CASE("flappy: free fall crashes on the ground at frame 31") {
    // Start: y = 244, velocity -9 (mainGame's start). Gravity makes the
    // velocities of frames 1..19 equal -8..10, summing to -36 + 55 = 19, so
    // y = 263 after 19 frames (208 after 9, at the apex). Then +10 a frame:
    // 373 after frame 30 (bottom 397, clear of 403). Frame 31 moves
    // min(10, 404 - 373 - 24) = 7 to y = 380; 380 + 24 >= 403 is a crash.
    FlappyBird env;
    env.reset(77);
    CHECK(env.bird_y() == 244);
    for (int frame = 1; frame <= 30; ++frame) {
      const auto result = env.step(0);
      REQUIRE_FALSE(result.terminated);
      REQUIRE_FALSE(result.truncated);
      CHECK(result.reward == doctest::Approx(0.1));
      CHECK(result.info.episode_frame == frame);
      if (frame == 9) CHECK(env.bird_y() == 208);
      if (frame == 19) CHECK(env.bird_y() == 263);
    }
    CHECK(env.bird_y() == 373);
    CHECK(env.bird_velocity() == 10);
    const auto crash = env.step(0);
    CHECK(crash.terminated);
    CHECK_FALSE(crash.truncated);
    CHECK(crash.reward == doctest::Approx(-1.0));
    CHECK(env.bird_y() == 380);
    CHECK(crash.info.score == 0);
  }

  TEST_CASE("flappy: crash() says what ended the episode, in pixels") {
    using qrl::envs::FlappyCrash;
    FlappyBird env;
    // Free fall: the ground (see the frame-31 test above); nothing before it.
    env.reset(77);
    for (int frame = 1; frame <= 30; ++frame) {
      env.step(0);
      REQUIRE_FALSE(env.crash().has_value());
    }
    REQUIRE(env.step(0).terminated);
    REQUIRE(env.crash().has_value());
    CHECK(env.crash()->obstacle == FlappyCrash::Obstacle::Ground);
    CHECK(qrl::envs::describe(*env.crash()) == "hit the ground");
    env.reset(77);
    CHECK_FALSE(env.crash().has_value());

    // The first pipe starts at x = 488 and moves 4 px a frame, so it first
    // shares columns with the bird (57..90) on frame 100, at x = 88: the
    // pipes must move 88 + 52 - 57 = 83 px more for the bird to clear it.
    // Flapping every frame pins the bird near the ceiling, far above any gap.
    auto frames_until_crash = [&env](auto policy) {
      int frames = 1;
      while (!env.step(policy()).terminated) ++frames;
      return frames;
    };
    env.reset(5);
    CHECK(frames_until_crash([] { return 1; }) == 100);
    REQUIRE(env.crash().has_value());
    CHECK(env.crash()->obstacle == FlappyCrash::Obstacle::UpperPipe);
    CHECK(env.crash()->clear_in_px == 83);
    CHECK(env.crash()->gap_top == env.pipes()[0].gap_top);
    CHECK(env.crash()->overlap_px == env.pipes()[0].gap_top - env.bird_y());
    CHECK(env.crash()->overlap_px > 100);
    CHECK(qrl::envs::describe(*env.crash()) ==
          "hit the upper pipe " + std::to_string(env.crash()->overlap_px) + " px too high, 83 px before clearing it");

    // Flapping whenever y > 360 keeps the bird at y 316..370 (a flap lifts it
    // 45 px), its bottom at 340 or lower: under every gap's bottom (at most
    // 80 + 141 + 100 = 321) and above the ground (403).
    env.reset(6);
    CHECK(frames_until_crash([&env] { return env.bird_y() > 360 ? 1 : 0; }) == 100);
    REQUIRE(env.crash().has_value());
    CHECK(env.crash()->obstacle == FlappyCrash::Obstacle::LowerPipe);
    CHECK(env.crash()->clear_in_px == 83);
    CHECK(env.crash()->overlap_px ==
          env.bird_y() + FlappyBird::kBirdHeight - (env.pipes()[0].gap_top + FlappyBird::kPipeGap));
    CHECK(env.crash()->overlap_px >= 19);
    CHECK(qrl::envs::describe(*env.crash()).starts_with("hit the lower pipe "));

    // A truncated episode did not crash.
    FlappyBirdConfig capped;
    capped.max_steps = 5;
    FlappyBird short_env(capped);
    short_env.reset(1);
    qrl::env::StepResult r;
    for (int i = 0; i < 5; ++i) r = short_env.step(0);
    CHECK(r.truncated);
    CHECK_FALSE(short_env.crash().has_value());
  }

  TEST_CASE("flappy: a flap sets velocity -9 and is ignored above the ceiling") {
    FlappyBird env;
    env.reset(3);
    env.step(1);
    CHECK(env.bird_velocity() == -9);
    CHECK(env.bird_y() == 244 - 9);
    env.step(0);
    CHECK(env.bird_velocity() == -8);
    CHECK(env.bird_y() == 235 - 8);
    for (int i = 0; i < 25; ++i) env.step(0);
    CHECK(env.bird_velocity() > 0);
    env.step(1);
    CHECK(env.bird_velocity() == -9);

    // Flapping every frame from y = 244 rises 9 a frame: after 33 flaps
    // y = 244 - 297 = -53 <= -48 = -2 * bird height, so flap 34 is ignored
    // and gravity gives -8.
    env.reset(3);
    for (int i = 0; i < 33; ++i) REQUIRE_FALSE(env.step(1).terminated);
    CHECK(env.bird_y() == -53);
    CHECK(env.bird_velocity() == -9);
    env.step(1);
    CHECK(env.bird_velocity() == -8);
    CHECK(env.bird_y() == -61);
  }

  TEST_CASE("flappy: pipes follow mainGame - start and spawn at 298 and removal and gap range") {
    FlappyBird env;
    env.reset(11);
    REQUIRE(env.pipes().size() == 2);
    CHECK(env.pipes()[0].x == 288 + 200);
    CHECK(env.pipes()[1].x == 288 + 200 + 144);
    int spawns = 0, removals = 0, min_gap = 1000, max_gap = -1;
    for (int t = 0; t < 3000; ++t) {
      const auto before = std::vector<qrl::envs::FlappyPipe>(env.pipes().begin(), env.pipes().end());
      const auto result = env.step(scripted_action(env));
      const auto after = env.pipes();
      REQUIRE(after.size() <= 3);
      for (const auto& pipe : after) {
        min_gap = std::min(min_gap, pipe.gap_top);
        max_gap = std::max(max_gap, pipe.gap_top);
      }
      if (after.size() > before.size()) {
        ++spawns;
        CHECK(after.back().x == 298);
        CHECK(after.front().x > 0);
        CHECK(after.front().x < 5);
      } else if (after.size() < before.size()) {
        ++removals;
        CHECK(before.front().x - 4 < -52);
        CHECK(before.front().x - 4 >= -56);
      } else {
        for (std::size_t i = 0; i < after.size(); ++i) CHECK(after[i].x == before[i].x - 4);
      }
      if (result.terminated) env.reset(11 + t);
    }
    CHECK(spawns >= 10);
    CHECK(removals >= 10);
    CHECK(min_gap >= 80);   // int(404 * 0.2)
    CHECK(max_gap < 222);   // + randrange(int(404 * 0.6 - 100)) = 142
    CHECK(max_gap - min_gap > 100);
  }

  TEST_CASE("flappy: scripted controller passes pipes and rewards follow the tutorial") {
    FlappyBird env;
    env.reset(2024);
    int score = 0;
    int passes = 0;
    bool terminated = false;
    for (int t = 1; t <= 2000 && !terminated; ++t) {
      const auto result = env.step(scripted_action(env));
      CHECK(result.info.episode_frame == t);
      terminated = result.terminated;
      if (terminated) {
        CHECK(result.reward == doctest::Approx(-1.0));
      } else if (result.info.score == score + 1) {
        CHECK(result.reward == doctest::Approx(1.0));
        ++passes;
      } else {
        CHECK(result.info.score == score);
        CHECK(result.reward == doctest::Approx(0.1));
      }
      score = static_cast<int>(result.info.score);
    }
    CHECK(score >= 3);
    CHECK(passes == score);
    CHECK(env.score() == score);
  }

  TEST_CASE("flappy: uniform random policy scores about zero and always terminates") {
    FlappyBird env;
    qrl::Rng policy(7);
    double total_score = 0.0;
    for (int episode = 0; episode < 20; ++episode) {
      env.reset(500 + episode);
      bool terminated = false;
      double score = 0.0;
      for (int t = 0; t < 10000 && !terminated; ++t) {
        const auto result = env.step(static_cast<int>(policy.uniform_index(2)));
        terminated = result.terminated;
        score = result.info.score;
      }
      CHECK(terminated);
      total_score += score;
    }
    CHECK(total_score / 20 < 1.0);
  }

  TEST_CASE("flappy: analytic observation equals preprocess(render_rgb()) on every pixel") {
    FlappyBirdConfig gray80, gray84, binary, odd;
    gray84.observation_height = gray84.observation_width = 84;
    binary.threshold = 140;
    odd.observation_height = 47;
    odd.observation_width = 61;
    for (const FlappyBirdConfig& config : {gray80, gray84, binary, odd}) {
      FlappyBird env(config);
      FlappyBirdConfig rendered_config = config;
      rendered_config.observation_mode = ObservationMode::Rendered;
      FlappyBird rendered(rendered_config);
      qrl::Rng policy(31);
      std::vector<std::uint8_t> reference(env.observation_shape().bytes());
      int states = 0, worst = 0, mismatches = 0, with_pipes = 0, bird_above = 0;
      std::uint64_t seed = 1;
      env.reset(seed);
      rendered.reset(seed);
      // Mix the scripted controller (pipes on screen, passes) with random
      // flapping (bird at the top and above the screen).
      int mode = 0;
      while (states < 400) {
        const int action = mode == 0 ? scripted_action(env) : (policy.uniform() < 0.6 ? 1 : 0);
        const auto result = env.step(action);
        const auto other = rendered.step(action);
        qrl::env::preprocess(env.render_rgb(), env.observation_spec(), reference.data());
        const auto got = bytes_of(result.observation);
        for (std::size_t i = 0; i < got.size(); ++i) {
          const int diff = std::abs(static_cast<int>(got[i]) - static_cast<int>(reference[i]));
          worst = std::max(worst, diff);
          mismatches += diff != 0;
        }
        REQUIRE(bytes_of(other.observation) == reference);
        ++states;
        with_pipes += env.pipes().front().x < FlappyBird::kScreenWidth;
        bird_above += env.bird_y() < 0;
        if (result.terminated || env.episode_frame() > 150) {
          ++seed;
          mode = static_cast<int>(seed % 2);
          env.reset(seed);
          rendered.reset(seed);
        }
      }
      CHECK(worst <= 1);       // the specification's tolerance
      CHECK(mismatches == 0);  // the design: the same integer sums, regrouped
      CHECK(with_pipes > 100);
      CHECK(bird_above > 5);
    }
  }

  TEST_CASE("flappy: observation shows the scene with the right gray levels") {
    FlappyBird env;
    const auto first = bytes_of(env.reset(4));
    // Output pixel (49, 17) covers rows 247.5..252.5 and cols 61.2..64.8, all
    // bird at y = 244..268, x = 57..91: luma(250, 200, 40) = 196.71 -> 197.
    CHECK(first[49 * 80 + 17] == 197);
    // Top-right corner is sky: luma(78, 192, 202) = 159.054 -> 159.
    CHECK(first[79] == 159);
    for (int t = 0; t < 70; ++t) env.step(scripted_action(env));
    const auto obs = bytes_of(env.observation());
    double mean = 0.0, var = 0.0;
    for (auto v : obs) mean += v;
    mean /= static_cast<double>(obs.size());
    for (auto v : obs) var += (v - mean) * (v - mean);
    var /= static_cast<double>(obs.size());
    CHECK(var > 50.0);
    const std::vector<std::uint8_t> sorted = [&] {
      auto s = obs;
      std::sort(s.begin(), s.end());
      s.erase(std::unique(s.begin(), s.end()), s.end());
      return s;
    }();
    CHECK(sorted.size() >= 4);  // sky, pipe, rim, bird and their blends
  }

  TEST_CASE("flappy: render_rgb draws sky and ground and bird and pipes") {
    FlappyBird env;
    env.reset(8);
    auto frame = env.render_rgb();
    CHECK(frame.shape == qrl::env::FrameShape{512, 288, 3});
    CHECK(pixel(frame, 0, 0) == rgb(FlappyBird::kSkyColor));
    CHECK(pixel(frame, 450, 100) == rgb(FlappyBird::kGroundColor));
    CHECK(pixel(frame, 403, 100) == rgb(FlappyBird::kSkyColor));
    CHECK(pixel(frame, 404, 100) == rgb(FlappyBird::kGroundColor));
    CHECK(pixel(frame, 244, 57) == rgb(FlappyBird::kBirdColor));
    CHECK(pixel(frame, 267, 90) == rgb(FlappyBird::kBirdColor));
    CHECK(pixel(frame, 243, 57) == rgb(FlappyBird::kSkyColor));
    CHECK(pixel(frame, 244, 91) == rgb(FlappyBird::kSkyColor));
    // Bring the first pipe fully on screen, clear of the bird's columns.
    while (env.pipes().front().x > 150) env.step(scripted_action(env));
    frame = env.render_rgb();
    const auto pipe = env.pipes().front();
    const int mid = pipe.x + 26;
    CHECK(pixel(frame, pipe.gap_top - 13, mid) == rgb(FlappyBird::kPipeColor));
    CHECK(pixel(frame, pipe.gap_top - 1, mid) == rgb(FlappyBird::kPipeRimColor));
    CHECK(pixel(frame, pipe.gap_top, mid) == rgb(FlappyBird::kSkyColor));
    CHECK(pixel(frame, pipe.gap_top + 99, mid) == rgb(FlappyBird::kSkyColor));
    CHECK(pixel(frame, pipe.gap_top + 100, mid) == rgb(FlappyBird::kPipeRimColor));
    CHECK(pixel(frame, pipe.gap_top + 112, mid) == rgb(FlappyBird::kPipeColor));
    CHECK(pixel(frame, pipe.gap_top - 50, pipe.x - 1) == rgb(FlappyBird::kSkyColor));
    CHECK(pixel(frame, pipe.gap_top - 50, pipe.x + 52) == rgb(FlappyBird::kSkyColor));
    CHECK(pixel(frame, 420, mid) == rgb(FlappyBird::kGroundColor));  // the ground hides the pipe
  }

  TEST_CASE("flappy: stepping a finished episode or before reset throws and invalid actions throw") {
    FlappyBird env;
    CHECK_THROWS_WITH_AS(env.step(0), doctest::Contains("call reset"), qrl::Error);
    env.reset(1);
    CHECK_THROWS_WITH_AS(env.step(2), doctest::Contains("action 2 is invalid"), qrl::Error);
    CHECK_THROWS_AS(env.step(-1), qrl::Error);
    bool terminated = false;
    while (!terminated) terminated = env.step(0).terminated;
    CHECK(env.episode_over());
    CHECK_THROWS_WITH_AS(env.step(0), doctest::Contains("call reset"), qrl::Error);
    env.reset(1);
    CHECK_NOTHROW(env.step(0));
  }

  TEST_CASE("flappy: max_steps and max_score truncate without terminating") {
    FlappyBirdConfig config;
    config.max_steps = 5;
    FlappyBird env(config);
    env.reset(1);
    for (int t = 1; t < 5; ++t) CHECK_FALSE(env.step(0).truncated);
    const auto last = env.step(0);
    CHECK(last.truncated);
    CHECK_FALSE(last.terminated);
    CHECK(last.reward == doctest::Approx(0.1));
    CHECK_THROWS_WITH_AS(env.step(0), doctest::Contains("call reset"), qrl::Error);

    FlappyBirdConfig by_score;
    by_score.max_score = 1;
    FlappyBird scorer(by_score);
    scorer.reset(2024);
    qrl::env::StepResult result;
    do {
      result = scorer.step(scripted_action(scorer));
    } while (!result.truncated && !result.terminated);
    CHECK(result.truncated);
    CHECK_FALSE(result.terminated);
    CHECK(result.info.score == 1);
    CHECK(result.reward == doctest::Approx(1.0));
  }

  TEST_CASE("flappy: frame_skip k equals k single frames with the flap on the first, rewards summed") {
    FlappyBirdConfig skipping;
    skipping.frame_skip = 3;
    FlappyBird coarse(skipping);
    FlappyBird fine;
    coarse.reset(77);
    fine.reset(77);
    qrl::Rng actions(5);
    double total_reward = 0.0;
    int steps = 0;
    bool done = false;
    while (!done) {
      const int action = actions.uniform_index(4) == 0 ? 1 : 0;
      const auto skipped = coarse.step(action);
      double summed = 0.0;
      bool fine_terminated = false;
      for (int k = 0; k < 3 && !fine_terminated; ++k) {
        const auto single = fine.step(k == 0 ? action : 0);
        summed += single.reward;
        fine_terminated = single.terminated;
      }
      REQUIRE(skipped.terminated == fine_terminated);
      CHECK(skipped.reward == doctest::Approx(summed));
      CHECK(coarse.bird_y() == fine.bird_y());
      CHECK(coarse.episode_frame() == fine.episode_frame());
      REQUIRE(bytes_of(coarse.observation()) == bytes_of(fine.observation()));
      total_reward += skipped.reward;
      ++steps;
      done = skipped.terminated;
    }
    // The bird lived through many frames, so the comparison covered flaps and falls.
    CHECK(steps > 5);
    CHECK(coarse.episode_frame() > 3 * (steps - 1));
    CHECK(total_reward != 0.0);
    FlappyBirdConfig no_frames;
    no_frames.frame_skip = 0;
    CHECK_THROWS_WITH_AS(FlappyBird{no_frames}, doctest::Contains("frame_skip must be >= 1"), qrl::Error);
  }

  TEST_CASE("flappy planner: reading the true state it reaches the pipe cap at frame skips 1 and 2") {
    // What the game allows: 200 pipes on every seed, where the scripted
    // controller above (flap when 60 px under the gap top) dies far earlier.
    using qrl::envs::FlappyPlanner;
    using qrl::envs::FlappyPlannerConfig;
    for (const int frame_skip : {1, 2}) {
      CAPTURE(frame_skip);
      FlappyBirdConfig config;
      config.frame_skip = frame_skip;
      config.max_score = 200;
      FlappyBird env(config);
      FlappyPlannerConfig planner_config;
      planner_config.frame_skip = frame_skip;
      FlappyPlanner planner(planner_config);
      int scripted_total = 0;
      for (const std::uint64_t seed : {1000u, 1001u}) {
        CAPTURE(seed);
        env.reset(seed);
        qrl::env::StepResult result;
        do {
          result = env.step(planner.act(env));
        } while (!result.terminated && !result.truncated);
        CHECK(result.truncated);
        CHECK(env.score() == 200);

        env.reset(seed);
        do {
          result = env.step(scripted_action(env));
        } while (!result.terminated && !result.truncated);
        scripted_total += env.score();
      }
      CHECK(scripted_total < 200);
    }
  }

  TEST_CASE("flappy planner: flaps to escape the lower pipe and holds back under the upper one") {
    using qrl::envs::FlappyPlanner;
    FlappyBird env;  // frame skip 1, the planner's must match
    qrl::envs::FlappyPlannerConfig config;
    config.frame_skip = 1;
    FlappyPlanner planner(config);
    env.reset(3);
    auto place = [&env](int bird_y, int velocity) {
      // One pipe around the bird (x 57..90 against the pipe's 40..91), gap 200..300.
      auto state = env.save_state();
      state["bird_y"] = bird_y;
      state["velocity"] = velocity;
      state["pipes"] = nlohmann::json::array({nlohmann::json::array({40, 200})});
      env.load_state(state);
    };
    // Falling at 10 px a frame with its bottom at 294: doing nothing puts it
    // at 304, 4 px into the lower pipe; a flap lifts it to 261.
    place(270, 10);
    CHECK(planner.act(env) == 1);
    CHECK(env.step(1).terminated == false);
    // At rest 6 px under the gap top: a flap would rise 9 px into the upper
    // pipe; doing nothing sinks 1 px.
    place(206, 0);
    CHECK(planner.act(env) == 0);
    CHECK(env.step(0).terminated == false);
    place(206, 0);
    CHECK(env.step(1).terminated);  // the flap it avoided does crash

    FlappyBirdConfig skip2;
    skip2.frame_skip = 2;
    FlappyBird other(skip2);
    other.reset(3);
    CHECK_THROWS_WITH_AS(planner.act(other), doctest::Contains("planned for frame_skip 1 but the game uses 2"),
                         qrl::Error);
  }
}
