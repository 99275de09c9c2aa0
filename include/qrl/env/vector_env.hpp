#pragma once
// N instances of an environment stepped together on worker threads, with
// automatic resets.
//
// Autoreset rule (same-step, final frame kept). When env i's step ends its
// episode (terminated or truncated), that step's result is the episode's own
// last step: `result.observation` is its final frame (copied here before the
// reset overwrites the env's buffer), `result.reward` and the flags are its
// own. The env is then reset at once with its next seed, `autoreset` is set,
// and `observation(i)` is the new episode's first frame. So a transition
// (observation(i) before the step, action, reward, result.observation,
// terminated) always lies inside one episode, and no action is spent on a
// reset step (Gymnasium's NEXT_STEP mode would ignore the next action).
#include <concepts>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/core/worker_pool.hpp>
#include <qrl/env/env.hpp>

namespace qrl::env {

struct VectorStepResult {
  StepResult result;       // the step of the episode it belongs to
  bool autoreset = false;  // the episode ended and env i was reset; see observation(i)
};

template <Environment E>
class VectorEnv {
 public:
  // `make_env(i)` builds env i. `threads`: worker threads including the
  // caller's (0: one per env). Env i always runs on thread i % threads.
  template <class MakeEnv>
    requires std::invocable<MakeEnv&, int>
  VectorEnv(int count, MakeEnv make_env, int threads = 0) {
    require(count >= 1, "VectorEnv: needs at least one env, got ", count);
    for (int i = 0; i < count; ++i) envs_.push_back(owned_.emplace_back(std::make_unique<E>(make_env(i))).get());
    start(threads);
  }

  // One env the caller owns and keeps alive (a single-env run: the env may
  // be wrapped in recorders the caller still reads). Stepped on the caller's
  // thread.
  explicit VectorEnv(E& env) {
    envs_.push_back(&env);
    start(1);
  }

 private:
  void start(int threads) {
    const int count = size();
    require(threads >= 0, "VectorEnv: thread count must be >= 0 (0: one per env), got ", threads);
    threads_ = threads == 0 || threads > count ? count : threads;
    const FrameShape shape = envs_[0]->observation_shape();
    actions_ = envs_[0]->action_count();
    for (int i = 1; i < count; ++i) {
      require(envs_[i]->observation_shape() == shape && envs_[i]->action_count() == actions_,
              "VectorEnv: env ", i, " differs from env 0 in observation shape or action count");
    }
    final_frames_.resize(static_cast<std::size_t>(count) * shape.bytes());
    results_.resize(count);
    current_.resize(count);
    seeds_.resize(count);
    pending_actions_.resize(count);
    pool_ = std::make_unique<WorkerPool>(threads_);
  }

 public:

  VectorEnv(const VectorEnv&) = delete;
  VectorEnv& operator=(const VectorEnv&) = delete;


  int size() const { return static_cast<int>(envs_.size()); }
  int threads() const { return threads_; }
  int action_count() const { return actions_; }
  FrameShape observation_shape() const { return envs_[0]->observation_shape(); }

  // Resets every env. Env i draws its episode seeds from its own sequence,
  // Rng(seed, SeedPurpose::episode_seeds, i) as the trainer's env i does, so
  // a run does not depend on thread timing.
  void reset(std::uint64_t seed) {
    std::vector<std::uint64_t> sequence_seeds(seeds_.size());
    for (std::size_t i = 0; i < sequence_seeds.size(); ++i)
      sequence_seeds[i] = Rng::derive(seed, SeedPurpose::episode_seeds, i);
    reset(sequence_seeds);
  }

  // Resets every env, env i drawing its episode seeds from
  // Rng(sequence_seeds[i]): for a caller that fixes each env's sequence
  // itself.
  void reset(std::span<const std::uint64_t> sequence_seeds) {
    require(static_cast<int>(sequence_seeds.size()) == size(), "VectorEnv::reset: got ", sequence_seeds.size(),
            " seed sequences for ", size(), " envs");
    for (int i = 0; i < size(); ++i) seeds_[i].reseed(sequence_seeds[i]);
    reset_all();
  }

  // Resets every env with the next seed of its own sequence (as set by
  // reset(sequence_seeds) or restored by set_episode_seed_states()).
  void reset_all() {
    run_all([this](int i) {
      current_[i] = envs_[i]->reset(seeds_[i].next_u64());
      results_[i] = VectorStepResult{};
    });
    started_ = true;
  }

  // Env i's sequence of episode seeds, for checkpoints: restored ones give
  // the episodes an uninterrupted run would have played next.
  Rng::State episode_seed_state(int i) const { return seeds_.at(i).state(); }
  void set_episode_seed_states(std::span<const Rng::State> states) {
    require(static_cast<int>(states.size()) == size(), "VectorEnv: got ", states.size(), " seed sequences for ", size(),
            " envs");
    for (int i = 0; i < size(); ++i) seeds_[i].set_state(states[i]);
  }
  // The envs' own states were restored mid-episode (load_state): step on
  // from there. observation(i) is known again after the next step.
  void mark_started() {
    for (auto& view : current_) view = FrameView{};
    started_ = true;
  }
  bool started() const { return started_; }

  // Steps env i with actions[i], on the worker threads; returns the results
  // (valid until the next step or reset).
  std::span<const VectorStepResult> step(std::span<const int> actions) {
    require(started_, "VectorEnv::step: call reset(seed) first");
    require(static_cast<int>(actions.size()) == size(), "VectorEnv::step: got ", actions.size(), " actions for ",
            size(), " envs");
    for (int i = 0; i < size(); ++i) {
      require(actions[i] >= 0 && actions[i] < actions_, "VectorEnv::step: action ", actions[i], " for env ", i,
              " is outside [0, ", actions_, ")");
      pending_actions_[i] = actions[i];
    }
    run_all([this](int i) { step_one(i); });
    return results_;
  }

  // The frame env i acts on next: after an autoreset, the new episode's first.
  FrameView observation(int i) const {
    const FrameView view = current_.at(i);
    require(view.pixels != nullptr, "VectorEnv::observation(", i, "): not known until the env is reset or stepped");
    return view;
  }
  E& env(int i) { return *envs_.at(i); }
  const E& env(int i) const { return *envs_.at(i); }

 private:
  void step_one(int i) {
    VectorStepResult& out = results_[i];
    out.result = envs_[i]->step(pending_actions_[i]);
    out.autoreset = out.result.terminated || out.result.truncated;
    if (out.autoreset) {
      const FrameView last = out.result.observation;
      std::uint8_t* keep = final_frames_.data() + static_cast<std::size_t>(i) * last.shape.bytes();
      std::memcpy(keep, last.pixels, last.shape.bytes());
      out.result.observation = FrameView{keep, last.shape};
      current_[i] = envs_[i]->reset(seeds_[i].next_u64());
    } else {
      current_[i] = out.result.observation;
    }
  }

  template <class Task>
  void run_all(Task&& task) {
    pool_->run(size(), task);
  }

  std::vector<std::unique_ptr<E>> owned_;
  std::vector<E*> envs_;
  int threads_ = 1;
  int actions_ = 0;
  std::vector<std::uint8_t> final_frames_;
  std::vector<VectorStepResult> results_;
  std::vector<FrameView> current_;
  std::vector<Rng> seeds_;
  std::vector<int> pending_actions_;
  bool started_ = false;

  std::unique_ptr<WorkerPool> pool_;
};

}  // namespace qrl::env
