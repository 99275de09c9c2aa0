#pragma once
// Catch (bsuite's catch, on a square grid): a ball falls one row per step from
// a random column of the top row; the agent moves a one-cell paddle along the
// bottom row. +1 for catching the ball, -1 for missing it, 0 otherwise; the
// episode ends when the ball reaches the bottom. Small enough to learn from
// pixels in seconds on a CPU, which makes it the learning test of qrl's DQN.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/env/env.hpp>
#include <qrl/io/state_json.hpp>

namespace qrl::envs {

class Catch {
 public:
  enum Action { left = 0, stay = 1, right = 2 };

  explicit Catch(int size = 10) : size_(size), frame_(static_cast<std::size_t>(size * size), 0) {
    require(size >= 3, "Catch needs a grid of at least 3x3, got ", size);
  }

  env::FrameView reset(std::uint64_t seed) {
    Rng rng(seed);
    ball_row_ = 0;
    ball_col_ = static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(size_)));
    paddle_col_ = size_ / 2;
    frame_count_ = 0;
    done_ = false;
    draw();
    return view();
  }

  env::StepResult step(int action) {
    require(!done_, "Catch::step after the episode ended: call reset(seed) first");
    require(action >= 0 && action < 3, "Catch has actions 0 (left), 1 (stay), 2 (right); got ", action);
    paddle_col_ = std::clamp(paddle_col_ + action - 1, 0, size_ - 1);
    ++ball_row_;
    ++frame_count_;
    env::StepResult result;
    if (ball_row_ == size_ - 1) {
      result.reward = ball_col_ == paddle_col_ ? 1.0 : -1.0;
      result.terminated = true;
      done_ = true;
    }
    draw();
    result.observation = view();
    result.info.score = result.reward > 0 ? 1.0 : 0.0;
    result.info.episode_frame = frame_count_;
    return result;
  }

  int action_count() const { return 3; }
  env::FrameShape observation_shape() const { return {size_, size_, 1}; }

  nlohmann::json save_state() const {
    return {{"ball_row", ball_row_}, {"ball_col", ball_col_}, {"paddle_col", paddle_col_},
            {"frame", frame_count_}, {"done", done_}};
  }
  void load_state(const nlohmann::json& j) {
    const std::string where = "Catch state";
    const int row = io::json_get<int>(j, "ball_row", where), col = io::json_get<int>(j, "ball_col", where),
              paddle = io::json_get<int>(j, "paddle_col", where);
    require(row >= 0 && row < size_ && col >= 0 && col < size_ && paddle >= 0 && paddle < size_, where,
            ": positions outside the ", size_, "x", size_, " grid");
    ball_row_ = row;
    ball_col_ = col;
    paddle_col_ = paddle;
    frame_count_ = io::json_get<std::int64_t>(j, "frame", where);
    done_ = io::json_get<bool>(j, "done", where);
    draw();
  }

 private:
  void draw() {
    std::fill(frame_.begin(), frame_.end(), std::uint8_t{0});
    frame_[static_cast<std::size_t>(ball_row_ * size_ + ball_col_)] = 255;
    frame_[static_cast<std::size_t>((size_ - 1) * size_ + paddle_col_)] = 255;
  }
  env::FrameView view() const { return {frame_.data(), observation_shape()}; }

  int size_;
  std::vector<std::uint8_t> frame_;
  int ball_row_ = 0, ball_col_ = 0, paddle_col_ = 0;
  std::int64_t frame_count_ = 0;
  bool done_ = true;
};

static_assert(env::Environment<Catch>);

}  // namespace qrl::envs
