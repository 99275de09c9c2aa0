#pragma once
// A Gymnasium-style environment for any browser game drawn on a <canvas> that
// runs on requestAnimationFrame and reads the keyboard, driven over the
// DevTools Protocol in lock-step: the page's clock, animation frames and
// Math.random are replaced before its scripts run (page_runtime.js), so the
// game moves only when step() advances it and a seed fixes an episode.
// Chrome Dino is one configuration of it (qrl/envs/dino.hpp); others come
// from a TOML file (canvas_game_config.hpp).
#include <array>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <qrl/cdp/chromium.hpp>
#include <qrl/cdp/client.hpp>
#include <qrl/core/error.hpp>
#include <qrl/env/env.hpp>
#include <qrl/env/preprocess.hpp>
#include <qrl/envs/browser_tab.hpp>
#include <qrl/envs/canvas_game_config.hpp>
#include <qrl/envs/capture.hpp>
#include <qrl/envs/keyboard.hpp>
#include <qrl/envs/page_runtime.hpp>

namespace qrl::envs {

class CanvasGame {
 public:
  CanvasGame(CanvasGameConfig game, BrowserConfig browser = {})
      : game_(std::move(game)), browser_config_(std::move(browser)) {
    for (const auto& action : game_.actions) {
      std::vector<KeyDef> keys;
      for (const auto& k : action.keys) keys.push_back(key_def(k));
      action_keys_.push_back(std::move(keys));
    }
    observation_.assign(static_cast<std::size_t>(game_.observation_height) * game_.observation_width, 0);
    connect();
    // Load the game once now, so a missing or changed page is reported at
    // start rather than at the first reset().
    load_episode(0);
  }

  CanvasGame(const CanvasGame&) = delete;
  CanvasGame& operator=(const CanvasGame&) = delete;
  // Movable, so env::VectorEnv can hold envs built by a factory. The
  // moved-from env owns nothing (its tab_ is null, so it closes no tab).
  CanvasGame(CanvasGame&&) = default;
  CanvasGame& operator=(CanvasGame&&) = delete;

  ~CanvasGame() {
    if (tab_) tab_->close_attached();
  }

  env::FrameView reset(std::uint64_t seed) {
    for (;;) {
      try {
        release_keys();
        load_episode(seed);
        capture();
        break;
      } catch (const std::exception& e) {
        if (!BrowserTab::is_fault(e)) throw;
        recover(e.what());
      }
    }
    held_.forget();
    steps_ = 0;
    done_ = false;
    started_ = true;
    return observation();
  }

  env::StepResult step(int action) {
    require(action >= 0 && action < action_count(), game_.name, ": action ", action, " is invalid (0..",
            action_count() - 1, ")");
    require(started_, game_.name, ": no episode yet; call reset(seed) first");
    require(!done_, game_.name, ": the episode is over; call reset(seed) before stepping");
    env::StepResult result;
    try {
      held_.hold(action_keys_[static_cast<std::size_t>(action)], [&](bool down, const KeyDef& k) { send_key(down, k); });
      advance(game_.frame_skip);
    } catch (const std::exception& e) {
      if (!BrowserTab::is_fault(e)) throw;
      // The browser is gone: this episode cannot go on, but training can.
      // End it as truncated (bootstrapped) with the last observation, and
      // start a fresh browser for the next reset().
      recover(e.what());
      done_ = true;
      result.observation = observation();
      result.truncated = true;
      result.info = info();
      return result;
    }
    ++steps_;
    result.observation = observation();
    result.terminated = game_over_;
    result.reward = game_over_ ? game_.reward_crash : game_.reward_alive;
    result.truncated = !game_over_ && game_.max_steps > 0 && steps_ >= game_.max_steps;
    result.info = info();
    done_ = result.terminated || result.truncated;
    if (done_) failures_in_a_row_ = 0;  // an episode that ended by itself
    return result;
  }

  int action_count() const { return static_cast<int>(game_.actions.size()); }
  env::FrameShape observation_shape() const { return {game_.observation_height, game_.observation_width, 1}; }
  env::FrameView observation() const { return {observation_.data(), observation_shape()}; }

  // The canvas as RGB, before preprocessing, in the state of the last step.
  // Canvas capture computes the observation in the page, so there the frame
  // is fetched (as PNG) only when asked for.
  env::FrameView raw_frame() {
    if (raw_stale_) {
      keep_raw(decode_canvas_png(evaluate("__qrl.pixels()").get_ref<const std::string&>(), game_.background,
                                 game_.name));
      raw_stale_ = false;
    }
    return {raw_.data(), raw_shape_};
  }
  // The same frame for people and GIFs (env::RenderableEnvironment): the
  // canvas in the state of the last step (with canvas capture, one readback).
  env::FrameView render_rgb() { return raw_frame(); }
  double score() const { return score_; }
  bool game_over() const { return game_over_; }
  std::int64_t frames() const { return frames_; }
  int browser_restarts() const { return browser_restarts_; }
  const CanvasGameConfig& config() const { return game_; }
  CaptureMode capture_mode() const { return browser_config_.capture; }
  void set_capture_mode(CaptureMode mode) { browser_config_.capture = mode; }
  // Captures the current state again without advancing it.
  env::FrameView recapture() {
    capture();
    return observation();
  }

