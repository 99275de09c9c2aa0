#pragma once
// The browser tab a canvas game env drives over CDP: a Chromium of its own
// or one attached with --cdp, a fresh tab with focus emulated, page scripts
// evaluated with their exceptions as errors, page loads that say why the
// game may not be there, and which errors mean the browser failed rather
// than the game config.
#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include <qrl/cdp/chromium.hpp>
#include <qrl/cdp/client.hpp>
#include <qrl/core/error.hpp>
#include <qrl/envs/canvas_game_config.hpp>

namespace qrl::envs {

namespace detail {
inline std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
inline std::string abbreviate(const std::string& s, std::size_t max = 80) {
  std::string one = s;
  for (char& c : one)
    if (c == '\n') c = ' ';
  return one.size() > max ? one.substr(0, max - 3) + "..." : one;
}
}  // namespace detail

class BrowserTab {
 public:
  // Launches or attaches as `config` says and opens a tab; `name` (the
  // game's) begins every error about its pages.
  BrowserTab(const BrowserConfig& config, std::string name) : name_(std::move(name)) {
    cdp::ClientOptions options;
    options.call_timeout = config.call_timeout;
    if (!config.cdp_url.empty()) {
      const std::string& url = config.cdp_url;
      std::string ws;
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
      chromium.executable = config.chromium;
      chromium.headless = !config.headful;
      chromium.extra_arguments = config.chromium_arguments;
      chromium.warn_no_sandbox = config.warn_no_sandbox;
      chromium_ = std::make_unique<cdp::ChromiumProcess>(chromium);
      client_ = std::make_unique<cdp::CdpClient>(chromium_->ws_url(), options);
    }
    tab_ = client_->open_tab();
    call("Page.enable");
    call("Runtime.enable");
    // Headless tabs are not focused; emulate focus so keyboard events and
    // focus-dependent game logic behave as in a visible window.
    call("Emulation.setFocusEmulationEnabled", {{"enabled", true}});
  }

  BrowserTab(const BrowserTab&) = delete;
  BrowserTab& operator=(const BrowserTab&) = delete;

  // Attached to someone else's browser, only our own tab is ours to close;
  // a launched browser goes with its process. Not done on a relaunch: the
  // connection that failed would only time out.
  void close_attached() {
    if (chromium_) return;
    try {
      client_->close_tab(tab_);
    } catch (const std::exception&) {
    }
  }

  cdp::Json call(const std::string& method, const cdp::Json& params = {}) {
    return client_->call(method, params, tab_.session_id);
  }

  // Evaluates `expression` in the page and returns its value.
  cdp::Json evaluate(const std::string& expression) {
    const cdp::Json r = call("Runtime.evaluate", {{"expression", expression}, {"returnByValue", true}});
    if (r.contains("exceptionDetails")) {
      const auto& d = r["exceptionDetails"];
      std::string what = d.value("text", std::string("exception"));
      if (d.contains("exception") && d["exception"].contains("description"))
        what = d["exception"]["description"].get<std::string>();
      fail(name_, ": page script failed: ", detail::first_line(what), " (in: ", detail::abbreviate(expression), ")");
    }
    return r["result"].contains("value") ? r["result"]["value"] : cdp::Json();
  }

  // Loads `url` and checks the `ready` expression; false when the game is
  // not there, with load_problem() saying why when the browser knows.
  bool navigate(const std::string& url, cdp::Milliseconds timeout, const std::string& ready) {
    const auto& s = tab_.session_id;
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
        load_problem_ = "no load event within " + std::to_string(timeout.count()) + " ms (load_timeout_ms)";
      return false;
    }
    const cdp::Json ok = evaluate("(() => { try { return !!(" + ready + "); } catch (e) { return false; } })()");
    if (ok.is_boolean() && ok.get<bool>()) return true;
    if (load_problem_.empty()) {
      const cdp::Json status = evaluate(
          "(() => { const n = performance.getEntriesByType('navigation')[0]; return n ? n.responseStatus || 0 : 0; })()");
      if (status.is_number_integer() && status.get<int>() >= 400)
        load_problem_ = "the server answered HTTP " + std::to_string(status.get<int>());
    }
    return false;
  }
  // Why the last navigate() may have missed the game; empty when unknown.
  const std::string& load_problem() const { return load_problem_; }

  // The page behaves as with no network: Chrome's offline error page is
  // where some games live (Chrome Dino's fallback).
  void emulate_offline() {
    call("Network.enable");
    call("Network.emulateNetworkConditions",
         {{"offline", true}, {"latency", 0}, {"downloadThroughput", -1}, {"uploadThroughput", -1}});
  }

  // Whether an error means that this browser, or the page qrl set up in it,
  // is gone, rather than a mistake in the game config: the connection died,
  // a call got no answer within the CDP timeout (a hung browser or page), or
  // the page no longer has qrl's script (a renderer that crashed and came
  // back blank). An error answer to a call is a mistake, not a fault.
  static bool is_fault(const std::exception& e) {
    if (const auto* cdp_error = dynamic_cast<const cdp::CdpError*>(&e))
      return cdp_error->kind() != cdp::CdpError::Kind::error_reply;
    const std::string_view what = e.what();
    return what.find("page script failed: ReferenceError: __qrl") != std::string_view::npos;
  }

  cdp::CdpClient& client() { return *client_; }
  const std::string& session_id() const { return tab_.session_id; }
  // The browser this tab lives in when launched here (null when attached).
  cdp::ChromiumProcess* chromium() { return chromium_.get(); }

 private:
  std::string name_;
  // Declared before client_, so the connection closes before the browser is killed.
  std::unique_ptr<cdp::ChromiumProcess> chromium_;
  std::unique_ptr<cdp::CdpClient> client_;
  cdp::CdpClient::Tab tab_;
  std::string load_problem_;
};

}  // namespace qrl::envs
