// Atari games from pixels with DQN (the Nature network, CleanRL's
// hyperparameters): train, play, eval.
//
//   atari train --game breakout --steps 10000000 --run-dir runs/breakout
//   atari train --game pong --envs 2 --steps 10000000 --run-dir runs/pong
//   atari train --resume runs/breakout           (continues exactly where it stopped)
//   atari train --config run.toml
//   atari eval  --game breakout --weights runs/breakout/weights.safetensors --episodes 10 --envs 2 --json
//   atari eval  --game pong --policy random --episodes 4 --json
//   atari play  --game pong --weights runs/pong/weights.safetensors --gif pong.gif
//   atari plot  runs/breakout
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <qrl/env/vector_env.hpp>
#include <qrl/envs/atari.hpp>
#include <qrl/nn/serialize.hpp>
#include <qrl/qrl.hpp>

#include "../common/backend_choice.hpp"
#include "../common/dqn_options.hpp"
#include "../common/example_support.hpp"
#include "../common/training_run.hpp"

namespace fs = std::filesystem;
using namespace qrl;

namespace {

struct Options {
  // common
  std::string backend = "cpu";
  std::uint64_t seed = 1;
  std::string weights;
  std::string game = "breakout";
  std::string rom;
  int envs = 1;
  int stack = 4;
  // env: AtariPreprocessing's defaults
  int noop_max = 30;
  int frame_skip = 4;
  float sticky = 0.0f;
  bool full_action_set = false;
  bool terminal_on_life_loss = false;
  std::int64_t max_episode_steps = 27000;
  // train: CleanRL's dqn_atari.py (run directory, steps, checkpoints, logs:
  // examples::RunOptions)
  examples::DqnOptions dqn{
      .algorithm = "dqn", .buffer_size = 1000000, .batch_size = 32, .learning_rate = 1e-4f, .gamma = 0.99f,
      .learning_starts = 80000, .train_frequency = 4, .target_update = 1000, .double_dqn = false,
      .loss = "mse", .max_grad_norm = 0.0f, .epsilon_start = 1.0, .epsilon_end = 0.01,
      .exploration_fraction = 0.1};
  bool clip_rewards = true;
  // play / eval
  int episodes = 10;
  double epsilon = 0.0;
  std::string policy = "agent";
  bool json = false;
  std::string gif;
  // plot
  std::string plot_dir;
};

// ALE emulates the NTSC 2600 at 60 frames a second; a step spans frame_skip
// of them.
constexpr double kAtariFramesPerSecond = 60.0;

envs::AtariConfig env_config(const Options& o) {
  envs::AtariConfig c;
  c.game = o.game;
  c.rom_path = o.rom;
  c.noop_max = o.noop_max;
  c.frame_skip = o.frame_skip;
  c.repeat_action_probability = o.sticky;
  c.full_action_set = o.full_action_set;
  c.terminal_on_life_loss = o.terminal_on_life_loss;
  c.max_episode_steps = o.max_episode_steps;
  return c;
}

// CleanRL's ClipRewardEnv: the learner sees sign(reward), so one learning
// rate fits games whose points differ by orders of magnitude. The game's own
// score stays in info.score. Off (--no-clip-rewards) it passes rewards
// through, so the trainer has one env type either way. Checkpointable when
// the inner env is: it has no state of its own.
template <class E>
class ClipRewards {
 public:
  // E is an env (the vector path: each clipped env owns its game) or a
  // reference to one (the single-env path wraps the recorder).
  ClipRewards(E env, bool clip) : env_(std::forward<E>(env)), clip_(clip) {}
  env::FrameView reset(std::uint64_t seed) { return env_.reset(seed); }
  env::StepResult step(int action) {
    env::StepResult r = env_.step(action);
    if (clip_) r.reward = static_cast<double>((r.reward > 0) - (r.reward < 0));
    return r;
  }
  int action_count() const { return env_.action_count(); }
  env::FrameShape observation_shape() const { return env_.observation_shape(); }
  nlohmann::json save_state() const { return env_.save_state(); }
  void load_state(const nlohmann::json& j) { env_.load_state(j); }

