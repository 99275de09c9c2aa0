#pragma once
// A Gymnasium-style environment for any browser game drawn on a <canvas> that
// runs on requestAnimationFrame and reads the keyboard, driven over the
// DevTools Protocol in lock-step: the page's clock, animation frames and
// Math.random are replaced before its scripts run, so the game moves only
// when step() advances it and a seed fixes an episode. Chrome Dino is one
// configuration of it (qrl/envs/dino.hpp); others come from a TOML file.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <type_traits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include <qrl/cdp/chromium.hpp>
#include <qrl/cdp/client.hpp>
#include <qrl/core/error.hpp>
#include <qrl/env/env.hpp>
#include <qrl/env/preprocess.hpp>
#include <qrl/io/file.hpp>

#ifndef QRL_STB_IMAGE_INCLUDED
#define QRL_STB_IMAGE_INCLUDED
// stb_image is single-header: its definitions are compiled here as static
// functions, so every translation unit gets a private copy and no link clash.
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#if __has_include(<stb_image.h>)
#include <stb_image.h>
#else
#include <stb/stb_image.h>  // Debian's libstb-dev, with no -I needed
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif

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
// errors, so a typo cannot silently fall back to a default.
inline CanvasGameConfig parse_game_config(std::string_view text, const std::string& source = "game config") {
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    fail(source, ":", e.source().begin.line, ": ", e.description());
  }
  CanvasGameConfig c;
  static const std::set<std::string> known{"name",       "url",     "fallback_url", "canvas",   "ready",
                                           "ready_error", "setup",  "start",        "restart",  "score",
                                           "game_over",  "reload",  "frame_skip",   "observation", "background",
                                           "reward_alive", "reward_crash", "max_steps", "load_timeout_ms", "action",
                                           "key_events"};
  for (const auto& [key, value] : table) {
    const std::string k(key.str());
    if (!known.count(k)) {
      std::string list;
      for (const auto& name : known) list += (list.empty() ? "" : ", ") + name;
      fail(source, ": unknown key '", k, "' (known keys: ", list, ")");
    }
  }
  auto get_string = [&](const char* key, std::string& out) {
    if (auto node = table.get(key)) {
      auto v = node->value<std::string>();
      require(v.has_value() && node->is_string(), source, ": '", key, "' must be a string");
      out = *v;
    }
  };
  auto get_number = [&](const char* key, auto& out) {
    if (auto node = table.get(key)) {
      using T = std::remove_reference_t<decltype(out)>;
      if constexpr (std::is_floating_point_v<T>) {
        auto v = node->value<double>();
        require(v.has_value(), source, ": '", key, "' must be a number");
        out = static_cast<T>(*v);
      } else {
        auto v = node->value<std::int64_t>();
        require(v.has_value() && node->is_integer(), source, ": '", key, "' must be an integer");
        out = static_cast<T>(*v);
      }
    }
  };
  get_string("name", c.name);
  get_string("url", c.url);
  get_string("fallback_url", c.fallback_url);
  get_string("canvas", c.canvas);
  get_string("ready", c.ready);
  get_string("ready_error", c.ready_error);
  get_string("setup", c.setup);
  get_string("start", c.start);
  get_string("restart", c.restart);
  get_string("score", c.score);
  get_string("game_over", c.game_over);
  if (auto node = table.get("reload")) {
    require(node->is_boolean(), source, ": 'reload' must be true or false");
    c.reload = *node->value<bool>();
  }
  if (auto node = table.get("key_events")) {
    auto v = node->value<std::string>();
    require(v && (*v == "page" || *v == "browser"), source, ": 'key_events' must be \"page\" or \"browser\"");
    c.key_events = *v == "page" ? KeyEvents::Page : KeyEvents::Browser;
  }
  get_number("frame_skip", c.frame_skip);
  get_number("reward_alive", c.reward_alive);
  get_number("reward_crash", c.reward_crash);
  get_number("max_steps", c.max_steps);
  get_number("load_timeout_ms", c.load_timeout_ms);
  if (auto node = table.get("observation")) {
    auto* arr = node->as_array();
    require(arr && arr->size() == 2 && (*arr)[0].is_integer() && (*arr)[1].is_integer(), source,
            ": 'observation' must be [height, width], e.g. [80, 80]");
    c.observation_height = static_cast<int>(*(*arr)[0].value<std::int64_t>());
    c.observation_width = static_cast<int>(*(*arr)[1].value<std::int64_t>());
  }
  if (auto node = table.get("background")) {
    auto v = node->value<std::string>();
    require(v && v->size() == 7 && (*v)[0] == '#', source, ": 'background' must be a colour like \"#ffffff\"");
    for (int i = 0; i < 3; ++i) {
      unsigned value = 0;
      require(std::sscanf(v->c_str() + 1 + 2 * i, "%2x", &value) == 1, source, ": 'background' ", *v,
              " is not a hex colour");
      c.background[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(value);
    }
  }
  if (auto node = table.get("action")) {
    auto* arr = node->as_array();
    require(arr && arr->is_array_of_tables(), source,
            ": 'action' must be an array of tables: [[action]] name = \"jump\" keys = [\"ArrowUp\"]");
    c.actions.clear();
    for (auto& element : *arr) {
      const auto& t = *element.as_table();
      GameAction action;
      for (const auto& [key, value] : t) {
        const std::string k(key.str());
        require(k == "name" || k == "keys", source, ": unknown key '", k, "' in [[action]] (known keys: keys, name)");
      }
      auto name = t["name"].value<std::string>();
      require(name.has_value(), source, ": every [[action]] needs a name");
      action.name = *name;
      if (auto keys = t["keys"].as_array()) {
        for (auto& key : *keys) {
          auto s = key.value<std::string>();
          require(s.has_value(), source, ": keys of action '", action.name, "' must be strings");
          action.keys.push_back(*s);
        }
      }
      c.actions.push_back(std::move(action));
    }
  }
  require(!c.url.empty(), source, ": 'url' is required (the game's page: http, https, file or chrome URL)");
  require(!c.actions.empty(), source, ": at least one [[action]] is required");
  require(c.frame_skip >= 1 && c.frame_skip <= 1000, source, ": 'frame_skip' must be 1..1000, got ", c.frame_skip);
  require(c.observation_height >= 1 && c.observation_width >= 1 && c.observation_height <= 1024 &&
              c.observation_width <= 1024,
          source, ": 'observation' sides must be 1..1024");
  require(c.reload || !c.restart.empty(), source, ": 'reload = false' needs a 'restart' script");
  require(c.max_steps >= 0, source, ": 'max_steps' must be >= 0");
  return c;
}

