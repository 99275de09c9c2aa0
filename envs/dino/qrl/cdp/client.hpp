#pragma once
// A Chrome DevTools Protocol client on one Boost.Beast WebSocket.
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
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
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

namespace detail {
namespace beast = boost::beast;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Runs an async operation to completion on `ioc` within `timeout`, closing
// the stream if it runs late (Beast's tcp_stream timeouts do the closing).
inline void run_until(asio::io_context& ioc, const std::function<bool()>& done) {
  while (!done()) {
    if (ioc.run_one() == 0) break;
  }
  ioc.restart();
}
}  // namespace detail

// Fetches http://HOST:PORT/json/version and returns the browser's WebSocket
// URL, with the host the user gave (the browser reports its own view of it).
inline std::string browser_ws_url(const std::string& http_url, Milliseconds timeout = Milliseconds{5000}) {
  namespace beast = detail::beast;
  namespace http = beast::http;
  const Endpoint ep = parse_url(http_url, "http");
  detail::asio::io_context ioc;
  detail::tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  const auto results = resolver.resolve(ep.host, ep.port, ec);
  if (ec) fail("--cdp ", http_url, ": cannot resolve ", ep.host, " (", ec.message(), ")");
  stream.expires_after(timeout);
  bool finished = false;
  beast::error_code op_ec;
  http::response<http::string_body> response;
  beast::flat_buffer buffer;
  http::request<http::empty_body> request{http::verb::get, "/json/version", 11};
  request.set(http::field::host, ep.host + ":" + ep.port);
  stream.async_connect(results, [&](beast::error_code e, const detail::tcp::endpoint&) {
    if (e) {
      op_ec = e;
      finished = true;
      return;
    }
    http::async_write(stream, request, [&](beast::error_code e2, std::size_t) {
      if (e2) {
        op_ec = e2;
        finished = true;
        return;
      }
      http::async_read(stream, buffer, response, [&](beast::error_code e3, std::size_t) {
        op_ec = e3;
        finished = true;
      });
    });
  });
  detail::run_until(ioc, [&] { return finished; });
  if (op_ec)
    fail("--cdp ", http_url, ": cannot reach the DevTools endpoint (", op_ec.message(),
         "); start the browser with --remote-debugging-port=", ep.port, " or check the address");
  const Json body = Json::parse(response.body(), nullptr, false);
  require(response.result() == http::status::ok && body.is_object() && body.contains("webSocketDebuggerUrl") &&
              body["webSocketDebuggerUrl"].is_string(),
          "--cdp ", http_url, ": /json/version did not name a webSocketDebuggerUrl (HTTP ", response.result_int(),
          "); is this a Chromium DevTools port?");
  const std::string ws = body["webSocketDebuggerUrl"].get<std::string>();
  Endpoint reported = parse_url(ws, "ws");
  return "ws://" + (ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host) + ":" + ep.port +
         reported.target;
}

class CdpClient {
 public:
  using EventHandler = std::function<void(const Json& params, const std::string& session_id)>;

  // Connects to a DevTools WebSocket (ws://HOST:PORT/devtools/browser/ID).
  explicit CdpClient(const std::string& ws_url, ClientOptions options = {})
      : options_(options), url_(ws_url), ws_(ioc_) {
    namespace beast = detail::beast;
    const Endpoint ep = parse_url(ws_url, "ws");
    detail::tcp::resolver resolver(ioc_);
    beast::error_code ec;
    const auto results = resolver.resolve(ep.host, ep.port, ec);
    if (ec) fail("CDP: cannot resolve ", ep.host, " in ", ws_url, " (", ec.message(), ")");
    auto& stream = beast::get_lowest_layer(ws_);
    stream.expires_after(options_.connect_timeout);
    bool finished = false;
    beast::error_code op_ec;
    stream.async_connect(results, [&](beast::error_code e, const detail::tcp::endpoint&) {
      if (e) {
        op_ec = e;
        finished = true;
        return;
      }
      ws_.async_handshake(ep.host + ":" + ep.port, ep.target, [&](beast::error_code e2) {
        op_ec = e2;
        finished = true;
      });
    });
    detail::run_until(ioc_, [&] { return finished; });
    if (op_ec)
      fail("CDP: cannot open the DevTools WebSocket ", ws_url, " (", op_ec.message(),
           "); is the browser running with remote debugging on that port?");
    // The handshake had a deadline; the session itself has none (calls do).
    stream.expires_never();
    ws_.read_message_max(options_.max_message_bytes);
    ws_.text(true);
    work_.emplace(ioc_.get_executor());
    start_read();
    thread_ = std::thread([this] { ioc_.run(); });
  }

  CdpClient(const CdpClient&) = delete;
  CdpClient& operator=(const CdpClient&) = delete;

  ~CdpClient() { close(); }

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

