#pragma once
// The DQN hyperparameters every example's `train` takes: one struct, one set
// of flags, one translation into rl::DqnConfig and the epsilon schedule. Each
// example sets its own defaults (the tutorial's for Flappy Bird and Dino,
// CleanRL's for Atari) before the flags are added.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include <qrl/kernels/op_args.hpp>
#include <qrl/nn/models.hpp>
#include <qrl/rl/dqn.hpp>
#include <qrl/rl/epsilon_schedule.hpp>
#include <qrl/rl/trainer.hpp>

#include "example_support.hpp"

namespace qrl::examples {

struct DqnOptions {
  // The preset the defaults below came from (apply_algorithm): dqn, double
  // or rainbow. Flags given beside it still win.
  std::string algorithm = "double";
  // The network's head (train, play and eval must agree): C51's
  // distributional head, the dueling streams, noisy linear layers.
  bool c51 = false;
  int atoms = 51;
  float v_min = -10.0f, v_max = 10.0f;
  bool dueling = false;
  bool noisy = false;
  float adam_eps = 1e-8f;
  std::int64_t buffer_size = 100000;
  int batch_size = 32;
  float learning_rate = 1e-4f;
  float gamma = 0.99f;
  std::int64_t learning_starts = 10000;
  int train_frequency = 4;
  int gradient_steps = 1;
  std::int64_t target_update = 2000;
  float tau = 1.0f;
  int n_step = 1;
  bool prioritized = false;
  double priority_alpha = 0.5;
  double priority_beta = 0.4;
  bool double_dqn = true;
  std::string loss = "huber";
  float max_grad_norm = 10.0f;
  double epsilon_start = 0.1;
  double epsilon_end = 0.001;
  double exploration_fraction = 0.5;

  // `seed`: the run's --seed, from which the noisy layers' stream derives.
  rl::DqnConfig dqn_config(std::uint64_t seed) const {
    rl::DqnConfig config;
    config.gamma = gamma;
    config.batch_size = batch_size;
    config.double_dqn = double_dqn;
    config.loss = loss == "mse" ? LossKind::mse : LossKind::huber;
    config.adam.learning_rate = learning_rate;
    config.adam.eps = adam_eps;
    config.adam.max_grad_norm = max_grad_norm;
    if (c51) config.distributional = CategoricalSupport{atoms, v_min, v_max};
    config.noise_seed = Rng::derive(seed, SeedPurpose::layer_noise);
    return config;
  }

  // The network's head for `actions` actions.
  nn::QHeadShape head(int actions) const { return {actions, c51 ? atoms : 1, dueling, noisy}; }

  rl::UpdateSchedule schedule() const {
    rl::UpdateSchedule s;
    s.learning_starts = learning_starts;
    s.train_frequency = train_frequency;
    s.gradient_steps = gradient_steps;
    s.target_update_interval = target_update;
    s.tau = tau;
    return s;
  }

  // The replay memory for `rings` envs (one ring each) of `frame`-sized
  // frames; a prioritized one anneals beta to 1 over `total_steps`.
  rl::ReplayConfig replay_config(env::FrameShape frame, int stack, std::int64_t total_steps, int rings = 1) const {
    rl::ReplayConfig c;
    c.capacity = buffer_size;
    c.frame = frame;
    c.stack = stack;
    c.rings = rings;
    c.n_step = n_step;
    if (prioritized) c.prioritized = rl::PrioritizedConfig{priority_alpha, priority_beta, 1.0, total_steps};
    return c;
  }

  rl::EpsilonSchedule epsilon_schedule(std::int64_t total_steps) const {
    return rl::EpsilonSchedule::linear_fraction(epsilon_start, epsilon_end, exploration_fraction, total_steps);
  }
};

// The presets of --algorithm, by the names users know:
//   dqn      Nature DQN's target (the max of the target network)
//   double   Double DQN (van Hasselt et al. 2016)
//   rainbow  Double + dueling + 3-step returns + prioritized replay (alpha
//            0.5, beta 0.4 -> 1) + C51 (51 atoms on [-10, 10]) + noisy nets
//            (sigma0 0.5, no epsilon-greedy) with Adam eps 1.5e-4: Hessel et
//            al. 2018's components and settings; the learning rate, replay
//            size, learning start and target update interval stay the
//            example's, scaled to its budget (docs/algorithms.md).
// A preset sets defaults; flags given beside it still win.
inline void apply_algorithm(const std::string& name, DqnOptions& o) {
  require(name == "dqn" || name == "double" || name == "rainbow", "--algorithm '", name,
          "': use dqn, double or rainbow");
  o.algorithm = name;
  o.double_dqn = name != "dqn";
  const bool rainbow = name == "rainbow";
  o.dueling = o.c51 = o.noisy = o.prioritized = rainbow;
  o.n_step = rainbow ? 3 : 1;
  o.adam_eps = rainbow ? 1.5e-4f : 1e-8f;
  o.priority_alpha = 0.5;
  o.priority_beta = 0.4;
  o.atoms = 51;
  o.v_min = -10.0f;
  o.v_max = 10.0f;
  if (rainbow) o.epsilon_start = o.epsilon_end = 0.0;  // noisy nets explore
}

// The preset to apply before the flags are declared (so that their defaults,
// and --help, show it and flags given beside it win): --algorithm NAME (or
// --algorithm=NAME) on the command line, else an `algorithm = "NAME"` line
// of the config file the run reads (--config FILE, or RUN_DIR/config.toml
// on --resume RUN_DIR), else the example's default. check_algorithm() then
// refuses a preset that reached the options any other way.
inline std::string algorithm_to_apply(int argc, char** argv, const std::string& example_default) {
  std::string name = example_default;
  const ConfigChoice config = config_file_in_args(argc, argv);
  if (!config.path.empty())
    if (const auto from_file = config_string(config.path, "algorithm")) name = *from_file;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--algorithm" && i + 1 < argc) name = argv[i + 1];
    if (a.rfind("--algorithm=", 0) == 0) name = a.substr(12);
  }
  return name;
}
inline void check_algorithm(const DqnOptions& o, const std::string& applied) {
  require(o.algorithm == applied, "--algorithm ", o.algorithm, " was read after the presets were applied (",
          applied, "); give it on the command line");
}

