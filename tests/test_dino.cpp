// Chrome Dino and the canvas-game env against a real Chromium.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <filesystem>

#include <qrl/cdp/chromium.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/env/vector_env.hpp>
#include <qrl/envs/dino.hpp>
#include <qrl/io/base64.hpp>
#include <qrl/rl/checkpoint.hpp>

#include "browser_support.hpp"
#include "resume_support.hpp"

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

TEST_CASE("Canvas capture: the observation computed in the page equals qrl::env::preprocess bit for bit") {
  // The page's JS port of the preprocessing functor against the functor
  // itself, on canvases with noise, gradients and semi-transparent pixels:
  // shrinking both axes (box), growing both (bilinear) and one of each.
  Dino env({}, quiet(CaptureMode::Canvas));
  env.reset(3);
  struct Case { int width, height, out_h, out_w; };
  int checked = 0;
  for (const Case c : {Case{600, 150, 80, 80}, Case{37, 23, 80, 80}, Case{100, 40, 30, 50}, Case{7, 300, 84, 84}}) {
    CAPTURE(c.width);
    CAPTURE(c.height);
    const std::string make =
        "(() => { let c = document.getElementById('qrl-test'); if (!c) { c = document.createElement('canvas');"
        " c.id = 'qrl-test'; document.body.appendChild(c); }"
        " c.width = " + std::to_string(c.width) + "; c.height = " + std::to_string(c.height) + ";"
        " const x = c.getContext('2d'); const img = x.createImageData(c.width, c.height); let s = 7;"
        " for (let i = 0; i < img.data.length; i += 4) { s = (s * 1103515245 + 12345) >>> 0;"
        "   img.data[i] = s & 255; img.data[i + 1] = (i >> 2) % 256; img.data[i + 2] = (s >>> 8) & 255;"
        "   const k = (s >>> 16) % 4; img.data[i + 3] = k === 0 ? 0 : k === 1 ? 255 : (s >>> 24); }"
        " x.putImageData(img, 0, 0);"
        " window.__qrl_game.selector = '#qrl-test';"
        " __qrl.setObservation(" + std::to_string(c.out_h) + ", " + std::to_string(c.out_w) + ", [250, 128, 3]);"
        " return __qrl.observe(); })()";
    const auto in_page = io::base64_decode<std::vector<std::uint8_t>>(env.evaluate(make).get<std::string>(), "observe");
    // The same canvas as PNG (lossless), blended over the same background
    // by the env, then the C++ functor.
    const std::string png = env.evaluate("__qrl.pixels()").get<std::string>();
    const auto rgba = envs::decode_png(io::base64_decode<std::vector<std::uint8_t>>(png, "pixels"), 4, "canvas PNG");
    REQUIRE(rgba.width == c.width);
    REQUIRE(rgba.height == c.height);
    int translucent = 0;
    for (std::size_t i = 3; i < rgba.pixels.size(); i += 4) translucent += rgba.pixels[i] > 0 && rgba.pixels[i] < 255;
    CHECK(translucent > c.width * c.height / 4);
    const auto rgb = envs::decode_canvas_png(png, {250, 128, 3}, "test");
    env::PreprocessSpec spec;
    spec.out_height = c.out_h;
    spec.out_width = c.out_w;
    std::vector<std::uint8_t> expected(static_cast<std::size_t>(c.out_h) * c.out_w);
    env::preprocess(env::FrameView{rgb.pixels.data(), env::FrameShape{rgb.height, rgb.width, 3}}, spec, expected.data());
    REQUIRE(in_page.size() == expected.size());
    CHECK(distinct_values(env::FrameView{expected.data(), env::FrameShape{c.out_h, c.out_w, 1}}) > 20);
    CHECK(in_page == expected);
    ++checked;
  }
  CHECK(checked == 4);
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

// Browser faults (issue 26): each one relaunches the browser, truncates the
// episode and lets the next one run; nothing of the old browser is left.
namespace {
// Plays no-op steps until the episode ends; its score.
double play_to_the_end(Dino& env, std::uint64_t seed) {
  env.reset(seed);
  env::StepResult s;
  for (int steps = 0; !s.terminated && steps < 1000; ++steps) s = env.step(Dino::kNoop);
  REQUIRE(s.terminated);
  return s.info.score;
}
bool gone(int pgid, const std::string& profile) {
  return qrl::test::eventually([&] { return qrl::test::live_processes(pgid, profile).empty(); }) &&
         qrl::test::eventually([&] { return !std::filesystem::exists(profile); });
}
}  // namespace

TEST_CASE("Browser fault: SIGKILL while a key is held - the episode is truncated, no key stays held, training goes on") {
  for (const auto capture : {CaptureMode::Canvas, CaptureMode::Screenshot}) {
    CAPTURE(static_cast<int>(capture));
    Dino env({}, quiet(capture));
    const double undisturbed = play_to_the_end(env, 4);
    env.reset(4);
    CHECK_FALSE(env.step(Dino::kDuck).truncated);  // ArrowDown is down now
    const int old_browser = env.chromium()->browser_pid();
    const std::string old_profile = env.chromium()->profile_dir();
    ::kill(-old_browser, SIGKILL);
    const auto r = env.step(Dino::kDuck);
    CHECK(r.truncated);
    CHECK_FALSE(r.terminated);
    CHECK(env.browser_restarts() == 1);
    CHECK(gone(old_browser, old_profile));
    // The next episode starts in the new browser with no key held: the
    // no-op run ends as it does undisturbed.
    CHECK(play_to_the_end(env, 4) == undisturbed);
    CHECK(env.browser_restarts() == 1);
  }
}

TEST_CASE("Browser fault: a browser stopped (SIGSTOP) beyond the CDP timeout is replaced and the run goes on") {
  BrowserConfig b = quiet(CaptureMode::Canvas);
  b.call_timeout = std::chrono::milliseconds(1500);
  Dino env({}, b);
  env.reset(2);
  CHECK_FALSE(env.step(Dino::kNoop).truncated);
  const int old_browser = env.chromium()->browser_pid();
  const std::string old_profile = env.chromium()->profile_dir();
  ::kill(-old_browser, SIGSTOP);
  const auto started = std::chrono::steady_clock::now();
  const auto r = env.step(Dino::kNoop);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  CHECK(r.truncated);
  CHECK(waited >= 1.4);
  CHECK(waited < 20);
  CHECK(env.browser_restarts() == 1);
  CHECK(env.chromium()->browser_pid() != old_browser);
  CHECK(gone(old_browser, old_profile));  // SIGKILL ends stopped processes too
  CHECK(play_to_the_end(env, 2) > 0);
}

TEST_CASE("Browser fault: the guardian killed - Chromium dies with it, its profile is removed, a new browser runs") {
  Dino env({}, quiet(CaptureMode::Canvas));
  env.reset(3);
  CHECK_FALSE(env.step(Dino::kJump).truncated);
  const int old_browser = env.chromium()->browser_pid();
  const std::string old_profile = env.chromium()->profile_dir();
  ::kill(env.chromium()->guardian_pid(), SIGKILL);
  // Chromium gets its death signal; the env sees the connection go.
  env::StepResult r;
  for (int i = 0; i < 50 && !r.truncated; ++i) r = env.step(Dino::kNoop), std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(r.truncated);
  CHECK(env.browser_restarts() == 1);
  CHECK(gone(old_browser, old_profile));
  CHECK(play_to_the_end(env, 3) > 0);
}

TEST_CASE("Browser fault: a page that hangs every time ends the env after 3 failures in a row, naming the cause") {
  // The score expression loops forever once the game has run 20 frames:
  // loading works, every episode's first steps hang.
  envs::CanvasGameConfig game = envs::dino_game_config();
  game.score = "(__qrl.frames > 20 ? (() => { for (;;) {} })() : 0)";
  BrowserConfig b = quiet(CaptureMode::Canvas);
  b.call_timeout = std::chrono::milliseconds(1000);
  envs::CanvasGame env(game, b);
  std::string what = "(no error)";
  int truncated = 0;
  try {
    for (int episode = 0; episode < 10; ++episode) {
      env.reset(1);
      env::StepResult s;
      for (int i = 0; i < 100 && !s.truncated && !s.terminated; ++i) s = env.step(0);
      truncated += s.truncated;
    }
  } catch (const env::EnvironmentFailure& e) {
    what = e.what();
  }
  CHECK(truncated == 3);
  CHECK(env.browser_restarts() == 4);
  CHECK(what.rfind("dino: the browser failed 4 times in a row, each time relaunched; the last failure: CDP call "
                   "Runtime.evaluate got no answer within 1000 ms", 0) == 0);
  CHECK(what.find("--cdp-timeout") != std::string::npos);
}

TEST_CASE("Canvas game: a score that is not a number and a page that does not load are named in the error") {
  envs::CanvasGameConfig game = envs::dino_game_config();
  game.score = "'many'";
  CHECK(error_of([&] { envs::CanvasGame env(game, quiet()); })
            .rfind("dino: the game config's 'score' expression ('many') gave no number (undefined, NaN or text)", 0) == 0);
  // A port that was just free: nothing listens there.
  const int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  REQUIRE(::bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  ::close(probe);
  envs::CanvasGameConfig refused = envs::dino_game_config();
  refused.url = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/";
  refused.fallback_url.clear();
  refused.load_timeout_ms = 5000;
  CHECK(error_of([&] { envs::CanvasGame env(refused, quiet()); }).find("(net::ERR_CONNECTION_REFUSED)") !=
        std::string::npos);
  envs::CanvasGameConfig missing = refused;
  missing.url = "file:///nonexistent/qrl-game.html";
  CHECK(error_of([&] { envs::CanvasGame env(missing, quiet()); }).find("(net::ERR_FILE_NOT_FOUND)") !=
        std::string::npos);
  envs::CanvasGameConfig unresolved = refused;
  unresolved.url = "http://qrl-test.invalid/";  // RFC 2606: never resolves
  CHECK(error_of([&] { envs::CanvasGame env(unresolved, quiet()); }).find("(net::ERR_NAME_NOT_RESOLVED)") !=
        std::string::npos);
}

TEST_CASE("Dino vector env: 2 browsers give per-env episodes identical to single envs - autoreset keeps them apart") {
  // What one env step recorded: the frame it returned and its outcome.
  struct Step {
    std::vector<std::uint8_t> frame;
    double reward = 0, score = 0;
    bool terminated = false;
  };
  // Env 1 jumps now and then, env 0 never: different actions, different seeds.
  auto action_of = [](int env, int t) { return env == 1 && t % 29 == 7 ? Dino::kJump : Dino::kNoop; };
  constexpr int kEnvs = 2;
  constexpr int kAfterReset = 5;  // steps recorded in each env's second episode
  std::vector<std::vector<std::uint8_t>> first(kEnvs), second_first(kEnvs);
  std::vector<std::vector<Step>> episode1(kEnvs), episode2(kEnvs);
  std::vector<std::string> dirs;
  std::vector<int> browsers;
  {
    env::VectorEnv<Dino> vec(kEnvs, [](int) { return Dino({}, quiet(CaptureMode::Canvas)); });
    for (int i = 0; i < kEnvs; ++i) {
      dirs.push_back(vec.env(i).chromium()->profile_dir());
      browsers.push_back(vec.env(i).chromium()->browser_pid());
    }
    CHECK(dirs[0] != dirs[1]);
    vec.reset(7);
    for (int i = 0; i < kEnvs; ++i) first[i] = bytes_of(vec.observation(i));
    std::vector<int> t(kEnvs, 0), resets(kEnvs, 0);
    for (int n = 0; n < 400; ++n) {
      std::vector<int> actions(kEnvs);
      for (int i = 0; i < kEnvs; ++i) actions[i] = action_of(i, t[i]);
      const auto results = vec.step(actions);
      bool all_done = true;
      for (int i = 0; i < kEnvs; ++i) {
        const auto& r = results[i].result;
        if (resets[i] < 2) {
          auto& episode = resets[i] == 0 ? episode1[i] : episode2[i];
          episode.push_back({bytes_of(r.observation), r.reward, r.info.score, r.terminated});
        }
        ++t[i];
        if (results[i].autoreset) {
          // The rule: the step's own result is its episode's last (a crash),
          // and the env already shows the next episode's first frame.
          CHECK(r.terminated);
          CHECK(r.reward == -1.0);
          ++resets[i];
          t[i] = 0;
          if (resets[i] == 1) second_first[i] = bytes_of(vec.observation(i));
          CHECK(bytes_of(vec.observation(i)) != bytes_of(r.observation));
        }
        if (resets[i] == 1 && t[i] == kAfterReset) ++resets[i];  // stop recording
        all_done = all_done && resets[i] >= 2;
      }
      if (all_done) break;
    }
    for (int i = 0; i < kEnvs; ++i) REQUIRE(episode2[i].size() == kAfterReset);
    CHECK(episode1[0].size() != episode1[1].size());  // the envs did not run in step
  }
  // No browser and no profile outlive the vector env.
  for (int i = 0; i < kEnvs; ++i) {
    CHECK_FALSE(std::filesystem::exists(dirs[i]));
    CHECK(test::eventually([&] { return test::live_processes(browsers[i], dirs[i]).empty(); }));
  }
  // Env i's k-th episode has the k-th seed of its own sequence, fixed by (seed, i).
  Dino single({}, quiet(CaptureMode::Canvas));
  for (int i = 0; i < kEnvs; ++i) {
    Rng seeds(7, SeedPurpose::episode_seeds, static_cast<std::uint64_t>(i));
    auto replay = [&](std::uint64_t seed, const std::vector<std::uint8_t>& start, const std::vector<Step>& steps) {
      CHECK(bytes_of(single.reset(seed)) == start);
      for (std::size_t k = 0; k < steps.size(); ++k) {
        const auto r = single.step(action_of(i, static_cast<int>(k)));
        CHECK(bytes_of(r.observation) == steps[k].frame);
        CHECK(r.reward == steps[k].reward);
        CHECK(r.info.score == steps[k].score);
        CHECK(r.terminated == steps[k].terminated);
      }
    };
    replay(seeds.next_u64(), first[i], episode1[i]);
    CHECK(episode1[i].back().terminated);
    replay(seeds.next_u64(), second_first[i], episode2[i]);
  }
}

TEST_CASE("Dino: resume without env state - the learner exactly, the interrupted episode truncated, a fresh one") {
  auto dino = [] {
    envs::DinoConfig c;
    c.actions = 2;
    c.observation_height = c.observation_width = 20;
    return Dino(c, quiet(CaptureMode::Canvas));
  };
  test::TempDir dir("dino");
  test::Setup<Dino> first(dino(), 20, 3, 500);
  first.trainer.run(80);  // learning starts at 60, an update every 2 steps
  while (first.trainer.state().envs[0].tally.length == 0) first.trainer.run(first.trainer.step() + 1);
  const auto before = first.trainer.state();
  REQUIRE(before.envs[0].tally.length > 0);
  const double score_then = first.env().score();
  const auto saved = rl::save_checkpoint(dir.path / "checkpoints", first.trainer, first.ctx);
  const auto saved_state = rl::verify_checkpoint(saved);
  CHECK(saved_state["envs"][0]["exact"] == false);
  CHECK(saved_state["envs"][0]["score"].get<double>() == score_then);

  // Another init seed and a fresh browser: the learner must come from the checkpoint.
  test::Setup<Dino> resumed(dino(), 20, 99, 500);
  const auto loaded = rl::load_checkpoint(saved, resumed.trainer, resumed.ctx);
  const auto ta = test::all_tensors(first.ctx, first.agent), tb = test::all_tensors(resumed.ctx, resumed.agent);
  REQUIRE(ta.size() == tb.size());
  for (std::size_t i = 0; i < ta.size(); ++i)
    CHECK(std::memcmp(ta[i].data(), tb[i].data(), ta[i].size() * sizeof(float)) == 0);
  CHECK(resumed.agent.updates() == first.agent.updates());
  CHECK(resumed.agent.updates() >= 10);
  CHECK(resumed.agent.optimizer().steps() == first.agent.optimizer().steps());
  const auto after = resumed.trainer.state();
  CHECK(after.step == before.step);
  CHECK(after.exploration == before.exploration);
  CHECK(after.sampling == before.sampling);
  CHECK(after.envs[0].episode_seeds == before.envs[0].episode_seeds);
  CHECK(resumed.trainer.progress().epsilon == first.trainer.progress().epsilon);
  REQUIRE(resumed.replay.frames() == first.replay.frames());
  CHECK(resumed.replay.transitions() == first.replay.transitions());
  for (std::int64_t k = 0; k < first.replay.frames(); ++k) {
    std::vector<std::uint8_t> sa, na, sb, nb;
    int aa = 0, ab = 0;
    float ra = 0, rb = 0;
    bool xa = false, xb = false;
    REQUIRE(first.replay.transition_at(k, sa, na, aa, ra, xa) == resumed.replay.transition_at(k, sb, nb, ab, rb, xb));
    CHECK((sa == sb && na == nb && aa == ab && ra == rb && xa == xb));
  }

  // The episode in progress ends as truncated at the checkpoint's step.
  CHECK_FALSE(after.started);
  CHECK(after.episodes == before.episodes + 1);
  REQUIRE(loaded.contains("interrupted_episodes"));
  const auto& closed = after.recent.back();
  CHECK(closed.index == before.episodes);
  CHECK(closed.truncated);
  CHECK(closed.end_step == before.step);
  CHECK(closed.length == before.envs[0].tally.length);
  CHECK(closed.episode_return == before.envs[0].tally.episode_return);
  CHECK(closed.score == score_then);
  CHECK_FALSE(resumed.replay.position().episode_open);

  // A fresh episode begins: its first frame plus one per step.
  resumed.trainer.run(before.step + 10);
  CHECK(resumed.trainer.step() == before.step + 10);
  CHECK(resumed.trainer.state().started);
  CHECK(resumed.trainer.state().envs[0].tally.length == 10);
  CHECK(resumed.replay.frames() == first.replay.frames() + 11);
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
  CHECK(file.key_events == built_in.key_events);
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
