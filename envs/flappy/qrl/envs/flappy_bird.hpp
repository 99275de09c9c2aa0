#pragma once
// Flappy Bird, natively: the rules of FlapPyBird's mainGame (sourabhv/FlapPyBird)
// with the rewards of the DeepLearningFlappyBird DQN tutorial, drawn as flat
// rectangles so the gray observation can be computed without rasterising.
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/env/env.hpp>
#include <qrl/env/preprocess.hpp>
#include <qrl/io/state_json.hpp>
#include <qrl/kernels/preprocess.cuh>

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

// One upper/lower pipe pair. The upper pipe ends at gap_top; the lower pipe
// starts at gap_top + FlappyBird::kPipeGap.
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

struct Rgb8 {
  std::uint8_t r = 0;
  std::uint8_t g = 0;
  std::uint8_t b = 0;
};

class FlappyBird {
 public:
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
  static constexpr int kActionCount = 2;
  static constexpr double kFramesPerSecond = 30.0;  // the original's FPS: what real time means for recordings  // 0: do nothing, 1: flap

  // Flat colours, picked so the gray levels stay apart (sky 159, pipe 124,
  // pipe rim 76, bird 197, ground 210); the sprites' own colours are close in
  // luma, which would blur pipes into sky for the learner.
  static constexpr Rgb8 kSkyColor{78, 192, 202};
  static constexpr Rgb8 kPipeColor{83, 160, 50};
  static constexpr Rgb8 kPipeRimColor{45, 100, 30};
  static constexpr Rgb8 kBirdColor{250, 200, 40};
  static constexpr Rgb8 kGroundColor{222, 216, 149};
  // The rim is the pipe's lip at the gap end; drawing only, not collision.
  static constexpr int kPipeRimHeight = 12;

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
    prepare_columns();
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
    if (!screen_current_) draw_screen();
    return {screen_.data(), {kScreenHeight, kScreenWidth, 3}};
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

  // The game's rules as pure functions, shared by step() and by planners that
  // search them (FlappyPlanner): one copy of the physics, so a plan that
  // survives in the search survives in the game.

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

  // The game's dynamic state (bird, pipes, score, pipe RNG), for exact
  // resumption mid-episode. The configuration is not part of it.
  nlohmann::json save_state() const {
    nlohmann::json pipes = nlohmann::json::array();
    for (int i = 0; i < pipe_count_; ++i) pipes.push_back({pipes_[i].x, pipes_[i].gap_top});
    return {{"rng", io::rng_state_json(rng_.state())}, {"bird_y", bird_y_}, {"velocity", velocity_},
            {"score", score_},  {"frame", frame_},  {"step", step_},  {"pipes", pipes},
            {"started", started_}, {"done", done_}};
  }

  void load_state(const nlohmann::json& j) {
    const std::string where = "FlappyBird state";
    const auto pipes = io::json_get<std::vector<std::array<int, 2>>>(j, "pipes", where);
    require(pipes.size() <= kMaxPipes, where, ": ", pipes.size(), " pipes, at most ", kMaxPipes);
    const auto bird_y = io::json_get<int>(j, "bird_y", where);
    require(bird_y >= -10000 && bird_y <= kBaseY, where, ": bird_y ", bird_y, " is off the playfield");
    rng_.set_state(io::rng_state_from_json(j.at("rng"), "FlappyBird state rng"));
    bird_y_ = bird_y;
    velocity_ = io::json_get<int>(j, "velocity", where);
    score_ = io::json_get<int>(j, "score", where);
    frame_ = io::json_get<std::int64_t>(j, "frame", where);
    step_ = io::json_get<std::int64_t>(j, "step", where);
    pipe_count_ = static_cast<int>(pipes.size());
    for (int i = 0; i < pipe_count_; ++i) pipes_[i] = FlappyPipe{pipes[i][0], pipes[i][1]};
    started_ = io::json_get<bool>(j, "started", where);
    done_ = io::json_get<bool>(j, "done", where);
    crash_.reset();  // not part of the state: it describes the step that ended an episode
    if (started_) observe();
  }

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
  // A filled rectangle: rows [top, bottom), cols [left, right).
  struct SceneRect {
    int top = 0;
    int bottom = 0;
    int left = 0;
    int right = 0;
    Rgb8 color;
  };
  // Four per pipe (two bodies, two rims) and the bird.
  static constexpr int kMaxRects = 4 * kMaxPipes + 1;