// The head's flags, for train, play and eval alike (the weights only load
// into the network they were trained with).
inline void add_head_options(CLI::App* cmd, DqnOptions& o) {
  cmd->add_option("--algorithm", o.algorithm, "Preset: dqn (Nature DQN's target), double (Double DQN) or rainbow (Double + dueling + 3-step + prioritized + C51 + noisy nets); its defaults show below, flags given beside it win")->check(CLI::IsMember({"dqn", "double", "rainbow"}))->capture_default_str();
  add_switch(cmd, "--c51,!--no-c51", o.c51, "C51's distributional head: --atoms returns on [--v-min, --v-max] per action, cross-entropy loss (Bellemare et al. 2017)");
  cmd->add_option("--atoms", o.atoms, "C51: atoms of the return distribution")->check(CLI::Range(2, 256))->capture_default_str();
  cmd->add_option("--v-min", o.v_min, "C51: lowest return of the support")->capture_default_str();
  cmd->add_option("--v-max", o.v_max, "C51: highest return of the support")->capture_default_str();
  add_switch(cmd, "--dueling,!--no-dueling", o.dueling, "Dueling head: separate value and advantage streams (Wang et al. 2016)");
  add_switch(cmd, "--noisy,!--no-noisy", o.noisy, "Noisy linear layers in the head (Fortunato et al. 2018): exploration by learned noise; set --epsilon-start/--epsilon-end 0");
}

inline void add_dqn_options(CLI::App* cmd, DqnOptions& o) {
  cmd->add_option("--adam-eps", o.adam_eps, "Adam epsilon (torch's 1e-8; Rainbow's 1.5e-4)")->check(examples::positive)->capture_default_str();
  cmd->add_option("--buffer-size", o.buffer_size, "Replay memory capacity in frames (its size in bytes is printed at start)")->check(CLI::Range(int64_t{64}, int64_t{100000000}))->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "Minibatch size")->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--lr", o.learning_rate, "Adam learning rate")->check(examples::positive)->capture_default_str();
  cmd->add_option("--gamma", o.gamma, "Discount factor")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--learning-starts", o.learning_starts, "Steps before the first update")->check(examples::non_negative)->capture_default_str();
  cmd->add_option("--train-frequency", o.train_frequency, "Env steps between rounds of --gradient-steps updates")->check(examples::positive)->capture_default_str();
  cmd->add_option("--gradient-steps", o.gradient_steps, "Gradient updates per round (the replay ratio is --gradient-steps / --train-frequency updates per env step)")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--target-update", o.target_update, "Env steps between target-network updates")->check(examples::positive)->capture_default_str();
  cmd->add_option("--tau", o.tau, "Target-network update: 1 copies the online network, below 1 is Polyak averaging target = tau*online + (1-tau)*target")->check(CLI::Range(1e-6, 1.0))->capture_default_str();
  add_switch(cmd, "--prioritized,!--no-prioritized", o.prioritized,
             "Prioritized replay (Schaul et al. 2016, proportional): transitions drawn by |TD error|^alpha, "
             "importance weights with beta annealed to 1 over --steps");
  cmd->add_option("--priority-alpha", o.priority_alpha, "Prioritized replay: priority exponent alpha (0 = uniform)")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--priority-beta", o.priority_beta, "Prioritized replay: importance-sampling exponent beta at the start")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--n-step", o.n_step, "Reward horizon of the TD target (n-step returns; 1 = one-step DQN); never across an episode end")->check(CLI::Range(1, 100))->capture_default_str();
  add_switch(cmd, "--double-dqn,!--no-double-dqn", o.double_dqn,
             "Double DQN targets; --no-double-dqn: the original DQN target, the max of the target network's Q-values");
  cmd->add_option("--loss", o.loss, "TD loss")->check(CLI::IsMember({"huber", "mse"}))->capture_default_str();
  cmd->add_option("--max-grad-norm", o.max_grad_norm, "Global gradient-norm clip (0 = off)")->check(examples::non_negative)->capture_default_str();
  cmd->add_option("--epsilon-start", o.epsilon_start, "Initial exploration rate")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--epsilon-end", o.epsilon_end, "Final exploration rate")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--exploration-fraction", o.exploration_fraction, "Fraction of --steps over which epsilon decays linearly")->check(CLI::Range(0.0, 1.0))->capture_default_str();
}

}  // namespace qrl::examples
