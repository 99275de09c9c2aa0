#pragma once
// The examples' one evaluation loop: seeded episodes played by a policy over
// N envs, with the same scores for any N.
//
// Episode k has seed --seed + k and its own random actions,
// Rng(seed + k, SeedPurpose::evaluation_actions), drawn only when the policy
// takes a random step. N env slots each play the next unplayed episode; the
// slots step (and reset: a page load, an emulator restart) on their own
// threads, and the agent acts on each slot's state alone, so that neither
// the thread timing nor the batch size (oneDNN's results differ in the last
// bits between batch sizes) can change an action. Scores are listed in seed
// order.
#include <cstdint>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <qrl/core/worker_pool.hpp>
#include <qrl/log/record_video.hpp>
#include <qrl/log/gif.hpp>
#include <qrl/qrl.hpp>

#include "example_support.hpp"

namespace qrl::examples {

// Who plays: the agent (greedy, with a random step at probability
// `epsilon`), uniform random actions, action 0 ("noop"), or a policy that
// reads the env's own state (Flappy Bird's planner).
template <Backend B, class Env>
struct EvalPolicy {
  std::string name = "agent";
  rl::Dqn<B>* agent = nullptr;
  double epsilon = 0.0;
  std::function<int(Env&)> reads_env = {};
};

template <class Env>
struct EvalSettings {
  int episodes = 10;
  std::uint64_t seed = 1;
  int envs = 1;
  int stack = 4;
  bool verbose = true;
  std::string gif;  // records the episodes env 0 plays (all of them with one env)
  double game_fps = 60.0;
  int frame_skip = 1;
  std::string program;  // names the messages
  // Words added to an episode's line (how the bird crashed).
  std::function<std::string(const Env&)> describe_end = {};
  // A count that rises when the env failed during an episode (a browser that
  // was relaunched): such an episode is played again from its start. Seeded
  // and lock-step, it plays out as it would have, so a failure never
  // shortens an evaluated score.
  std::function<int(const Env&)> failures = {};
};

// An agent for evaluation: `net` with `weights` loaded, acting under `config`
// (its head; nothing of it trains).
template <Backend B>
std::unique_ptr<rl::Dqn<B>> load_agent(Context<B>& ctx, nn::Sequential<B> net, const std::string& weights,
                                       Shape observation, int actions, const rl::DqnConfig& config,
                                       const std::string& program, const std::string& other_policies) {
  require(!weights.empty(), "the agent policy needs --weights FILE (train one with '", program, " train', or use ",
          other_policies, ")");
  nn::load_weights(ctx, net, weights);
  return std::make_unique<rl::Dqn<B>>(ctx, std::move(net), observation, actions, config);
}

// `make_env(i)` builds slot i's env (on slot i's thread, so browsers launch
// in parallel) and returns it as std::unique_ptr<Env>.
template <Backend B, env::RenderableEnvironment Env, class MakeEnv>
EvalSummary evaluate_episodes(const EvalSettings<Env>& settings, MakeEnv make_env, const EvalPolicy<B, Env>& policy) {
  struct Slot {
    std::unique_ptr<Env> env;
    std::optional<rl::FrameStack> stack;
    int episode = -1;  // -1: no episode left for this slot
    Rng random;
    double episode_return = 0;
    std::int64_t step = 0;
    int failures_at_start = 0;
    env::StepResult last;
  };
  const int slot_count = std::min(settings.envs, settings.episodes);
  require(slot_count >= 1, settings.program, ": eval needs at least one episode and one env");
  std::vector<Slot> slots(static_cast<std::size_t>(slot_count));
  WorkerPool pool(slot_count);
  pool.run(slot_count, [&](int i) {
    Slot& s = slots[static_cast<std::size_t>(i)];
    s.env = make_env(i);
    s.stack.emplace(s.env->observation_shape(), settings.stack);
  });
  const int actions = slots[0].env->action_count();
  std::vector<double> scores(static_cast<std::size_t>(settings.episodes)), returns(scores.size());

  log::RecordVideoConfig gif_timing;
  gif_timing.time_for_game(settings.game_fps, settings.frame_skip);
  std::unique_ptr<log::GifWriter> gif;
  constexpr int gif_max_frames = 5000;
  // Env 0's screen at each episode's first and last step and every
  // frame_every steps between.
  auto record = [&](Slot& s, bool first_or_last) {
    if (settings.gif.empty() || &s != &slots[0]) return;
    if (!first_or_last && s.step % gif_timing.frame_every != 0) return;
    const env::FrameView frame = s.env->render_rgb();
    if (!gif) gif = std::make_unique<log::GifWriter>(settings.gif, frame.shape.width, frame.shape.height,
                                                    gif_timing.delay_cs);
    if (gif->frames() < gif_max_frames) gif->add_frame(frame);
  };
  auto episode_seed = [&](int episode) { return settings.seed + static_cast<std::uint64_t>(episode); };
  // On the slot's own thread: the page load or emulator reset of a new (or
  // replayed) episode.
  auto begin = [&](Slot& s) {
    const std::uint64_t seed = episode_seed(s.episode);
    s.random = Rng(seed, SeedPurpose::evaluation_actions);
    s.stack->reset(s.env->reset(seed));
    s.failures_at_start = settings.failures ? settings.failures(*s.env) : 0;
    s.episode_return = 0;
    s.step = 0;
  };
  int next_episode = 0;
  for (Slot& s : slots) s.episode = next_episode++;
  std::vector<int> starting;
  for (int i = 0; i < slot_count; ++i) starting.push_back(i);
  std::vector<int> playing, chosen(static_cast<std::size_t>(slot_count), 0);
  for (;;) {
    pool.run(static_cast<int>(starting.size()),
             [&](int k) { begin(slots[static_cast<std::size_t>(starting[static_cast<std::size_t>(k)])]); });
    for (int i : starting) record(slots[static_cast<std::size_t>(i)], true);
    starting.clear();
    playing.clear();
    for (int i = 0; i < slot_count; ++i)
      if (slots[static_cast<std::size_t>(i)].episode >= 0) playing.push_back(i);
    if (playing.empty()) break;
    for (int i : playing) {
      Slot& s = slots[static_cast<std::size_t>(i)];
      int& action = chosen[static_cast<std::size_t>(i)];
      // The agent's random steps come from the episode's own sequence, drawn
      // only when --epsilon asks for them: greedy episodes are unchanged.
      if (policy.name == "random" || (policy.agent && takes_random_step(s.random, policy.epsilon)))
        action = static_cast<int>(s.random.uniform_index(static_cast<std::uint64_t>(actions)));
      else if (policy.agent)
        action = policy.agent->greedy_action(s.stack->data());
      else if (policy.reads_env)
        action = policy.reads_env(*s.env);
      else
        action = 0;
    }
    pool.run(static_cast<int>(playing.size()), [&](int k) {
      const int i = playing[static_cast<std::size_t>(k)];
      Slot& s = slots[static_cast<std::size_t>(i)];
      s.last = s.env->step(chosen[static_cast<std::size_t>(i)]);
      s.stack->push(s.last.observation);
      s.episode_return += s.last.reward;
      ++s.step;
    });
    for (int i : playing) {
      Slot& s = slots[static_cast<std::size_t>(i)];
      const env::StepResult& r = s.last;
      const bool over = r.terminated || r.truncated;
      record(s, over);
      if (!over) continue;
      if (settings.failures && settings.failures(*s.env) != s.failures_at_start) {
        std::cerr << settings.program << ": episode " << s.episode + 1 << " (seed " << episode_seed(s.episode)
                  << ") was cut short by a browser failure; playing it again from the start in the new browser\n";
        starting.push_back(i);
        continue;
      }
      scores[static_cast<std::size_t>(s.episode)] = r.info.score;
      returns[static_cast<std::size_t>(s.episode)] = s.episode_return;
      if (settings.verbose) {
        std::cout << "episode " << s.episode + 1 << "/" << settings.episodes << " seed " << episode_seed(s.episode)
                  << ": score " << r.info.score << (r.truncated ? " (truncated)" : "") << ", return "
                  << s.episode_return << ", frames " << r.info.episode_frame;
        const std::string end = settings.describe_end ? settings.describe_end(*s.env) : std::string();
        if (!end.empty()) std::cout << ", " << end;
        if (slot_count > 1) std::cout << ", env " << i;
        std::cout << std::endl;
      }
      s.episode = next_episode < settings.episodes ? next_episode++ : -1;
      if (s.episode >= 0) starting.push_back(i);
    }
  }
  if (gif) {
    gif->close();
    if (settings.verbose) std::cout << "wrote " << settings.gif << " (" << gif->frames() << " frames)" << std::endl;
  }
  return EvalSummary{policy.name, settings.seed, scores, returns};
}

}  // namespace qrl::examples