inline CanvasGameConfig load_game_config(const std::filesystem::path& path) {
  require(std::filesystem::exists(path), path.string(), ": cannot open the game config (check --game-config)");
  // A game config is a page of TOML; anything larger is the wrong file.
  return parse_game_config(io::read_file(path, io::config_file_max_bytes, "game config (TOML, docs/dino.md)"), path.string());
}

// Where the browser comes from.
struct BrowserConfig {
  std::string chromium;  // executable; empty: search PATH
  std::string cdp_url;   // attach to a running browser (http://HOST:PORT or ws://...) instead of launching one
  bool headful = false;
  std::vector<std::string> chromium_arguments;  // added to the launch command line
  CaptureMode capture = CaptureMode::Screenshot;
  cdp::Milliseconds call_timeout{15000};
  bool warn_no_sandbox = true;
  // Browser failures (a dead connection, a call unanswered within
  // call_timeout, a page that lost qrl's script) each relaunch the browser
  // and truncate the episode. After this many relaunches in a row, with no
  // episode ending by itself between them, the next failure ends the env
  // with env::EnvironmentFailure: a page that hangs in every episode must
  // not cost a timeout per episode forever.
  int max_failures_in_a_row = 3;
};

namespace detail {

struct KeyDef {
  std::string key;
  std::string code;
  int key_code = 0;
  std::string text;
};

inline KeyDef key_def(const std::string& name) {
  static const std::pair<const char*, KeyDef> table[] = {
      {"ArrowUp", {"ArrowUp", "ArrowUp", 38, ""}},       {"ArrowDown", {"ArrowDown", "ArrowDown", 40, ""}},
      {"ArrowLeft", {"ArrowLeft", "ArrowLeft", 37, ""}}, {"ArrowRight", {"ArrowRight", "ArrowRight", 39, ""}},
      {"Space", {" ", "Space", 32, " "}},                {"Enter", {"Enter", "Enter", 13, "\r"}},
      {"Escape", {"Escape", "Escape", 27, ""}},          {"Shift", {"Shift", "ShiftLeft", 16, ""}},
      {"Control", {"Control", "ControlLeft", 17, ""}},   {"Tab", {"Tab", "Tab", 9, ""}},
  };
  for (const auto& [n, def] : table)
    if (name == n) return def;
  if (name.size() == 1) {
    const char ch = name[0];
    if (ch >= 'a' && ch <= 'z') return {name, std::string("Key") + char(ch - 32), ch - 32, name};
    if (ch >= 'A' && ch <= 'Z') return {std::string(1, char(ch + 32)), "Key" + name, ch, std::string(1, char(ch + 32))};
    if (ch >= '0' && ch <= '9') return {name, "Digit" + name, ch, name};
  }
  fail("unknown key '", name,
       "' (known: ArrowUp, ArrowDown, ArrowLeft, ArrowRight, Space, Enter, Escape, Shift, Control, Tab, a-z, 0-9)");
}

inline std::string js_string(const std::string& s) { return cdp::Json(s).dump(); }

// Installed with Page.addScriptToEvaluateOnNewDocument, so it runs before any
// script of the page: from then on the page sees only virtual time.
inline std::string clock_script(std::uint64_t seed) {
  return R"JS((() => {
  if (window.__qrl) return;
  let now = 0;
  const epoch = 1767225600000;  // fixed wall clock: 2026-01-01T00:00:00Z
  let state = )JS" + std::to_string(static_cast<std::uint32_t>(seed ^ (seed >> 32))) +
         R"JS( >>> 0;
  // mulberry32: small, fast, and the same sequence in every browser.
  Math.random = () => {
    state = (state + 0x6D2B79F5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  performance.now = () => now;
  Date.now = () => epoch + Math.floor(now);
  let queue = [];
  let nextId = 1;
  window.requestAnimationFrame = (cb) => { const id = nextId++; queue.push([id, cb]); return id; };
  window.cancelAnimationFrame = (id) => { queue = queue.filter((e) => e[0] !== id); };
  const frame = () => {
    now += 1000 / 60;
    const due = queue;
    queue = [];
    for (const [, cb] of due) cb(now);
  };
  // qrl::kernels::AxisResampler as tables: for output o, the source taps
  // [first[o], last[o]) and their integer weights.
  const axis = (src, out) => {
    const box = src >= out;
    const taps = (o) => {
      if (box) return [Math.floor(o * src / out), Math.floor(((o + 1) * src + out - 1) / out)];
      const unit = 2 * out;
      const position = Math.max(0, (2 * o + 1) * src - out);
      const i0 = Math.floor(position / unit);
      return [i0, Math.min(i0 + 1, src - 1) + 1];
    };
    const weight = (o, i) => {
      if (box) {
        const lo = o * src, hi = lo + src, plo = i * out, phi = plo + out;
        return Math.max(0, Math.min(hi, phi) - Math.max(lo, plo));
      }
      const unit = 2 * out;
      const position = Math.max(0, (2 * o + 1) * src - out);
      const i0 = Math.floor(position / unit);
      const i1 = i0 + 1 < src ? i0 + 1 : src - 1;
      const frac = i1 === i0 ? 0 : position % unit;
      return (i === i0 ? unit - frac : 0) + (i === i1 ? frac : 0);
    };
    const first = new Int32Array(out), last = new Int32Array(out);
    let stride = 1;
    for (let o = 0; o < out; ++o) {
      [first[o], last[o]] = taps(o);
      stride = Math.max(stride, last[o] - first[o]);
    }
    const weights = new Float64Array(out * stride);
    for (let o = 0; o < out; ++o)
      for (let i = first[o]; i < last[o]; ++i) weights[o * stride + i - first[o]] = weight(o, i);
    return {first, last, weight: weights, stride, total: box ? src : 2 * out};
  };
  window.__qrl = {
    frames: 0,
    now: () => now,
    reseed(s) { state = s >>> 0; this.frames = 0; },
    // One step in one call: the keys' events, then up to n frames (stopping
    // at game over so the last frame shows it), then what the agent sees.
    // capture: 0 nothing, 1 the canvas as PNG, 2 the observation (observe()).
    step(n, capture, keys) {
      if (keys) for (const k of keys) this.key(k[0], k[1], k[2], k[3], k[4]);
      const g = window.__qrl_game;
      let over = g.over();
      for (let i = 0; i < n && !over; ++i) { frame(); ++this.frames; over = g.over(); }
      const out = [Number(g.score()), !!over, this.frames];
      if (capture === 1) out.push(this.pixels());
      else if (capture === 2) out.push(this.observe());
      return out;
    },
    // A key event as the keyboard would send it to the focused element; the
    // legacy keyCode/which that older games (Dino) read are set explicitly.
    key(type, key, code, keyCode, text) {
      const target = document.activeElement || document.body || document;
      const init = {key, code, keyCode, which: keyCode, bubbles: true, cancelable: true, composed: true};
      const send = (t, c) => {
        const e = new KeyboardEvent(t, Object.assign({}, init, {keyCode: c, which: c, charCode: t === 'keypress' ? c : 0}));
        if (e.keyCode !== c) {
          Object.defineProperty(e, 'keyCode', {get: () => c});
          Object.defineProperty(e, 'which', {get: () => c});
        }
        target.dispatchEvent(e);
      };
      send(type, keyCode);
      if (type === 'keydown' && text) send('keypress', text.charCodeAt(0));
    },
    // The canvas need not be painted when only its pixels are read: a hidden
    // canvas spares Chromium a composited frame per step.
    setVisible(visible) { this.canvas().style.visibility = visible ? '' : 'hidden'; },
    setObservation(height, width, background) { this.obs = {height, width, background, tables: null}; },
    // The observation computed in the page, so that out_h*out_w bytes leave
    // it instead of a PNG to decode: the canvas over the background, BT.601
    // luma times 1000 and the separable integer resampling of
    // qrl/kernels/preprocess.cuh (box when shrinking, bilinear with
    // half-pixel centres when growing), rounded half up. Every intermediate
    // is an integer below 2^53, so doubles hold it exactly and the result
    // equals the C++ functor's bit for bit (tested against it).
    observe() {
      const c = this.canvas();
      const W = c.width, H = c.height;
      let data;
      const ctx = c.getContext('2d');
      if (ctx) {
        data = ctx.getImageData(0, 0, W, H).data;
      } else {  // a WebGL canvas: copy it to a 2D one first
        const s = this.scratch || (this.scratch = document.createElement('canvas'));
        s.width = W; s.height = H;
        const sc = s.getContext('2d', {willReadFrequently: true});
        sc.clearRect(0, 0, W, H);
        sc.drawImage(c, 0, 0);
        data = sc.getImageData(0, 0, W, H).data;
      }
      const o = this.obs;
      if (!o.tables || o.W !== W || o.H !== H) {
        o.W = W; o.H = H;
        o.tables = [axis(H, o.height), axis(W, o.width)];
        o.luma = new Float64Array(W * H);
        o.rows = new Float64Array(H * o.width);
      }
      const [ys, xs] = o.tables;
      const [br, bg, bb] = o.background;
      const luma = o.luma;
      for (let i = 0, p = 0; i < W * H; ++i, p += 4) {
        const a = data[p + 3];
        let r = data[p], gr = data[p + 1], b = data[p + 2];
        if (a !== 255) {
          r = Math.floor((r * a + br * (255 - a) + 127) / 255);
          gr = Math.floor((gr * a + bg * (255 - a) + 127) / 255);
          b = Math.floor((b * a + bb * (255 - a) + 127) / 255);
        }
        luma[i] = 299 * r + 587 * gr + 114 * b;
      }
      const rows = o.rows, ow = o.width, oh = o.height;
      for (let y = 0; y < H; ++y) {
        for (let x = 0; x < ow; ++x) {
          let sum = 0;
          for (let t = xs.first[x]; t < xs.last[x]; ++t) sum += xs.weight[x * xs.stride + t - xs.first[x]] * luma[y * W + t];
          rows[y * ow + x] = sum;
        }
      }
      const den = 1000 * ys.total * xs.total, half = Math.floor(den / 2);
      const out = new Uint8Array(oh * ow);
      for (let y = 0; y < oh; ++y) {
        for (let x = 0; x < ow; ++x) {
          let sum = 0;
          for (let t = ys.first[y]; t < ys.last[y]; ++t) sum += ys.weight[y * ys.stride + t - ys.first[y]] * rows[t * ow + x];
          out[y * ow + x] = Math.floor((sum + half) / den);
        }
      }
      let bin = '';
      for (let i = 0; i < out.length; i += 8192) bin += String.fromCharCode.apply(null, out.subarray(i, i + 8192));
      return btoa(bin);
    },
    canvas() { return document.querySelector(window.__qrl_game.selector); },
    rect() {
      const c = this.canvas();
      if (!c) return null;
      const r = c.getBoundingClientRect();
      return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height, c.width, c.height];
    },
    // The canvas's own pixels, losslessly: PNG is a few KB for a game frame
    // where raw RGBA is hundreds, and parsing the JSON string that carries
    // the data dominated the cost of a step.
    pixels() {
      const url = this.canvas().toDataURL('image/png');
      return url.substring(url.indexOf(',') + 1);
    },
  };
})();)JS";
}

