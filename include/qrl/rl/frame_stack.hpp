#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/env/env.hpp>
#include <qrl/kernels/replay.cuh>

namespace qrl::rl {

// The acting side's stack of the last k gray frames, channel-first
// [k, H, W] as the network takes it. Its frames sit in a ring of k slots with
// the episode's history count, and the stacked state is gathered from them
// by kernels::StackGather, the rule the replay memory rebuilds stored states
// with (at an episode start the first frame is repeated), so the agent acts
// on exactly the states it later learns from.
class FrameStack {
 public:
  FrameStack(env::FrameShape frame, int depth) : frame_(frame), depth_(depth) {
    require(frame.channels == 1, "FrameStack stacks gray frames; got a frame with ", frame.channels,
            " channels (preprocess to gray first)");
    require(depth > 0 && depth <= 255, "frame stack depth must lie in [1, 255], got ", depth);
    ring_.resize(frame.bytes() * static_cast<std::size_t>(depth));
    data_.resize(ring_.size());
  }

  void reset(env::FrameView first) {
    check(first);
    newest_ = 0;
    history_ = 0;
    std::memcpy(slot(0), first.pixels, frame_.bytes());
    gather();
  }

  void push(env::FrameView next) {
    check(next);
    newest_ = newest_ + 1 == depth_ ? 0 : newest_ + 1;
    history_ = history_ < 255 ? history_ + 1 : 255;
    std::memcpy(slot(newest_), next.pixels, frame_.bytes());
    gather();
  }

  const std::uint8_t* data() const { return data_.data(); }
  // Restores the stacked frames a checkpoint saved (bytes() of them, oldest
  // first): a full history, so data() returns them unchanged.
  void set_data(const std::uint8_t* bytes, std::size_t size) {
    require(size == data_.size(), "FrameStack::set_data: got ", size, " bytes, the stack holds ", data_.size());
    std::memcpy(ring_.data(), bytes, size);
    newest_ = depth_ - 1;
    history_ = depth_ - 1;
    gather();
  }
  std::size_t bytes() const { return data_.size(); }
  int depth() const { return depth_; }
  const env::FrameShape& frame_shape() const { return frame_; }

 private:
  std::uint8_t* slot(int i) { return ring_.data() + frame_.bytes() * static_cast<std::size_t>(i); }
  void gather() {
    const kernels::StackGather rule{depth_};
    for (int c = 0; c < depth_; ++c) {
      const auto source = static_cast<int>(rule.source(0, depth_, newest_, history_, c));
      std::memcpy(data_.data() + frame_.bytes() * static_cast<std::size_t>(c), slot(source), frame_.bytes());
    }
  }
  void check(const env::FrameView& f) const {
    require(f.pixels != nullptr && f.shape == frame_, "FrameStack got a ", f.shape.height, "x", f.shape.width, "x",
            f.shape.channels, " frame, expected ", frame_.height, "x", frame_.width, "x", frame_.channels);
  }

  env::FrameShape frame_;
  int depth_;
  int newest_ = 0, history_ = 0;
  std::vector<std::uint8_t> ring_, data_;
};

}  // namespace qrl::rl
