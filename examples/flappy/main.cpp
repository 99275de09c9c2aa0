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
#include <qrl/envs/flappy_planner.hpp>
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
  int frame_size = 80;
  int stack = 4;
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
  int episodes = 10;
  std::string policy = "agent";
  double epsilon = 0.0;
  bool json = false;
  int max_pipes = 1000;
  std::string gif;
  // plot
  std::string plot_dir;
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
// drawn from --seed's own stream, like training episodes'), each ended after
// --demonstration-max-pipes pipes, until the memory is full (never
// overwritten: each episode's last frame takes a slot without a transition).
template <Backend B>
void record_planner_demonstrations(const Options& o, rl::ReplayMemory<B>& memory) {
  const auto start = std::chrono::steady_clock::now();
  envs::FlappyBird env(env_config(o, o.demonstration_max_pipes));
  envs::FlappyPlanner planner(envs::FlappyPlannerConfig{.frame_skip = o.frame_skip});
  Rng seeds(o.seed ^ 0xde3005ULL);
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
  Rng sampling(o.seed ^ 0x9e7a11ULL);
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
  Context<B> ctx;
  const rl::ReplayConfig replay_config = o.dqn.replay_config({o.frame_size, o.frame_size, 1}, o.stack, run.steps);
  examples::check_replay_fits(rl::ReplayMemory<B>::bytes_required(replay_config), run.force_memory);
  rl::ReplayMemory<B> replay(replay_config, ctx);

  Rng init_rng(o.seed);
  auto net = make_network<B>(o);
  net.initialize(ctx, init_rng, nn::Init::pytorch_default);
  if (!o.weights.empty()) nn::load_weights(ctx, net, o.weights);
  std::cout << net.summary({1, o.stack, o.frame_size, o.frame_size});

  rl::DqnConfig config = o.dqn.dqn_config(o.seed);
  config.demonstration_rows = o.demonstration_rows;
  config.demonstration_margin = o.demonstration_margin;
  rl::Dqn<B> agent(ctx, std::move(net), {o.stack, o.frame_size, o.frame_size}, envs::FlappyBird::kActionCount,
                   config);

  envs::FlappyBird game(env_config(o, 0));
  auto env = examples::record_videos(game, run, envs::FlappyBird::kFramesPerSecond, o.frame_skip);
  env::VectorEnv<decltype(env)> one_env(env);
  rl::TrainerConfig trainer_config;
  trainer_config.seed = o.seed;
  trainer_config.epsilon = o.dqn.epsilon_schedule(run.steps);
  trainer_config.schedule = o.dqn.schedule();
  trainer_config.progress_interval = run.progress_interval;
  rl::Trainer<B, decltype(env)> trainer(one_env, agent, replay, trainer_config);

  // Regenerated on --resume (the planner and its seeds are deterministic), so
  // checkpoints need not carry them.
  std::optional<rl::ReplayMemory<B>> demonstrations;
  if (o.demonstrations > 0) {
    rl::ReplayConfig demonstration_config = replay_config;
    demonstration_config.capacity = o.demonstrations;
    demonstration_config.prioritized.reset();
    demonstrations.emplace(demonstration_config, ctx);
    record_planner_demonstrations(o, *demonstrations);
    if (run.resume.empty() && o.pretrain_updates > 0) pretrain(ctx, o, trainer, *demonstrations, run.run_dir);
    trainer.use_demonstrations(&*demonstrations);
  }
  return examples::run_training(ctx, trainer, run, config_toml);
}

