#pragma once
// The configuration of a canvas game env (CanvasGame): what makes a page a
// game (CanvasGameConfig, read from TOML by parse_game_config; format:
// docs/dino.md) and where the browser comes from (BrowserConfig).
#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <qrl/core/error.hpp>

namespace qrl::envs {

// How the observation leaves the browser. Both give the same pixels for the
// same game state (tested); canvas is several times faster.
enum class CaptureMode {
  Screenshot,  // Page.captureScreenshot clipped to the canvas, PNG decoded with stb_image
  Canvas,      // the observation computed in the page from getImageData, through Runtime.evaluate
};

inline CaptureMode parse_capture_mode(std::string_view name) {
  if (name == "screenshot") return CaptureMode::Screenshot;
  if (name == "canvas") return CaptureMode::Canvas;
  fail("unknown capture mode '", name, "' (expected screenshot or canvas)");
}

enum class KeyEvents { Page, Browser };

struct GameAction {
  std::string name;
  std::vector<std::string> keys;  // held for the whole step
};

// What makes a page a game. Every JS string is evaluated in the page.
struct CanvasGameConfig {
  std::string name = "game";
  std::string url;           // http(s)://, file:// or chrome://
  std::string fallback_url;  // tried with the network emulated offline if `ready` fails on `url`
  std::string canvas = "canvas";  // CSS selector of the game's canvas
  std::string ready = "true";     // expression: true once the game can be driven
  std::string ready_error;        // added to the error when `ready` stays false
  std::string setup;              // statements run after each page load, before `start`
  std::string start;              // statements that start an episode after a load
  std::string restart;            // statements that start a new episode without reloading (reload = false)
  std::string score = "0";        // expression: the score the page shows
  std::string game_over = "false";  // expression: true once the episode is lost
  bool reload = true;  // reload the page for every episode: exact reproducibility for a seed
  // Who sends the actions' key events. "page": the step's own script
  // dispatches KeyboardEvents (key, code, keyCode) before it advances the
  // frames, so a step is one DevTools call whatever the keys do. "browser":
  // Input.dispatchKeyEvent, trusted events as from a real keyboard, one call
  // per key change; for games that ignore synthetic events (isTrusted).
  KeyEvents key_events = KeyEvents::Page;
  std::vector<GameAction> actions{{"noop", {}}};
  int frame_skip = 4;              // frames of 1000/60 ms per step
  int observation_height = 80;
  int observation_width = 80;
  std::array<std::uint8_t, 3> background{255, 255, 255};  // under transparent canvas pixels
  double reward_alive = 0.1;
  double reward_crash = -1.0;
  std::int64_t max_steps = 0;  // truncate an episode after this many steps; 0: never
  int load_timeout_ms = 15000;
};

// Reads a game description from TOML (format: docs/dino.md). Unknown keys are
// errors, so a typo cannot silently fall back to a default. toml++ stays in
// src/canvas_game_config.cpp, compiled once into qrl::dino.
CanvasGameConfig parse_game_config(std::string_view text, const std::string& source = "game config");
CanvasGameConfig load_game_config(const std::filesystem::path& path);

// Where the browser comes from.
struct BrowserConfig {
  std::string chromium;  // executable; empty: search PATH
  std::string cdp_url;   // attach to a running browser (http://HOST:PORT or ws://...) instead of launching one
  bool headful = false;
  std::vector<std::string> chromium_arguments;  // added to the launch command line
  CaptureMode capture = CaptureMode::Screenshot;
  std::chrono::milliseconds call_timeout{15000};
  bool warn_no_sandbox = true;
  // Browser failures (a dead connection, a call unanswered within
  // call_timeout, a page that lost qrl's script) each relaunch the browser
  // and truncate the episode. After this many relaunches in a row, with no
  // episode ending by itself between them, the next failure ends the env
  // with env::EnvironmentFailure: a page that hangs in every episode must
  // not cost a timeout per episode forever.
  int max_failures_in_a_row = 3;
};

}  // namespace qrl::envs
