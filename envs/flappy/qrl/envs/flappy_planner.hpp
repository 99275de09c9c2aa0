#pragma once
// A Flappy Bird policy that reads the game's true state (bird, pipes on
// screen) instead of pixels and searches the game's own rules for a way
// through. It answers what the game allows at a frame skip, a ceiling for
// the pixel agents (docs/flappy.md), and serves the tests as an oracle.
#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <span>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/envs/flappy_bird.hpp>

namespace qrl::envs {

struct FlappyPlannerConfig {
  int frame_skip = 2;  // the game's frame_skip: the planner decides as often as an agent
  // How far ahead it searches. A pipe spawns off the right edge 52 frames
  // before it reaches the bird, so pipes further ahead than that are unknown;
  // 100 frames also covers the hypothesised next one.
  int lookahead_frames = 100;
  // The gap of the pipe that spawns within the lookahead is not known yet;
  // the planner tries gap tops this far apart across the game's range and
  // prefers the action that keeps the most of them passable. 0 plans as if
  // there were no next pipe: the greedy planner that a gap change traps.
  int hedge_step_px = 10;
};

class FlappyPlanner {
 public:
  explicit FlappyPlanner(FlappyPlannerConfig config = {}) : config_(config) {
    require(config_.frame_skip >= 1, "FlappyPlanner: frame_skip must be >= 1, got ", config_.frame_skip);
    require(config_.lookahead_frames >= config_.frame_skip && config_.lookahead_frames <= kMaxLookahead,
            "FlappyPlanner: lookahead_frames must be between frame_skip and ", kMaxLookahead, ", got ",
            config_.lookahead_frames);
    require(config_.hedge_step_px >= 0, "FlappyPlanner: hedge_step_px must be >= 0 (0: no hedging), got ",
            config_.hedge_step_px);
    visited_.assign(static_cast<std::size_t>(config_.lookahead_frames + 1) * kYCount * kVelocityCount, 0);
    if (config_.hedge_step_px == 0) {
      hypotheses_.push_back(kUnknownGap);
    } else {
      for (int gap = FlappyBird::kGapOffset; gap < FlappyBird::kGapOffset + FlappyBird::kGapRange;
           gap += config_.hedge_step_px)
        hypotheses_.push_back(gap);
    }
  }

  // 0: do nothing, 1: flap. Among the actions, the one that survives the
  // lookahead for the most gap hypotheses; ties go to the bird ending the
  // step nearer the middle of the next gap it has not cleared.
  int act(const FlappyBird& game) {
    require(game.config().frame_skip == config_.frame_skip, "FlappyPlanner: planned for frame_skip ",
            config_.frame_skip, " but the game uses ", game.config().frame_skip);
    const auto pipes = game.pipes();
    int target_y = FlappyBird::kBaseY / 2;
    for (const FlappyPipe& pipe : pipes) {
      if (pipe.x + FlappyBird::kPipeWidth > FlappyBird::kBirdX) {
        target_y = pipe.gap_top + (FlappyBird::kPipeGap - FlappyBird::kBirdHeight) / 2;
        break;
      }
    }

    const FlappyBirdMotion now{game.bird_y(), game.bird_velocity()};
    std::array<int, FlappyBird::kActionCount> survived{};
    for (const int gap : hypotheses_) {
      const bool gap_matters = build_timeline(pipes, gap);
      for (int action = 0; action < FlappyBird::kActionCount; ++action) {
        ++search_;  // each search starts with nothing visited
        FlappyBirdMotion bird = now;
        int frame = 0;
        // Without a pipe spawning within the lookahead every hypothesis ends alike.
        if (advance(bird, frame, action) && survives(bird, frame))
          survived[action] += gap_matters ? 1 : static_cast<int>(hypotheses_.size());
      }
      if (!gap_matters) break;
    }

    int best_action = 0;
    std::pair<int, int> best{INT_MAX, INT_MAX};  // (-hypotheses survived, distance to the target)
    for (int action = 0; action < FlappyBird::kActionCount; ++action) {
      FlappyBirdMotion after = now;
      for (int k = 0; k < config_.frame_skip; ++k) after = FlappyBird::move_bird(after, k == 0 && action == 1);
      const std::pair<int, int> rank{-survived[action], std::abs(after.y - target_y)};
      if (rank < best) {
        best = rank;
        best_action = action;
      }
    }
    return best_action;
  }

