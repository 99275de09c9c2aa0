#pragma once
// Stopping a run cleanly: SIGINT, SIGTERM and SIGHUP set a flag the trainer
// polls, so the run saves a checkpoint after the current step and exits
// 128 + the signal; a second signal exits at once. Async-signal-safe: the
// handler only stores atomics and write()s a fixed message.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iterator>

namespace qrl::examples {

namespace detail {
// Set by SIGINT, SIGTERM and SIGHUP: the run saves a checkpoint after the
// current step and exits 128 + the signal. Schedulers (Slurm, Kubernetes,
// systemd) stop jobs with SIGTERM, a closed terminal sends SIGHUP.
inline std::atomic<bool> interrupted{false};
inline std::atomic<int> stop_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the signal flags must be async-signal-safe");
inline constexpr int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};

inline void on_stop_signal(int sig) {
  if (interrupted) {
    static const char msg[] = "\nsignalled twice: exiting without a checkpoint\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    std::_Exit(128 + sig);
  }
  stop_signal = sig;
  interrupted = true;
  static const char msg_int[] = "\ninterrupted: saving a checkpoint after this step (Ctrl-C again to exit at once)\n";
  static const char msg_other[] = "\nstop signal: saving a checkpoint after this step (signal again to exit at once)\n";
  [[maybe_unused]] auto n = sig == SIGINT ? ::write(2, msg_int, sizeof msg_int - 1)
                                          : ::write(2, msg_other, sizeof msg_other - 1);
}

inline const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT (Ctrl-C)";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
  }
}

// Installs on_stop_signal for the stop signals while it lives.
class StopSignals {
 public:
  StopSignals() {
    interrupted = false;
    stop_signal = 0;
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // a write or a CDP wait in progress goes on
    for (std::size_t i = 0; i < std::size(stop_signals); ++i) ::sigaction(stop_signals[i], &action, &previous_[i]);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  ~StopSignals() {
    for (std::size_t i = 0; i < std::size(stop_signals); ++i) ::sigaction(stop_signals[i], &previous_[i], nullptr);
  }

 private:
  struct sigaction previous_[std::size(stop_signals)] {};
};
}  // namespace detail

}  // namespace qrl::examples