  // Evaluates `expression` in the page and returns its value (tests, tools).
  cdp::Json evaluate(const std::string& expression) { return tab_->evaluate(expression); }

  cdp::CdpClient& client() { return tab_->client(); }
  const std::string& session_id() const { return tab_->session_id(); }
  // The browser this env launched (null when attached with cdp_url).
  cdp::ChromiumProcess* chromium() { return tab_->chromium(); }

 private:
  void connect() {
    tab_ = std::make_unique<BrowserTab>(browser_config_, game_.name);
    browser_config_.warn_no_sandbox = false;  // once per env is enough
    script_id_.clear();
    loaded_once_ = false;
  }

  // One browser fault: a fresh browser (or, attached, a fresh connection and
  // tab), or env::EnvironmentFailure naming the cause once
  // max_failures_in_a_row relaunches came with no episode ending by itself.
  void recover(std::string cause) {
    for (;;) {
      ++browser_restarts_;
      if (++failures_in_a_row_ > browser_config_.max_failures_in_a_row)
        throw env::EnvironmentFailure(qrl::detail::concat(
            game_.name, ": the browser failed ", failures_in_a_row_, " times in a row, each time relaunched; the last "
            "failure: ", cause, ". Check that the page and its config work in 'play --headful'",
            browser_config_.cdp_url.empty() ? "" : " and that the browser at --cdp runs"));
      std::cerr << "qrl: " << game_.name << ": browser failure (" << detail::abbreviate(cause, 200)
                << "); the episode ends as truncated and a new browser starts (" << failures_in_a_row_ << " of at most "
                << browser_config_.max_failures_in_a_row << " in a row)\n";
      try {
        relaunch();
        return;
      } catch (const std::exception& e) {
        if (dynamic_cast<const env::EnvironmentFailure*>(&e)) throw;
        cause = e.what();
      }
    }
  }

  // A failed browser is replaced, not reconnected (Puppeteer's rule): its
  // state is gone anyway, and a fresh profile is a known state. What the env
  // knew of the old page goes with it: no key is held in the new one.
  void relaunch() {
    held_.forget();
    pending_keys_ = cdp::Json::array();
    raw_stale_ = false;  // a recording shows the last frame it has
    tab_.reset();        // kills a launched browser's process group, removes its profile
    connect();           // attached mode: the user's browser may be back
  }

  void load_episode(std::uint64_t seed) {
    if (!game_.reload && loaded_once_) {
      evaluate(reseed_script(seed));
      evaluate("{\n" + game_.restart + "\n}\n0");
      read_state();
      return;
    }
    if (!script_id_.empty()) tab_->call("Page.removeScriptToEvaluateOnNewDocument", {{"identifier", script_id_}});
    script_id_ = tab_->call("Page.addScriptToEvaluateOnNewDocument", {{"source", page_runtime_script(seed)}})
                     ["identifier"]
                         .get<std::string>();
    const cdp::Milliseconds timeout{game_.load_timeout_ms};
    bool ok = tab_->navigate(game_.url, timeout, game_.ready);
    if (!ok && !game_.fallback_url.empty()) {
      // The offline error page carries the game (Chrome Dino's case).
      tab_->emulate_offline();
      ok = tab_->navigate(game_.fallback_url, timeout, game_.ready);
    }
    if (!ok) {
      const std::string& problem = tab_->load_problem();
      fail(game_.name, ": the page at ", game_.url,
           game_.fallback_url.empty() ? std::string{} : " (and the fallback " + game_.fallback_url + ")",
           " did not become ready: `", detail::abbreviate(game_.ready), "` stayed false",
           problem.empty() ? std::string() : " (" + problem + ")", ". ",
           game_.ready_error.empty() ? "Check the URL and the 'ready' expression of the game config."
                                     : game_.ready_error);
    }
    loaded_once_ = true;
    evaluate(game_binding_script(game_));
    canvas_visible_ = true;
    const cdp::Json has_canvas = evaluate("!!__qrl.canvas()");
    require(has_canvas.is_boolean() && has_canvas.get<bool>(), game_.name, ": no element matches the canvas selector '",
            game_.canvas, "' on ", game_.url, "; fix 'canvas' in the game config");
    if (!game_.setup.empty()) evaluate("{\n" + game_.setup + "\n}\n0");
    if (!game_.start.empty()) evaluate("{\n" + game_.start + "\n}\n0");
    // Measured after `start`: starting a game may move or resize its canvas.
    const cdp::Json rect = evaluate("__qrl.rect()");
    require(rect.is_array() && rect.size() == 6, game_.name, ": cannot measure the canvas '", game_.canvas, "'");
    canvas_ = {rect[0].get<double>(), rect[1].get<double>(), rect[2].get<double>(),
               rect[3].get<double>(), rect[4].get<int>(),    rect[5].get<int>()};
    require(canvas_.width >= 1 && canvas_.height >= 1 && canvas_.pixel_width >= 1 && canvas_.pixel_height >= 1,
            game_.name, ": the canvas '", game_.canvas, "' has no size on the page");
    read_state();
  }

