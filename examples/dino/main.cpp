// Chrome Dino (or any canvas game described by a TOML file) from pixels with
// DQN, through a lock-step headless Chromium: train, play, eval.
//
//   dino train --steps 200000 --run-dir runs/dino
//   dino train --resume runs/dino    (learner exact; the interrupted game ends as truncated, docs/runs.md)
//   dino train --config run.toml
//   dino train --browsers 2 --capture canvas   (2 browsers stepped in parallel)
//   dino eval  --weights runs/dino/weights.safetensors --episodes 10 --json
//   dino eval  --policy noop --episodes 3 --json
//   dino eval  --policy random --episodes 8 --browsers 2 --json
//   dino play  --weights runs/dino/weights.safetensors --headful
//   dino play  --weights runs/dino/weights.safetensors --episodes 1 --gif dino.gif
//   dino plot  runs/dino
//   dino eval  --game-config envs/dino/games/dino.toml --policy random --capture canvas
#include <atomic>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <qrl/env/vector_env.hpp>
#include <qrl/envs/dino.hpp>
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
  int frame_size = 0;  // 0: the game's own (Dino: 80)
  int stack = 4;
  int hidden = 256;
  // browser and game
  std::string capture = "screenshot";
  std::string chromium;
  std::string cdp;
  bool headful = false;
  double cdp_timeout = 15;  // seconds
  std::string game_config;
  int actions = 3;
  bool constant_speed = false;
  int frame_skip = 4;
  // train (run directory, steps, checkpoints, logs: examples::RunOptions)
  examples::DqnOptions dqn{
      .buffer_size = 50000, .batch_size = 32, .learning_rate = 1e-4f, .gamma = 0.99f,
      .learning_starts = 5000, .train_frequency = 4, .target_update = 2000, .double_dqn = true,
      .loss = "huber", .max_grad_norm = 10.0f, .epsilon_start = 0.1, .epsilon_end = 0.001,
      .exploration_fraction = 0.5};
  // play / eval
  int episodes = 10;
  std::string policy = "agent";
  double epsilon = 0.0;
  bool json = false;
  std::int64_t max_steps = 5000;
  int browsers = 1;
  std::string gif;
  // plot
  std::string plot_dir;
};

// The Dino page draws (and qrl's lock-step clock advances) 60 frames a second;
// a step spans the game's frame_skip of them.
constexpr double kCanvasFramesPerSecond = 60.0;

// The game first (a bad file fails before any browser starts), then the browser.
envs::CanvasGameConfig game_config(const Options& o, std::int64_t max_steps) {
  envs::CanvasGameConfig game;
  if (!o.game_config.empty()) {
    game = envs::load_game_config(o.game_config);
  } else {
    envs::DinoConfig d;
    d.actions = o.actions;
    d.constant_speed = o.constant_speed;
    d.frame_skip = o.frame_skip;
    game = envs::dino_game_config(d);
  }
  if (o.frame_size > 0) game.observation_height = game.observation_width = o.frame_size;
  game.max_steps = max_steps;
  return game;
}

envs::BrowserConfig browser_config(const Options& o) {
  envs::BrowserConfig browser;
  browser.capture = envs::parse_capture_mode(o.capture);
  browser.chromium = o.chromium;
  browser.cdp_url = o.cdp;
  browser.headful = o.headful;
  browser.call_timeout = cdp::Milliseconds(static_cast<std::int64_t>(o.cdp_timeout * 1000));
  if (!o.chromium.empty()) cdp::find_chromium(o.chromium);  // checked before anything else starts
  return browser;
}

std::unique_ptr<envs::CanvasGame> make_env(const Options& o, std::int64_t max_steps) {
  return std::make_unique<envs::CanvasGame>(game_config(o, max_steps), browser_config(o));
}

template <Backend B>
nn::Sequential<B> make_network(const Options& o, const envs::CanvasGameConfig& game) {
  return nn::tutorial_dqn<B>(o.stack, game.observation_height, game.observation_width,
                             o.dqn.head(static_cast<int>(game.actions.size())), o.hidden);
}

