#include <doctest/doctest.h>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/env/vector_env.hpp>
#include <qrl/envs/atari.hpp>
#include <qrl/rl/checkpoint.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "resume_support.hpp"

using qrl::envs::Atari;
using qrl::envs::AtariConfig;

namespace {

AtariConfig game(const char* name) {
  AtariConfig config;
  config.game = name;
  return config;
}

std::vector<std::uint8_t> bytes_of(qrl::env::FrameView view) { return {view.bytes().begin(), view.bytes().end()}; }

// OpenCV's INTER_AREA for a downscale, written independently of the shared
// functor: each output pixel is the area-weighted mean of the source pixels
// its footprint covers, in doubles.
std::vector<double> area_resize(const std::vector<unsigned char>& src, int h, int w, int out_h, int out_w) {
  std::vector<double> out(static_cast<std::size_t>(out_h) * out_w);
  const double sy = static_cast<double>(h) / out_h, sx = static_cast<double>(w) / out_w;
  for (int oy = 0; oy < out_h; ++oy) {
    for (int ox = 0; ox < out_w; ++ox) {
      const double y0 = oy * sy, y1 = y0 + sy, x0 = ox * sx, x1 = x0 + sx;
      double sum = 0.0;
      for (int y = static_cast<int>(y0); y < static_cast<int>(std::ceil(y1)); ++y) {
        const double wy = std::min<double>(y + 1, y1) - std::max<double>(y, y0);
        for (int x = static_cast<int>(x0); x < static_cast<int>(std::ceil(x1)); ++x) {
          const double wx = std::min<double>(x + 1, x1) - std::max<double>(x, x0);
          sum += wy * wx * src[static_cast<std::size_t>(y) * w + x];
        }
      }
      out[static_cast<std::size_t>(oy) * out_w + ox] = sum / (sy * sx);
    }
  }
  return out;
}

// AtariPreprocessing's observation from two raw gray screens.
std::vector<double> reference_observation(const std::vector<unsigned char>& a, const std::vector<unsigned char>& b) {
  std::vector<unsigned char> max(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) max[i] = std::max(a[i], b[i]);
  return area_resize(max, Atari::kScreenHeight, Atari::kScreenWidth, 84, 84);
}

double max_abs_difference(const std::vector<double>& reference, qrl::env::FrameView observation) {
  REQUIRE(observation.shape.bytes() == reference.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    worst = std::max(worst, std::abs(reference[i] - observation.pixels[i]));
  }
  return worst;
}

}  // namespace

