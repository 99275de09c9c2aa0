#pragma once
// The shape of every example program: the subcommands train, eval, play and
// plot with the options they share, the example's own options added to each,
// and one dispatch to the chosen backend.
//
//   struct Options : examples::CommonOptions { ...the game's... };
//   examples::ExampleProgram program("flappy", "qrl Flappy Bird: ...", argc, argv, o, o.dqn, run);
//   auto commands = program.add_subcommands(help, [&](CLI::App* cmd) { ...the game's options... });
//   return program.run(model, train, evaluate);
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "backend_choice.hpp"
#include "dqn_options.hpp"
#include "example_support.hpp"
#include "training_run.hpp"

namespace qrl::examples {

// The options of every example beside its game's, the DQN's and the run's.
struct CommonOptions {
  std::string backend = "cpu";
  std::uint64_t seed = 1;
  int stack = 4;
  std::string weights;  // train: start from these; play and eval: the agent's (default: the shipped ones)
  int episodes = 10;
  std::string policy = "agent";
  double epsilon = 0.0;
  bool json = false;
  std::string gif;
  std::string plot_dir;
};

// What an example says of its own play and eval.
struct EvalHelp {
  std::vector<std::string> policies{"agent", "random"};
  std::string policy = {};        // --policy's help
  std::string epsilon_note = {};  // added to --epsilon's
  std::string gif = {};           // --gif's
};

struct Subcommands {
  CLI::App* train = nullptr;
  CLI::App* eval = nullptr;
  CLI::App* play = nullptr;
  CLI::App* plot = nullptr;
};

class ExampleProgram {
 public:
  // Reads --config and applies the --algorithm preset first, so that --help
  // shows the defaults in effect.
  ExampleProgram(std::string name, const std::string& description, int argc, char** argv, CommonOptions& common,
                 DqnOptions& dqn, RunOptions& run)
      : app{description}, name_(std::move(name)), argc_(argc), argv_(argv), common_(common), dqn_(dqn), run_(run) {
    app.require_subcommand(1);
    add_config_option(app, argc, argv);
    algorithm_ = algorithm_to_apply(argc, argv, dqn.algorithm);
    apply_algorithm(algorithm_, dqn);
  }

  // add_game(cmd) adds the example's own options to each subcommand that
  // plays; the returned subcommands take the ones that belong to one.
  template <class AddGame>
  Subcommands add_subcommands(const EvalHelp& help, AddGame add_game) {
    auto add_common = [&](CLI::App* cmd) {
      add_backend_option(cmd, common_.backend);
      add_head_options(cmd, dqn_);
      cmd->add_option("--seed", common_.seed, "Seed of everything random (episodes, exploration, sampling, init)")
          ->capture_default_str();
      cmd->add_option("--stack", common_.stack, "Frames stacked into one state")
          ->check(CLI::Range(1, 16))
          ->capture_default_str();
      add_game(cmd);
    };
    commands_.train = app.add_subcommand(
        "train", "Train a DQN agent; checkpoints, weights, CSV and TensorBoard logs, plots and GIFs go to --run-dir");
    add_common(commands_.train);
    add_run_options(commands_.train, run_);
    commands_.train->add_option("--weights", common_.weights, "Start from these weights (safetensors)")
        ->check(CLI::ExistingFile);
    add_dqn_options(commands_.train, dqn_);

    auto add_eval_options = [&](CLI::App* cmd) {
      add_common(cmd);
      cmd->add_option("--weights", common_.weights,
                      "Agent weights (safetensors) saved by '" + name_ +
                          " train'; default: the shipped ones in models/ (docs/results.md)");
      cmd->add_option("--episodes", common_.episodes, "Episodes to play; episode k uses seed --seed + k")
          ->check(positive)
          ->capture_default_str();
      cmd->add_option("--policy", common_.policy, help.policy)
          ->check(CLI::IsMember(help.policies))
          ->capture_default_str();
      add_eval_epsilon_option(cmd, common_.epsilon, help.epsilon_note);
    };
    commands_.eval = app.add_subcommand("eval", "Evaluate a policy on seeded episodes");
    add_eval_options(commands_.eval);
    add_switch(commands_.eval, "--json", common_.json,
               "Print only a JSON summary line {episodes, mean_score, max_score, scores}");
    commands_.play = app.add_subcommand("play", "Play episodes and print each one's score");
    add_eval_options(commands_.play);
    commands_.play->add_option("--gif", common_.gif, help.gif);
    commands_.plot = app.add_subcommand("plot", "Redraw RUN_DIR/scores.svg and RUN_DIR/q_values.svg from its logs");
    commands_.plot->add_option("run_dir", common_.plot_dir, "Run directory of '" + name_ + " train'")
        ->required()
        ->check(CLI::ExistingDirectory);
    return commands_;
  }

  // Parses the command line and runs the chosen subcommand on the chosen
  // backend: train(tag, config_toml) -> exit status, or
  // evaluate(tag, verbose) -> EvalSummary, whose agent plays the shipped
  // weights models/<model()>.safetensors unless --weights names others.
  template <class Train, class Evaluate>
  int run(const std::function<std::string()>& model, Train train, Evaluate evaluate) {
    return run_main(name_.c_str(), app, argc_, argv_, [&] {
      check_algorithm(dqn_, algorithm_);
      return with_backend(common_.backend, [&](auto tag) {
        if (*commands_.train) return train(tag, resolved_config(*commands_.train));
        if (*commands_.plot) return plot_command(common_.plot_dir);
        require_epsilon_for_agent(common_.policy, common_.epsilon);
        common_.weights = eval_weights(common_.policy, common_.weights, model(), name_);
        const EvalSummary summary = evaluate(tag, *commands_.play || !common_.json);
        summary.print(common_.json);
        return 0;
      });
    });
  }

  CLI::App app;

 private:
  std::string name_;
  int argc_;
  char** argv_;
  CommonOptions& common_;
  DqnOptions& dqn_;
  RunOptions& run_;
  std::string algorithm_;
  Subcommands commands_;
};

}  // namespace qrl::examples
