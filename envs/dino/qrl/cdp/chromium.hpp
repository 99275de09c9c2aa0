#pragma once
// Launches and supervises a private headless Chromium (Puppeteer's launcher,
// in C++): a throwaway profile, --remote-debugging-port=0 with the port read
// from DevToolsActivePort, and no browser or profile that outlives us.
//
// Process tree:  this process
//                  └─ guardian (own process group; PR_SET_PDEATHSIG=SIGUSR1)
//                       └─ chromium (own process group; PR_SET_PDEATHSIG=SIGKILL) + its helpers
// The guardian exists because a SIGKILLed parent runs no destructor: when we
// die, the kernel signals the guardian, which kills Chromium's whole process
// group, waits for it, and then execs `rm -rf` on the profile directory.
// The kernel sends the death signal when the *thread* that forked exits, and
// then hands the child to another live thread of the same process. So the
// signal alone does not mean we are gone: the guardian checks getppid() and
// keeps the browser while our process lives. A browser launched on a short-
// lived thread therefore lives as long as its ChromiumProcess (tested).
// Between fork and exec the guardian uses only async-signal-safe calls, so
// launching from a multi-threaded program is safe.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <qrl/core/error.hpp>

namespace qrl::cdp {

struct ChromiumOptions {
  // Executable; empty: search PATH for chromium, chromium-browser, google-chrome.
  std::string executable;
  bool headless = true;
  // Window (and so viewport) size; the game canvas must fit inside it.
  int window_width = 800;
  int window_height = 600;
  std::vector<std::string> extra_arguments;
  std::chrono::milliseconds startup_timeout{30000};
  // Print the one-line --no-sandbox warning when running as root.
  bool warn_no_sandbox = true;
};

inline constexpr const char* kChromiumInstallHint =
    "install it with `sudo apt-get install chromium` (or run scripts/setup.sh), or pass --chromium PATH";

// Finds the browser executable: `path` if given (must be executable),
// otherwise the first of chromium / chromium-browser / google-chrome on PATH.
inline std::string find_chromium(const std::string& path = {}) {
  if (!path.empty()) {
    require(::access(path.c_str(), X_OK) == 0 && !std::filesystem::is_directory(path), "Chromium not found at '",
            path, "' (no such executable); ", kChromiumInstallHint);
    return path;
  }
  const char* env_path = std::getenv("PATH");
  const std::string dirs = env_path ? env_path : "/usr/local/bin:/usr/bin:/bin";
  for (const char* name : {"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}) {
    std::size_t start = 0;
    while (start <= dirs.size()) {
      const std::size_t end = std::min(dirs.find(':', start), dirs.size());
      const std::string candidate = dirs.substr(start, end - start) + "/" + name;
      if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
      start = end + 1;
    }
  }
  fail("Chromium not found on PATH; ", kChromiumInstallHint);
}

class ChromiumProcess {
 public:
  explicit ChromiumProcess(ChromiumOptions options = {}) : options_(std::move(options)) {
    executable_ = find_chromium(options_.executable);
    launch();
  }

  ChromiumProcess(const ChromiumProcess&) = delete;
  ChromiumProcess& operator=(const ChromiumProcess&) = delete;

  ~ChromiumProcess() { shutdown(); }

  const std::string& ws_url() const { return ws_url_; }
  const std::string& profile_dir() const { return dir_; }
  int port() const { return port_; }
  pid_t guardian_pid() const { return guardian_; }
  // Chromium's own pid (also its process group id).
  pid_t browser_pid() const { return browser_; }

  // Kills the browser and removes the profile; waits until both are gone.
  void shutdown() {
    if (guardian_ > 0) {
      ::kill(guardian_, SIGTERM);
      int status = 0;
      while (::waitpid(guardian_, &status, 0) < 0 && errno == EINTR) {
      }
      guardian_ = -1;
      // The guardian removes the profile as its last act; one that was
      // killed (SIGKILL reaches it too) did not, and its Chromium died of
      // the death signal with its helpers possibly still running.
      std::error_code ec;
      if (!dir_.empty() && std::filesystem::exists(dir_, ec)) {
        for (int i = 0; i < 50 && browser_ > 0 && ::kill(-browser_, 0) == 0; ++i) {
          ::kill(-browser_, SIGKILL);
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        std::filesystem::remove_all(dir_, ec);
      }
    }
    if (log_fd_ >= 0) ::close(log_fd_), log_fd_ = -1;
  }

  // True while Chromium runs (false once it exited or was killed).
  bool alive() const { return browser_ > 0 && guardian_ > 0 && ::kill(browser_, 0) == 0; }

  // Chromium's stderr so far (its last lines explain a failed start).
  std::string log_tail(std::size_t max_bytes = 2000) const {
    if (log_fd_ < 0) return {};
    struct stat st {};
    if (::fstat(log_fd_, &st) != 0) return {};
    const std::size_t size = static_cast<std::size_t>(st.st_size);
    const std::size_t begin = size > max_bytes ? size - max_bytes : 0;
    std::string text(size - begin, '\0');
    const ssize_t got = ::pread(log_fd_, text.data(), text.size(), static_cast<off_t>(begin));
    text.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
    return text;
  }

 private:
  void launch() {
    // mkdtemp replaces the trailing run of six 'X' with a unique suffix.
    std::string pattern = "/tmp/qrl-chromium-" + std::string(6, 'X');
    require(::mkdtemp(pattern.data()) != nullptr, "cannot create a temporary Chromium profile in /tmp: ",
            std::strerror(errno));
    dir_ = pattern;
    // An unlinked file for Chromium's output: readable by us for error
    // messages, never left behind.
    FILE* log = std::tmpfile();
    require(log != nullptr, "cannot create a temporary log file: ", std::strerror(errno));
    log_fd_ = ::dup(::fileno(log));
    std::fclose(log);

    std::vector<std::string> args{executable_};
    if (options_.headless) args.push_back("--headless");
    // Chrome 136+ ignores remote debugging on the default profile, and a
    // fresh profile keeps runs independent of each other and of the user.
    args.push_back("--user-data-dir=" + dir_ + "/profile");
    args.push_back("--remote-debugging-port=0");
    args.push_back("--remote-debugging-address=127.0.0.1");
    if (::geteuid() == 0) {
      if (options_.warn_no_sandbox)
        std::cerr << "qrl: warning: running as root, so Chromium runs with --no-sandbox (run as a normal user to "
                     "keep its sandbox)\n";
      args.push_back("--no-sandbox");
    }
    for (const char* a :
         {"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
          "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
          "--disable-backgrounding-occluded-windows", "--disable-breakpad", "--disable-crash-reporter",
          "--password-store=basic", "--use-mock-keychain", "--hide-scrollbars", "--disable-dev-shm-usage",
          // About 50 instead of 15-25 screenshots/s on 2 cores (design notes, section 4).
          "--disable-frame-rate-limit", "--disable-gpu-vsync", "--force-device-scale-factor=1"})
      args.emplace_back(a);
    args.push_back("--window-size=" + std::to_string(options_.window_width) + "," +
                   std::to_string(options_.window_height));
    for (const auto& a : options_.extra_arguments) args.push_back(a);
    // An escape hatch for machines that need flags qrl cannot guess (e.g.
    // --no-sandbox for a non-root user in a container without user namespaces).
    if (const char* extra = std::getenv("QRL_CHROMIUM_FLAGS")) {
      std::string flags = extra;
      for (std::size_t start = 0; start < flags.size();) {
        const std::size_t end = std::min(flags.find(' ', start), flags.size());
        if (end > start) args.push_back(flags.substr(start, end - start));
        start = end + 1;
      }
    }
    args.push_back("about:blank");

    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // Debian's Chromium starts crashpad handlers (outside its process group)
    // that write to ~/.config/chromium; this keeps their database in the
    // throwaway directory, and their command lines name it.
    std::string crash_env = "BREAKPAD_DUMP_LOCATION=" + dir_ + "/crash";
    std::vector<char*> envp;
    for (char** e = environ; *e != nullptr; ++e)
      if (std::strncmp(*e, "BREAKPAD_DUMP_LOCATION=", 23) != 0) envp.push_back(*e);
    envp.push_back(crash_env.data());
    envp.push_back(nullptr);
    std::string rm_path = "/bin/rm";
    std::string rm_flag = "-rf";
    std::string rm_sep = "--";
    std::vector<char*> rm_argv{rm_path.data(), rm_flag.data(), rm_sep.data(), dir_.data(), nullptr};

    const pid_t parent = ::getpid();
    int ready_pipe[2];
    require(::pipe2(ready_pipe, O_CLOEXEC) == 0, "pipe: ", std::strerror(errno));
    const pid_t guardian = ::fork();
    if (guardian < 0) {
      std::filesystem::remove_all(dir_);
      fail("cannot fork the Chromium guardian: ", std::strerror(errno));
    }
    if (guardian == 0) guardian_main(parent, argv.data(), envp.data(), rm_argv.data(), ready_pipe, log_fd_);
    ::close(ready_pipe[1]);
    guardian_ = guardian;
    // The guardian reports Chromium's pid once it has forked it.
    pid_t browser = -1;
    ssize_t got;
    while ((got = ::read(ready_pipe[0], &browser, sizeof browser)) < 0 && errno == EINTR) {
    }
    ::close(ready_pipe[0]);
    browser_ = got == sizeof browser ? browser : -1;
    wait_for_port();
  }

  // Runs in the forked child; never returns.
  [[noreturn]] static void guardian_main(pid_t parent, char** argv, char** envp, char** rm_argv, int ready_pipe[2], int log_fd) {
    ::close(ready_pipe[0]);
    ::setpgid(0, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    // Not SIGTERM: that one is shutdown()'s request, always obeyed, while the
    // death signal may only mean that the launching thread ended (header).
    ::prctl(PR_SET_PDEATHSIG, SIGUSR1);
    if (::getppid() != parent) ::execv(rm_argv[0], rm_argv);  // parent already gone
    const pid_t guardian = ::getpid();
    const pid_t browser = ::fork();
    if (browser == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != guardian) ::_exit(127);
      sigset_t empty;
      sigemptyset(&empty);
      ::sigprocmask(SIG_SETMASK, &empty, nullptr);
      const int devnull = ::open("/dev/null", O_RDONLY);
      if (devnull >= 0) ::dup2(devnull, 0);
      if (log_fd >= 0) ::dup2(log_fd, 1), ::dup2(log_fd, 2);
      ::execve(argv[0], argv, envp);
      ::_exit(127);
    }
    if (browser > 0) ::setpgid(browser, browser);  // both sides, so no race
    ssize_t ignored = ::write(ready_pipe[1], &browser, sizeof browser);
    (void)ignored;
    ::close(ready_pipe[1]);
    if (browser > 0) {
      for (;;) {
        int sig = 0;
        if (::sigwait(&set, &sig) != 0) continue;
        if (sig == SIGCHLD) {
          int status;
          const pid_t r = ::waitpid(browser, &status, WNOHANG);
          if (r == browser) break;  // Chromium exited by itself
          continue;
        }
        // Reparented to another thread of our parent: it still runs.
        if (sig == SIGUSR1 && ::getppid() == parent) continue;
        break;  // SIGTERM (asked), SIGUSR1 (parent died), SIGHUP, SIGINT
      }
      // The whole group: Chromium's zygote, renderer and GPU processes too.
      ::kill(-browser, SIGKILL);
      ::kill(browser, SIGKILL);
      int status;
      ::waitpid(browser, &status, 0);
      // Helpers reparented elsewhere may still be dying; give them a moment
      // so they do not write into the profile while it is removed.
      for (int i = 0; i < 50 && ::kill(-browser, 0) == 0; ++i) {
        ::kill(-browser, SIGKILL);
        struct timespec ts {0, 10'000'000};
        ::nanosleep(&ts, nullptr);
      }
    }
    ::execv(rm_argv[0], rm_argv);
    ::_exit(127);
  }

  void wait_for_port() {
    const auto file = std::filesystem::path(dir_) / "profile" / "DevToolsActivePort";
    const auto deadline = std::chrono::steady_clock::now() + options_.startup_timeout;
    for (;;) {
      std::ifstream in(file);
      std::string port_line, path_line;
      if (in && std::getline(in, port_line) && std::getline(in, path_line) && !path_line.empty()) {
        port_ = std::atoi(port_line.c_str());
        ws_url_ = "ws://127.0.0.1:" + std::to_string(port_) + path_line;
        return;
      }
      int status = 0;
      const bool exited = ::waitpid(guardian_, &status, WNOHANG) == guardian_;
      if (exited || std::chrono::steady_clock::now() > deadline) {
        if (exited) guardian_ = -1;
        const std::string tail = log_tail(600);
        shutdown();
        fail("Chromium (", executable_, ") ", exited ? "exited" : "did not open its DevTools port",
             exited ? " before opening its DevTools port" : " within the startup timeout",
             tail.empty() ? std::string{} : "; its output ends with: " + one_line(tail));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  static std::string one_line(std::string text) {
    for (char& c : text)
      if (c == '\n' || c == '\r') c = ' ';
    return text;
  }

  ChromiumOptions options_;
  std::string executable_;
  std::string dir_;
  std::string ws_url_;
  int port_ = 0;
  pid_t guardian_ = -1;
  pid_t browser_ = -1;
  int log_fd_ = -1;
};

}  // namespace qrl::cdp