// Plays `episodes` seeded episodes with the agent (greedy, or with --epsilon
// random steps), a random policy or the planner (which reads the game's state,
// not pixels). The agent's random steps come from the random policy's stream,
// drawn only when --epsilon asks for them: greedy episodes and the random
// baselines are what they were before --epsilon existed.
template <Backend B>
examples::EvalSummary evaluate(const Options& o, bool verbose) {
  Context<B> ctx;
  const bool random_policy = o.policy == "random";
  const bool planner_policy = o.policy == "planner";
  auto net = make_network<B>(o);
  std::unique_ptr<rl::Dqn<B>> agent;
  if (o.policy == "agent") {
    require(!o.weights.empty(), "the agent policy needs --weights FILE (train one with 'flappy train', or use "
                                "--policy random)");
    nn::load_weights(ctx, net, o.weights);
    const rl::DqnConfig config = o.dqn.dqn_config(o.seed);  // its head
    agent = std::make_unique<rl::Dqn<B>>(ctx, std::move(net), Shape{o.stack, o.frame_size, o.frame_size},
                                         envs::FlappyBird::kActionCount, config);
  }
  envs::FlappyBird env(env_config(o, o.max_pipes));
  rl::FrameStack stack(env.observation_shape(), o.stack);
  Rng random(o.seed ^ 0xa5a5a5a5ULL);
  std::optional<envs::FlappyPlanner> planner;
  if (planner_policy) planner.emplace(envs::FlappyPlannerConfig{.frame_skip = o.frame_skip});
  examples::EvalSummary summary{o.policy, o.seed, {}, {}};
  // The same timing as the training recordings: the game in real time.
  env::RecordVideoConfig gif_timing;
  gif_timing.time_for_game(envs::FlappyBird::kFramesPerSecond, o.frame_skip);
  std::unique_ptr<io::GifWriter> gif;
  constexpr int gif_max_frames = 5000;
  if (!o.gif.empty())
    gif = std::make_unique<io::GifWriter>(o.gif, envs::FlappyBird::kScreenWidth, envs::FlappyBird::kScreenHeight,
                                          gif_timing.delay_cs);
  for (int e = 0; e < o.episodes; ++e) {
    stack.reset(env.reset(o.seed + static_cast<std::uint64_t>(e)));
    if (gif && gif->frames() < gif_max_frames) gif->add_frame(env.render_rgb());
    double episode_return = 0;
    std::int64_t step = 0;
    env::StepResult r;
    do {
      const int action = random_policy || (agent && examples::takes_random_step(random, o.epsilon))
                             ? static_cast<int>(random.uniform_index(envs::FlappyBird::kActionCount))
                         : planner_policy ? planner->act(env)
                                          : agent->greedy_action(stack.data());
      r = env.step(action);
      stack.push(r.observation);
      episode_return += r.reward;
      if (gif && gif->frames() < gif_max_frames && (++step % gif_timing.frame_every == 0 || r.terminated || r.truncated))
        gif->add_frame(env.render_rgb());
    } while (!r.terminated && !r.truncated);
    summary.scores.push_back(r.info.score);
    summary.returns.push_back(episode_return);
    if (verbose)
      std::cout << "episode " << e + 1 << "/" << o.episodes << " seed " << o.seed + e << ": score " << r.info.score
                << (r.truncated ? " (capped)" : "") << ", return " << episode_return << ", frames "
                << r.info.episode_frame << (env.crash() ? ", " + envs::describe(*env.crash()) : std::string())
                << std::endl;
  }
  if (gif) {
    gif->close();
    if (verbose) std::cout << "wrote " << o.gif << " (" << gif->frames() << " frames)" << std::endl;
  }
  return summary;
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
  run.run_dir = "runs/flappy";
  run.steps = 300000;
  CLI::App app{"qrl Flappy Bird: a DQN that learns Flappy Bird from pixels"};
  app.require_subcommand(1);
  examples::add_config_option(app, argc, argv);
  const std::string algorithm = examples::algorithm_to_apply(argc, argv, o.dqn.algorithm);
  examples::apply_algorithm(algorithm, o.dqn);
  auto add_common = [&](CLI::App* cmd) {
    examples::add_backend_option(cmd, o.backend);
    examples::add_head_options(cmd, o.dqn);
    cmd->add_option("--seed", o.seed, "Seed of everything random (episodes, exploration, sampling, init)")->capture_default_str();
    cmd->add_option("--frame-size", o.frame_size, "Observation size in pixels (square)")->check(CLI::IsMember({80, 84}))->capture_default_str();
    cmd->add_option("--stack", o.stack, "Frames stacked into one state")->check(CLI::Range(1, 16))->capture_default_str();
    cmd->add_option("--frame-skip", o.frame_skip, "Game frames per agent decision (a flap acts on the first); play/eval must use the value the agent was trained with")->check(CLI::Range(1, 8))->capture_default_str();
    cmd->add_option("--network", o.network, "Q-network: 'nature' (Nature DQN's convs without pooling, 512 hidden units; the shipped agent's) or 'tutorial' (the tutorials' convs with max pooling, --hidden units); play/eval must use the one the weights were trained with")->check(CLI::IsMember({"tutorial", "nature"}))->capture_default_str();
    cmd->add_option("--hidden", o.hidden, "Units of the tutorial network's hidden dense layer (the nature network has 512)")->check(examples::positive)->capture_default_str();
  };

  auto* train_cmd = app.add_subcommand(
      "train", "Train a DQN agent; checkpoints, weights, CSV and TensorBoard logs, plots and GIFs go to --run-dir");
  add_common(train_cmd);
  examples::add_run_options(train_cmd, run);
  train_cmd->add_option("--weights", o.weights, "Start from these weights (safetensors)")->check(CLI::ExistingFile);
  examples::add_dqn_options(train_cmd, o.dqn);
  train_cmd->add_option("--demonstrations", o.demonstrations, "DQfD: record this many frames of the planner's play (it reads the game's state; see --policy planner) as demonstrations; every batch then draws --demonstration-rows rows from them with a large-margin term toward the planner's action. 0 = plain DQN")->check(examples::non_negative)->capture_default_str();
  train_cmd->add_option("--demonstration-max-pipes", o.demonstration_max_pipes, "End each demonstration episode after this many pipes (more episodes, more starts)")->check(examples::positive)->capture_default_str();
  train_cmd->add_option("--pretrain-updates", o.pretrain_updates, "DQfD: updates on the demonstrations alone before the agent acts (skipped on --resume)")->check(examples::non_negative)->capture_default_str();
  train_cmd->add_option("--demonstration-rows", o.demonstration_rows, "DQfD: rows of every --batch-size batch drawn from the demonstrations")->check(examples::non_negative)->capture_default_str();
  train_cmd->add_option("--demonstration-margin", o.demonstration_margin, "DQfD: the margin by which the planner's action must lead the other's Q-value")->check(examples::non_negative)->capture_default_str();

  auto add_eval_options = [&](CLI::App* cmd) {
    add_common(cmd);
    cmd->add_option("--weights", o.weights, "Agent weights (safetensors) saved by 'flappy train'; default: the shipped ones in models/ (docs/results.md)");
    cmd->add_option("--episodes", o.episodes, "Episodes to play; episode k uses seed --seed + k")->check(examples::positive)->capture_default_str();
    cmd->add_option("--policy", o.policy, "Who plays: the trained agent (greedy unless --epsilon), uniform random actions, or 'planner': a search over the game's own rules that reads the bird and pipes instead of pixels (what the game allows at this --frame-skip; not a learned policy)")->check(CLI::IsMember({"agent", "random", "planner"}))->capture_default_str();
    examples::add_eval_epsilon_option(cmd, o.epsilon, "; one random flap is often a crash here");
    cmd->add_option("--max-pipes", o.max_pipes, "End (truncate) an episode after this many pipes; 0 = never")->check(examples::non_negative)->capture_default_str();
  };
  auto* eval_cmd = app.add_subcommand("eval", "Evaluate a policy on seeded episodes");
  add_eval_options(eval_cmd);
  examples::add_switch(eval_cmd, "--json", o.json, "Print only a JSON summary line {episodes, mean_score, max_score, scores}");
  auto* play_cmd = app.add_subcommand("play", "Play episodes and print each one's score");
  add_eval_options(play_cmd);
  play_cmd->add_option("--gif", o.gif, "Also record the episodes (every other frame, up to 5000) into this GIF");
  auto* plot_cmd = app.add_subcommand("plot", "Redraw RUN_DIR/scores.svg and RUN_DIR/q_values.svg from its logs");
  plot_cmd->add_option("run_dir", o.plot_dir, "Run directory of 'flappy train'")->required()->check(CLI::ExistingDirectory);

  return examples::run_main("flappy", app, argc, argv, [&] {
    examples::check_algorithm(o.dqn, algorithm);
    return examples::with_backend(o.backend, [&](auto tag) {
      using B = decltype(tag);
      if (*train_cmd) return train<B>(o, run, examples::resolved_config(*train_cmd));
      if (*plot_cmd) return examples::plot_command(o.plot_dir);
      examples::require_epsilon_for_agent(o.policy, o.epsilon);
      o.weights = examples::eval_weights(o.policy, o.weights, "flappy", "flappy");
      return eval<B>(o, static_cast<bool>(*play_cmd));
    });
  });
}