 private:
  static constexpr int kMaxLookahead = 200;
  // Bird tops the game can produce: a flap only acts below kFlapCeiling, so
  // the bird rises at most 45 px above it.
  static constexpr int kMinY = FlappyBird::kFlapCeiling - 45;
  static constexpr int kYCount = FlappyBird::kBaseY - kMinY + 1;
  static constexpr int kVelocityCount = FlappyBird::kMaxFallVelocity - FlappyBird::kFlapVelocity + 1;
  static constexpr int kUnknownGap = INT_MIN;

  struct FramePipes {
    std::array<FlappyPipe, FlappyBird::kMaxPipes> pipes{};
    int count = 0;
  };

  // The pipes of each frame of the lookahead, moved by the game's rules. The
  // first pipe to spawn gets the hypothesised gap; later ones, and the first
  // when unhedged, are not known and left out of the collision test. True
  // when the hypothesised gap is part of the timeline.
  bool build_timeline(std::span<const FlappyPipe> now, int first_spawn_gap) {
    std::array<FlappyPipe, FlappyBird::kMaxPipes> pipes{};
    int count = static_cast<int>(now.size());
    std::copy(now.begin(), now.end(), pipes.begin());
    int spawned = 0;
    for (int frame = 1; frame <= config_.lookahead_frames; ++frame) {
      FlappyBird::move_pipes(pipes, count, [&] { return spawned++ == 0 ? first_spawn_gap : kUnknownGap; });
      FramePipes& known = timeline_[frame];
      known.count = 0;
      for (int i = 0; i < count; ++i)
        if (pipes[i].gap_top != kUnknownGap) known.pipes[known.count++] = pipes[i];
    }
    return spawned > 0 && first_spawn_gap != kUnknownGap;
  }

  // One decision: frame_skip frames, the action on the first. False on a crash.
  bool advance(FlappyBirdMotion& bird, int& frame, int action) const {
    for (int k = 0; k < config_.frame_skip && frame < config_.lookahead_frames; ++k) {
      bird = FlappyBird::move_bird(bird, k == 0 && action == 1);
      ++frame;
      const FramePipes& known = timeline_[frame];
      if (FlappyBird::collision(bird.y, {known.pipes.data(), static_cast<std::size_t>(known.count)})) return false;
    }
    return true;
  }

  // Whether some sequence of actions survives to the end of the lookahead.
  // A depth-first search that tries "do nothing" first; a state it has
  // visited in this search failed (a success ends the search), so it is not
  // expanded twice.
  bool survives(FlappyBirdMotion bird, int frame) {
    if (frame >= config_.lookahead_frames) return true;
    std::uint32_t& seen = visited_[(static_cast<std::size_t>(frame) * kYCount + (bird.y - kMinY)) * kVelocityCount +
                                   (bird.velocity - FlappyBird::kFlapVelocity)];
    if (seen == search_) return false;
    seen = search_;
    for (int action = 0; action < FlappyBird::kActionCount; ++action) {
      FlappyBirdMotion next = bird;
      int next_frame = frame;
      if (advance(next, next_frame, action) && survives(next, next_frame)) return true;
    }
    return false;
  }

  FlappyPlannerConfig config_;
  std::array<FramePipes, kMaxLookahead + 1> timeline_{};
  std::vector<int> hypotheses_;  // gap tops tried for the next pipe to spawn
  std::vector<std::uint32_t> visited_;  // per (frame, y, velocity): the search that last saw it
  std::uint32_t search_ = 0;
};

}  // namespace qrl::envs
