#pragma once
// Device and pinned host memory of the CUDA backend, and the bookkeeping a
// captured CUDA graph needs: every live device allocation is registered
// (AllocationRegistry), so a graph can tell that a buffer it was captured
// with has been freed, and the cuDNN workspace grows without ever freeing a
// block a graph may still use (GrowingWorkspace).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <type_traits>
#include <vector>

#include <qrl/backend/cuda/check.hpp>
#include <qrl/core/error.hpp>

namespace qrl::cuda_detail {

struct PinnedFree {
  void operator()(void* p) const noexcept { cudaFreeHost(p); }
};
template <class T>
using PinnedBuffer = std::unique_ptr<T, PinnedFree>;

template <class T>
PinnedBuffer<T> make_pinned(std::size_t count) {
  void* p = nullptr;
  check(cudaMallocHost(&p, std::max<std::size_t>(count, 1) * sizeof(T)), "cudaMallocHost");
  return PinnedBuffer<T>(static_cast<T*>(p));
}

// Every live device allocation of backend_traits<cuda>::allocate, so a
// captured CUDA graph can tell that a buffer it reads or writes was freed
// (a Tensor resized beyond its capacity, a layer's activations grown by a
// larger batch): watch() ties a flag to the allocations that hold a set of
// pointers (interior pointers included), and freeing one of them sets it.
// Pure host bookkeeping, so it is testable without a device.
class AllocationRegistry {
 public:
  using Flag = std::shared_ptr<std::atomic<bool>>;

  void add(const void* base, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.insert_or_assign(key(base), Entry{bytes, {}});
  }
  // Forgets `base` and sets the flags that watched it.
  void remove(const void* base) noexcept {
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = entries_.find(key(base));
      if (it == entries_.end()) return;
      for (const auto& flag : it->second.watchers) flag->store(true);
      entries_.erase(it);
    } catch (...) {  // std::mutex::lock failing: nothing sensible left to do
    }
  }
  // Ties `flag` to each allocation that holds one of `pointers`; pointers
  // outside every allocation (null, host memory) are skipped. Returns the
  // number of allocations newly watched.
  std::size_t watch(std::span<const void* const> pointers, const Flag& flag) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t watched = 0;
    for (const void* p : pointers) {
      const auto it = find_containing(entries_, key(p));
      if (it == entries_.end()) continue;
      auto& watchers = it->second.watchers;
      if (std::find(watchers.begin(), watchers.end(), flag) != watchers.end()) continue;
      watchers.push_back(flag);
      ++watched;
    }
    return watched;
  }
  void unwatch(const Flag& flag) noexcept {
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [base, entry] : entries_) std::erase(entry.watchers, flag);
    } catch (...) {
    }
  }
  bool contains(const void* p) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return find_containing(entries_, key(p)) != entries_.end();
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

 private:
  struct Entry {
    std::size_t bytes = 0;
    std::vector<Flag> watchers;
  };
  using Map = std::map<std::uintptr_t, Entry>;
  static std::uintptr_t key(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
  template <class M>
  static auto find_containing(M& entries, std::uintptr_t p) -> decltype(entries.begin()) {
    if (p == 0) return entries.end();
    auto it = entries.upper_bound(p);
    if (it == entries.begin()) return entries.end();
    --it;
    return p - it->first < std::max<std::size_t>(it->second.bytes, 1) ? it : entries.end();
  }

  mutable std::mutex mutex_;
  Map entries_;
};

// The process's registry. Never destroyed: device buffers owned by static
// objects may be freed after other statics are gone.
inline AllocationRegistry& allocations() {
  static AllocationRegistry* registry = new AllocationRegistry;
  return *registry;
}