  void read_state() { take_step_result(evaluate("__qrl.step(0, 0)"), 3); }

  // [score, over, frames(, capture)] from __qrl.step(); the score comes from
  // the config's expression, so a wrong one is named here.
  void take_step_result(const cdp::Json& r, std::size_t size) {
    require(r.is_array() && r.size() == size && r[1].is_boolean() && r[2].is_number_integer(), game_.name,
            ": the page's step answer is malformed (", detail::abbreviate(r.dump()),
            "); did the page replace window.__qrl?");
    require(r[0].is_number(), game_.name, ": the game config's 'score' expression (", detail::abbreviate(game_.score),
            ") gave ", r[0].is_null() ? std::string("no number (undefined, NaN or text)") : r[0].dump(),
            "; it must evaluate to a number");
    score_ = r[0].get<double>();
    game_over_ = r[1].get<bool>();
    frames_ = r[2].get<std::int64_t>();
  }

  // Sends key events the configured way: through the browser now, or
  // queued for the page script of the next step (pending_keys_).
  void send_key(bool down, const KeyDef& k) {
    if (game_.key_events == KeyEvents::Browser)
      tab_->call("Input.dispatchKeyEvent", browser_key_event(down, k));
    else
      pending_keys_.push_back(page_key_event(down, k));
  }

  // Lets go of every held key, so the browser's keyboard state does not leak
  // into the next episode. A dead browser holds nothing.
  void release_keys() {
    pending_keys_ = cdp::Json::array();
    held_.release_all([&](bool down, const KeyDef& k) { send_key(down, k); });
    if (!pending_keys_.empty()) evaluate("__qrl.step(0, 0, " + pending_keys_.dump() + ")");
    pending_keys_ = cdp::Json::array();
  }

  bool canvas_capture() const { return browser_config_.capture == CaptureMode::Canvas; }

  // Canvas capture reads pixels, not the screen: unless a person watches
  // (--headful), the canvas is hidden so Chromium composites nothing.
  void update_canvas_visibility() {
    const bool visible = !canvas_capture() || browser_config_.headful;
    if (visible != canvas_visible_) {
      evaluate(std::string("__qrl.setVisible(") + (visible ? "true" : "false") + ")");
      canvas_visible_ = visible;
    }
  }

  void advance(int frames) {
    update_canvas_visibility();
    const bool canvas = canvas_capture();
    std::string call = "__qrl.step(" + std::to_string(frames) + (canvas ? ", 2" : ", 0");
    if (!pending_keys_.empty()) call += ", " + pending_keys_.dump();
    pending_keys_ = cdp::Json::array();
    const cdp::Json r = evaluate(call + ")");
    take_step_result(r, canvas ? 4 : 3);
    if (canvas) {
      require(r[3].is_string(), game_.name, ": the page sent no observation");
      read_observation(r[3].get_ref<const std::string&>());
    } else {
      capture_screenshot();
    }
  }

  void capture() {
    update_canvas_visibility();
    if (canvas_capture())
      read_observation(evaluate("__qrl.observe()").get_ref<const std::string&>());
    else
      capture_screenshot();
  }

  void read_observation(const std::string& b64) {
    read_canvas_observation(b64, observation_, game_.name);
    raw_stale_ = true;
  }

  void capture_screenshot() {
    const cdp::Json r = tab_->call("Page.captureScreenshot", screenshot_request(canvas_));
    keep_raw(decode_screenshot(r["data"].get_ref<const std::string&>(), game_.name));
    raw_stale_ = false;
    env::PreprocessSpec spec;
    spec.layout = env::PixelLayout::Rgb;
    spec.out_height = game_.observation_height;
    spec.out_width = game_.observation_width;
    env::preprocess(raw_frame(), spec, observation_.data());
  }

  void keep_raw(Image rgb) {
    raw_ = std::move(rgb.pixels);
    raw_shape_ = {rgb.height, rgb.width, 3};
  }

  env::StepInfo info() const {
    env::StepInfo i;
    i.score = score_;
    i.episode_frame = frames_;
    return i;
  }

  CanvasGameConfig game_;
  BrowserConfig browser_config_;
  std::vector<std::vector<KeyDef>> action_keys_;
  std::unique_ptr<BrowserTab> tab_;
  std::string script_id_;
  bool loaded_once_ = false;
  CanvasRect canvas_;
  std::vector<std::uint8_t> raw_;
  env::FrameShape raw_shape_;
  std::vector<std::uint8_t> observation_;
  HeldKeys held_;                                // keys held down now
  cdp::Json pending_keys_ = cdp::Json::array();  // page-sent key events for the next step
  bool canvas_visible_ = true;
  bool raw_stale_ = false;  // raw_ is older than the observation (canvas capture)
  double score_ = 0;
  bool game_over_ = false;
  std::int64_t frames_ = 0;
  std::int64_t steps_ = 0;
  bool started_ = false;
  bool done_ = false;
  int browser_restarts_ = 0;
  int failures_in_a_row_ = 0;  // browser faults since an episode last ended by itself
};

}  // namespace qrl::envs
