#pragma once
// A Chrome DevTools Protocol client on one Boost.Beast WebSocket.
// Beast and Asio stay in src/cdp_client.cpp (compiled once into qrl::dino):
// a translation unit that includes this header parses neither.
//
// One I/O thread owns the socket: it reads messages, matches responses to
// pending calls by id and hands events to the handlers and waiters registered
// for their method. Callers block on a future with a deadline, so several
// threads (or several tabs, through flattened sessions) share one socket.
// When the socket dies, every pending call fails at once with the reason.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <qrl/core/error.hpp>

namespace qrl::cdp {

using Json = nlohmann::json;
using Milliseconds = std::chrono::milliseconds;

// A CDP failure: the browser answered with an error, a call timed out, or the
// connection is gone. An environment treats the last two as "this browser is
// gone" (it relaunches it); an error answer is a mistake in the call.
class CdpError : public Error {
 public:
  enum class Kind { error_reply, timeout, connection_lost };
  CdpError(const std::string& what, Kind kind) : Error(what), kind_(kind) {}
  Kind kind() const { return kind_; }
  bool connection_lost() const { return kind_ == Kind::connection_lost; }
  bool timed_out() const { return kind_ == Kind::timeout; }

 private:
  Kind kind_;
};

struct Endpoint {
  std::string host;
  std::string port;
  std::string target;  // path, e.g. /devtools/browser/<id>
};

// Splits ws://host:port/path or http://host:port[/path]. Only plain ws and
// http: DevTools endpoints do not speak TLS.
inline Endpoint parse_url(std::string_view url, std::string_view scheme) {
  const std::string prefix = std::string(scheme) + "://";
  require(url.substr(0, prefix.size()) == prefix, "'", url, "' is not a ", scheme,
          ":// URL (expected ", prefix, "HOST:PORT...)");
  std::string_view rest = url.substr(prefix.size());
  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const auto colon = authority.rfind(':');
  require(colon != std::string_view::npos && colon > 0 && colon + 1 < authority.size(), "'", url,
          "' has no HOST:PORT (e.g. ", prefix, "127.0.0.1:9222)");
  Endpoint e;
  e.host = std::string(authority.substr(0, colon));
  if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']') e.host = e.host.substr(1, e.host.size() - 2);
  e.port = std::string(authority.substr(colon + 1));
  for (char c : e.port) require(c >= '0' && c <= '9', "'", url, "': port '", e.port, "' is not a number");
  e.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  return e;
}

struct ClientOptions {
  // Deadline of a call that names none.
  Milliseconds call_timeout{15000};
  // Deadline for TCP connect plus the WebSocket handshake.
  Milliseconds connect_timeout{10000};
  // Largest message accepted; a larger one closes the connection with an
  // error instead of growing memory without bound. Screenshots of big pages
  // are the largest legitimate messages (a few MB).
  std::size_t max_message_bytes = std::size_t{64} << 20;
};

// Fetches http://HOST:PORT/json/version and returns the browser's WebSocket
// URL, with the host the user gave (the browser reports its own view of it).
std::string browser_ws_url(const std::string& http_url, Milliseconds timeout = Milliseconds{5000});

class CdpClient {
 public:
  using EventHandler = std::function<void(const Json& params, const std::string& session_id)>;

  // Connects to a DevTools WebSocket (ws://HOST:PORT/devtools/browser/ID).
  explicit CdpClient(const std::string& ws_url, ClientOptions options = {});

  CdpClient(const CdpClient&) = delete;
  CdpClient& operator=(const CdpClient&) = delete;

  ~CdpClient();

  const std::string& url() const { return url_; }
  bool connected() const { return !dead_.load(); }
  // Messages that were not valid CDP JSON (ignored, counted).
  std::uint64_t malformed_messages() const { return malformed_.load(); }

  // Sends a command and waits for its result. Throws CdpError when the
  // browser answers with an error, when no answer comes within `timeout`
  // (default: ClientOptions::call_timeout), or when the connection dies.
  Json call(const std::string& method, Json params = Json::object(), const std::string& session_id = {},
            std::optional<Milliseconds> timeout = std::nullopt) {
    return wait(send(method, std::move(params), session_id), timeout);
  }

  // A call in flight: send now, wait later (pipelining several commands).
  struct Pending {
    std::int64_t id = 0;
    std::string method;
    std::shared_future<Json> result;
  };

  Pending send(const std::string& method, Json params = Json::object(), const std::string& session_id = {});
  Json wait(const Pending& pending, std::optional<Milliseconds> timeout = std::nullopt);

  // Calls `handler` (on the I/O thread: keep it short, never call() from it)
  // for every event named `method`. Returns a token for remove_handler().
  std::uint64_t on_event(const std::string& method, EventHandler handler);
  void remove_handler(std::uint64_t token);

  // One-shot wait for the next event `method` (of `session_id`, if given).
  // Register before sending the command that causes the event, so it cannot
  // slip past: auto loaded = client.expect_event("Page.loadEventFired", s);
  // client.call("Page.navigate", ...); loaded.wait(...).
  class EventWaiter {
   public:
    Json wait(Milliseconds timeout);

   private:
    friend class CdpClient;
    CdpClient* client_ = nullptr;
    std::uint64_t token_ = 0;
    std::string method_;
    std::future<Json> future_;
  };

  EventWaiter expect_event(const std::string& method, const std::string& session_id = {});

  // Opens a new tab and attaches to it with a flattened session: its
  // commands travel on this socket, tagged with the returned session id.
  struct Tab {
    std::string target_id;
    std::string session_id;
  };

  // Each tab gets a window of its own: headless Chromium composites only the
  // front tab of a window, so Page.captureScreenshot in a second tab of the
  // same window never answers (measured: N envs as N tabs of one browser).
  Tab open_tab(const std::string& url = "about:blank");
  void close_tab(const Tab& tab) { call("Target.closeTarget", {{"targetId", tab.target_id}}); }

  // Closes the socket; pending calls fail. Idempotent.
  void close();

 private:
  struct CallState {
    std::string method;
    std::shared_ptr<std::promise<Json>> promise;
  };
  struct HandlerEntry {
    std::uint64_t token;
    EventHandler handler;
  };
  struct WaiterEntry {
    std::uint64_t token;
    std::string method;
    std::string session_id;
    std::shared_ptr<std::promise<Json>> promise;
  };
  // The WebSocket, its io_context and the I/O thread (src/cdp_client.cpp).
  struct Socket;

  std::string lost_message(const std::string& method) const;
  // False when the I/O thread already took the waiter to complete it.
  bool cancel_waiter(std::uint64_t token);
  void start_read();
  void write_next();
  void dispatch(std::string_view text);
  // Fails every pending call and waiter at once with the same reason.
  void fail_all(const std::string& reason);

  ClientOptions options_;
  std::string url_;
  std::unique_ptr<Socket> socket_;

  std::mutex mutex_;
  std::int64_t next_id_ = 1;
  std::uint64_t next_token_ = 1;
  std::map<std::int64_t, CallState> calls_;
  std::multimap<std::string, HandlerEntry> handlers_;
  std::vector<WaiterEntry> waiters_;
  std::atomic<bool> dead_{false};
  std::string death_reason_;
  std::atomic<std::uint64_t> malformed_{0};
};

}  // namespace qrl::cdp
