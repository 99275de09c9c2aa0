#pragma once
// Flappy Bird, natively: the rules of FlapPyBird's mainGame (sourabhv/FlapPyBird)
// with the rewards of the DeepLearningFlappyBird DQN tutorial, drawn as flat
// rectangles so the gray observation can be computed without rasterising.
//
// The game in parts: flappy_rules.hpp (constants, one frame of bird, pipes
// and collision), flappy_render.hpp (colours, the RGB screen and the
// analytic observation), this header (episodes, steps, rewards, the
// Environment interface) and flappy_bird_state.hpp (save_state/load_state as
// JSON, for checkpoints: the one part that needs nlohmann/json).
#include <array>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/env/env.hpp>
#include <qrl/env/preprocess.hpp>
#include <qrl/envs/flappy_render.hpp>
#include <qrl/envs/flappy_rules.hpp>

namespace qrl::envs {

// How the gray observation is produced. Both give the same bytes (the
// analytic path reproduces the reference's integer arithmetic exactly); the
// rendered one exists to check that and to measure what fusing buys.
enum class ObservationMode {
  Analytic,  // box-filter the scene's rectangles directly, band by band
  Rendered,  // render_rgb() then env::preprocess(): the generic reference path
};

struct FlappyBirdConfig {
  // Size of the gray observation of the playfield (the screen above the
  // ground, 288x404). Only downscaling is supported: 80x80 (tutorial) or 84x84.
  int observation_height = 80;
  int observation_width = 80;
  // Binary observation (gray > threshold -> 255, else 0); empty: gray levels.
  std::optional<std::uint8_t> threshold;
  // Game frames per agent step (the flap acts on the first one). 1 is the
  // tutorial's setting; 2 halves the decisions, and the credit-assignment
  // horizon, per pipe.
  int frame_skip = 1;
  // Truncate (not terminate) the episode after this many steps; 0: never.
  std::int64_t max_steps = 0;
  // Truncate the episode once this many pipes are passed; 0: never.
  int max_score = 0;
  ObservationMode observation_mode = ObservationMode::Analytic;
  // The tutorial's rewards: each reward replaces the alive reward on its
  // frame (a pass frame gives 1, not 1.1), death overrides both.
  double reward_alive = 0.1;
  double reward_pass = 1.0;
  double reward_death = -1.0;
};

class FlappyBird : public FlappyRules, public FlappyPalette {
 public:
  explicit FlappyBird(FlappyBirdConfig config = {}) : config_(config) {
    require(config_.observation_height >= 1 && config_.observation_height <= kBaseY &&
                config_.observation_width >= 1 && config_.observation_width <= kScreenWidth,
            "FlappyBird: observation size ", config_.observation_height, "x", config_.observation_width,
            " must be between 1x1 and the playfield's ", kBaseY, "x", kScreenWidth, " (downscaling only)");
    require(config_.frame_skip >= 1, "FlappyBird: frame_skip must be >= 1 (1 = act every frame), got ",
            config_.frame_skip);
    require(config_.max_steps >= 0, "FlappyBird: max_steps must be >= 0 (0 disables it), got ", config_.max_steps);
    require(config_.max_score >= 0, "FlappyBird: max_score must be >= 0 (0 disables it), got ", config_.max_score);
    observation_.assign(static_cast<std::size_t>(config_.observation_height) * config_.observation_width, 0);
    renderer_ = FlappyRenderer(config_.observation_height, config_.observation_width, config_.threshold);
  }

  // Starts an episode; the seed alone fixes every pipe gap of it.
  env::FrameView reset(std::uint64_t seed) {
    rng_.reseed(seed);
    bird_y_ = kBirdStartY;
    velocity_ = kStartVelocity;
    score_ = 0;
    frame_ = 0;
    step_ = 0;
    pipe_count_ = 0;
    add_pipe(kFirstPipeX);
    add_pipe(kFirstPipeX + kPipeSpacing);
    started_ = true;
    done_ = false;
    crash_.reset();
    observe();
    return observation();
  }

  env::StepResult step(int action) {
    require(action >= 0 && action < kActionCount, "FlappyBird::step: action ", action,
            " is invalid (0: do nothing, 1: flap)");
    require(started_, "FlappyBird::step: no episode yet; call reset(seed) first");
    require(!done_, "FlappyBird::step: the episode is over (terminated or truncated); call reset(seed) before stepping");

    // A flap is a tap, not a held key: it acts on the step's first frame and
    // the remaining frame_skip - 1 frames fall freely, so frame skipping
    // coarsens the agent's decisions without changing the game's physics.
    env::StepResult result;
    double reward = 0.0;
    for (int k = 0; k < config_.frame_skip && !result.terminated; ++k) {
      const FrameOutcome outcome = advance_frame(k == 0 && action == 1);
      reward += outcome.reward;
      result.terminated = outcome.crashed;
    }
    ++step_;

    // Terminated wins: a crash on the last allowed step must not be bootstrapped.
    result.truncated = !result.terminated && ((config_.max_steps > 0 && step_ >= config_.max_steps) ||
                                              (config_.max_score > 0 && score_ >= config_.max_score));
    done_ = result.terminated || result.truncated;
    observe();
    result.observation = observation();
    result.reward = reward;
    result.info.score = score_;
    result.info.episode_frame = frame_;
    return result;
  }

