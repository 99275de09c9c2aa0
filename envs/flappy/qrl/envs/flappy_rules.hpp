#pragma once
// Flappy Bird's rules: the constants of FlapPyBird's mainGame
// (sourabhv/FlapPyBird) and one frame of the bird, of the pipes and of the
// collision test as pure functions. The game (FlappyBird::step) and the
// planners that search the rules (FlappyPlanner) share this one copy of the
// physics, so a plan that survives in the search survives in the game.
#include <algorithm>
#include <array>
#include <optional>
#include <span>
#include <string>

namespace qrl::envs {

// One upper/lower pipe pair. The upper pipe ends at gap_top; the lower pipe
// starts at gap_top + FlappyRules::kPipeGap.
struct FlappyPipe {
  int x = 0;
  int gap_top = 0;
};

// What ended an episode, in screen pixels: the numbers a crash analysis needs
// (most misses of a trained agent are by a few pixels, not a whole gap).
struct FlappyCrash {
  enum class Obstacle { Ground, UpperPipe, LowerPipe };
  Obstacle obstacle = Obstacle::Ground;
  // How far the bird is into the obstacle vertically: for the upper pipe,
  // gap top - bird top; for the lower pipe, bird bottom - gap bottom (at
  // least 1). 0 for the ground, which the bird never sinks into.
  int overlap_px = 0;
  // Pipes only: how many more pixels the pipes had to move for the bird to
  // clear this pipe (1 = its last column; 85 = it had just touched it).
  int clear_in_px = 0;
  int gap_top = 0;  // pipes only: the gap of the pipe hit
};

// "hit the upper pipe 4 px too high, 1 px before clearing it" / "hit the ground".
inline std::string describe(const FlappyCrash& crash) {
  switch (crash.obstacle) {
    case FlappyCrash::Obstacle::Ground:
      return "hit the ground";
    case FlappyCrash::Obstacle::UpperPipe:
      return "hit the upper pipe " + std::to_string(crash.overlap_px) + " px too high, " +
             std::to_string(crash.clear_in_px) + " px before clearing it";
    case FlappyCrash::Obstacle::LowerPipe:
      return "hit the lower pipe " + std::to_string(crash.overlap_px) + " px too low, " +
             std::to_string(crash.clear_in_px) + " px before clearing it";
  }
  return "crashed";
}

// The bird's vertical position (top edge, screen pixels) and velocity (pixels
// per frame, negative is up).
struct FlappyBirdMotion {
  int y = 0;
  int velocity = 0;
};

// FlappyBird derives from this, so the constants and rules read as
// FlappyBird::kBaseY, FlappyBird::move_bird, ...
struct FlappyRules {
  // FlapPyBird's constants, in screen pixels and pixels per frame.
  static constexpr int kScreenWidth = 288;
  static constexpr int kScreenHeight = 512;
  static constexpr int kBaseY = 404;  // int(512 * 0.79): top of the ground
  static constexpr int kBirdX = 57;   // int(288 * 0.2)
  static constexpr int kBirdWidth = 34;
  static constexpr int kBirdHeight = 24;
  static constexpr int kBirdStartY = (kScreenHeight - kBirdHeight) / 2;  // 244
  static constexpr int kPipeWidth = 52;
  static constexpr int kPipeHeight = 320;
  static constexpr int kPipeGap = 100;
  static constexpr int kPipeVelocity = -4;
  static constexpr int kFirstPipeX = kScreenWidth + 200;
  static constexpr int kPipeSpacing = kScreenWidth / 2;
  static constexpr int kPipeSpawnX = kScreenWidth + 10;
  static constexpr int kGapOffset = kBaseY * 2 / 10;              // int(BASEY * 0.2) = 80
  static constexpr int kGapRange = kBaseY * 6 / 10 - kPipeGap;    // int(BASEY * 0.6 - PIPEGAPSIZE) = 142
  static constexpr int kGravity = 1;
  static constexpr int kFlapVelocity = -9;
  static constexpr int kMaxFallVelocity = 10;
  // mainGame starts with playerVelY = -9: the welcome screen's flap carries over.
  static constexpr int kStartVelocity = -9;
  // Flaps are ignored once the bird is this far above the screen.
  static constexpr int kFlapCeiling = -2 * kBirdHeight;
  static constexpr int kMaxPipes = 3;
  static constexpr int kActionCount = 2;            // 0: do nothing, 1: flap
  static constexpr double kFramesPerSecond = 30.0;  // the original's FPS: what real time means for recordings

  // One frame of the bird: a flap (ignored above kFlapCeiling) sets the
  // velocity, which the flap frame keeps; otherwise gravity, up to the
  // maximum fall speed. The bird never sinks into the ground.
  static FlappyBirdMotion move_bird(FlappyBirdMotion bird, bool flap) {
    const bool flapped = flap && bird.y > kFlapCeiling;
    if (flapped) bird.velocity = kFlapVelocity;
    if (bird.velocity < kMaxFallVelocity && !flapped) bird.velocity += kGravity;
    bird.y += std::min(bird.velocity, kBaseY - bird.y - kBirdHeight);
    return bird;
  }

  // One frame of the pipes: they move left; a new one spawns at the right
  // edge (its gap from next_gap_top()) when the leading one nears the left
  // edge, and the leading one is dropped once it has left the screen.
  template <class NextGapTop>
  static void move_pipes(std::array<FlappyPipe, kMaxPipes>& pipes, int& count, NextGapTop&& next_gap_top) {
    for (int i = 0; i < count; ++i) pipes[i].x += kPipeVelocity;
    if (count > 0 && count < kMaxPipes && pipes[0].x > 0 && pipes[0].x < 5)
      pipes[count++] = FlappyPipe{kPipeSpawnX, next_gap_top()};
    if (count > 0 && pipes[0].x < -kPipeWidth) {
      std::copy(pipes.begin() + 1, pipes.begin() + count, pipes.begin());
      --count;
    }
  }

  // pygame.Rect collision: a shared area, touching edges do not count. The
  // rectangles stand in for the original's pixel hitmasks.
  static std::optional<FlappyCrash> collision(int bird_y, std::span<const FlappyPipe> pipes) {
    const int bird_bottom = bird_y + kBirdHeight;
    if (bird_bottom >= kBaseY - 1) return FlappyCrash{FlappyCrash::Obstacle::Ground, 0, 0, 0};
    for (const FlappyPipe& pipe : pipes) {
      if (!(kBirdX < pipe.x + kPipeWidth && pipe.x < kBirdX + kBirdWidth)) continue;
      const int clear_in = pipe.x + kPipeWidth - kBirdX;
      if (bird_y < pipe.gap_top && pipe.gap_top - kPipeHeight < bird_bottom)
        return FlappyCrash{FlappyCrash::Obstacle::UpperPipe, pipe.gap_top - bird_y, clear_in, pipe.gap_top};
      const int gap_bottom = pipe.gap_top + kPipeGap;
      if (gap_bottom < bird_bottom && bird_y < gap_bottom + kPipeHeight)
        return FlappyCrash{FlappyCrash::Obstacle::LowerPipe, bird_bottom - gap_bottom, clear_in, pipe.gap_top};
    }
    return std::nullopt;
  }
};

}  // namespace qrl::envs