inline std::vector<std::uint8_t> base64_decode(std::string_view in) {
  static const auto table = [] {
    std::array<int, 256> t{};
    t.fill(-1);
    const char* chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(chars[i])] = i;
    return t;
  }();
  std::vector<std::uint8_t> out;
  out.reserve(in.size() / 4 * 3);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char ch : in) {
    if (ch == '=') break;
    const int v = table[static_cast<unsigned char>(ch)];
    require(v >= 0, "base64: invalid character in the browser's pixel data");
    buffer = (buffer << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace detail

class CanvasGame {
 public:
  CanvasGame(CanvasGameConfig game, BrowserConfig browser = {})
      : game_(std::move(game)), browser_config_(std::move(browser)) {
    for (const auto& action : game_.actions) {
      std::vector<detail::KeyDef> keys;
      for (const auto& k : action.keys) keys.push_back(detail::key_def(k));
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
  // moved-from env owns nothing (its client_ is null, so it closes no tab).
  CanvasGame(CanvasGame&&) = default;
  CanvasGame& operator=(CanvasGame&&) = delete;

  ~CanvasGame() {
    if (client_ && owned_tab_ && !chromium_) {
      // Attached to someone else's browser: close only our own tab.
      try {
        client_->close_tab(tab_);
      } catch (const std::exception&) {
      }
    }
  }

  env::FrameView reset(std::uint64_t seed) {
    for (;;) {
      try {
        release_keys();
        load_episode(seed);
        capture();
        break;
      } catch (const std::exception& e) {
        if (!browser_fault(e)) throw;
        recover(e.what());
      }
    }
    held_.clear();
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
      press(action);
      advance(game_.frame_skip);
    } catch (const std::exception& e) {
      if (!browser_fault(e)) throw;
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
      decode_canvas(evaluate("__qrl.pixels()").get_ref<const std::string&>());
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
  cdp::Json evaluate(const std::string& expression) {
    const cdp::Json r = client_->call("Runtime.evaluate", {{"expression", expression}, {"returnByValue", true}},
                                      tab_.session_id);
    if (r.contains("exceptionDetails")) {
      const auto& d = r["exceptionDetails"];
      std::string what = d.value("text", std::string("exception"));
      if (d.contains("exception") && d["exception"].contains("description"))
        what = d["exception"]["description"].get<std::string>();
      fail(game_.name, ": page script failed: ", first_line(what), " (in: ", abbreviate(expression), ")");
    }
    return r["result"].contains("value") ? r["result"]["value"] : cdp::Json();
  }

  cdp::CdpClient& client() { return *client_; }
  const std::string& session_id() const { return tab_.session_id; }
  // The browser this env launched (null when attached with cdp_url).
  cdp::ChromiumProcess* chromium() { return chromium_.get(); }

 private:
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
  static std::string abbreviate(const std::string& s, std::size_t max = 80) {
    std::string one = s;
    for (char& c : one)
      if (c == '\n') c = ' ';
    return one.size() > max ? one.substr(0, max - 3) + "..." : one;
  }

  void connect() {
    cdp::ClientOptions options;
    options.call_timeout = browser_config_.call_timeout;
    std::string ws;
    if (!browser_config_.cdp_url.empty()) {
      const std::string& url = browser_config_.cdp_url;
      if (url.rfind("http://", 0) == 0)
        ws = cdp::browser_ws_url(url);
      else if (url.rfind("ws://", 0) == 0)
        ws = url;
      else
        fail("--cdp ", url, ": expected http://HOST:PORT or a ws:// DevTools URL");
      try {
        client_ = std::make_unique<cdp::CdpClient>(ws, options);
      } catch (const Error& e) {
        fail("--cdp ", url, ": ", e.what());
      }
    } else {
      cdp::ChromiumOptions chromium;
      chromium.executable = browser_config_.chromium;
      chromium.headless = !browser_config_.headful;
      chromium.extra_arguments = browser_config_.chromium_arguments;
      chromium.warn_no_sandbox = browser_config_.warn_no_sandbox;
      browser_config_.warn_no_sandbox = false;  // once per env is enough
      chromium_ = std::make_unique<cdp::ChromiumProcess>(chromium);
      client_ = std::make_unique<cdp::CdpClient>(chromium_->ws_url(), options);
    }
    tab_ = client_->open_tab();
    owned_tab_ = true;
    const auto& s = tab_.session_id;
    client_->call("Page.enable", {}, s);
    client_->call("Runtime.enable", {}, s);
    // Headless tabs are not focused; emulate focus so keyboard events and
    // focus-dependent game logic behave as in a visible window.
    client_->call("Emulation.setFocusEmulationEnabled", {{"enabled", true}}, s);
    script_id_.clear();
    loaded_once_ = false;
  }

  // Whether an error means that this browser, or the page qrl set up in it,
  // is gone, rather than a mistake in the game config: the connection died,
  // a call got no answer within the CDP timeout (a hung browser or page), or
  // the page no longer has qrl's script (a renderer that crashed and came
  // back blank). An error answer to a call is a mistake, not a fault.
  static bool browser_fault(const std::exception& e) {
    if (const auto* cdp_error = dynamic_cast<const cdp::CdpError*>(&e))
      return cdp_error->kind() != cdp::CdpError::Kind::error_reply;
    const std::string_view what = e.what();
    return what.find("page script failed: ReferenceError: __qrl") != std::string_view::npos;
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
      std::cerr << "qrl: " << game_.name << ": browser failure (" << abbreviate(cause, 200)
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
    held_.clear();
    pending_keys_ = cdp::Json::array();
    raw_stale_ = false;  // a recording shows the last frame it has
    client_.reset();
    chromium_.reset();  // kills its process group, removes its profile
    connect();  // attached mode: the user's browser may be back
  }

  void load_episode(std::uint64_t seed) {
    const auto& s = tab_.session_id;
    if (!game_.reload && loaded_once_) {
      evaluate("__qrl.reseed(" + std::to_string(static_cast<std::uint32_t>(seed ^ (seed >> 32))) + ")");
      evaluate("{\n" + game_.restart + "\n}\n0");
      read_state();
      return;
    }
    if (!script_id_.empty())
      client_->call("Page.removeScriptToEvaluateOnNewDocument", {{"identifier", script_id_}}, s);
    script_id_ = client_->call("Page.addScriptToEvaluateOnNewDocument", {{"source", detail::clock_script(seed)}}, s)
                     ["identifier"]
                         .get<std::string>();
    bool ok = navigate(game_.url);
    if (!ok && !game_.fallback_url.empty()) {
      // The offline error page carries the game (Chrome Dino's case).
      client_->call("Network.enable", {}, s);
      client_->call("Network.emulateNetworkConditions",
                    {{"offline", true}, {"latency", 0}, {"downloadThroughput", -1}, {"uploadThroughput", -1}}, s);
      ok = navigate(game_.fallback_url);
    }
    if (!ok) {
      fail(game_.name, ": the page at ", game_.url,
           game_.fallback_url.empty() ? std::string{} : " (and the fallback " + game_.fallback_url + ")",
           " did not become ready: `", abbreviate(game_.ready), "` stayed false",
           load_problem_.empty() ? std::string() : " (" + load_problem_ + ")", ". ",
           game_.ready_error.empty() ? "Check the URL and the 'ready' expression of the game config."
                                     : game_.ready_error);
    }
    loaded_once_ = true;
    const std::string game_object = "window.__qrl_game = {selector: " + detail::js_string(game_.canvas) +
                                    ", score: () => (" + game_.score + "), over: () => (" + game_.game_over +
                                    ")};\n__qrl.setObservation(" + std::to_string(game_.observation_height) + ", " +
                                    std::to_string(game_.observation_width) + ", [" +
                                    std::to_string(game_.background[0]) + ", " + std::to_string(game_.background[1]) +
                                    ", " + std::to_string(game_.background[2]) + "]);\n0";
    evaluate(game_object);
    canvas_visible_ = true;
    const cdp::Json has_canvas = evaluate("!!__qrl.canvas()");
    require(has_canvas.is_boolean() && has_canvas.get<bool>(), game_.name, ": no element matches the canvas selector '",
            game_.canvas, "' on ", game_.url, "; fix 'canvas' in the game config");
    if (!game_.setup.empty()) evaluate("{\n" + game_.setup + "\n}\n0");
    if (!game_.start.empty()) evaluate("{\n" + game_.start + "\n}\n0");
    // Measured after `start`: starting a game may move or resize its canvas.
    const cdp::Json rect = evaluate("__qrl.rect()");
    require(rect.is_array() && rect.size() == 6, game_.name, ": cannot measure the canvas '", game_.canvas, "'");
    clip_ = {rect[0].get<double>(), rect[1].get<double>(), rect[2].get<double>(), rect[3].get<double>()};
    canvas_width_ = rect[4].get<int>();
    canvas_height_ = rect[5].get<int>();
    require(clip_[2] >= 1 && clip_[3] >= 1 && canvas_width_ >= 1 && canvas_height_ >= 1, game_.name,
            ": the canvas '", game_.canvas, "' has no size on the page");
    read_state();
  }

  // Loads `url` and checks `ready`; false when the game is not there.
  bool navigate(const std::string& url) {
    const auto& s = tab_.session_id;
    const cdp::Milliseconds timeout{game_.load_timeout_ms};
    auto loaded = client_->expect_event("Page.loadEventFired", s);
    const cdp::Json navigation = client_->call("Page.navigate", {{"url", url}}, s, timeout);
    // Why the page may not be the game: a network error (refused, DNS), or
    // an HTTP error status. Chrome's error pages still load (Dino lives in
    // one), so only a `ready` that stays false makes it the reason.
    load_problem_.clear();
    if (navigation.contains("errorText") && navigation["errorText"].is_string())
      load_problem_ = navigation["errorText"].get<std::string>();
    try {
      loaded.wait(timeout);
    } catch (const cdp::CdpError& e) {
      if (e.connection_lost()) throw;
      if (load_problem_.empty())
        load_problem_ = "no load event within " + std::to_string(game_.load_timeout_ms) + " ms (load_timeout_ms)";
      return false;
    }
    const cdp::Json ready = evaluate("(() => { try { return !!(" + game_.ready + "); } catch (e) { return false; } })()");
    if (ready.is_boolean() && ready.get<bool>()) return true;
    if (load_problem_.empty()) {
      const cdp::Json status = evaluate(
          "(() => { const n = performance.getEntriesByType('navigation')[0]; return n ? n.responseStatus || 0 : 0; })()");
      if (status.is_number_integer() && status.get<int>() >= 400)
        load_problem_ = "the server answered HTTP " + std::to_string(status.get<int>());
    }
    return false;
  }

  void read_state() { take_step_result(evaluate("__qrl.step(0, 0)"), 3); }

  // [score, over, frames(, capture)] from __qrl.step(); the score comes from
  // the config's expression, so a wrong one is named here.
  void take_step_result(const cdp::Json& r, std::size_t size) {
    require(r.is_array() && r.size() == size && r[1].is_boolean() && r[2].is_number_integer(), game_.name,
            ": the page's step answer is malformed (", abbreviate(r.dump()), "); did the page replace window.__qrl?");
    require(r[0].is_number(), game_.name, ": the game config's 'score' expression (", abbreviate(game_.score),
            ") gave ", r[0].is_null() ? std::string("no number (undefined, NaN or text)") : r[0].dump(),
            "; it must evaluate to a number");
    score_ = r[0].get<double>();
    game_over_ = r[1].get<bool>();
    frames_ = r[2].get<std::int64_t>();
  }

  void key_event(const char* type, const detail::KeyDef& k) {
    cdp::Json p{{"type", type}, {"key", k.key}, {"code", k.code}, {"windowsVirtualKeyCode", k.key_code},
                {"nativeVirtualKeyCode", k.key_code}};
    if (std::string_view(type) == "keyDown" && !k.text.empty()) p["text"] = k.text;
    client_->call("Input.dispatchKeyEvent", p, tab_.session_id);
  }

  // Sends key events the configured way: through the browser now, or
  // queued for the page script of the next step (pending_keys_).
  void send_key(bool down, const detail::KeyDef& k) {
    if (game_.key_events == KeyEvents::Browser) {
      key_event(down ? "keyDown" : "keyUp", k);
      return;
    }
    pending_keys_.push_back(cdp::Json::array({down ? "keydown" : "keyup", k.key, k.code, k.key_code, k.text}));
  }

  // Holds exactly the chosen action's keys: releases the others, presses the
  // new ones. A key held over several steps is one long press, as a player's.
  void press(int action) {
    const auto& wanted = action_keys_[static_cast<std::size_t>(action)];
    for (auto it = held_.begin(); it != held_.end();) {
      const bool keep = std::any_of(wanted.begin(), wanted.end(), [&](const auto& k) { return k.code == it->code; });
      if (!keep) {
        send_key(false, *it);
        it = held_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& k : wanted) {
      if (std::none_of(held_.begin(), held_.end(), [&](const auto& h) { return h.code == k.code; })) {
        send_key(true, k);
        held_.push_back(k);
      }
    }
  }

  // Lets go of every held key, so the browser's keyboard state does not leak
  // into the next episode. A dead browser holds nothing.
  void release_keys() {
    pending_keys_ = cdp::Json::array();
    for (const auto& k : held_) send_key(false, k);
    if (!pending_keys_.empty()) evaluate("__qrl.step(0, 0, " + pending_keys_.dump() + ")");
    pending_keys_ = cdp::Json::array();
    held_.clear();
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
    auto gray = detail::base64_decode(b64);
    require(gray.size() == observation_.size(), game_.name, ": the page sent ", gray.size(),
            " observation bytes, expected ", observation_.size());
    observation_ = std::move(gray);
    raw_stale_ = true;
  }

  void capture_screenshot() {
    // Scaled so the image has the canvas's own size when CSS stretches it.
    const cdp::Json clip{{"x", clip_[0]},
                         {"y", clip_[1]},
                         {"width", clip_[2]},
                         {"height", clip_[3]},
                         {"scale", canvas_width_ / clip_[2]}};
    const cdp::Json r = client_->call(
        "Page.captureScreenshot",
        {{"format", "png"}, {"clip", clip}, {"fromSurface", true}, {"optimizeForSpeed", true}}, tab_.session_id);
    const auto png = detail::base64_decode(r["data"].get_ref<const std::string&>());
    int w = 0, h = 0, n = 0;
    stbi_uc* pixels = stbi_load_from_memory(png.data(), static_cast<int>(png.size()), &w, &h, &n, 3);
    require(pixels != nullptr, game_.name, ": cannot decode the screenshot PNG (", stbi_failure_reason(), ")");
    raw_.assign(pixels, pixels + static_cast<std::size_t>(w) * h * 3);
    stbi_image_free(pixels);
    raw_shape_ = {h, w, 3};
    raw_stale_ = false;
    preprocess();
  }

  // The canvas PNG holds straight (non-premultiplied) RGBA, as getImageData
  // does; the page shows it blended over the background, and so does this.
  void decode_canvas(const std::string& b64) {
    const auto png = detail::base64_decode(b64);
    int w = 0, h = 0, n = 0;
    stbi_uc* rgba = stbi_load_from_memory(png.data(), static_cast<int>(png.size()), &w, &h, &n, 4);
    require(rgba != nullptr, game_.name, ": cannot decode the canvas PNG (", stbi_failure_reason(), ")");
    const std::size_t count = static_cast<std::size_t>(w) * h;
    raw_.resize(count * 3);
    for (std::size_t i = 0; i < count; ++i) {
      const int a = rgba[i * 4 + 3];
      for (std::size_t c = 0; c < 3; ++c) {
        const int fg = rgba[i * 4 + c];
        const int bg = game_.background[c];
        raw_[i * 3 + c] = static_cast<std::uint8_t>((fg * a + bg * (255 - a) + 127) / 255);
      }
    }
    stbi_image_free(rgba);
    raw_shape_ = {h, w, 3};
  }

  void preprocess() {
    env::PreprocessSpec spec;
    spec.layout = env::PixelLayout::Rgb;
    spec.out_height = game_.observation_height;
    spec.out_width = game_.observation_width;
    env::preprocess(raw_frame(), spec, observation_.data());
  }

  env::StepInfo info() const {
    env::StepInfo i;
    i.score = score_;
    i.episode_frame = frames_;
    return i;
  }

  CanvasGameConfig game_;
  BrowserConfig browser_config_;
  std::vector<std::vector<detail::KeyDef>> action_keys_;
  std::unique_ptr<cdp::ChromiumProcess> chromium_;
  std::unique_ptr<cdp::CdpClient> client_;
  cdp::CdpClient::Tab tab_;
  bool owned_tab_ = false;
  std::string script_id_;
  bool loaded_once_ = false;
  std::array<double, 4> clip_{};
  int canvas_width_ = 0;
  int canvas_height_ = 0;
  std::vector<std::uint8_t> raw_;
  env::FrameShape raw_shape_;
  std::vector<std::uint8_t> observation_;
  std::vector<detail::KeyDef> held_;  // keys held down now
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
  std::string load_problem_;   // why the last navigation may have missed the game
};

}  // namespace qrl::envs