  int action_count() const { return kActionCount; }
  env::FrameShape observation_shape() const { return {config_.observation_height, config_.observation_width, 1}; }

  // The latest observation (valid until the next reset() or step()).
  env::FrameView observation() const { return {observation_.data(), observation_shape()}; }

  // The whole 288x512 RGB screen. Drawn on demand only: the observation does
  // not need it in the analytic mode.
  env::FrameView render_rgb() {
    require(started_, "FlappyBird::render_rgb: no episode yet; call reset(seed) first");
    if (!screen_current_) {
      renderer_.draw_screen(bird_y_, pipes());
      screen_current_ = true;
    }
    return renderer_.screen();
  }

  // What turns render_rgb() into the observation: the playfield above the
  // ground (the tutorial crops the base away), area-resized to gray.
  env::PreprocessSpec observation_spec() const {
    env::PreprocessSpec spec;
    spec.layout = env::PixelLayout::Rgb;
    spec.crop = env::CropRect{0, 0, kBaseY, kScreenWidth};
    spec.out_height = config_.observation_height;
    spec.out_width = config_.observation_width;
    spec.threshold = config_.threshold;
    return spec;
  }

  const FlappyBirdConfig& config() const { return config_; }
  int bird_y() const { return bird_y_; }
  int bird_velocity() const { return velocity_; }
  int score() const { return score_; }
  std::int64_t episode_frame() const { return frame_; }
  // Pipes from left to right (at most kMaxPipes, some possibly off screen).
  std::span<const FlappyPipe> pipes() const { return {pipes_.data(), static_cast<std::size_t>(pipe_count_)}; }
  bool episode_over() const { return done_; }
  // Set when a step terminates the episode; empty while it runs and after a
  // truncation.
  const std::optional<FlappyCrash>& crash() const { return crash_; }

  // The game's dynamic state (bird, pipes, score, pipe RNG), for exact
  // resumption mid-episode; the configuration is not part of it. Defined in
  // flappy_bird_state.hpp, which every file that saves or loads a game
  // includes (without it, the link fails on these two).
  inline nlohmann::json save_state() const;
  inline void load_state(const nlohmann::json& j);

 private:
  struct FrameOutcome {
    double reward = 0.0;
    bool crashed = false;
  };

  // One frame of the tutorial's frame_step: flap, score, move, then the crash
  // test on the new positions, so the observation shows the crash.
  FrameOutcome advance_frame(bool flap) {
    double reward = config_.reward_alive;

    // A pipe counts once: its centre moves 4 px per frame, the window is 4 px.
    constexpr int bird_middle = kBirdX + kBirdWidth / 2;
    for (int i = 0; i < pipe_count_; ++i) {
      const int pipe_middle = pipes_[i].x + kPipeWidth / 2;
      if (pipe_middle <= bird_middle && bird_middle < pipe_middle + 4) {
        ++score_;
        reward = config_.reward_pass;
      }
    }

    const FlappyBirdMotion bird = move_bird({bird_y_, velocity_}, flap);
    bird_y_ = bird.y;
    velocity_ = bird.velocity;
    move_pipes(pipes_, pipe_count_, [this] { return draw_gap_top(); });
    ++frame_;

    crash_ = collision(bird_y_, pipes());
    const bool crash = crash_.has_value();
    return {crash ? config_.reward_death : reward, crash};
  }

  int draw_gap_top() { return kGapOffset + static_cast<int>(rng_.uniform_index(kGapRange)); }
  void add_pipe(int x) { pipes_[pipe_count_++] = FlappyPipe{x, draw_gap_top()}; }

  void observe() {
    screen_current_ = false;
    if (config_.observation_mode == ObservationMode::Rendered) {
      env::preprocess(render_rgb(), observation_spec(), observation_.data());
    } else {
      renderer_.observe_analytic(bird_y_, pipes(), observation_.data());
    }
  }

  FlappyBirdConfig config_;
  Rng rng_;
  std::optional<FlappyCrash> crash_;
  int bird_y_ = kBirdStartY;
  int velocity_ = kStartVelocity;
  int score_ = 0;
  std::int64_t frame_ = 0;
  std::int64_t step_ = 0;
  std::array<FlappyPipe, kMaxPipes> pipes_{};
  int pipe_count_ = 0;
  bool started_ = false;
  bool done_ = false;

  std::vector<std::uint8_t> observation_;
  FlappyRenderer renderer_;
  bool screen_current_ = false;
};

static_assert(env::Environment<FlappyBird>);

}  // namespace qrl::envs
