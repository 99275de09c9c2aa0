#pragma once
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <qrl/core/error.hpp>

namespace qrl::env {

// Thrown by an env's reset() or step() when it cannot go on (a browser that
// failed again after each restart). The env threw before the step was
// complete, so a trainer that catches it holds the state of its last whole
// step and can still save a checkpoint (examples/common/training_run.hpp).
class EnvironmentFailure : public Error {
 public:
  using Error::Error;
};

// Height x width x channels of an 8-bit frame, interleaved (HWC) like the
// frames browsers, emulators and image decoders produce.
struct FrameShape {
  int height = 0;
  int width = 0;
  int channels = 1;
  std::size_t bytes() const { return static_cast<std::size_t>(height) * width * channels; }
  friend bool operator==(const FrameShape&, const FrameShape&) = default;
};

// A non-owning view of a frame. An environment's observation stays valid
// until its next reset() or step(), as with a reused numpy buffer.
struct FrameView {
  const std::uint8_t* pixels = nullptr;
  FrameShape shape;
  std::span<const std::uint8_t> bytes() const { return {pixels, shape.bytes()}; }
};

// What Gymnasium puts in `info`, as typed fields: the game's own score (pipes,
// Dino's distance meter, Atari's points), lives where the game has them, and
// the frame count of the episode.
struct StepInfo {
  double score = 0.0;
  int lives = -1;
  std::int64_t episode_frame = 0;
};

// Gymnasium's step tuple. `terminated`: the episode ended in the MDP (crash,
// game over) and the return must not be bootstrapped. `truncated`: it was cut
// from outside (time limit, browser restart) and must be bootstrapped.
struct StepResult {
  FrameView observation;
  double reward = 0.0;
  bool terminated = false;
  bool truncated = false;
  StepInfo info;
};

// The environment contract. Every env in envs/ satisfies it; the learner
// needs nothing else.
template <class E>
concept Environment = requires(E env, const E const_env, std::uint64_t seed, int action) {
  { env.reset(seed) } -> std::same_as<FrameView>;
  { env.step(action) } -> std::same_as<StepResult>;
  { const_env.action_count() } -> std::convertible_to<int>;
  { const_env.observation_shape() } -> std::same_as<FrameShape>;
};

// An env that can show a person its full-colour frame (GIFs, RecordVideo).
template <class E>
concept RenderableEnvironment = Environment<E> && requires(E env) {
  { env.render_rgb() } -> std::same_as<FrameView>;
};

}  // namespace qrl::env