// A flag set once any allocation holding one of `pointers` is freed; stops
// watching when destroyed.
class AllocationWatch {
 public:
  AllocationWatch() = default;
  AllocationWatch(AllocationRegistry& registry, std::span<const void* const> pointers)
      : registry_(&registry), flag_(std::make_shared<std::atomic<bool>>(false)) {
    watched_ = registry.watch(pointers, flag_);
  }
  ~AllocationWatch() {
    if (registry_) registry_->unwatch(flag_);
  }
  AllocationWatch(const AllocationWatch&) = delete;
  AllocationWatch& operator=(const AllocationWatch&) = delete;

  bool freed() const { return flag_ && flag_->load(); }
  std::size_t allocations() const { return watched_; }

 private:
  AllocationRegistry* registry_ = nullptr;
  AllocationRegistry::Flag flag_;
  std::size_t watched_ = 0;
};

// One grow-only scratch block (the cuDNN workspace). Growing allocates the
// new block first, so a failed allocation throws with the old block and its
// size untouched and usable. The old block is retired, not freed: a CUDA
// graph captured earlier may still use it (the stream orders the graph's
// use and the new block's, so both are safe). generation() counts the
// growths. Allocator: static void* allocate(std::size_t) (throws) and
// static void release(void*) noexcept.
template <class Allocator>
class GrowingWorkspace {
 public:
  GrowingWorkspace() = default;
  ~GrowingWorkspace() {
    if (current_) Allocator::release(current_);
    for (void* p : retired_) Allocator::release(p);
  }
  GrowingWorkspace(const GrowingWorkspace&) = delete;
  GrowingWorkspace& operator=(const GrowingWorkspace&) = delete;

  // A block of at least `bytes` (null while nothing was asked for).
  void* get(std::size_t bytes) {
    if (bytes <= bytes_) return current_;
    retired_.reserve(retired_.size() + 1);      // may throw: nothing changed yet
    void* fresh = Allocator::allocate(bytes);  // may throw: nothing changed yet
    if (current_) retired_.push_back(current_);
    current_ = fresh;
    bytes_ = bytes;
    ++generation_;
    return current_;
  }
  void* data() const { return current_; }
  std::size_t bytes() const { return bytes_; }
  std::uint64_t generation() const { return generation_; }
  std::size_t retired_blocks() const { return retired_.size(); }

 private:
  void* current_ = nullptr;
  std::size_t bytes_ = 0;
  std::uint64_t generation_ = 0;
  std::vector<void*> retired_;
};

// Device memory for `count` elements (at least one), registered in
// allocations(); a failed cudaMalloc is an error that says what to shrink.
template <class T>
T* device_allocate(std::size_t count) {
  if (count == 0) count = 1;
  if (count > std::numeric_limits<std::size_t>::max() / sizeof(T))
    fail("cudaMalloc of ", count, " elements of ", sizeof(T), " bytes: the size overflows");
  const std::size_t bytes = count * sizeof(T);
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    fail("cudaMalloc of ", bytes, " bytes failed: ", cudaGetErrorString(status),
         " (reduce the replay capacity or batch size, or free GPU memory)");
  }
  try {
    allocations().add(p, bytes);
  } catch (...) {
    cudaFree(p);
    throw;
  }
  return static_cast<T*>(p);
}
template <class T>
void device_free(T* p) noexcept {
  if (!p) return;
  allocations().remove(p);
  cudaFree(const_cast<std::remove_const_t<T>*>(p));
}

template <class T>
struct DeviceFree {
  void operator()(T* p) const noexcept { device_free(p); }
};
template <class T>
using DeviceBuffer = std::unique_ptr<T, DeviceFree<T>>;

template <class T>
DeviceBuffer<T> make_buffer(std::size_t count) {
  return DeviceBuffer<T>(device_allocate<T>(count));
}

// GrowingWorkspace's allocator for the cuDNN workspace: device bytes.
struct DeviceBytes {
  static void* allocate(std::size_t bytes) { return device_allocate<std::uint8_t>(bytes); }
  static void release(void* p) noexcept { device_free(static_cast<std::uint8_t*>(p)); }
};

}  // namespace qrl::cuda_detail