  int draw_gap_top() { return kGapOffset + static_cast<int>(rng_.uniform_index(kGapRange)); }
  void add_pipe(int x) { pipes_[pipe_count_++] = FlappyPipe{x, draw_gap_top()}; }

  // The playfield above the ground as rectangles in painting order (pipes,
  // then the bird on top), clipped to it. Sky is the background.
  int scene(std::array<SceneRect, kMaxRects>& rects) const {
    int count = 0;
    auto add = [&](int top, int bottom, int left, int right, Rgb8 color) {
      top = std::max(top, 0);
      bottom = std::min(bottom, kBaseY);
      left = std::max(left, 0);
      right = std::min(right, kScreenWidth);
      if (top < bottom && left < right) rects[count++] = SceneRect{top, bottom, left, right, color};
    };
    for (int i = 0; i < pipe_count_; ++i) {
      const FlappyPipe& pipe = pipes_[i];
      const int left = pipe.x, right = pipe.x + kPipeWidth;
      const int lower_top = pipe.gap_top + kPipeGap;
      add(pipe.gap_top - kPipeHeight, pipe.gap_top, left, right, kPipeColor);
      add(pipe.gap_top - kPipeRimHeight, pipe.gap_top, left, right, kPipeRimColor);
      add(lower_top, lower_top + kPipeHeight, left, right, kPipeColor);
      add(lower_top, lower_top + kPipeRimHeight, left, right, kPipeRimColor);
    }
    add(bird_y_, bird_y_ + kBirdHeight, kBirdX, kBirdX + kBirdWidth, kBirdColor);
    return count;
  }

  static std::int32_t luma_of(Rgb8 color) {
    return static_cast<std::int32_t>(kernels::luma_milli(color.r, color.g, color.b));
  }

  void draw_screen() {
    screen_.resize(static_cast<std::size_t>(kScreenHeight) * kScreenWidth * 3);
    auto fill = [this](int top, int bottom, int left, int right, Rgb8 color) {
      for (int y = top; y < bottom; ++y) {
        std::uint8_t* pixel = &screen_[(static_cast<std::size_t>(y) * kScreenWidth + left) * 3];
        for (int x = left; x < right; ++x, pixel += 3) {
          pixel[0] = color.r;
          pixel[1] = color.g;
          pixel[2] = color.b;
        }
      }
    };
    fill(0, kBaseY, 0, kScreenWidth, kSkyColor);
    fill(kBaseY, kScreenHeight, 0, kScreenWidth, kGroundColor);
    std::array<SceneRect, kMaxRects> rects;
    const int count = scene(rects);
    for (int i = 0; i < count; ++i) fill(rects[i].top, rects[i].bottom, rects[i].left, rects[i].right, rects[i].color);
    screen_current_ = true;
  }

  void observe() {
    screen_current_ = false;
    if (config_.observation_mode == ObservationMode::Rendered) {
      env::preprocess(render_rgb(), observation_spec(), observation_.data());
    } else {
      observe_analytic();
    }
  }

  // Column taps of the box filter (kScreenWidth -> observation width), padded
  // to a common count with zero weights so the inner loop has a fixed length.
  void prepare_columns() {
    const kernels::AxisResampler cols{kScreenWidth, config_.observation_width};
    const int width = config_.observation_width;
    tap_count_ = 0;
    column_first_.assign(static_cast<std::size_t>(width), 0);
    for (int ox = 0; ox < width; ++ox) {
      int first = 0, last = 0;
      cols.taps(ox, first, last);
      column_first_[ox] = first;
      tap_count_ = std::max(tap_count_, last - first);
    }
    column_weights_.assign(static_cast<std::size_t>(width) * tap_count_, 0);
    for (int ox = 0; ox < width; ++ox) {
      for (int k = 0; k < tap_count_; ++k) {
        column_weights_[static_cast<std::size_t>(ox) * tap_count_ + k] =
            static_cast<std::int32_t>(cols.weight(ox, column_first_[ox] + k));
      }
    }
    row_luma_.assign(static_cast<std::size_t>(kScreenWidth + tap_count_), 0);
    band_profiles_.assign(static_cast<std::size_t>(2 * kMaxRects + 1) * width, 0.0);
    row_sum_.assign(static_cast<std::size_t>(width), 0.0);
  }

