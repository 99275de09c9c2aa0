// The CDP client and the Chromium supervisor against a real Chromium.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

// The scripted DevTools server below speaks WebSocket itself; the client's
// own Beast sits behind a pimpl in qrl::dino, so its headers come from here.
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <qrl/cdp/chromium.hpp>
#include <qrl/cdp/client.hpp>

#include "browser_support.hpp"

using namespace qrl::cdp;
using qrl::test::eventually;
using qrl::test::live_processes;

namespace {

ChromiumOptions quiet() {
  ChromiumOptions o;
  o.warn_no_sandbox = false;
  return o;
}

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

const Json never_answers{{"expression", "new Promise(() => {})"}, {"awaitPromise", true}};

}  // namespace

TEST_SUITE("chromium") {

TEST_CASE("CDP: calls get their own results and errors - events arrive by method and session") {
  ChromiumProcess chrome(quiet());
  CdpClient client(chrome.ws_url());
  const Json version = client.call("Browser.getVersion");
  CHECK(version["product"].get<std::string>().find("Chrome/") != std::string::npos);

  auto tab = client.open_tab();
  REQUIRE(!tab.session_id.empty());
  // Several calls in flight at once, answered to the right caller.
  std::vector<CdpClient::Pending> pending;
  for (int i = 0; i < 8; ++i)
    pending.push_back(client.send("Runtime.evaluate", {{"expression", std::to_string(i) + " * 7"}}, tab.session_id));
  for (int i = 7; i >= 0; --i) CHECK(client.wait(pending[static_cast<std::size_t>(i)])["result"]["value"] == i * 7);

  client.call("Runtime.enable", {}, tab.session_id);
  std::string handled_session;
  std::string handled_text;
  client.on_event("Runtime.consoleAPICalled", [&](const Json& params, const std::string& session) {
    handled_session = session;
    handled_text = params["args"][0]["value"].get<std::string>();
  });
  auto console = client.expect_event("Runtime.consoleAPICalled", tab.session_id);
  client.call("Runtime.evaluate", {{"expression", "console.log('qrl-hello')"}}, tab.session_id);
  const Json event = console.wait(Milliseconds(5000));
  CHECK(event["args"][0]["value"] == "qrl-hello");
  CHECK(handled_session == tab.session_id);
  CHECK(handled_text == "qrl-hello");

  // The browser's own error, reported as such; the connection stays up.
  const std::string error = error_of([&] { client.call("No.suchMethod", {}, tab.session_id); });
  CHECK(error.find("No.suchMethod") != std::string::npos);
  CHECK(error.find("wasn't found") != std::string::npos);
  CHECK(client.connected());
  CHECK(client.malformed_messages() == 0);
}

TEST_CASE("CDP: a call that never answers fails at its deadline and the client goes on") {
  ChromiumProcess chrome(quiet());
  CdpClient client(chrome.ws_url());
  auto tab = client.open_tab();
  bool lost = true;
  std::string what;
  try {
    client.call("Runtime.evaluate", never_answers, tab.session_id, Milliseconds(300));
  } catch (const CdpError& e) {
    lost = e.connection_lost();
    what = e.what();
  }
  CHECK_FALSE(lost);
  CHECK(what.find("Runtime.evaluate got no answer within 300 ms") != std::string::npos);
  CHECK(client.call("Runtime.evaluate", {{"expression", "20 + 22"}}, tab.session_id)["result"]["value"] == 42);
}

TEST_CASE("CDP: when the browser dies every pending call fails at once with the reason") {
  ChromiumProcess chrome(quiet());
  CdpClient client(chrome.ws_url());
  auto tab = client.open_tab();
  std::vector<CdpClient::Pending> pending;
  for (int i = 0; i < 3; ++i) pending.push_back(client.send("Runtime.evaluate", never_answers, tab.session_id));
  auto never = client.expect_event("Qrl.neverSent");
  ::kill(-chrome.browser_pid(), SIGKILL);
  // Deadlines far beyond the test's run: only the socket's death can end these waits.
  for (auto& p : pending) {
    bool lost = false;
    std::string what;
    try {
      client.wait(p, Milliseconds(60000));
    } catch (const CdpError& e) {
      lost = e.connection_lost();
      what = e.what();
    }
    CHECK(lost);
    CHECK(what.find("connection to ws://127.0.0.1:") != std::string::npos);
  }
  bool waiter_lost = false;
  try {
    never.wait(Milliseconds(60000));
  } catch (const CdpError& e) {
    waiter_lost = e.connection_lost();
  }
  CHECK(waiter_lost);
  CHECK_FALSE(client.connected());
  // New calls fail at once too.
  bool lost_now = false;
  try {
    client.call("Browser.getVersion", {}, {}, Milliseconds(60000));
  } catch (const CdpError& e) {
    lost_now = e.connection_lost();
  }
  CHECK(lost_now);
}

TEST_CASE("CDP: a message over the size cap closes the connection with an error and no crash") {
  ChromiumProcess chrome(quiet());
  ClientOptions options;
  options.max_message_bytes = 4096;
  CdpClient client(chrome.ws_url(), options);
  auto tab = client.open_tab();
  CHECK(client.call("Runtime.evaluate", {{"expression", "'x'.repeat(100)"}}, tab.session_id)["result"]["value"] ==
        std::string(100, 'x'));
  const std::string what = error_of([&] {
    client.call("Runtime.evaluate", {{"expression", "'x'.repeat(100000)"}}, tab.session_id, Milliseconds(60000));
  });
  CHECK(what.find("exceeded the 4096-byte cap") != std::string::npos);
  CHECK_FALSE(client.connected());
}

TEST_CASE("CDP: malformed messages are counted and dropped and the call still gets its answer") {
  // A WebSocket peer that misbehaves on purpose (no browser sends these).
  namespace beast = boost::beast;
  namespace asio = boost::asio;
  asio::io_context ioc;
  asio::ip::tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  const int port = acceptor.local_endpoint().port();
  std::thread server([&] {
    asio::ip::tcp::socket socket(ioc);
    acceptor.accept(socket);
    beast::websocket::stream<asio::ip::tcp::socket> ws(std::move(socket));
    ws.accept();
    beast::flat_buffer buffer;
    ws.read(buffer);
    const Json request = Json::parse(beast::buffers_to_string(buffer.data()));
    for (const char* bad : {"not json at all", "{\"id\": \"7\", \"result\": {}}", "[1, 2, 3]", "{\"method\": 5}", "{\"id\": 99999}"})
      ws.write(asio::buffer(std::string(bad)));
    ws.write(asio::buffer(Json{{"id", request["id"]}, {"result", {{"ok", true}}}}.dump()));
    beast::error_code ec;
    ws.read(buffer, ec);  // until the client goes away
  });
  {
    CdpClient client("ws://127.0.0.1:" + std::to_string(port) + "/devtools/browser/test");
    CHECK(client.call("Test.method", {}, {}, Milliseconds(10000)) == Json{{"ok", true}});
    // The unknown id 99999 is an answer nobody waits for, not a malformed message.
    CHECK(client.malformed_messages() == 4);
    CHECK(client.connected());
  }
  server.join();
}

TEST_CASE("Chromium: no process and no profile outlive the supervisor") {
  std::string dir;
  int browser = 0;
  {
    ChromiumProcess chrome(quiet());
    dir = chrome.profile_dir();
    browser = chrome.browser_pid();
    REQUIRE(std::filesystem::exists(dir + "/profile/DevToolsActivePort"));
    REQUIRE(chrome.port() > 0);
    CHECK(chrome.ws_url().rfind("ws://127.0.0.1:", 0) == 0);
    // Browser, zygotes, GPU and network processes, crashpad: several.
    CHECK(live_processes(browser, dir).size() >= 3);
  }
  CHECK_FALSE(std::filesystem::exists(dir));
  CHECK(eventually([&] { return live_processes(browser, dir).empty(); }));
}

TEST_CASE("Chromium: a SIGKILLed parent leaves no browser and no profile behind") {
  int report[2];
  REQUIRE(::pipe(report) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(report[0]);
    try {
      ChromiumProcess chrome(quiet());
      const std::string line = std::to_string(chrome.browser_pid()) + " " + chrome.profile_dir() + "\n";
      if (::write(report[1], line.data(), line.size()) < 0) ::_exit(2);
      ::pause();
    } catch (...) {
    }
    ::_exit(1);
  }
  ::close(report[1]);
  char buffer[512] = {};
  std::size_t got = 0;
  while (got < sizeof buffer - 1) {
    const ssize_t n = ::read(report[0], buffer + got, sizeof buffer - 1 - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
    if (buffer[got - 1] == '\n') break;
  }
  ::close(report[0]);
  int browser = 0;
  char dir_chars[400] = {};
  REQUIRE(std::sscanf(buffer, "%d %399s", &browser, dir_chars) == 2);
  const std::string dir = dir_chars;
  REQUIRE(browser > 0);
  REQUIRE(std::filesystem::exists(dir));
  REQUIRE(!live_processes(browser, dir).empty());
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(eventually([&] { return live_processes(browser, dir).empty() && !std::filesystem::exists(dir); }));
}

TEST_CASE("Chromium: a browser launched on a thread that has ended lives on until its supervisor goes") {
  // PR_SET_PDEATHSIG fires when the launching *thread* exits; the guardian
  // must tell that apart from the death of our process.
  std::unique_ptr<ChromiumProcess> chrome;
  std::thread([&] { chrome = std::make_unique<ChromiumProcess>(quiet()); }).join();
  const std::string dir = chrome->profile_dir();
  const int browser = chrome->browser_pid();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(chrome->alive());
  CdpClient client(chrome->ws_url());
  CHECK(client.call("Browser.getVersion")["product"].get<std::string>().find("Chrome") != std::string::npos);
  chrome.reset();
  CHECK_FALSE(std::filesystem::exists(dir));
  CHECK(eventually([&] { return live_processes(browser, dir).empty(); }));
}

TEST_CASE("Chromium: a missing executable and an unreachable endpoint give one clear error each") {
  const std::string missing = error_of([] {
    ChromiumOptions o = quiet();
    o.executable = "/nonexistent/chromium";
    ChromiumProcess chrome(o);
  });
  CHECK(missing ==
        "Chromium not found at '/nonexistent/chromium' (no such executable); install it with `sudo apt-get install "
        "chromium` (or run scripts/setup.sh), or pass --chromium PATH");
  const std::string unreachable = error_of([] { browser_ws_url("http://127.0.0.1:9"); });
  CHECK(unreachable.rfind("--cdp http://127.0.0.1:9: cannot reach the DevTools endpoint (", 0) == 0);
  CHECK(unreachable.find('\n') == std::string::npos);
  CHECK(error_of([] { CdpClient c("ws://127.0.0.1:9/devtools/browser/x"); }).rfind("CDP: cannot open the DevTools WebSocket", 0) ==
        0);
  CHECK(error_of([] { parse_url("localhost:9222", "http"); }) ==
        "'localhost:9222' is not a http:// URL (expected http://HOST:PORT...)");
}

}  // TEST_SUITE
