// Chrome Dino and the canvas-game env against a real Chromium.
#include <doctest/doctest.h>

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <qrl/cdp/chromium.hpp>
#include <qrl/envs/dino.hpp>

#include "browser_support.hpp"

using namespace qrl;
using envs::BrowserConfig;
using envs::CaptureMode;
using envs::Dino;

namespace {

BrowserConfig quiet(CaptureMode capture = CaptureMode::Screenshot) {
  BrowserConfig b;
  b.capture = capture;
  b.warn_no_sandbox = false;
  return b;
}

std::vector<std::uint8_t> bytes_of(env::FrameView v) { return {v.bytes().begin(), v.bytes().end()}; }

int distinct_values(env::FrameView v) {
  bool seen[256] = {};
  int n = 0;
  for (auto b : v.bytes()) n += !seen[b], seen[b] = true;
  return n;
}

// The digits the page draws, read from the distance meter itself.
double shown_score(Dino& env) {
  return env.evaluate("Number(Runner.getInstance().distanceMeter.digits.join(''))").get<double>();
}

// Distance from the dino's front to the first obstacle, or a large number.
double obstacle_gap(Dino& env) {
  return env
      .evaluate("(() => { const r = Runner.getInstance(); const o = r.horizon.obstacles[0];"
                " return o ? o.xPos - (r.tRex.xPos + r.tRex.config.width) : 1e9; })()")
      .get<double>();
}

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_SUITE("chromium") {

TEST_CASE("Dino: the page loads and Runner.getInstance() answers - a no-op policy crashes into the first obstacle") {
  Dino env({}, quiet());
  CHECK(env.evaluate("typeof Runner.getInstance()") == "object");
  CHECK(env.action_count() == 3);
  const auto first = env.reset(1);
  CHECK(first.shape == env::FrameShape{80, 80, 1});
  CHECK(env.raw_frame().shape.width == env.evaluate("document.querySelector('.runner-canvas').width").get<int>());
  CHECK(distinct_values(first) > 2);  // the dino and the ground, not a blank frame
  env::StepResult r;
  int steps = 0;
  double total = 0;
  do {
    r = env.step(Dino::kNoop);
    total += r.reward;
    ++steps;
  } while (!r.terminated && !r.truncated && steps < 1000);
  CHECK(r.terminated);
  CHECK_FALSE(r.truncated);
  CHECK(r.reward == -1.0);
  CHECK(total == doctest::Approx(0.1 * (steps - 1) - 1.0));
  // Obstacles appear after 3 s of game time (45 steps of 4 frames); the first one ends it.
  CHECK(steps > 45);
  CHECK(steps < 150);
  CHECK(r.info.score > 0);
  CHECK(r.info.score < 100);
  CHECK(r.info.score == shown_score(env));
  CHECK(r.info.episode_frame <= steps * 4);
  CHECK(env.evaluate("Runner.getInstance().crashed") == true);
  CHECK_THROWS_WITH_AS(env.step(0), "dino: the episode is over; call reset(seed) before stepping", Error);
}

TEST_CASE("Dino: jumping clears the obstacle that the no-op policy hits") {
  Dino env({}, quiet());
  env.reset(3);
  double noop_score = 0;
  for (env::StepResult r; !r.terminated;) noop_score = (r = env.step(Dino::kNoop)).info.score;

  env.reset(3);
  const double ground = env.evaluate("Runner.getInstance().tRex.yPos").get<double>();
  env::StepResult r;
  double highest = ground;
  int passed = 0;
  double last_gap = 1e9;
  for (int i = 0; i < 400 && !r.terminated; ++i) {
    const double gap = obstacle_gap(env);
    if (gap > last_gap + 100) ++passed;  // the front obstacle changed: one was cleared
    last_gap = gap;
    r = env.step(gap > 0 && gap < 60 ? Dino::kJump : Dino::kNoop);
    highest = std::min(highest, env.evaluate("Runner.getInstance().tRex.yPos").get<double>());
  }
  CHECK(ground - highest > 30);  // the dino left the ground (y grows downwards)
  CHECK(passed >= 1);
  CHECK(r.info.score > noop_score + 20);
}

TEST_CASE("Dino: the 2-action mode and the constant-speed option") {
  envs::DinoConfig config;
  config.actions = 2;
  config.constant_speed = true;
  Dino constant(config, quiet(CaptureMode::Canvas));
  CHECK(constant.action_count() == 2);
  CHECK_THROWS_AS(constant.step(2), Error);
  constant.reset(1);
  Dino accelerating({}, quiet(CaptureMode::Canvas));
  accelerating.reset(1);
  for (int i = 0; i < 40; ++i) {
    constant.step(Dino::kNoop);
    accelerating.step(Dino::kNoop);
  }
  const std::string speed = "Runner.getInstance().currentSpeed";
  CHECK(constant.evaluate(speed).get<double>() == 6.0);  // config.speed, the start
  CHECK(accelerating.evaluate(speed).get<double>() > 6.05);
}

TEST_CASE("Dino: the same seed and actions give the same frames and scores twice") {
  Dino env({}, quiet(CaptureMode::Canvas));
  auto play = [&](std::uint64_t seed) {
    std::vector<std::vector<std::uint8_t>> frames{bytes_of(env.reset(seed))};
    std::vector<double> scores;
    for (int i = 0; i < 120; ++i) {
      const auto r = env.step(i % 23 == 5 ? Dino::kJump : (i % 31 == 9 ? Dino::kDuck : Dino::kNoop));
      frames.push_back(bytes_of(r.observation));
      scores.push_back(r.info.score);
      if (r.terminated) break;
    }
    // The obstacles the seed drew, to tell seeds apart.
    frames.push_back({});
    for (char c : env.evaluate("JSON.stringify(Runner.getInstance().horizon.obstacles.map(o => [o.typeConfig.type, "
                               "o.size, Math.round(o.xPos)]))")
                      .get<std::string>())
      frames.back().push_back(static_cast<std::uint8_t>(c));
    return std::pair{frames, scores};
  };
  const auto a = play(11);
  const auto b = play(11);
  REQUIRE(a.first.size() > 10);
  CHECK(a.first == b.first);
  CHECK(a.second == b.second);
  CHECK(a.second.back() > 0);
  bool some_seed_differs = false;
  for (std::uint64_t seed : {12, 13, 14})
    if (play(seed).first != a.first) some_seed_differs = true;
  CHECK(some_seed_differs);
}

TEST_CASE("Dino: screenshot and canvas capture give the same frame for the same state") {
  Dino env({}, quiet(CaptureMode::Screenshot));
  env.reset(5);
  int compared = 0;
  for (int i = 0; i < 70; ++i) {
    const auto r = env.step(i % 17 == 3 ? Dino::kJump : Dino::kNoop);
    if (i % 10 == 0 || r.terminated) {
      const auto shot_raw = bytes_of(env.raw_frame());
      const auto shot = bytes_of(r.observation);
      env.set_capture_mode(CaptureMode::Canvas);
      const auto canvas = bytes_of(env.recapture());
      const auto canvas_raw = bytes_of(env.raw_frame());
      env.set_capture_mode(CaptureMode::Screenshot);
      CHECK(distinct_values(env.observation()) > 2);
      CHECK(shot_raw == canvas_raw);
      CHECK(shot == canvas);
      ++compared;
    }
    if (r.terminated) break;
  }
  CHECK(compared >= 5);
}

TEST_CASE("Dino: a browser killed mid-episode truncates the episode and the next one runs in a new browser") {
  Dino env({}, quiet(CaptureMode::Canvas));
  env.reset(2);
  for (int i = 0; i < 5; ++i) CHECK_FALSE(env.step(Dino::kNoop).truncated);
  const int old_browser = env.chromium()->browser_pid();
  ::kill(-old_browser, SIGKILL);
  const auto r = env.step(Dino::kNoop);
  CHECK(r.truncated);
  CHECK_FALSE(r.terminated);
  CHECK(env.browser_restarts() == 1);
  CHECK(env.chromium()->browser_pid() != old_browser);
  env.reset(2);
  env::StepResult s;
  int steps = 0;
  while (!s.terminated && steps < 1000) s = env.step(Dino::kNoop), ++steps;
  CHECK(s.terminated);
  CHECK(s.info.score > 0);
}

TEST_CASE("Canvas game: attach to a running browser with --cdp") {
  cdp::ChromiumOptions options;
  options.warn_no_sandbox = false;
  cdp::ChromiumProcess chrome(options);
  BrowserConfig b = quiet(CaptureMode::Canvas);
  b.cdp_url = "http://127.0.0.1:" + std::to_string(chrome.port());
  {
    Dino env({}, b);
    CHECK(env.chromium() == nullptr);
    env.reset(1);
    CHECK(env.step(Dino::kJump).info.episode_frame == 4);
  }
  // Our tab is closed again; the user's browser keeps running. Chromium
  // drops a closed target asynchronously, so allow it a few seconds.
  cdp::CdpClient client(chrome.ws_url());
  const auto dino_tabs = [&] {
    int count = 0;
    for (const auto& t : client.call("Target.getTargets")["targetInfos"])
      count += t["url"].get<std::string>().find("dino") != std::string::npos;
    return count;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (dino_tabs() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(dino_tabs() == 0);
  CHECK(chrome.alive());
}

TEST_CASE("Canvas game: a page without the game gives one clear error") {
  envs::CanvasGameConfig game = envs::dino_game_config();
  game.url = "about:blank";
  game.fallback_url.clear();
  game.load_timeout_ms = 5000;
  const std::string what = error_of([&] {
    envs::CanvasGame env(game, quiet());
    env.reset(1);
  });
  CHECK(what.rfind("dino: the page at about:blank did not become ready: `typeof Runner === 'function'", 0) == 0);
  CHECK(what.find("Runner.getInstance() is missing: this Chromium's Dino page changed") != std::string::npos);
}

}  // TEST_SUITE

TEST_SUITE("dino_config") {

TEST_CASE("Game config: the shipped dino.toml is the Dino configuration") {
  const auto file = envs::load_game_config(QRL_SOURCE_DIR "/envs/dino/games/dino.toml");
  const auto built_in = envs::dino_game_config();
  CHECK(file.url == built_in.url);
  CHECK(file.fallback_url == built_in.fallback_url);
  CHECK(file.canvas == built_in.canvas);
  CHECK(file.ready == built_in.ready);
  CHECK(file.ready_error == built_in.ready_error);
  CHECK(file.setup == built_in.setup);
  CHECK(file.start == built_in.start);
  CHECK(file.score == built_in.score);
  CHECK(file.game_over == built_in.game_over);
  CHECK(file.frame_skip == built_in.frame_skip);
  CHECK(file.observation_height == built_in.observation_height);
  CHECK(file.background == built_in.background);
  CHECK(file.reward_alive == built_in.reward_alive);
  CHECK(file.reward_crash == built_in.reward_crash);
  REQUIRE(file.actions.size() == built_in.actions.size());
  for (std::size_t i = 0; i < file.actions.size(); ++i) {
    CHECK(file.actions[i].name == built_in.actions[i].name);
    CHECK(file.actions[i].keys == built_in.actions[i].keys);
  }
}

TEST_CASE("Game config: bad input gives one clear error line") {
  CHECK(error_of([] { envs::parse_game_config("url = \"x\"\nscroe = \"1\"\n", "g.toml"); })
            .rfind("g.toml: unknown key 'scroe' (known keys: ", 0) == 0);
  CHECK(error_of([] { envs::parse_game_config("canvas = \"#c\"\n", "g.toml"); }) ==
        "g.toml: 'url' is required (the game's page: http, https, file or chrome URL)");
  CHECK(error_of([] { envs::parse_game_config("url = \"x\"\nframe_skip = \"4\"\n", "g.toml"); }) ==
        "g.toml: 'frame_skip' must be an integer");
  CHECK(error_of([] { envs::parse_game_config("url = = \n", "g.toml"); }).rfind("g.toml:1: ", 0) == 0);
  CHECK(error_of([] {
          envs::parse_game_config("url = \"x\"\n[[action]]\nname = \"fly\"\nkey = [\"Up\"]\n", "g.toml");
        }) == "g.toml: unknown key 'key' in [[action]] (known keys: keys, name)");
  // Unknown key names are caught before any browser starts.
  auto game = envs::parse_game_config("url = \"x\"\n[[action]]\nname = \"fly\"\nkeys = [\"Up\"]\n", "g.toml");
  CHECK(error_of([&] { envs::CanvasGame env(game, quiet()); })
            .rfind("unknown key 'Up' (known: ArrowUp, ArrowDown", 0) == 0);
  CHECK(error_of([] { envs::load_game_config("/nonexistent/game.toml"); }) ==
        "/nonexistent/game.toml: cannot open the game config (check --game-config)");
}

}  // TEST_SUITE