  Pending send(const std::string& method, Json params = Json::object(), const std::string& session_id = {}) {
    Pending pending;
    pending.method = method;
    auto promise = std::make_shared<std::promise<Json>>();
    pending.result = promise->get_future().share();
    std::string text;
    {
      std::lock_guard lock(mutex_);
      if (dead_) throw CdpError(lost_message(method), CdpError::Kind::connection_lost);
      pending.id = next_id_++;
      Json message{{"id", pending.id}, {"method", method}, {"params", std::move(params)}};
      if (!session_id.empty()) message["sessionId"] = session_id;
      text = message.dump();
      calls_.emplace(pending.id, CallState{method, promise});
    }
    detail::asio::post(ioc_, [this, text = std::move(text)]() mutable {
      outbox_.push_back(std::move(text));
      if (outbox_.size() == 1) write_next();
    });
    return pending;
  }

  Json wait(const Pending& pending, std::optional<Milliseconds> timeout = std::nullopt) {
    const Milliseconds limit = timeout.value_or(options_.call_timeout);
    if (pending.result.wait_for(limit) != std::future_status::ready) {
      std::size_t erased = 0;
      {
        std::lock_guard lock(mutex_);
        erased = calls_.erase(pending.id);
      }
      // Not erased: the I/O thread took the entry and is completing it now
      // (answer or connection loss), so that outcome stands.
      if (erased == 1)
        throw CdpError("CDP call " + pending.method + " got no answer within " + std::to_string(limit.count()) +
                           " ms (the page may be busy or hung; --cdp-timeout SECONDS sets the limit)",
                       CdpError::Kind::timeout);
    }
    return pending.result.get();
  }

  // Calls `handler` (on the I/O thread: keep it short, never call() from it)
  // for every event named `method`. Returns a token for remove_handler().
  std::uint64_t on_event(const std::string& method, EventHandler handler) {
    std::lock_guard lock(mutex_);
    const std::uint64_t token = next_token_++;
    handlers_.emplace(method, HandlerEntry{token, std::move(handler)});
    return token;
  }

  void remove_handler(std::uint64_t token) {
    std::lock_guard lock(mutex_);
    for (auto it = handlers_.begin(); it != handlers_.end(); ++it) {
      if (it->second.token == token) {
        handlers_.erase(it);
        return;
      }
    }
  }

  // One-shot wait for the next event `method` (of `session_id`, if given).
  // Register before sending the command that causes the event, so it cannot
  // slip past: auto loaded = client.expect_event("Page.loadEventFired", s);
  // client.call("Page.navigate", ...); loaded.wait(...).
  class EventWaiter {
   public:
    Json wait(Milliseconds timeout) {
      if (future_.wait_for(timeout) != std::future_status::ready && client_->cancel_waiter(token_)) {
        throw CdpError("CDP: no " + method_ + " event within " + std::to_string(timeout.count()) + " ms",
                       CdpError::Kind::timeout);
      }
      return future_.get();
    }

   private:
    friend class CdpClient;
    CdpClient* client_ = nullptr;
    std::uint64_t token_ = 0;
    std::string method_;
    std::future<Json> future_;
  };

  EventWaiter expect_event(const std::string& method, const std::string& session_id = {}) {
    EventWaiter waiter;
    auto promise = std::make_shared<std::promise<Json>>();
    waiter.future_ = promise->get_future();
    waiter.client_ = this;
    waiter.method_ = method;
    std::lock_guard lock(mutex_);
    if (dead_) throw CdpError(lost_message(method), CdpError::Kind::connection_lost);
    waiter.token_ = next_token_++;
    waiters_.push_back(WaiterEntry{waiter.token_, method, session_id, promise});
    return waiter;
  }

  // Opens a new tab and attaches to it with a flattened session: its
  // commands travel on this socket, tagged with the returned session id.
  struct Tab {
    std::string target_id;
    std::string session_id;
  };

  // Each tab gets a window of its own: headless Chromium composites only the
  // front tab of a window, so Page.captureScreenshot in a second tab of the
  // same window never answers (measured: N envs as N tabs of one browser).
  Tab open_tab(const std::string& url = "about:blank") {
    Tab tab;
    tab.target_id = call("Target.createTarget", {{"url", url}, {"newWindow", true}})["targetId"].get<std::string>();
    tab.session_id =
        call("Target.attachToTarget", {{"targetId", tab.target_id}, {"flatten", true}})["sessionId"].get<std::string>();
    return tab;
  }

  void close_tab(const Tab& tab) { call("Target.closeTarget", {{"targetId", tab.target_id}}); }

  // Closes the socket; pending calls fail. Idempotent.
  void close() {
    if (!thread_.joinable()) return;
    detail::asio::post(ioc_, [this] {
      detail::beast::error_code ec;
      detail::beast::get_lowest_layer(ws_).socket().shutdown(detail::tcp::socket::shutdown_both, ec);
      detail::beast::get_lowest_layer(ws_).close();
    });
    work_.reset();
    thread_.join();
    fail_all("the client was closed");
  }

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