 private:
  E env_;
  bool clip_;
};

template <Backend B>
nn::Sequential<B> make_network(const Options& o, int actions) {
  return nn::nature_dqn<B>(o.stack, 84, 84, o.dqn.head(actions));
}

template <Backend B>
int train(const Options& o, const examples::RunOptions& run, const std::string& config_toml) {
  Context<B> ctx;
  envs::Atari atari(env_config(o));
  const int actions = atari.action_count();
  std::cout << "game " << atari.game_name() << ", " << actions << " actions\n";
  // One replay stream per env (the buffer is split between them).
  const rl::ReplayConfig replay_config = o.dqn.replay_config(atari.observation_shape(), o.stack, run.steps, o.envs);
  examples::check_replay_fits(rl::ReplayMemory<B>::bytes_required(replay_config), run.force_memory);
  rl::ReplayMemory<B> replay(replay_config, ctx);

  Rng init_rng(o.seed);
  auto net = make_network<B>(o, actions);
  net.initialize(ctx, init_rng, nn::Init::pytorch_default);
  if (!o.weights.empty()) nn::load_weights(ctx, net, o.weights);
  std::cout << net.summary({1, o.stack, 84, 84});

  const rl::DqnConfig config = o.dqn.dqn_config(o.seed);
  rl::Dqn<B> agent(ctx, std::move(net), {o.stack, 84, 84}, actions, config);

  rl::TrainerConfig trainer_config;
  trainer_config.seed = o.seed;
  trainer_config.epsilon = o.dqn.epsilon_schedule(run.steps);
  trainer_config.schedule = o.dqn.schedule();
  trainer_config.progress_interval = run.progress_interval;
  if (o.envs == 1) {
    // Recordings show the game's own screen and score, so they wrap the game
    // inside the reward clipping.
    auto recorded = examples::record_videos(atari, run, kAtariFramesPerSecond, o.frame_skip);
    ClipRewards<decltype(recorded)&> env(recorded, o.clip_rewards);
    env::VectorEnv<decltype(env)> one_env(env);
    rl::Trainer<B, decltype(env)> trainer(one_env, agent, replay, trainer_config);
    return examples::run_training(ctx, trainer, run, config_toml);
  }
  // --envs N > 1: N envs on their own threads, one batched forward pass to act
  // for all, --steps counting env steps summed over the envs.
  using Clipped = ClipRewards<envs::Atari>;
  env::VectorEnv<Clipped> vector_env(o.envs, [&](int) { return Clipped(envs::Atari(env_config(o)), o.clip_rewards); });
  rl::Trainer<B, Clipped> trainer(vector_env, agent, replay, trainer_config);
  return examples::run_training(ctx, trainer, run, config_toml);
}

// Plays `episodes` seeded episodes with the greedy agent or a random policy.
// Episode k has seed --seed + k, which also fixes the random policy's
// actions, whatever --envs is: the envs are slots that each take the next
// unplayed episode, and the agent sees all slots' states as one batch (one
// network call per step, not one per env). Scores are listed in seed order.
template <Backend B>
examples::EvalSummary evaluate(const Options& o, bool verbose) {
  Context<B> ctx;
  const bool random_policy = o.policy == "random";
  struct Slot {
    std::unique_ptr<envs::Atari> env;
    rl::FrameStack stack;
    int episode = -1;  // -1: no episode left for this slot
    Rng random{0};
    double episode_return = 0;
  };
  const int slot_count = std::min(o.envs, o.episodes);
  std::vector<Slot> slots;
  for (int i = 0; i < slot_count; ++i) {
    auto env = std::make_unique<envs::Atari>(env_config(o));
    const env::FrameShape shape = env->observation_shape();
    slots.push_back(Slot{std::move(env), rl::FrameStack(shape, o.stack)});
  }
  const int actions = slots[0].env->action_count();
  std::unique_ptr<rl::Dqn<B>> agent;
  if (!random_policy) {
    require(!o.weights.empty(), "the agent policy needs --weights FILE (train one with 'atari train', or use "
                                "--policy random)");
    auto net = make_network<B>(o, actions);
    nn::load_weights(ctx, net, o.weights);
    agent = std::make_unique<rl::Dqn<B>>(ctx, std::move(net), Shape{o.stack, 84, 84}, actions, o.dqn.dqn_config(o.seed));
  }
  std::vector<double> scores(static_cast<std::size_t>(o.episodes)), returns(scores.size());
  // --gif records the RGB screen of the episodes env 0 plays (all of them
  // with --envs 1), timed like the training recordings: about 15 pictures a
  // second of game time, played back in real time.
  env::RecordVideoConfig gif_timing;
  gif_timing.time_for_game(kAtariFramesPerSecond, o.frame_skip);
  std::unique_ptr<io::GifWriter> gif;
  constexpr int gif_max_frames = 5000;
  if (!o.gif.empty())
    gif = std::make_unique<io::GifWriter>(o.gif, envs::Atari::kScreenWidth, envs::Atari::kScreenHeight,
                                          gif_timing.delay_cs);
  std::int64_t gif_steps = 0;
  // A picture of env 0 every frame_every of its steps (counted across its
  // episodes, so the cadence runs on through episode ends), and at each
  // episode's first and last screen.
  auto record = [&](int slot, bool first_or_last) {
    if (!gif || slot != 0) return;
    const bool due = first_or_last || gif_steps % gif_timing.frame_every == 0;
    if (due && gif->frames() < gif_max_frames) gif->add_frame(slots[0].env->render_rgb());
  };
  int next_episode = 0;
  auto start_next_episode = [&](int i) {
    Slot& s = slots[static_cast<std::size_t>(i)];
    if (next_episode == o.episodes) {
      s.episode = -1;
      return;
    }
    s.episode = next_episode++;
    s.episode_return = 0;
    const std::uint64_t seed = o.seed + static_cast<std::uint64_t>(s.episode);
    s.random = Rng(seed ^ 0xa5a5a5a5ULL);  // the random policy's actions: fixed by the episode's seed too
    s.stack.reset(s.env->reset(seed));
    record(i, true);
  };
  for (int i = 0; i < slot_count; ++i) start_next_episode(i);
  const std::size_t state_bytes = slots[0].stack.bytes();
  std::vector<std::uint8_t> states;
  std::vector<int> playing;
  for (;;) {
    playing.clear();
    for (int i = 0; i < slot_count; ++i)
      if (slots[static_cast<std::size_t>(i)].episode >= 0) playing.push_back(i);
    if (playing.empty()) break;
    std::vector<float> q;
    if (!random_policy) {
      states.resize(state_bytes * playing.size());
      for (std::size_t k = 0; k < playing.size(); ++k)
        std::copy_n(slots[static_cast<std::size_t>(playing[k])].stack.data(), state_bytes,
                    states.data() + k * state_bytes);
      q = agent->q_values(states.data(), static_cast<int>(playing.size()));
    }
    for (std::size_t k = 0; k < playing.size(); ++k) {
      const int i = playing[k];
      Slot& s = slots[static_cast<std::size_t>(i)];
      int action;
      // The agent's random steps come from the episode's stream too, drawn
      // only when --epsilon asks for them, so greedy episodes are unchanged.
      if (random_policy || examples::takes_random_step(s.random, o.epsilon)) {
        action = static_cast<int>(s.random.uniform_index(static_cast<std::uint64_t>(actions)));
      } else {
        const auto row = q.begin() + static_cast<std::ptrdiff_t>(k) * actions;
        action = static_cast<int>(std::max_element(row, row + actions) - row);
      }
      const env::StepResult r = s.env->step(action);
      s.stack.push(r.observation);
      s.episode_return += r.reward;
      const bool over = r.terminated || r.truncated;
      if (i == 0) ++gif_steps;
      record(i, over);
      if (!over) continue;
      scores[static_cast<std::size_t>(s.episode)] = r.info.score;
      returns[static_cast<std::size_t>(s.episode)] = s.episode_return;
      if (verbose)
        std::cout << "episode " << s.episode + 1 << "/" << o.episodes << " seed "
                  << o.seed + static_cast<std::uint64_t>(s.episode) << ": score " << r.info.score
                  << (r.truncated ? " (step limit)" : "") << ", frames " << r.info.episode_frame
                  << (slot_count > 1 ? ", env " + std::to_string(i) : "") << std::endl;
      start_next_episode(i);
    }
  }
  if (gif) {
    gif->close();
    if (verbose) std::cout << "wrote " << o.gif << " (" << gif->frames() << " frames of env 0)" << std::endl;
  }
  return examples::EvalSummary{random_policy ? "random" : "agent", o.seed, scores, returns};
}

template <Backend B>
int eval(const Options& o, bool play) {
  const auto summary = evaluate<B>(o, play || !o.json);
  summary.print(o.json);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  examples::RunOptions run;
  run.run_dir = "runs/atari";
  run.steps = 10000000;
  run.checkpoint_interval = 100000;
  CLI::App app{"qrl Atari: a DQN that learns Atari 2600 games (ALE) from pixels"};
  app.require_subcommand(1);
  examples::add_config_option(app, argc, argv);
  const std::string algorithm = examples::algorithm_to_apply(argc, argv, o.dqn.algorithm);
  examples::apply_algorithm(algorithm, o.dqn);
  auto add_common = [&](CLI::App* cmd) {
    examples::add_backend_option(cmd, o.backend);
    examples::add_head_options(cmd, o.dqn);
    cmd->add_option("--seed", o.seed, "Seed of everything random (episodes, exploration, sampling, init)")->capture_default_str();
    cmd->add_option("--game", o.game, "Game by ROM name (pong, breakout, space_invaders, ...)")->capture_default_str();
    cmd->add_option("--rom", o.rom, "A ROM file instead of --game");
    cmd->add_option("--envs", o.envs, "Environments stepped in parallel (train: one thread each; play and eval: one thread, the agent sees them as one batch, and the scores do not depend on the count)")->check(CLI::Range(1, 256))->capture_default_str();
    cmd->add_option("--stack", o.stack, "Frames stacked into one state")->check(CLI::Range(1, 16))->capture_default_str();
    cmd->add_option("--noop-max", o.noop_max, "Up to this many no-op frames at a reset")->check(examples::non_negative)->capture_default_str();
    cmd->add_option("--frame-skip", o.frame_skip, "Emulator frames per step")->check(CLI::Range(1, 64))->capture_default_str();
    cmd->add_option("--sticky", o.sticky, "Sticky-action probability (0.25 as in Gymnasium v5)")->check(CLI::Range(0.0, 0.99))->capture_default_str();
    examples::add_switch(cmd, "--full-action-set", o.full_action_set, "All 18 actions instead of the game's minimal set");
    examples::add_switch(cmd, "--terminal-on-life-loss", o.terminal_on_life_loss, "End the episode when a life is lost");
    cmd->add_option("--max-episode-steps", o.max_episode_steps, "Truncate an episode after this many steps; 0 = never")->check(examples::non_negative)->capture_default_str();
  };

  auto* train_cmd = app.add_subcommand(
      "train", "Train a DQN agent; checkpoints, weights, CSV and TensorBoard logs, plots and GIFs go to --run-dir");
  add_common(train_cmd);
  examples::add_run_options(train_cmd, run);
  train_cmd->add_option("--weights", o.weights, "Start from these weights (safetensors)")->check(CLI::ExistingFile);
  examples::add_dqn_options(train_cmd, o.dqn);
  examples::add_switch(train_cmd, "--clip-rewards,!--no-clip-rewards", o.clip_rewards, "Learn from the sign of each reward (CleanRL)");

  auto add_eval_options = [&](CLI::App* cmd) {
    add_common(cmd);
    cmd->add_option("--weights", o.weights, "Agent weights (safetensors) saved by 'atari train'; default: the shipped ones in models/ (docs/results.md)");
    cmd->add_option("--episodes", o.episodes, "Episodes to play; episode k uses seed --seed + k")->check(examples::positive)->capture_default_str();
    cmd->add_option("--policy", o.policy, "Who plays: the trained agent (greedy unless --epsilon) or uniform random actions")->check(CLI::IsMember({"agent", "random"}))->capture_default_str();
    examples::add_eval_epsilon_option(cmd, o.epsilon, "; a greedy Breakout agent can wait forever to serve");
  };
  auto* eval_cmd = app.add_subcommand("eval", "Evaluate a policy on seeded episodes");
  add_eval_options(eval_cmd);
  examples::add_switch(eval_cmd, "--json", o.json, "Print only a JSON summary line {episodes, mean_score, max_score, scores}");
  auto* play_cmd = app.add_subcommand("play", "Play episodes and print each one's score");
  add_eval_options(play_cmd);
  play_cmd->add_option("--gif", o.gif, "Also record env 0's screen (about 15 pictures a second, up to 5000) into this GIF");
  auto* plot_cmd = app.add_subcommand("plot", "Redraw RUN_DIR/scores.svg and RUN_DIR/q_values.svg from its logs");
  plot_cmd->add_option("run_dir", o.plot_dir, "Run directory of 'atari train'")->required()->check(CLI::ExistingDirectory);

  return examples::run_main("atari", app, argc, argv, [&] {
    examples::check_algorithm(o.dqn, algorithm);
    return examples::with_backend(o.backend, [&](auto tag) {
      using B = decltype(tag);
      if (*train_cmd) return train<B>(o, run, examples::resolved_config(*train_cmd));
      if (*plot_cmd) return examples::plot_command(o.plot_dir);
      examples::require_epsilon_for_agent(o.policy, o.epsilon);
      o.weights = examples::eval_weights(o.policy, o.weights, "atari_" + o.game, "atari");
      return eval<B>(o, static_cast<bool>(*play_cmd));
    });
  });
}