template <Backend B>
int train(const Options& o, const examples::RunOptions& run, const std::string& config_toml) {
  // A bad --resume fails before a browser starts.
  if (!run.resume.empty()) examples::resolve_resume(run.resume);
  const envs::CanvasGameConfig game = game_config(o, 0);
  const int actions = static_cast<int>(game.actions.size());
  const int height = game.observation_height;
  const int width = game.observation_width;
  Context<B> ctx;
  // One replay stream per browser (the buffer is split between them).
  const rl::ReplayConfig replay_config = o.dqn.replay_config({height, width, 1}, o.stack, run.steps, o.browsers);
  examples::check_replay_fits(rl::ReplayMemory<B>::bytes_required(replay_config), run.force_memory);
  rl::ReplayMemory<B> replay(replay_config, ctx);

  Rng init_rng(o.seed);
  auto net = make_network<B>(o, game);
  net.initialize(ctx, init_rng, nn::Init::pytorch_default);
  if (!o.weights.empty()) nn::load_weights(ctx, net, o.weights);
  std::cout << net.summary({1, o.stack, height, width});

  const rl::DqnConfig config = o.dqn.dqn_config(o.seed);
  rl::Dqn<B> agent(ctx, std::move(net), {o.stack, height, width}, actions, config);

  rl::TrainerConfig trainer_config;
  trainer_config.seed = o.seed;
  trainer_config.epsilon = o.dqn.epsilon_schedule(run.steps);
  trainer_config.schedule = o.dqn.schedule();
  trainer_config.progress_interval = run.progress_interval;
  auto report_restarts = [](int restarts) {
    if (restarts > 0)
      std::cout << "a browser was relaunched " << restarts
                << " time(s); those episodes are marked truncated in episodes.csv\n";
  };
  if (o.browsers == 1) {
    // The game's state lives in the browser and has no save_state():
    // run_training resumes the learner exactly and restarts the game
    // (docs/runs.md).
    envs::CanvasGame browser_env(game, browser_config(o));
    auto env = examples::record_videos(browser_env, run, kCanvasFramesPerSecond, game.frame_skip);
    env::VectorEnv<decltype(env)> one_env(env);
    rl::Trainer<B, decltype(env)> trainer(one_env, agent, replay, trainer_config);
    const int status = examples::run_training(ctx, trainer, run, config_toml);
    report_restarts(browser_env.browser_restarts());
    return status;
  }
  // --browsers N > 1: N browsers (or N tabs of the --cdp browser) stepped on
  // their own threads, one batched forward pass to act for all, --steps
  // counting env steps summed over the browsers. Their games live in the
  // browsers: a resume restores the learner exactly and restarts every game.
  env::VectorEnv<envs::CanvasGame> browsers(o.browsers,
                                            [&](int) { return envs::CanvasGame(game, browser_config(o)); });
  rl::Trainer<B, envs::CanvasGame> trainer(browsers, agent, replay, trainer_config);
  const int status = examples::run_training(ctx, trainer, run, config_toml);
  int restarts = 0;
  for (int i = 0; i < o.browsers; ++i) restarts += browsers.env(i).browser_restarts();
  report_restarts(restarts);
  return status;
}