  std::string lost_message(const std::string& method) const {
    return "CDP call " + method + " failed: the connection to " + url_ + " is lost (" + death_reason_ +
           "); the browser exited or closed the socket";
  }

  // False when the I/O thread already took the waiter to complete it.
  bool cancel_waiter(std::uint64_t token) {
    std::lock_guard lock(mutex_);
    return std::erase_if(waiters_, [&](const WaiterEntry& w) { return w.token == token; }) > 0;
  }

  void start_read() {
    ws_.async_read(read_buffer_, [this](detail::beast::error_code ec, std::size_t) {
      if (ec) {
        std::string reason = ec.message();
        if (ec == detail::beast::websocket::error::message_too_big)
          reason = "a message exceeded the " + std::to_string(options_.max_message_bytes) + "-byte cap";
        fail_all(reason);
        return;
      }
      const auto data = read_buffer_.data();
      std::string_view text(static_cast<const char*>(data.data()), data.size());
      dispatch(text);
      read_buffer_.consume(read_buffer_.size());
      start_read();
    });
  }

  void write_next() {
    ws_.async_write(detail::asio::buffer(outbox_.front()), [this](detail::beast::error_code ec, std::size_t) {
      if (ec) {
        outbox_.clear();
        fail_all("write failed: " + ec.message());
        return;
      }
      outbox_.erase(outbox_.begin());
      if (!outbox_.empty()) write_next();
    });
  }

  void dispatch(std::string_view text) {
    Json message = Json::parse(text, nullptr, false);
    if (!message.is_object()) {
      ++malformed_;
      return;
    }
    const auto id_it = message.find("id");
    if (id_it != message.end()) {
      if (!id_it->is_number_integer()) {
        ++malformed_;
        return;
      }
      std::shared_ptr<std::promise<Json>> promise;
      std::string method;
      {
        std::lock_guard lock(mutex_);
        auto it = calls_.find(id_it->get<std::int64_t>());
        if (it == calls_.end()) return;  // its caller gave up (deadline)
        promise = it->second.promise;
        method = it->second.method;
        calls_.erase(it);
      }
      const auto error = message.find("error");
      if (error != message.end()) {
        const std::string what = error->is_object() && error->contains("message") && (*error)["message"].is_string()
                                     ? (*error)["message"].get<std::string>()
                                     : error->dump();
        promise->set_exception(std::make_exception_ptr(CdpError("CDP call " + method + " failed: " + what, CdpError::Kind::error_reply)));
      } else {
        auto result = message.find("result");
        promise->set_value(result == message.end() ? Json::object() : std::move(*result));
      }
      return;
    }
    const auto method_it = message.find("method");
    if (method_it == message.end() || !method_it->is_string()) {
      ++malformed_;
      return;
    }
    const std::string method = method_it->get<std::string>();
    const std::string session = message.contains("sessionId") && message["sessionId"].is_string()
                                    ? message["sessionId"].get<std::string>()
                                    : std::string{};
    const Json params = message.contains("params") ? message["params"] : Json::object();
    std::vector<EventHandler> to_call;
    std::vector<std::shared_ptr<std::promise<Json>>> to_wake;
    {
      std::lock_guard lock(mutex_);
      auto [begin, end] = handlers_.equal_range(method);
      for (auto it = begin; it != end; ++it) to_call.push_back(it->second.handler);
      for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->method == method && (it->session_id.empty() || it->session_id == session)) {
          to_wake.push_back(it->promise);
          it = waiters_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& promise : to_wake) promise->set_value(params);
    for (auto& handler : to_call) handler(params, session);
  }

  // Fails every pending call and waiter at once with the same reason.
  void fail_all(const std::string& reason) {
    std::map<std::int64_t, CallState> calls;
    std::vector<WaiterEntry> waiters;
    {
      std::lock_guard lock(mutex_);
      if (!dead_) {
        death_reason_ = reason;
        dead_ = true;
      }
      calls.swap(calls_);
      waiters.swap(waiters_);
    }
    for (auto& [id, call] : calls)
      call.promise->set_exception(std::make_exception_ptr(CdpError(lost_message(call.method), CdpError::Kind::connection_lost)));
    for (auto& w : waiters)
      w.promise->set_exception(std::make_exception_ptr(CdpError(lost_message(w.method), CdpError::Kind::connection_lost)));
  }

  ClientOptions options_;
  std::string url_;
  detail::asio::io_context ioc_;
  detail::beast::websocket::stream<detail::beast::tcp_stream> ws_;
  std::optional<detail::asio::executor_work_guard<detail::asio::io_context::executor_type>> work_;
  std::thread thread_;
  detail::beast::flat_buffer read_buffer_;
  std::vector<std::string> outbox_;  // touched only on the I/O thread

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
