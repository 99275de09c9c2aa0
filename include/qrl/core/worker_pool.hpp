#pragma once
// Worker threads that run one task per index together and wait for all: the
// vector env steps its envs with them, the examples' evaluation its slots.
// Index i always runs on thread i % threads (an env keeps its thread), the
// caller is thread 0, and the first error is rethrown once all have finished.
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <qrl/core/error.hpp>

namespace qrl {

class WorkerPool {
 public:
  // `threads` includes the caller's: 1 runs everything on the caller's thread.
  explicit WorkerPool(int threads) : threads_(threads) {
    require(threads >= 1, "WorkerPool: needs at least one thread, got ", threads);
    errors_.resize(static_cast<std::size_t>(threads_));
    for (int t = 1; t < threads_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
  }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  ~WorkerPool() {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  int threads() const { return threads_; }

  // task(i) for i in [0, count), thread t taking t, t + threads, ...
  template <class Task>
  void run(int count, Task&& task) {
    count_ = count;
    task_ = [&task](int i) { task(i); };
    if (threads_ > 1) {
      {
        std::lock_guard lock(mutex_);
        remaining_ = threads_ - 1;
        ++generation_;
      }
      wake_.notify_all();
    }
    run_share(0);
    if (threads_ > 1) {
      std::unique_lock lock(mutex_);
      done_.wait(lock, [this] { return remaining_ == 0; });
    }
    task_ = nullptr;
    for (auto& error : errors_) {
      if (error) {
        std::exception_ptr first = error;
        for (auto& e : errors_) e = nullptr;
        std::rethrow_exception(first);
      }
    }
  }

 private:
  void run_share(int t) {
    try {
      for (int i = t; i < count_; i += threads_) task_(i);
    } catch (...) {
      errors_[static_cast<std::size_t>(t)] = std::current_exception();
    }
  }

  void worker_loop(int t) {
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (quit_) return;
      }
      run_share(t);
      bool last = false;
      {
        std::lock_guard lock(mutex_);
        last = --remaining_ == 0;
      }
      if (last) done_.notify_one();
    }
  }

  int threads_ = 1;
  int count_ = 0;
  std::function<void(int)> task_;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::uint64_t generation_ = 0;
  int remaining_ = 0;
  bool quit_ = false;
};

}  // namespace qrl
