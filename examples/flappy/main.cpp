// Flappy Bird from pixels with DQN: train, play, eval.
//
//   flappy train --steps 300000 --run-dir runs/flappy
//   flappy eval  --weights runs/flappy/weights.safetensors --episodes 10 --json
//   flappy eval  --policy random --episodes 20 --json
//   flappy play  --weights runs/flappy/weights.safetensors
#include <csignal>
#include <filesystem>
#include <iostream>
#include <string>

#include <qrl/envs/flappy_bird.hpp>
#include <qrl/nn/serialize.hpp>
#include <qrl/qrl.hpp>
#if defined(QRL_HAVE_CUDA)
#include <qrl/backend/cuda.hpp>
#endif

#include "../common/example_support.hpp"

namespace fs = std::filesystem;
using namespace qrl;

namespace {

struct Options {
  // common
  std::string backend = "cpu";
  std::uint64_t seed = 1;
  std::string weights;
  std::string run_dir = "runs/flappy";
  int frame_size = 80;
  int stack = 4;
  int hidden = 256;
  int frame_skip = 2;
  // train
  std::int64_t steps = 300000;
  std::int64_t buffer_size = 100000;
  int batch_size = 32;
  float learning_rate = 1e-4f;
  float gamma = 0.99f;
  std::int64_t learning_starts = 10000;
  int train_frequency = 4;
  std::int64_t target_update = 2000;
  bool double_dqn = true;
  std::string loss = "huber";
  float max_grad_norm = 10.0f;
  double epsilon_start = 0.1;
  double epsilon_end = 0.001;
  double exploration_fraction = 0.5;
  std::int64_t progress_interval = 10000;
  std::int64_t save_interval = 50000;
  // play / eval
  int episodes = 10;
  std::string policy = "agent";
  bool json = false;
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
  return nn::tutorial_dqn<B>(o.stack, o.frame_size, o.frame_size, envs::FlappyBird::kActionCount, o.hidden);
}

volatile std::sig_atomic_t interrupted = 0;

template <Backend B>
int train(const Options& o) {
  Context<B> ctx;
  fs::create_directories(o.run_dir);
  rl::ReplayConfig replay_config{o.buffer_size, {o.frame_size, o.frame_size, 1}, o.stack};
  std::cout << "replay memory: " << o.buffer_size << " frames, "
            << rl::ReplayMemory<B>::bytes_required(replay_config) / 1e6 << " MB\n";
  rl::ReplayMemory<B> replay(replay_config);

  Rng init_rng(o.seed);
  auto net = make_network<B>(o);
  net.initialize(ctx, init_rng, nn::Init::pytorch_default);
  if (!o.weights.empty()) nn::load_weights(ctx, net, o.weights);
  std::cout << net.summary({1, o.stack, o.frame_size, o.frame_size});

  rl::DqnConfig config;
  config.gamma = o.gamma;
  config.batch_size = o.batch_size;
  config.learning_starts = o.learning_starts;
  config.train_frequency = o.train_frequency;
  config.target_update_interval = o.target_update;
  config.double_dqn = o.double_dqn;
  config.loss = o.loss == "mse" ? LossKind::mse : LossKind::huber;
  config.adam.learning_rate = o.learning_rate;
  config.adam.max_grad_norm = o.max_grad_norm;
  rl::Dqn<B> agent(ctx, std::move(net), {o.stack, o.frame_size, o.frame_size}, envs::FlappyBird::kActionCount,
                   config);

  envs::FlappyBird env(env_config(o, 0));
  rl::TrainerConfig trainer_config;
  trainer_config.seed = o.seed;
  trainer_config.epsilon = rl::EpsilonSchedule::linear_fraction(o.epsilon_start, o.epsilon_end,
                                                               o.exploration_fraction, o.steps);
  trainer_config.progress_interval = o.progress_interval;
  rl::DqnTrainer<B, envs::FlappyBird> trainer(env, agent, replay, trainer_config);

  examples::EpisodeLog episodes(fs::path(o.run_dir) / "episodes.csv");
  std::ofstream progress_csv(fs::path(o.run_dir) / "progress.csv");
  progress_csv << "time/total_timesteps,time/fps,time/episodes,rollout/ep_rew_mean,rollout/ep_score_mean,"
                  "rollout/exploration_rate,train/loss,train/q_values,train/n_updates\n";
  trainer.on_episode = [&](const rl::EpisodeRecord& e) { episodes.write(e); };
  trainer.on_progress = [&](const rl::Progress& p) {
    std::cout << examples::progress_line(p, o.steps) << std::endl;
    progress_csv << p.step << ',' << p.steps_per_second << ',' << p.episodes << ',' << p.mean_return << ','
                 << p.mean_score << ',' << p.epsilon << ',' << p.last_update.loss << ',' << p.last_update.q_mean
                 << ',' << p.updates << std::endl;
    if (!std::isfinite(p.last_update.loss)) fail("the loss became non-finite at step ", p.step,
                                                 ": lower --lr or set --max-grad-norm");
  };
  std::signal(SIGINT, [](int) { interrupted = 1; });
  const auto weights_path = fs::path(o.run_dir) / "weights.safetensors";
  const std::map<std::string, std::string> metadata{{"game", "flappy"},
                                                    {"frame_size", std::to_string(o.frame_size)},
                                                    {"stack", std::to_string(o.stack)},
                                                    {"hidden", std::to_string(o.hidden)},
                                                    {"frame_skip", std::to_string(o.frame_skip)}};
  while (trainer.step() < o.steps && !interrupted) {
    const std::int64_t next = std::min(o.steps, (trainer.step() / o.save_interval + 1) * o.save_interval);
    // Run in slices so Ctrl-C and periodic saves happen between env steps.
    for (std::int64_t until = trainer.step(); until < next && !interrupted;) {
      until = std::min(next, until + 1000);
      trainer.run(until);
    }
    nn::save_weights(ctx, agent.online(), weights_path, metadata);
    std::cout << "saved " << weights_path.string() << " at step " << trainer.step() << std::endl;
  }
  if (interrupted) std::cout << "interrupted: weights saved at step " << trainer.step() << std::endl;
  return 0;
}

// Plays `episodes` seeded episodes with the greedy agent or a random policy.
template <Backend B>
examples::EvalSummary evaluate(const Options& o, bool verbose) {
  Context<B> ctx;
  const bool random_policy = o.policy == "random";
  auto net = make_network<B>(o);
  std::unique_ptr<rl::Dqn<B>> agent;
  if (!random_policy) {
    require(!o.weights.empty(), "the agent policy needs --weights FILE (train one with 'flappy train', or use "
                                "--policy random)");
    nn::load_weights(ctx, net, o.weights);
    rl::DqnConfig config;
    agent = std::make_unique<rl::Dqn<B>>(ctx, std::move(net), Shape{o.stack, o.frame_size, o.frame_size},
                                         envs::FlappyBird::kActionCount, config);
  }
  envs::FlappyBird env(env_config(o, o.max_pipes));
  rl::FrameStack stack(env.observation_shape(), o.stack);
  Rng random(o.seed ^ 0xa5a5a5a5ULL);
  examples::EvalSummary summary{random_policy ? "random" : "agent", o.seed, {}, {}};
  for (int e = 0; e < o.episodes; ++e) {
    stack.reset(env.reset(o.seed + static_cast<std::uint64_t>(e)));
    double episode_return = 0;
    env::StepResult r;
    do {
      const int action = random_policy ? static_cast<int>(random.uniform_index(2)) : agent->greedy_action(stack.data());
      r = env.step(action);
      stack.push(r.observation);
      episode_return += r.reward;
    } while (!r.terminated && !r.truncated);
    summary.scores.push_back(r.info.score);
    summary.returns.push_back(episode_return);
    if (verbose)
      std::cout << "episode " << e + 1 << "/" << o.episodes << " seed " << o.seed + e << ": score " << r.info.score
                << (r.truncated ? " (capped)" : "") << ", return " << episode_return << ", frames "
                << r.info.episode_frame << std::endl;
  }
  return summary;
}

template <Backend B>
int eval(const Options& o, bool play) {
  const auto summary = evaluate<B>(o, play || !o.json);
  if (o.json) {
    std::cout << summary.json() << std::endl;
  } else {
    std::cout << "mean score " << summary.mean_score() << ", max " << summary.max_score() << " over "
              << summary.scores.size() << " episodes\n";
  }
  return 0;
}

template <class Fn>
int with_backend(const std::string& backend, Fn&& fn) {
  if (backend == "cpu") return fn(cpu{});
#if defined(QRL_HAVE_CUDA)
  // Checked before anything is built, so a machine without a GPU gets one
  // line instead of an error from deep inside the first allocation.
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) fail("--backend cuda: ", reason);
  return fn(cuda{});
#else
  fail("--backend ", backend, ": this build has no CUDA backend (configure with CUDA and cuDNN installed, "
       "QRL_ENABLE_CUDA=ON); use --backend cpu");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"qrl Flappy Bird: a DQN that learns Flappy Bird from pixels"};
  app.require_subcommand(1);
  auto add_common = [&](CLI::App* cmd) {
    cmd->add_option("--backend", o.backend, "Compute backend")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
    cmd->add_option("--seed", o.seed, "Seed of everything random (episodes, exploration, sampling, init)")->capture_default_str();
    cmd->add_option("--frame-size", o.frame_size, "Observation size in pixels (square)")->check(CLI::IsMember({80, 84}))->capture_default_str();
    cmd->add_option("--stack", o.stack, "Frames stacked into one state")->check(CLI::Range(1, 16))->capture_default_str();
    cmd->add_option("--frame-skip", o.frame_skip, "Game frames per agent decision (a flap acts on the first); play/eval must use the value the agent was trained with")->check(CLI::Range(1, 8))->capture_default_str();
    cmd->add_option("--hidden", o.hidden, "Units of the hidden dense layer")->check(CLI::PositiveNumber)->capture_default_str();
  };

  auto* train_cmd = app.add_subcommand("train", "Train a DQN agent; writes weights, episodes.csv and progress.csv to --run-dir");
  add_common(train_cmd);
  train_cmd->add_option("--steps", o.steps, "Environment steps to train for")->check(CLI::PositiveNumber)->capture_default_str();
  train_cmd->add_option("--run-dir", o.run_dir, "Directory for weights and logs")->capture_default_str();
  train_cmd->add_option("--weights", o.weights, "Start from these weights (safetensors)")->check(CLI::ExistingFile);
  train_cmd->add_option("--buffer-size", o.buffer_size, "Replay memory capacity in frames")->check(CLI::Range(int64_t{64}, int64_t{100000000}))->capture_default_str();
  train_cmd->add_option("--batch-size", o.batch_size, "Minibatch size")->check(CLI::Range(1, 4096))->capture_default_str();
  train_cmd->add_option("--lr", o.learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  train_cmd->add_option("--gamma", o.gamma, "Discount factor")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  train_cmd->add_option("--learning-starts", o.learning_starts, "Steps before the first update")->check(CLI::NonNegativeNumber)->capture_default_str();
  train_cmd->add_option("--train-frequency", o.train_frequency, "Env steps per gradient update")->check(CLI::PositiveNumber)->capture_default_str();
  train_cmd->add_option("--target-update", o.target_update, "Env steps between target-network syncs")->check(CLI::PositiveNumber)->capture_default_str();
  train_cmd->add_flag("--double-dqn,!--no-double-dqn", o.double_dqn, "Double DQN targets")->capture_default_str();
  train_cmd->add_option("--loss", o.loss, "TD loss")->check(CLI::IsMember({"huber", "mse"}))->capture_default_str();
  train_cmd->add_option("--max-grad-norm", o.max_grad_norm, "Global gradient-norm clip (0 = off)")->check(CLI::NonNegativeNumber)->capture_default_str();
  train_cmd->add_option("--epsilon-start", o.epsilon_start, "Initial exploration rate")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  train_cmd->add_option("--epsilon-end", o.epsilon_end, "Final exploration rate")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  train_cmd->add_option("--exploration-fraction", o.exploration_fraction, "Fraction of --steps over which epsilon decays linearly")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  train_cmd->add_option("--progress-interval", o.progress_interval, "Steps between progress lines")->check(CLI::PositiveNumber)->capture_default_str();
  train_cmd->add_option("--save-interval", o.save_interval, "Steps between weight saves")->check(CLI::PositiveNumber)->capture_default_str();

  auto add_eval_options = [&](CLI::App* cmd) {
    add_common(cmd);
    cmd->add_option("--weights", o.weights, "Agent weights (safetensors) saved by 'flappy train'");
    cmd->add_option("--episodes", o.episodes, "Episodes to play; episode k uses seed --seed + k")->check(CLI::PositiveNumber)->capture_default_str();
    cmd->add_option("--policy", o.policy, "Who plays: the trained agent (greedy) or uniform random actions")->check(CLI::IsMember({"agent", "random"}))->capture_default_str();
    cmd->add_option("--max-pipes", o.max_pipes, "End (truncate) an episode after this many pipes; 0 = never")->check(CLI::NonNegativeNumber)->capture_default_str();
  };
  auto* eval_cmd = app.add_subcommand("eval", "Evaluate a policy on seeded episodes");
  add_eval_options(eval_cmd);
  eval_cmd->add_flag("--json", o.json, "Print only a JSON summary line {episodes, mean_score, max_score, scores}");
  auto* play_cmd = app.add_subcommand("play", "Play episodes and print each one's score");
  add_eval_options(play_cmd);

  return examples::run_main("flappy", app, argc, argv, [&] {
    return with_backend(o.backend, [&](auto tag) {
      using B = decltype(tag);
      if (*train_cmd) return train<B>(o);
      // load_weights reports a missing file too, but --policy random never loads it.
      if (!o.weights.empty()) require(fs::exists(o.weights), o.weights, ": no such file (check --weights)");
      return eval<B>(o, static_cast<bool>(*play_cmd));
    });
  });
}
