// The CDP client's transport: Boost.Beast and Asio, compiled once into
// qrl::dino so that no other translation unit parses them.
#include <qrl/cdp/client.hpp>

#include <optional>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace qrl::cdp {

namespace detail {
namespace beast = boost::beast;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Runs an async operation to completion on `ioc` within `timeout`, closing
// the stream if it runs late (Beast's tcp_stream timeouts do the closing).
void run_until(asio::io_context& ioc, const std::function<bool()>& done) {
  while (!done()) {
    if (ioc.run_one() == 0) break;
  }
  ioc.restart();
}
}  // namespace detail

// Fetches http://HOST:PORT/json/version and returns the browser's WebSocket

std::string browser_ws_url(const std::string& http_url, Milliseconds timeout) {
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

struct CdpClient::Socket {
  detail::asio::io_context ioc;
  detail::beast::websocket::stream<detail::beast::tcp_stream> ws{ioc};
  std::optional<detail::asio::executor_work_guard<detail::asio::io_context::executor_type>> work;
  std::thread thread;
  detail::beast::flat_buffer read_buffer;
  std::vector<std::string> outbox;  // touched only on the I/O thread
};

CdpClient::CdpClient(const std::string& ws_url, ClientOptions options)
  : options_(options), url_(ws_url), socket_(std::make_unique<Socket>()) {
  namespace beast = detail::beast;
  const Endpoint ep = parse_url(ws_url, "ws");
  detail::tcp::resolver resolver(socket_->ioc);
  beast::error_code ec;
  const auto results = resolver.resolve(ep.host, ep.port, ec);
  if (ec) fail("CDP: cannot resolve ", ep.host, " in ", ws_url, " (", ec.message(), ")");
  auto& stream = beast::get_lowest_layer(socket_->ws);
  stream.expires_after(options_.connect_timeout);
  bool finished = false;
  beast::error_code op_ec;
  stream.async_connect(results, [&](beast::error_code e, const detail::tcp::endpoint&) {
    if (e) {
      op_ec = e;
      finished = true;
      return;
    }
    socket_->ws.async_handshake(ep.host + ":" + ep.port, ep.target, [&](beast::error_code e2) {
      op_ec = e2;
      finished = true;
    });
  });
  detail::run_until(socket_->ioc, [&] { return finished; });
  if (op_ec)
    fail("CDP: cannot open the DevTools WebSocket ", ws_url, " (", op_ec.message(),
         "); is the browser running with remote debugging on that port?");
  // The handshake had a deadline; the session itself has none (calls do).
  stream.expires_never();
  socket_->ws.read_message_max(options_.max_message_bytes);
  socket_->ws.text(true);
  socket_->work.emplace(socket_->ioc.get_executor());
  start_read();
  socket_->thread = std::thread([this] { socket_->ioc.run(); });
}

CdpClient::~CdpClient() { close(); }

CdpClient::Pending CdpClient::send(const std::string& method, Json params, const std::string& session_id) {
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
  detail::asio::post(socket_->ioc, [this, text = std::move(text)]() mutable {
    socket_->outbox.push_back(std::move(text));
    if (socket_->outbox.size() == 1) write_next();
  });
  return pending;
}

Json CdpClient::wait(const Pending& pending, std::optional<Milliseconds> timeout) {
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

std::uint64_t CdpClient::on_event(const std::string& method, EventHandler handler) {
  std::lock_guard lock(mutex_);
  const std::uint64_t token = next_token_++;
  handlers_.emplace(method, HandlerEntry{token, std::move(handler)});
  return token;
}

void CdpClient::remove_handler(std::uint64_t token) {
  std::lock_guard lock(mutex_);
  for (auto it = handlers_.begin(); it != handlers_.end(); ++it) {
    if (it->second.token == token) {
      handlers_.erase(it);
      return;
    }
  }
}

Json CdpClient::EventWaiter::wait(Milliseconds timeout) {
  if (future_.wait_for(timeout) != std::future_status::ready && client_->cancel_waiter(token_)) {
    throw CdpError("CDP: no " + method_ + " event within " + std::to_string(timeout.count()) + " ms",
                   CdpError::Kind::timeout);
  }
  return future_.get();
}

CdpClient::EventWaiter CdpClient::expect_event(const std::string& method, const std::string& session_id) {
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

CdpClient::Tab CdpClient::open_tab(const std::string& url) {
  Tab tab;
  tab.target_id = call("Target.createTarget", {{"url", url}, {"newWindow", true}})["targetId"].get<std::string>();
  tab.session_id =
      call("Target.attachToTarget", {{"targetId", tab.target_id}, {"flatten", true}})["sessionId"].get<std::string>();
  return tab;
}

void CdpClient::close() {
  if (!socket_->thread.joinable()) return;
  detail::asio::post(socket_->ioc, [this] {
    detail::beast::error_code ec;
    detail::beast::get_lowest_layer(socket_->ws).socket().shutdown(detail::tcp::socket::shutdown_both, ec);
    detail::beast::get_lowest_layer(socket_->ws).close();
  });
  socket_->work.reset();
  socket_->thread.join();
  fail_all("the client was closed");
}

std::string CdpClient::lost_message(const std::string& method) const {
  return "CDP call " + method + " failed: the connection to " + url_ + " is lost (" + death_reason_ +
         "); the browser exited or closed the socket";
}

bool CdpClient::cancel_waiter(std::uint64_t token) {
  std::lock_guard lock(mutex_);
  return std::erase_if(waiters_, [&](const WaiterEntry& w) { return w.token == token; }) > 0;
}

void CdpClient::start_read() {
  socket_->ws.async_read(socket_->read_buffer, [this](detail::beast::error_code ec, std::size_t) {
    if (ec) {
      std::string reason = ec.message();
      if (ec == detail::beast::websocket::error::message_too_big)
        reason = "a message exceeded the " + std::to_string(options_.max_message_bytes) + "-byte cap";
      fail_all(reason);
      return;
    }
    const auto data = socket_->read_buffer.data();
    std::string_view text(static_cast<const char*>(data.data()), data.size());
    dispatch(text);
    socket_->read_buffer.consume(socket_->read_buffer.size());
    start_read();
  });
}

void CdpClient::write_next() {
  socket_->ws.async_write(detail::asio::buffer(socket_->outbox.front()), [this](detail::beast::error_code ec, std::size_t) {
    if (ec) {
      socket_->outbox.clear();
      fail_all("write failed: " + ec.message());
      return;
    }
    socket_->outbox.erase(socket_->outbox.begin());
    if (!socket_->outbox.empty()) write_next();
  });
}

void CdpClient::dispatch(std::string_view text) {
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

void CdpClient::fail_all(const std::string& reason) {
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

}  // namespace qrl::cdp
