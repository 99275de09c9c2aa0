#pragma once
// Helpers for the tests that run a real Chromium: what processes exist, and
// bounded waits for a process tree to disappear.
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace qrl::test {

// Live (non-zombie) processes whose process group is `pgid` or whose command
// line mentions `text` (Chromium's helpers name the profile directory).
inline std::vector<int> live_processes(int pgid, const std::string& text) {
  std::vector<int> found;
  DIR* proc = ::opendir("/proc");
  if (!proc) return found;
  while (dirent* entry = ::readdir(proc)) {
    const int pid = std::atoi(entry->d_name);
    if (pid <= 0) continue;
    const std::string base = std::string("/proc/") + entry->d_name;
    std::ifstream stat_file(base + "/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    const auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    char state = 0;
    int ppid = 0, group = 0;
    if (std::sscanf(stat.c_str() + close_paren + 2, "%c %d %d", &state, &ppid, &group) != 3) continue;
    if (state == 'Z' || state == 'X') continue;
    std::ifstream cmd_file(base + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(cmd_file)), std::istreambuf_iterator<char>());
    if ((pgid > 0 && group == pgid) || (!text.empty() && cmd.find(text) != std::string::npos)) found.push_back(pid);
  }
  ::closedir(proc);
  return found;
}

// Polls `done` every 50 ms for at most `limit`; true once it holds.
template <class Pred>
bool eventually(Pred done, std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

}  // namespace qrl::test