TEST_SUITE("atari") {
  TEST_CASE("ROMs load with their minimal or full action sets") {
    Atari pong(game("pong"));
    CHECK(pong.game_name() == "pong");
    CHECK(pong.action_count() == 6);
    CHECK(pong.observation_shape() == qrl::env::FrameShape{84, 84, 1});
    Atari breakout(game("breakout"));
    CHECK(breakout.action_count() == 4);
    AtariConfig full = game("space_invaders");
    full.full_action_set = true;
    Atari invaders(full);
    CHECK(invaders.action_count() == 18);
    // A ROM by path, as a user with their own ROMs would give it.
    AtariConfig by_path;
    by_path.rom_path = pong.rom_path();
    CHECK(Atari(by_path).action_count() == 6);
  }

  TEST_CASE("observations are 84x84 uint8 and match AtariPreprocessing computed from ALE's raw screens") {
    // Reference: a second, raw ALE driven by hand (frame skip 4, screens of
    // the last two frames, max, area resize). No no-ops, so both start from
    // the ROM's power-on state.
    AtariConfig config = game("breakout");
    config.noop_max = 0;
    Atari env(config);
    ale::ALEInterface raw;
    raw.setInt("random_seed", Atari::ale_seed(5));
    raw.setFloat("repeat_action_probability", 0.0f);
    raw.loadROM(env.rom_path());
    raw.reset_game();
    const auto actions = raw.getMinimalActionSet();
    REQUIRE(actions == env.actions());

    std::vector<unsigned char> a, b;
    raw.getScreenGrayscale(a);
    const auto first = env.reset(5);
    CHECK(first.shape == qrl::env::FrameShape{84, 84, 1});
    CHECK(max_abs_difference(reference_observation(a, a), first) <= 0.5 + 1e-9);

    qrl::Rng rng(11);
    double env_return = 0.0, raw_return = 0.0;
    std::set<int> levels;
    int steps = 0;
    for (; steps < 150; ++steps) {
      const int action = static_cast<int>(rng.uniform_index(actions.size()));
      for (int t = 0; t < 4; ++t) {
        raw_return += raw.act(actions[action]);
        if (t == 2) raw.getScreenGrayscale(b);
        if (t == 3) raw.getScreenGrayscale(a);
      }
      const auto result = env.step(action);
      env_return += result.reward;
      // Exact box filter vs doubles: equal up to the final rounding.
      REQUIRE(max_abs_difference(reference_observation(a, b), result.observation) <= 0.5 + 1e-9);
      // And byte for byte the shared functor's output on the max screen.
      std::vector<std::uint8_t> functor(84 * 84);
      qrl::env::preprocess(env.max_screen(), env.observation_spec(), functor.data());
      REQUIRE(functor == bytes_of(result.observation));
      for (auto p : result.observation.bytes()) levels.insert(p);
      CHECK(result.info.lives == raw.lives());
      CHECK(result.info.episode_frame == raw.getEpisodeFrameNumber());
      CHECK(result.terminated == raw.game_over(false));
      if (result.terminated) break;
    }
    CHECK(steps >= 50);
    CHECK(env_return == raw_return);
    // Not a blank screen: bricks, walls and the paddle give several gray levels.
    CHECK(levels.size() >= 5);
  }

  TEST_CASE("the observation kernel equals the shared functor on every code path and size") {
    // Synthetic screens over all 256 byte values and a scrambled palette
    // (odd and high indices included), plus all-white screens for the
    // largest sums. Path::Auto is the AVX-512 code where compiled in.
    using qrl::envs::AtariObservation;
    INFO("vector palette: " << AtariObservation::vector_palette());
    qrl::Rng rng(17);
    std::array<std::uint8_t, 256> gray{};
    for (auto& g : gray) g = static_cast<std::uint8_t>(rng.uniform_index(256));
    gray[0] = 0;
    gray[255] = 255;
    std::vector<std::uint8_t> a(AtariObservation::kScreenBytes), b(a.size());
    for (int size : {84, 83, 64, 41, 40, 21, 160, 1}) {
      CAPTURE(size);
      AtariObservation scalar(size, gray), automatic(size, gray);
      if (size >= 41) CHECK(automatic.vector_columns() == AtariObservation::vector_palette());
      for (int round = 0; round < 4; ++round) {
        CAPTURE(round);
        if (round == 3) {
          std::fill(a.begin(), a.end(), std::uint8_t{255});
          std::fill(b.begin(), b.end(), std::uint8_t{255});
        } else {
          for (auto& p : a) p = static_cast<std::uint8_t>(rng.uniform_index(256));
          // Mostly equal screens, as consecutive frames are.
          for (std::size_t i = 0; i < b.size(); ++i) b[i] = rng.uniform_index(4) == 0 ? static_cast<std::uint8_t>(rng.uniform_index(256)) : a[i];
        }
        scalar.compute(a.data(), b.data(), AtariObservation::Path::Scalar);
        automatic.compute(a.data(), b.data(), AtariObservation::Path::Auto);
        std::vector<std::uint8_t> max(a.size());
        for (std::size_t i = 0; i < a.size(); ++i) max[i] = std::max(gray[a[i]], gray[b[i]]);
        double norm = 0.0;
        for (auto p : max) norm += p;
        REQUIRE(norm > 0.0);
        REQUIRE(scalar.max_screen() == max);
        REQUIRE(automatic.max_screen() == max);
        qrl::env::PreprocessSpec spec;
        spec.layout = qrl::env::PixelLayout::Gray;
        spec.out_height = spec.out_width = size;
        std::vector<std::uint8_t> functor(static_cast<std::size_t>(size) * size);
        qrl::env::preprocess(qrl::env::FrameView{max.data(), {Atari::kScreenHeight, Atari::kScreenWidth, 1}}, spec,
                             functor.data());
        REQUIRE(scalar.pixels() == functor);
        REQUIRE(automatic.pixels() == functor);
      }
    }
  }

  TEST_CASE("a seed and the actions fix an episode with sticky actions on") {
    AtariConfig config = game("pong");
    config.repeat_action_probability = 0.25f;
    const auto play = [](Atari& env, std::uint64_t seed) {
      std::vector<std::vector<std::uint8_t>> frames{bytes_of(env.reset(seed))};
      std::vector<double> rewards;
      qrl::Rng rng(99);
      for (int i = 0; i < 300; ++i) {
        const auto r = env.step(static_cast<int>(rng.uniform_index(env.action_count())));
        frames.push_back(bytes_of(r.observation));
        rewards.push_back(r.reward);
      }
      return std::make_pair(frames, rewards);
    };
    Atari a(config), b(config);
    const auto first = play(a, 7);
    play(b, 3);  // a used env must reset to the same state as a fresh one
    const auto second = play(b, 7);
    CHECK(first.first == second.first);
    CHECK(first.second == second.second);
    const auto other = play(a, 8);
    CHECK(other.first != first.first);
  }

  TEST_CASE("reset(seed) equals reloading the ROM with ALE's random_seed as Gymnasium does") {
    AtariConfig config = game("pong");
    config.repeat_action_probability = 0.25f;
    config.noop_max = 0;
    config.frame_skip = 1;
    Atari env(config);
    env.reset(1);
    for (int i = 0; i < 50; ++i) env.step(i % env.action_count());
    env.reset(21);
    ale::ALEInterface raw;
    raw.setInt("random_seed", Atari::ale_seed(21));
    raw.setFloat("repeat_action_probability", 0.25f);
    raw.loadROM(env.rom_path());
    raw.reset_game();
    std::vector<unsigned char> screen;
    qrl::Rng rng(4);
    int differing = 0;
    for (int i = 0; i < 400; ++i) {
      const int action = static_cast<int>(rng.uniform_index(env.action_count()));
      const auto result = env.step(action);
      raw.act(env.actions()[action]);
      raw.getScreenGrayscale(screen);
      REQUIRE(max_abs_difference(reference_observation(screen, screen), result.observation) <= 0.5 + 1e-9);
      differing += env.screen_gray().bytes().size() == screen.size() &&
                   !std::equal(screen.begin(), screen.end(), env.screen_gray().pixels);
    }
    CHECK(differing == 0);
  }

  TEST_CASE("a random policy ends a game of Pong at 21 points to one side") {
    Atari env(game("pong"));
    env.reset(3);
    qrl::Rng rng(3);
    int ours = 0, theirs = 0;
    double total = 0.0;
    qrl::env::StepResult last;
    for (int i = 0; i < 10000; ++i) {
      last = env.step(static_cast<int>(rng.uniform_index(env.action_count())));
      total += last.reward;
      ours += last.reward > 0;
      theirs += last.reward < 0;
      if (last.terminated || last.truncated) break;
    }
    CHECK(last.terminated);
    CHECK_FALSE(last.truncated);
    CHECK(std::max(ours, theirs) == 21);
    CHECK(total == ours - theirs);
    CHECK(last.info.score == total);
    CHECK(total >= -21);
    CHECK(total <= 21);
  }

  TEST_CASE("lives are reported in info and terminal_on_life_loss ends the episode at the first loss") {
    qrl::Rng rng(5);
    {
      Atari env(game("breakout"));
      env.reset(2);
      int lives = env.lives(), losses_before_end = 0;
      CHECK(lives == 5);
      qrl::env::StepResult r;
      for (int i = 0; i < 20000; ++i) {
        r = env.step(static_cast<int>(rng.uniform_index(env.action_count())));
        REQUIRE(r.info.lives <= lives);
        if (r.info.lives < lives && !r.terminated) ++losses_before_end;
        lives = r.info.lives;
        if (r.terminated || r.truncated) break;
      }
      CHECK(r.terminated);
      CHECK(r.info.lives == 0);
      CHECK(losses_before_end == 4);
    }
    {
      AtariConfig config = game("breakout");
      config.terminal_on_life_loss = true;
      Atari env(config);
      env.reset(2);
      qrl::env::StepResult r;
      for (int i = 0; i < 20000; ++i) {
        r = env.step(static_cast<int>(rng.uniform_index(env.action_count())));
        if (r.terminated || r.truncated) break;
      }
      CHECK(r.terminated);
      CHECK(r.info.lives == 4);
      // The next reset starts a new game with all lives, as in Gymnasium.
      env.reset(3);
      CHECK(env.lives() == 5);
    }
  }

  TEST_CASE("the step limit truncates and a finished episode must be reset") {
    AtariConfig config = game("pong");
    config.max_episode_steps = 25;
    Atari env(config);
    env.reset(1);
    for (int i = 1; i <= 25; ++i) {
      const auto r = env.step(0);
      CHECK(r.truncated == (i == 25));
      CHECK_FALSE(r.terminated);
      CHECK(env.episode_steps() == i);
    }
    CHECK_THROWS_WITH_AS(env.step(0), doctest::Contains("call reset(seed) before stepping"), qrl::Error);
    env.reset(2);
    CHECK(env.episode_steps() == 0);
    // No-op starts: 1..30 frames after ALE's reset, drawn from the seed.
    std::set<std::int64_t> starts;
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
      env.reset(seed);
      const auto r = env.step(0);
      starts.insert(r.info.episode_frame - 4);
    }
    CHECK(starts.size() >= 10);
    CHECK(*starts.begin() >= 1);
    CHECK(*starts.rbegin() <= 30);
  }

  TEST_CASE("bad input: unknown game - missing or wrong ROM - bad settings and actions") {
    CHECK_THROWS_WITH_AS(Atari(game("pongg")), doctest::Contains("unknown game 'pongg'"), qrl::Error);
    CHECK_THROWS_WITH_AS(Atari(game("pongg")), doctest::Contains("pong, "), qrl::Error);
    CHECK_THROWS_WITH_AS(Atari(game("pongg")), doctest::Contains("space_invaders"), qrl::Error);
    AtariConfig missing;
    missing.rom_path = "/nonexistent/pong.bin";
    CHECK_THROWS_WITH_AS(Atari{missing}, doctest::Contains("/nonexistent/pong.bin does not exist"), qrl::Error);
    const auto junk = std::filesystem::temp_directory_path() / "qrl_test_not_a_rom.bin";
    {
      std::ofstream out(junk, std::ios::binary);
      for (int i = 0; i < 4096; ++i) out.put(static_cast<char>(i * 7));
    }
    AtariConfig wrong;
    wrong.rom_path = junk.string();
    CHECK_THROWS_WITH_AS(Atari{wrong}, doctest::Contains("is not a ROM ALE supports"), qrl::Error);
    std::filesystem::remove(junk);
    AtariConfig no_dir = game("pong");
    no_dir.roms_dir = "/nonexistent/roms";
    CHECK_THROWS_WITH_AS(Atari{no_dir}, doctest::Contains("scripts/build_ale.sh"), qrl::Error);
    AtariConfig bad = game("pong");
    bad.frame_skip = 0;
    CHECK_THROWS_WITH_AS(Atari{bad}, doctest::Contains("frame_skip must be >= 1"), qrl::Error);
    bad = game("pong");
    bad.repeat_action_probability = 1.0f;
    CHECK_THROWS_WITH_AS(Atari{bad}, doctest::Contains("repeat_action_probability"), qrl::Error);
    Atari env(game("pong"));
    CHECK_THROWS_WITH_AS(env.step(0), doctest::Contains("call reset(seed) first"), qrl::Error);
    env.reset(1);
    CHECK_THROWS_WITH_AS(env.step(6), doctest::Contains("action 6 is outside [0, 6) for pong"), qrl::Error);
  }

  TEST_CASE("vector env of Atari games: the same episodes on 1 and 2 threads and autoresets at the step limit") {
    AtariConfig config = game("pong");
    config.max_episode_steps = 30;
    config.repeat_action_probability = 0.25f;
    const auto trace = [&](int threads) {
      qrl::env::VectorEnv<Atari> vec(2, [&](int) { return Atari(config); }, threads);
      vec.reset(17);
      std::vector<std::vector<std::uint8_t>> frames;
      int resets = 0;
      qrl::Rng rng(1);
      for (int s = 0; s < 70; ++s) {
        const std::vector<int> actions{static_cast<int>(rng.uniform_index(6)), static_cast<int>(rng.uniform_index(6))};
        const auto results = vec.step(actions);
        for (int i = 0; i < 2; ++i) {
          frames.push_back(bytes_of(results[i].result.observation));
          frames.push_back(bytes_of(vec.observation(i)));
          if (results[i].autoreset) {
            ++resets;
            CHECK(results[i].result.truncated);
            CHECK(vec.env(i).episode_steps() == 0);
          }
        }
      }
      return std::make_pair(frames, resets);
    };
    const auto one = trace(1);
    const auto two = trace(2);
    CHECK(one.second == 2 * 2);  // steps 30 and 60 of each env
    CHECK(one.first == two.first);
  }

  TEST_CASE("state round-trips mid-episode through ALE's serialisation, sticky-action generator included") {
    AtariConfig config = game("breakout");
    config.repeat_action_probability = 0.25f;
    Atari a(config), b(config);
    a.reset(7);
    qrl::Rng actions(3);
    for (int i = 0; i < 60; ++i) a.step(static_cast<int>(actions.uniform_index(a.action_count())));
    // NOOP steps last: the previous action a sticky frame repeats lives
    // outside ALE's state, and a fresh env's is NOOP too.
    for (int i = 0; i < 3; ++i) a.step(0);
    const auto saved = a.save_state();
    b.load_state(saved);
    CHECK(bytes_of(a.observation()) == bytes_of(b.observation()));
    CHECK(b.episode_steps() == 63);
    int compared = 0;
    for (int i = 0; i < 200; ++i) {
      const int action = static_cast<int>(actions.uniform_index(a.action_count()));
      const auto ra = a.step(action);
      const auto oa = bytes_of(ra.observation);
      const auto rb = b.step(action);
      REQUIRE(oa == bytes_of(rb.observation));
      REQUIRE(bytes_of(a.render_rgb()) == bytes_of(b.render_rgb()));
      CHECK(ra.reward == rb.reward);
      CHECK(ra.info.lives == rb.info.lives);
      CHECK(ra.info.episode_frame == rb.info.episode_frame);
      ++compared;
      if (ra.terminated || ra.truncated) break;
    }
    CHECK(compared > 20);
    CHECK(a.save_state() == b.save_state());

    auto other_game = saved;
    other_game["game"] = "pong";
    CHECK_THROWS_WITH_AS(b.load_state(other_game), doctest::Contains("this env plays 'breakout'"), qrl::Error);
    auto cut = saved;
    cut["ale_state"] = saved["ale_state"].get<std::string>().substr(1);
    CHECK_THROWS_WITH_AS(b.load_state(cut), doctest::Contains("not a multiple of 4"), qrl::Error);
    auto short_screen = saved;
    short_screen["screens"][1] = "AAAA";
    CHECK_THROWS_WITH_AS(b.load_state(short_screen), doctest::Contains("expected 33600"), qrl::Error);
  }

  // 12x12 observations and a tiny network so it takes seconds; 150-step
  // episodes so several no-op resets happen on both sides of the save at
  // step 500, which falls mid-episode.
  Atari tiny_pong(int) {
    AtariConfig config = game("pong");
    config.screen_size = 12;
    config.max_episode_steps = 150;
    return Atari(config);
  }

  TEST_CASE("exact resume on Pong: N steps straight == N/2, checkpoint, fresh env and agent, N/2 (bitwise)") {
    qrl::test::exact_resume(tiny_pong, 12, 1000, 700, "atari");
  }

  TEST_CASE("exact resume on Pong with --envs 2 (bitwise)") {
    qrl::test::exact_resume(tiny_pong, 12, 1000, 700, "atari2", 2);
  }
}
