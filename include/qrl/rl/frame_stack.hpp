#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/env/env.hpp>

namespace qrl::rl {

// The acting side's stack of the last k gray frames, channel-first
// [k, H, W] as the network takes it. At an episode start every slot holds the
// first frame — the same rule ReplayMemory uses to rebuild stored states, so
// the agent acts on exactly the states it later learns from.
class FrameStack {
 public:
  FrameStack(env::FrameShape frame, int depth) : frame_(frame), depth_(depth) {
    require(frame.channels == 1, "FrameStack stacks gray frames; got a frame with ", frame.channels,
            " channels (preprocess to gray first)");
    require(depth > 0, "frame stack depth must be positive, got ", depth);
    data_.resize(frame.bytes() * static_cast<std::size_t>(depth));
  }

  void reset(env::FrameView first) {
    check(first);
    for (int i = 0; i < depth_; ++i) std::memcpy(slot(i), first.pixels, frame_.bytes());
  }

  void push(env::FrameView next) {
    check(next);
    std::memmove(data_.data(), data_.data() + frame_.bytes(), frame_.bytes() * (depth_ - 1));
    std::memcpy(slot(depth_ - 1), next.pixels, frame_.bytes());
  }

  const std::uint8_t* data() const { return data_.data(); }
  // Restores the stacked frames a checkpoint saved (bytes() of them).
  void set_data(const std::uint8_t* bytes, std::size_t size) {
    require(size == data_.size(), "FrameStack::set_data: got ", size, " bytes, the stack holds ", data_.size());
    std::memcpy(data_.data(), bytes, size);
  }
  std::size_t bytes() const { return data_.size(); }
  int depth() const { return depth_; }
  const env::FrameShape& frame_shape() const { return frame_; }

 private:
  std::uint8_t* slot(int i) { return data_.data() + frame_.bytes() * static_cast<std::size_t>(i); }
  void check(const env::FrameView& f) const {
    require(f.pixels != nullptr && f.shape == frame_, "FrameStack got a ", f.shape.height, "x", f.shape.width, "x",
            f.shape.channels, " frame, expected ", frame_.height, "x", frame_.width, "x", frame_.channels);
  }

  env::FrameShape frame_;
  int depth_;
  std::vector<std::uint8_t> data_;
};

}  // namespace qrl::rl
