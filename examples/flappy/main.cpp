// Flappy Bird from pixels with DQN: train, play, eval.
//
//   flappy train --steps 300000 --run-dir runs/flappy
//   flappy train --resume runs/flappy            (continues exactly where it stopped)
//   flappy train --config run.toml
//   flappy train --demonstrations 100000 --pretrain-updates 20000   (DQfD on the planner's play)
//   flappy eval  --weights runs/flappy/weights.safetensors --episodes 10 --json
//   flappy eval  --policy random --episodes 20 --json
//   flappy eval  --policy planner --episodes 10 --json   (the game's true state: what it allows)
//   flappy play  --weights runs/flappy/weights.safetensors --gif play.gif
//   flappy plot  runs/flappy
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include <qrl/envs/flappy_bird.hpp>
#include <qrl/envs/flappy_bird_state.hpp>  // the game's state in checkpoints
#include <qrl/envs/flappy_planner.hpp>
#include <qrl/nn/serialize.hpp>
#include <qrl/qrl.hpp>

#include "../common/evaluation.hpp"
#include "../common/program.hpp"
#include "../common/train.hpp"

namespace fs = std::filesystem;
using namespace qrl;

namespace {

struct Options : examples::CommonOptions {
  int frame_size = 80;
  std::string network = "nature";
  int hidden = 256;
  int frame_skip = 2;
  // train (run directory, steps, checkpoints, logs: examples::RunOptions)
  examples::DqnOptions dqn;  // the tutorial's settings (DqnOptions' defaults)
  // DQfD: the planner's play as demonstrations (0 = plain DQN)
  std::int64_t demonstrations = 0;
  int demonstration_max_pipes = 50;
  std::int64_t pretrain_updates = 0;
  int demonstration_rows = 8;
  float demonstration_margin = 0.8f;
  // play / eval
  int envs = 1;
  int max_pipes = 1000;
};

envs::FlappyBirdConfig env_config(const Options& o, int max_pipes) {
  envs::FlappyBirdConfig c;
  c.observation_height = c.observation_width = o.frame_size;
  c.frame_skip = o.frame_skip;
  c.max_score = max_pipes;
  return c;
}

template <Backend B>
nn::Sequential<B> make_network(const Options& o) {
  // A --hidden that would change nothing is an error, not a silent no-op; the
  // default passes, so config.toml files of nature runs (hidden=256) resume.
  require(o.network == "tutorial" || o.hidden == Options{}.hidden, "--hidden ", o.hidden,
          " sizes the tutorial network only; the nature network's hidden layer has 512 units: drop --hidden, or add "
          "--network tutorial");
  const auto head = o.dqn.head(envs::FlappyBird::kActionCount);
  if (o.network == "nature") return nn::nature_dqn<B>(o.stack, o.frame_size, o.frame_size, head);
  return nn::tutorial_dqn<B>(o.stack, o.frame_size, o.frame_size, head, o.hidden);
}

// The planner's play as the agent sees it: seeded episodes (their seeds
// drawn from --seed's own sequence, Rng(seed, demonstration_episodes)), each ended after
// --demonstration-max-pipes pipes, until the memory is full (never
// overwritten: each episode's last frame takes a slot without a transition).
template <Backend B>
void record_planner_demonstrations(const Options& o, rl::ReplayMemory<B>& memory) {
  const auto start = std::chrono::steady_clock::now();
  envs::FlappyBird env(env_config(o, o.demonstration_max_pipes));
  envs::FlappyPlanner planner(envs::FlappyPlannerConfig{.frame_skip = o.frame_skip});
  Rng seeds(o.seed, SeedPurpose::demonstration_episodes);
  int episodes = 0, crashes = 0;
  const auto full = [&] { return memory.frames() >= memory.capacity(); };
  while (!full()) {
    memory.begin_episode(env.reset(seeds.next_u64()));
    ++episodes;
    while (!full()) {
      const int action = planner.act(env);
      const env::StepResult r = env.step(action);
      memory.add(action, static_cast<float>(r.reward), r.terminated, r.truncated, r.observation);
      crashes += r.terminated ? 1 : 0;
      if (r.terminated || r.truncated) break;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "demonstrations: " << memory.transitions() << " planner transitions from " << episodes
            << " episodes (up to " << o.demonstration_max_pipes << " pipes each, " << crashes << " crashed) in "
            << seconds << " s" << std::endl;
}

// DQfD's pre-training on the demonstrations alone; the weights it ends with
// are kept as RUN_DIR/pretrained.safetensors.
template <Backend B, class Env>
void pretrain(Context<B>& ctx, const Options& o, rl::Trainer<B, Env>& trainer, rl::ReplayMemory<B>& demonstrations,
              const fs::path& run_dir) {
  auto& agent = trainer.agent();
  Rng sampling(o.seed, SeedPurpose::pretraining_sampling);
  constexpr std::int64_t chunk = 1000;
  const auto start = std::chrono::steady_clock::now();
  for (std::int64_t done = 0; done < o.pretrain_updates;) {
    const std::int64_t n = std::min(chunk, o.pretrain_updates - done);
    trainer.pretrain(demonstrations, n, sampling);
    done += n;
    const auto stats = agent.last_stats();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    require(std::isfinite(stats.loss), "pre-training diverged (loss ", stats.loss, " after ", done,
            " updates): lower --lr or --demonstration-margin");
    std::cout << "pretrain " << done << "/" << o.pretrain_updates << " updates | loss " << stats.loss << " | q "
              << stats.q_mean << " | " << static_cast<int>(done / seconds) << " updates/s" << std::endl;
  }
  fs::create_directories(run_dir);
  nn::save_weights(ctx, agent.online(), run_dir / "pretrained.safetensors",
                   {{"pretrain_updates", std::to_string(o.pretrain_updates)},
                    {"demonstrations", std::to_string(o.demonstrations)}});
  std::cout << "wrote " << (run_dir / "pretrained.safetensors").string() << std::endl;
}

template <Backend B>
int train(const Options& o, const examples::RunOptions& run, const std::string& config_toml) {
  require(o.demonstrations > 0 || o.pretrain_updates == 0,
          "--pretrain-updates trains on demonstrations: add --demonstrations N (frames of the planner's play)");
  require(o.demonstrations == 0 || o.demonstration_rows <= o.dqn.batch_size, "--demonstration-rows ",
          o.demonstration_rows, " exceeds --batch-size ", o.dqn.batch_size, ": the rows are part of each batch");
  examples::LearnerSpec spec{.frame = {o.frame_size, o.frame_size, 1}, .stack = o.stack,
                             .actions = envs::FlappyBird::kActionCount, .seed = o.seed, .weights = o.weights,
                             .config = o.dqn.dqn_config(o.seed)};
  spec.config.demonstration_rows = o.demonstration_rows;
  spec.config.demonstration_margin = o.demonstration_margin;
  examples::Learner<B> learner(spec, o.dqn, run, [&] { return make_network<B>(o); });
  // Regenerated on --resume (the planner and its seeds are deterministic), so
  // checkpoints need not carry them.
  std::optional<rl::ReplayMemory<B>> demonstrations;
  auto use_demonstrations = [&](auto& trainer) {
    if (o.demonstrations == 0) return;
    rl::ReplayConfig demonstration_config = learner.replay.config();
    demonstration_config.capacity = o.demonstrations;
    demonstration_config.prioritized.reset();
    demonstrations.emplace(demonstration_config, learner.ctx);
    record_planner_demonstrations(o, *demonstrations);
    if (run.resume.empty() && o.pretrain_updates > 0)
      pretrain(learner.ctx, o, trainer, *demonstrations, run.run_dir);
    trainer.use_demonstrations(&*demonstrations);
  };
  return examples::train_on_envs(
      learner, 1, [&](int) { return envs::FlappyBird(env_config(o, 0)); }, run, config_toml,
      envs::FlappyBird::kFramesPerSecond, o.frame_skip, use_demonstrations);
}

// Plays seeded episodes (examples/common/evaluation.hpp) with the agent, a
// random policy or the planner (which reads the game's state, not pixels).
template <Backend B>
examples::EvalSummary evaluate(const Options& o, bool verbose) {
  Context<B> ctx;
  examples::EvalPolicy<B, envs::FlappyBird> policy{.name = o.policy, .epsilon = o.epsilon};
  std::unique_ptr<rl::Dqn<B>> agent;
  if (o.policy == "agent") {
    agent = examples::load_agent(ctx, make_network<B>(o), o.weights, Shape{o.stack, o.frame_size, o.frame_size},
                                 envs::FlappyBird::kActionCount, o.dqn.dqn_config(o.seed), "flappy",
                                 "--policy random");
    policy.agent = agent.get();
  }
  std::optional<envs::FlappyPlanner> planner;
  if (o.policy == "planner") {
    planner.emplace(envs::FlappyPlannerConfig{.frame_skip = o.frame_skip});
    policy.reads_env = [&](envs::FlappyBird& env) { return planner->act(env); };
  }
  examples::EvalSettings<envs::FlappyBird> settings{.episodes = o.episodes, .seed = o.seed, .envs = o.envs,
                                                    .stack = o.stack, .verbose = verbose, .gif = o.gif,
                                                    .game_fps = envs::FlappyBird::kFramesPerSecond,
                                                    .frame_skip = o.frame_skip, .program = "flappy"};
  settings.describe_end = [](const envs::FlappyBird& env) {
    return env.crash() ? envs::describe(*env.crash()) : std::string();
  };
  return examples::evaluate_episodes(
      settings, [&](int) { return std::make_unique<envs::FlappyBird>(env_config(o, o.max_pipes)); }, policy);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  examples::RunOptions run;
  run.run_dir = "runs/flappy";
  run.steps = 300000;
  examples::ExampleProgram program("flappy", "qrl Flappy Bird: a DQN that learns Flappy Bird from pixels", argc, argv,
                                   o, o.dqn, run);
  const examples::EvalHelp help{
      .policies = {"agent", "random", "planner"},
      .policy = "Who plays: the trained agent (greedy unless --epsilon), uniform random actions, or 'planner': a search over the game's own rules that reads the bird and pipes instead of pixels (what the game allows at this --frame-skip; not a learned policy)",
      .epsilon_note = "; one random flap is often a crash here",
      .gif = "Also record the episodes env 0 plays (every other frame, up to 5000) into this GIF"};
  const auto commands = program.add_subcommands(help, [&](CLI::App* cmd) {
    cmd->add_option("--frame-size", o.frame_size, "Observation size in pixels (square)")->check(CLI::IsMember({80, 84}))->capture_default_str();
    cmd->add_option("--frame-skip", o.frame_skip, "Game frames per agent decision (a flap acts on the first); play/eval must use the value the agent was trained with")->check(CLI::Range(1, 8))->capture_default_str();
    cmd->add_option("--network", o.network, "Q-network: 'nature' (Nature DQN's convs without pooling, 512 hidden units; the shipped agent's) or 'tutorial' (the tutorials' convs with max pooling, --hidden units); play/eval must use the one the weights were trained with")->check(CLI::IsMember({"tutorial", "nature"}))->capture_default_str();
    cmd->add_option("--hidden", o.hidden, "Units of the tutorial network's hidden dense layer (the nature network has 512)")->check(examples::positive)->capture_default_str();
  });
  CLI::App* train_cmd = commands.train;
  train_cmd->add_option("--demonstrations", o.demonstrations, "DQfD: record this many frames of the planner's play (it reads the game's state; see --policy planner) as demonstrations; every batch then draws --demonstration-rows rows from them with a large-margin term toward the planner's action. 0 = plain DQN")->check(examples::non_negative)->capture_default_str();
  train_cmd->add_option("--demonstration-max-pipes", o.demonstration_max_pipes, "End each demonstration episode after this many pipes (more episodes, more starts)")->check(examples::positive)->capture_default_str();
  train_cmd->add_option("--pretrain-updates", o.pretrain_updates, "DQfD: updates on the demonstrations alone before the agent acts (skipped on --resume)")->check(examples::non_negative)->capture_default_str();
  train_cmd->add_option("--demonstration-rows", o.demonstration_rows, "DQfD: rows of every --batch-size batch drawn from the demonstrations")->check(examples::non_negative)->capture_default_str();
  train_cmd->add_option("--demonstration-margin", o.demonstration_margin, "DQfD: the margin by which the planner's action must lead the other's Q-value")->check(examples::non_negative)->capture_default_str();
  for (CLI::App* cmd : {commands.eval, commands.play}) {
    cmd->add_option("--envs", o.envs, "Games playing episodes at once, one thread each (the scores do not depend on the count)")->check(CLI::Range(1, 256))->capture_default_str();
    cmd->add_option("--max-pipes", o.max_pipes, "End (truncate) an episode after this many pipes; 0 = never")->check(examples::non_negative)->capture_default_str();
  }
  return program.run(
      [] { return std::string("flappy"); },
      [&](auto tag, const std::string& config_toml) { return train<decltype(tag)>(o, run, config_toml); },
      [&](auto tag, bool verbose) { return evaluate<decltype(tag)>(o, verbose); });
}