  // The observation without rasterising 116k pixels. The rectangle edges cut
  // the playfield into horizontal bands whose rows are identical; each band's
  // box-filtered row ("profile") is computed once from its 288 columns, and an
  // output row is the sum of the profiles weighted by how many source rows
  // (in the filter's integer units) it shares with each band. This is the
  // reference functor's exact sum regrouped, so the result is bit-identical.
  void observe_analytic() {
    std::array<SceneRect, kMaxRects> rects;
    const int rect_count = scene(rects);

    std::array<int, 2 * kMaxRects + 2> cuts;
    int cut_count = 0;
    cuts[cut_count++] = 0;
    cuts[cut_count++] = kBaseY;
    for (int i = 0; i < rect_count; ++i) {
      cuts[cut_count++] = rects[i].top;
      cuts[cut_count++] = rects[i].bottom;
    }
    std::sort(cuts.begin(), cuts.begin() + cut_count);
    const int band_count = static_cast<int>(std::unique(cuts.begin(), cuts.begin() + cut_count) - cuts.begin()) - 1;

    const int width = config_.observation_width;
    const std::int32_t sky = luma_of(kSkyColor);
    for (int band = 0; band < band_count; ++band) {
      const int top = cuts[band], bottom = cuts[band + 1];
      std::fill(row_luma_.begin(), row_luma_.begin() + kScreenWidth, sky);
      for (int i = 0; i < rect_count; ++i) {
        const SceneRect& rect = rects[i];
        if (rect.top <= top && rect.bottom >= bottom) {
          std::fill(row_luma_.begin() + rect.left, row_luma_.begin() + rect.right, luma_of(rect.color));
        }
      }
      double* profile = &band_profiles_[static_cast<std::size_t>(band) * width];
      for (int ox = 0; ox < width; ++ox) {
        const std::int32_t* luma = &row_luma_[column_first_[ox]];
        const std::int32_t* weights = &column_weights_[static_cast<std::size_t>(ox) * tap_count_];
        std::int32_t sum = 0;  // at most 288 * 255000
        for (int k = 0; k < tap_count_; ++k) sum += weights[k] * luma[k];
        profile[ox] = sum;
      }
    }

    // Row weights are in units of 1/height: output row oy covers
    // [oy * kBaseY, (oy + 1) * kBaseY), a band covers [top * height, bottom * height).
    const int height = config_.observation_height;
    const double denominator = 1000.0 * kBaseY * kScreenWidth;
    const double scale = 1.0 / denominator;
    // Sums are integers, so exact quotients are multiples of 1/denominator.
    // Adding half a step on top of the 0.5 of round-half-up keeps a margin
    // of half a step for the ~1e-13 error of the double arithmetic, so the
    // truncation below rounds exactly like the reference's integer division.
    const double bias = 0.5 + 0.5 * scale;
    const int threshold = config_.threshold ? static_cast<int>(*config_.threshold) : -1;
    int band = 0;
    for (int oy = 0; oy < height; ++oy) {
      const std::int64_t lo = static_cast<std::int64_t>(oy) * kBaseY;
      const std::int64_t hi = lo + kBaseY;
      while (static_cast<std::int64_t>(cuts[band + 1]) * height <= lo) ++band;
      std::fill(row_sum_.begin(), row_sum_.end(), 0.0);
      for (int b = band; b < band_count && static_cast<std::int64_t>(cuts[b]) * height < hi; ++b) {
        const double w = static_cast<double>(std::min<std::int64_t>(hi, static_cast<std::int64_t>(cuts[b + 1]) * height) -
                                             std::max<std::int64_t>(lo, static_cast<std::int64_t>(cuts[b]) * height));
        const double* profile = &band_profiles_[static_cast<std::size_t>(b) * width];
        for (int ox = 0; ox < width; ++ox) row_sum_[ox] += w * profile[ox];
      }
      std::uint8_t* out = &observation_[static_cast<std::size_t>(oy) * width];
      for (int ox = 0; ox < width; ++ox) {
        const int gray = static_cast<int>(row_sum_[ox] * scale + bias);
        out[ox] = threshold < 0 ? static_cast<std::uint8_t>(gray) : (gray > threshold ? 255 : 0);
      }
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
  std::vector<std::uint8_t> screen_;
  bool screen_current_ = false;

  // Scratch for observe_analytic(), sized once for the configuration.
  int tap_count_ = 0;
  std::vector<int> column_first_;
  std::vector<std::int32_t> column_weights_;
  std::vector<std::int32_t> row_luma_;
  std::vector<double> band_profiles_;
  std::vector<double> row_sum_;
};

static_assert(env::Environment<FlappyBird>);

}  // namespace qrl::envs
