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

#include "../common/evaluation.hpp"
#include "../common/program.hpp"
#include "../common/train.hpp"

namespace fs = std::filesystem;
using namespace qrl;

namespace {

struct Options : examples::CommonOptions {
  std::string game = "breakout";
  std::string rom;
  int envs = 1;
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
// the inner env is: it has no state of its own. Recordings (render_rgb) show
// the game's own screen.
template <class E>
class ClipRewards {
 public:
  ClipRewards(E env, bool clip) : env_(std::move(env)), clip_(clip) {}
  env::FrameView reset(std::uint64_t seed) { return env_.reset(seed); }
  env::StepResult step(int action) {
    env::StepResult r = env_.step(action);
    if (clip_) r.reward = static_cast<double>((r.reward > 0) - (r.reward < 0));
    return r;
  }
  int action_count() const { return env_.action_count(); }
  env::FrameShape observation_shape() const { return env_.observation_shape(); }
  env::FrameView render_rgb() { return env_.render_rgb(); }
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
  const envs::Atari atari(env_config(o));
  const int actions = atari.action_count();
  std::cout << "game " << atari.game_name() << ", " << actions << " actions\n";
  const examples::LearnerSpec spec{.frame = atari.observation_shape(), .stack = o.stack, .actions = actions,
                                   .envs = o.envs, .seed = o.seed, .weights = o.weights,
                                   .config = o.dqn.dqn_config(o.seed)};
  examples::Learner<B> learner(spec, o.dqn, run, [&] { return make_network<B>(o, actions); });
  return examples::train_on_envs(
      learner, o.envs, [&](int) { return ClipRewards(envs::Atari(env_config(o)), o.clip_rewards); }, run,
      config_toml, kAtariFramesPerSecond, o.frame_skip);
}

// Plays seeded episodes (examples/common/evaluation.hpp) with the agent or a
// random policy, --envs games at once.
template <Backend B>
examples::EvalSummary evaluate(const Options& o, bool verbose) {
  Context<B> ctx;
  examples::EvalPolicy<B, envs::Atari> policy{.name = o.policy == "random" ? "random" : "agent", .epsilon = o.epsilon};
  std::unique_ptr<rl::Dqn<B>> agent;
  if (policy.name == "agent") {
    const int actions = envs::Atari(env_config(o)).action_count();
    agent = examples::load_agent(ctx, make_network<B>(o, actions), o.weights, Shape{o.stack, 84, 84}, actions,
                                 o.dqn.dqn_config(o.seed), "atari", "--policy random");
    policy.agent = agent.get();
  }
  const examples::EvalSettings<envs::Atari> settings{
      .episodes = o.episodes, .seed = o.seed, .envs = o.envs, .stack = o.stack, .verbose = verbose, .gif = o.gif,
      .game_fps = kAtariFramesPerSecond, .frame_skip = o.frame_skip, .program = "atari"};
  return examples::evaluate_episodes(
      settings, [&](int) { return std::make_unique<envs::Atari>(env_config(o)); }, policy);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  examples::RunOptions run;
  run.run_dir = "runs/atari";
  run.steps = 10000000;
  run.checkpoint_interval = 100000;
  examples::ExampleProgram program("atari", "qrl Atari: a DQN that learns Atari 2600 games (ALE) from pixels", argc,
                                   argv, o, o.dqn, run);
  const examples::EvalHelp help{
      .policies = {"agent", "random"},
      .policy = "Who plays: the trained agent (greedy unless --epsilon) or uniform random actions",
      .epsilon_note = "; a greedy Breakout agent can wait forever to serve",
      .gif = "Also record the episodes env 0 plays (its screen, about 15 pictures a second, up to 5000) into this GIF"};
  const auto commands = program.add_subcommands(help, [&](CLI::App* cmd) {
    cmd->add_option("--game", o.game, "Game by ROM name (pong, breakout, space_invaders, ...)")->capture_default_str();
    cmd->add_option("--rom", o.rom, "A ROM file instead of --game");
    cmd->add_option("--envs", o.envs, "Environments stepped in parallel (one thread each; in train the agent acts for all in one batch; in play and eval the scores do not depend on the count)")->check(CLI::Range(1, 256))->capture_default_str();
    cmd->add_option("--noop-max", o.noop_max, "Up to this many no-op frames at a reset")->check(examples::non_negative)->capture_default_str();
    cmd->add_option("--frame-skip", o.frame_skip, "Emulator frames per step")->check(CLI::Range(1, 64))->capture_default_str();
    cmd->add_option("--sticky", o.sticky, "Sticky-action probability (0.25 as in Gymnasium v5)")->check(CLI::Range(0.0, 0.99))->capture_default_str();
    examples::add_switch(cmd, "--full-action-set", o.full_action_set, "All 18 actions instead of the game's minimal set");
    examples::add_switch(cmd, "--terminal-on-life-loss", o.terminal_on_life_loss, "End the episode when a life is lost");
    cmd->add_option("--max-episode-steps", o.max_episode_steps, "Truncate an episode after this many steps; 0 = never")->check(examples::non_negative)->capture_default_str();
  });
  examples::add_switch(commands.train, "--clip-rewards,!--no-clip-rewards", o.clip_rewards, "Learn from the sign of each reward (CleanRL)");
  return program.run(
      [&] { return "atari_" + o.game; },
      [&](auto tag, const std::string& config_toml) { return train<decltype(tag)>(o, run, config_toml); },
      [&](auto tag, bool verbose) { return evaluate<decltype(tag)>(o, verbose); });
}
