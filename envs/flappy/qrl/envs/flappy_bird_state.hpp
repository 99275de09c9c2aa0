#pragma once
// Flappy Bird's dynamic state as JSON (bird, pipes, score, frame counters,
// the pipe RNG), for exact resumption mid-episode: what rl::save_checkpoint
// stores for each env and rl::load_checkpoint gives back. Apart from
// flappy_bird.hpp so that playing, evaluating or benchmarking the game does
// not parse nlohmann/json; every file that checkpoints the game (or calls
// save_state/load_state) includes this header.
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/envs/flappy_bird.hpp>
#include <qrl/io/state_json.hpp>

namespace qrl::envs {

inline nlohmann::json FlappyBird::save_state() const {
  nlohmann::json pipes = nlohmann::json::array();
  for (int i = 0; i < pipe_count_; ++i) pipes.push_back({pipes_[i].x, pipes_[i].gap_top});
  return {{"rng", io::rng_state_json(rng_.state())}, {"bird_y", bird_y_}, {"velocity", velocity_},
          {"score", score_},  {"frame", frame_},  {"step", step_},  {"pipes", pipes},
          {"started", started_}, {"done", done_}};
}

inline void FlappyBird::load_state(const nlohmann::json& j) {
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

}  // namespace qrl::envs