// Plays `episodes` seeded episodes with the agent (greedy, or with --epsilon
// random steps), random or no-op actions, spread over `--browsers` envs.
// Episode k always has seed --seed + k and its own action stream, and each
// episode reloads the page, so which browser plays it does not matter: the
// scores, listed in seed order, are the same for any number of browsers.
template <Backend B>
examples::EvalSummary evaluate(const Options& o, bool verbose) {
  Context<B> ctx;
  const auto game = game_config(o, o.max_steps);
  const int actions = static_cast<int>(game.actions.size());
  std::unique_ptr<rl::Dqn<B>> agent;
  if (o.policy == "agent") {
    require(!o.weights.empty(), "the agent policy needs --weights FILE (train one with 'dino train', or use "
                                "--policy random or noop)");
    auto net = make_network<B>(o, game);
    nn::load_weights(ctx, net, o.weights);
    const rl::DqnConfig config = o.dqn.dqn_config(o.seed);  // its head
    agent = std::make_unique<rl::Dqn<B>>(
        ctx, std::move(net), Shape{o.stack, game.observation_height, game.observation_width}, actions, config);
  }
  const int browsers = std::min(o.browsers, o.episodes);
  std::vector<double> scores(static_cast<std::size_t>(o.episodes)), returns(scores.size());
  std::atomic<int> next_episode{0};
  std::atomic<bool> failed{false};
  std::mutex agent_mutex, print_mutex;  // the network's buffers are shared; lines stay whole
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(browsers));
  // --gif: the episodes browser 0 plays (all of them with --browsers 1), the
  // canvas as captured each step, timed like the training recordings.
  env::RecordVideoConfig gif_timing;
  std::unique_ptr<io::GifWriter> gif;
  constexpr int gif_max_frames = 5000;
  auto gif_frame = [&](envs::CanvasGame& env, std::int64_t step, bool last) {
    if (o.gif.empty()) return;
    if (!gif) {
      gif_timing.time_for_game(kCanvasFramesPerSecond, env.config().frame_skip);
      const env::FrameView first = env.render_rgb();
      gif = std::make_unique<io::GifWriter>(o.gif, first.shape.width, first.shape.height, gif_timing.delay_cs);
    }
    if (gif->frames() < gif_max_frames && (step % gif_timing.frame_every == 0 || last))
      gif->add_frame(env.render_rgb());
  };
  // One thread per browser: it launches its env (in parallel with the
  // others) and plays whichever episode is next until none is left.
  auto play_episodes = [&](int b) {
    try {
      auto env = make_env(o, o.max_steps);
      rl::FrameStack stack(env->observation_shape(), o.stack);
      for (int e; !failed && (e = next_episode++) < o.episodes;) {
        const std::uint64_t seed = o.seed + static_cast<std::uint64_t>(e);
        // An episode the browser failed in is played again in the new one:
        // seeded and lock-step, it plays out as it would have, so a browser
        // failure never shortens an evaluated score.
        double episode_return = 0;
        env::StepResult r;
        for (;;) {
          Rng random((o.seed ^ 0xa5a5a5a5ULL) + 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(e));
          stack.reset(env->reset(seed));
          const int restarts = env->browser_restarts();
          if (b == 0) gif_frame(*env, 0, false);
          episode_return = 0;
          std::int64_t step = 0;
          r = {};
          do {
            int action = 0;
            if (o.policy == "random" || (agent && examples::takes_random_step(random, o.epsilon))) {
              action = static_cast<int>(random.uniform_index(static_cast<std::uint64_t>(actions)));
            } else if (agent) {
              std::lock_guard lock(agent_mutex);
              action = agent->greedy_action(stack.data());
            }
            r = env->step(action);
            stack.push(r.observation);
            episode_return += r.reward;
            if (b == 0) gif_frame(*env, ++step, r.terminated || r.truncated);
          } while (!r.terminated && !r.truncated);
          if (env->browser_restarts() == restarts) break;
          std::lock_guard lock(print_mutex);
          std::cerr << "dino: episode " << e + 1 << " (seed " << seed << ") was cut short by a browser failure; "
                    << "playing it again from the start in the new browser\n";
        }
        scores[static_cast<std::size_t>(e)] = r.info.score;
        returns[static_cast<std::size_t>(e)] = episode_return;
        if (verbose) {
          std::lock_guard lock(print_mutex);
          std::cout << "episode " << e + 1 << "/" << o.episodes << " seed " << seed << ": score " << r.info.score
                    << (r.truncated ? " (truncated)" : "") << ", return " << episode_return << ", frames "
                    << r.info.episode_frame << (browsers > 1 ? ", browser " + std::to_string(b) : "") << std::endl;
        }
      }
    } catch (...) {
      errors[static_cast<std::size_t>(b)] = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> threads;
  for (int b = 1; b < browsers; ++b) threads.emplace_back(play_episodes, b);
  play_episodes(0);
  for (auto& t : threads) t.join();
  for (const auto& error : errors)
    if (error) std::rethrow_exception(error);
  if (gif) {
    gif->close();
    if (verbose) std::cout << "wrote " << o.gif << " (" << gif->frames() << " frames)" << std::endl;
  }
  return examples::EvalSummary{o.policy, o.seed, scores, returns};
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
  run.run_dir = "runs/dino";
  run.steps = 200000;
  run.progress_interval = 2000;
  run.checkpoint_interval = 10000;
  CLI::App app{"qrl Dino: a DQN that learns Chrome Dino (or a canvas game from --game-config) from pixels"};
  app.require_subcommand(1);
  examples::add_config_option(app, argc, argv);
  const std::string algorithm = examples::algorithm_to_apply(argc, argv, o.dqn.algorithm);
  examples::apply_algorithm(algorithm, o.dqn);
  auto add_common = [&](CLI::App* cmd) {
    examples::add_backend_option(cmd, o.backend);
    examples::add_head_options(cmd, o.dqn);
    cmd->add_option("--seed", o.seed, "Seed of everything random (episodes, exploration, sampling, init)")->capture_default_str();
    cmd->add_option("--frame-size", o.frame_size, "Observation size in pixels (square); default: the game's (Dino: 80)")->check(CLI::IsMember({80, 84}));
    cmd->add_option("--stack", o.stack, "Frames stacked into one state")->check(CLI::Range(1, 16))->capture_default_str();
    cmd->add_option("--hidden", o.hidden, "Units of the hidden dense layer")->check(examples::positive)->capture_default_str();
    cmd->add_option("--capture", o.capture, "How frames leave the browser: screenshot (Page.captureScreenshot, PNG) or canvas (the page computes the 80x80 observation from the canvas's pixels; several times faster, same frames)")->check(CLI::IsMember({"screenshot", "canvas"}))->capture_default_str();
    cmd->add_option("--chromium", o.chromium, "Chromium executable (default: chromium on PATH)");
    cmd->add_option("--cdp", o.cdp, "Use a running browser instead of launching one: http://HOST:PORT or a ws:// DevTools URL");
    cmd->add_option("--cdp-timeout", o.cdp_timeout, "Seconds a browser call may take before the browser counts as hung: it is relaunched and the episode ends as truncated; after 3 relaunches with no episode ending by itself between them, the next failure stops the run (with a checkpoint)")->check(CLI::Range(0.1, 3600.0))->capture_default_str();
    examples::add_switch(cmd, "--headful", o.headful, "Show the browser window (needs a display)");
    cmd->add_option("--game-config", o.game_config, "Another canvas game, described in TOML (docs/dino.md); replaces Dino");
    cmd->add_option("--actions", o.actions, "Dino actions: 3 (nothing, jump, duck) or 2 (nothing, jump)")->check(CLI::IsMember({2, 3}))->capture_default_str();
    examples::add_switch(cmd, "--constant-speed", o.constant_speed, "Dino keeps its starting speed (the tutorial's variant)");
    cmd->add_option("--frame-skip", o.frame_skip, "Dino frames (1/60 s each) per step, the action held")->check(CLI::Range(1, 100))->capture_default_str();
  };

  auto* train_cmd = app.add_subcommand(
      "train", "Train a DQN agent; checkpoints, weights, CSV and TensorBoard logs, plots and GIFs go to --run-dir");
  add_common(train_cmd);
  examples::add_run_options(train_cmd, run);
  train_cmd->add_option("--weights", o.weights, "Start from these weights (safetensors)")->check(CLI::ExistingFile);
  train_cmd->add_option("--browsers", o.browsers, "Browsers stepped in parallel, one thread each (with --cdp: tabs of that browser)")->check(CLI::Range(1, 64))->capture_default_str();
  examples::add_dqn_options(train_cmd, o.dqn);

  auto add_eval_options = [&](CLI::App* cmd) {
    add_common(cmd);
    cmd->add_option("--weights", o.weights, "Agent weights (safetensors) saved by 'dino train'; default: the shipped ones in models/ (docs/results.md)");
    cmd->add_option("--episodes", o.episodes, "Episodes to play; episode k uses seed --seed + k")->check(examples::positive)->capture_default_str();
    cmd->add_option("--policy", o.policy, "Who plays: the trained agent (greedy unless --epsilon), uniform random actions, or always action 0")->check(CLI::IsMember({"agent", "random", "noop"}))->capture_default_str();
    cmd->add_option("--browsers", o.browsers, "Browsers playing episodes at once (scores do not depend on it)")->check(CLI::Range(1, 64))->capture_default_str();
    examples::add_eval_epsilon_option(cmd, o.epsilon);
    cmd->add_option("--max-steps", o.max_steps, "End (truncate) an episode after this many steps; 0 = never")->check(examples::non_negative)->capture_default_str();
  };
  auto* eval_cmd = app.add_subcommand("eval", "Evaluate a policy on seeded episodes");
  add_eval_options(eval_cmd);
  examples::add_switch(eval_cmd, "--json", o.json, "Print only a JSON summary line {episodes, mean_score, max_score, scores}");
  auto* play_cmd = app.add_subcommand("play", "Play episodes and print each one's score");
  add_eval_options(play_cmd);
  play_cmd->add_option("--gif", o.gif, "Also record the episodes browser 0 plays (the canvas, about 15 pictures a second, up to 5000) into this GIF");
  auto* plot_cmd = app.add_subcommand("plot", "Redraw RUN_DIR/scores.svg and RUN_DIR/q_values.svg from its logs");
  plot_cmd->add_option("run_dir", o.plot_dir, "Run directory of 'dino train'")->required()->check(CLI::ExistingDirectory);

  return examples::run_main("dino", app, argc, argv, [&] {
    examples::check_algorithm(o.dqn, algorithm);
    return examples::with_backend(o.backend, [&](auto tag) {
      using B = decltype(tag);
      if (*train_cmd) return train<B>(o, run, examples::resolved_config(*train_cmd));
      if (*plot_cmd) return examples::plot_command(o.plot_dir);
      // Shipped weights are named after the game: models/dino, or the --game config's file name.
      const std::string model = o.game_config.empty() ? std::string("dino") : fs::path(o.game_config).stem().string();
      examples::require_epsilon_for_agent(o.policy, o.epsilon);
      o.weights = examples::eval_weights(o.policy, o.weights, model, "dino");
      return eval<B>(o, static_cast<bool>(*play_cmd));
    });
  });
}
