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
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <qrl/env/vector_env.hpp>
#include <qrl/envs/dino.hpp>
#include <qrl/nn/serialize.hpp>
#include <qrl/qrl.hpp>

#include "../common/evaluation.hpp"
#include "../common/program.hpp"
#include "../common/train.hpp"

namespace fs = std::filesystem;
using namespace qrl;

namespace {

struct Options : examples::CommonOptions {
  int frame_size = 0;  // 0: the game's own (Dino: 80)
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
  int browsers = 1;
  // play / eval
  std::int64_t max_steps = 5000;
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

// --browsers N > 1: N browsers (or N tabs of the --cdp browser). The games
// live in the browsers and have no save_state(): a resume restores the
// learner exactly and restarts every game (docs/runs.md).
template <Backend B>
int train(const Options& o, const examples::RunOptions& run, const std::string& config_toml) {
  // A bad --resume fails before a browser starts.
  if (!run.resume.empty()) examples::resolve_resume(run.resume);
  const envs::CanvasGameConfig game = game_config(o, 0);
  const examples::LearnerSpec spec{.frame = {game.observation_height, game.observation_width, 1}, .stack = o.stack,
                                   .actions = static_cast<int>(game.actions.size()), .envs = o.browsers,
                                   .seed = o.seed, .weights = o.weights, .config = o.dqn.dqn_config(o.seed)};
  examples::Learner<B> learner(spec, o.dqn, run, [&] { return make_network<B>(o, game); });
  auto report_restarts = [&](auto& trainer) {
    int restarts = 0;
    for (int i = 0; i < o.browsers; ++i) restarts += examples::unrecorded(trainer.envs().env(i)).browser_restarts();
    if (restarts > 0)
      std::cout << "a browser was relaunched " << restarts
                << " time(s); those episodes are marked truncated in episodes.csv\n";
  };
  return examples::train_on_envs(
      learner, o.browsers, [&](int) { return envs::CanvasGame(game, browser_config(o)); }, run, config_toml,
      kCanvasFramesPerSecond, game.frame_skip, examples::NoHook{}, report_restarts);
}

// Plays seeded episodes (examples/common/evaluation.hpp) with the agent,
// random or no-op actions, --browsers at once. Each episode reloads the page,
// so which browser plays it does not matter.
template <Backend B>
examples::EvalSummary evaluate(const Options& o, bool verbose) {
  Context<B> ctx;
  const auto game = game_config(o, o.max_steps);
  examples::EvalPolicy<B, envs::CanvasGame> policy{.name = o.policy, .epsilon = o.epsilon};
  std::unique_ptr<rl::Dqn<B>> agent;
  if (o.policy == "agent") {
    agent = examples::load_agent(ctx, make_network<B>(o, game), o.weights,
                                 Shape{o.stack, game.observation_height, game.observation_width},
                                 static_cast<int>(game.actions.size()), o.dqn.dqn_config(o.seed), "dino",
                                 "--policy random or noop");
    policy.agent = agent.get();
  }
  examples::EvalSettings<envs::CanvasGame> settings{
      .episodes = o.episodes, .seed = o.seed, .envs = o.browsers, .stack = o.stack, .verbose = verbose,
      .gif = o.gif, .game_fps = kCanvasFramesPerSecond, .frame_skip = game.frame_skip, .program = "dino"};
  settings.failures = [](const envs::CanvasGame& env) { return env.browser_restarts(); };
  return examples::evaluate_episodes(settings, [&](int) { return make_env(o, o.max_steps); }, policy);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  examples::RunOptions run;
  run.run_dir = "runs/dino";
  run.steps = 200000;
  run.progress_interval = 2000;
  run.checkpoint_interval = 10000;
  examples::ExampleProgram program(
      "dino", "qrl Dino: a DQN that learns Chrome Dino (or a canvas game from --game-config) from pixels", argc, argv, o,
      o.dqn, run);
  const examples::EvalHelp help{
      .policies = {"agent", "random", "noop"},
      .policy = "Who plays: the trained agent (greedy unless --epsilon), uniform random actions, or always action 0",
      .gif = "Also record the episodes browser 0 plays (the canvas, about 15 pictures a second, up to 5000) into this GIF"};
  const auto commands = program.add_subcommands(help, [&](CLI::App* cmd) {
    cmd->add_option("--frame-size", o.frame_size, "Observation size in pixels (square); default: the game's (Dino: 80)")->check(CLI::IsMember({80, 84}));
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
  });
  commands.train->add_option("--browsers", o.browsers, "Browsers stepped in parallel, one thread each (with --cdp: tabs of that browser)")->check(CLI::Range(1, 64))->capture_default_str();
  for (CLI::App* cmd : {commands.eval, commands.play}) {
    cmd->add_option("--browsers", o.browsers, "Browsers playing episodes at once, one thread each (the scores do not depend on it)")->check(CLI::Range(1, 64))->capture_default_str();
    cmd->add_option("--max-steps", o.max_steps, "End (truncate) an episode after this many steps; 0 = never")->check(examples::non_negative)->capture_default_str();
  }
  // Shipped weights are named after the game: models/dino, or the --game-config file's name.
  return program.run(
      [&] { return o.game_config.empty() ? std::string("dino") : fs::path(o.game_config).stem().string(); },
      [&](auto tag, const std::string& config_toml) { return train<decltype(tag)>(o, run, config_toml); },
      [&](auto tag, bool verbose) { return evaluate<decltype(tag)>(o, verbose); });
}
