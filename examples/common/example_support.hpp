#pragma once
// Pieces every example binary shares: the progress line, the episode log, the
// eval summary JSON and one-line error reporting.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/rl/trainer.hpp>

namespace qrl::examples {

// The run directory a --resume argument belongs to.
inline std::filesystem::path resume_run_dir(const std::string& resume) {
  std::filesystem::path p(resume);
  if (p.filename().empty()) p = p.parent_path();
  if (p.filename().string().rfind("step_", 0) == 0 || p.filename().string().rfind("debug_", 0) == 0)
    return p.parent_path().parent_path();
  return p;
}

inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

// An on/off flag (names like "--x" or "--x,!--no-x") whose default is the
// bound variable's value, recorded as its default string: --help shows it,
// and resolved_config() writes it, so a run's config.toml says whether a
// flag left alone was on (CLI11 2.1 gives flags no default string itself).
inline CLI::Option* add_switch(CLI::App* cmd, const std::string& names, bool& value, const std::string& description) {
  return cmd->add_flag(names, value, description)->default_str(value ? "true" : "false");
}

// play/eval --epsilon, worded alike for every game; `why` adds the game's
// reason to use it.
inline CLI::Option* add_eval_epsilon_option(CLI::App* cmd, double& epsilon, const std::string& why = "") {
  return cmd
      ->add_option("--epsilon", epsilon,
                   "The agent takes a uniform random action with this probability at each step (Nature DQN was "
                   "evaluated with 0.05" + why + "); 0 = greedy")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
}

// --epsilon only perturbs the agent: another policy given one is an error, not
// an option silently ignored.
inline void require_epsilon_for_agent(const std::string& policy, double epsilon) {
  require(epsilon == 0 || policy == "agent", "--epsilon ", epsilon, " perturbs the agent's steps; --policy ", policy,
          " takes none: drop --epsilon or use --policy agent");
}

// Whether the agent's next step is a random one. The stream is drawn only
// when --epsilon asks for it, so greedy episodes are what they were without it.
inline bool takes_random_step(Rng& rng, double epsilon) { return epsilon > 0 && rng.uniform() < epsilon; }

// One line per report: what a person watching training wants to see.
inline std::string progress_line(const rl::Progress& p, std::int64_t total_steps) {
  const double remaining = p.steps_per_second > 0 ? (total_steps - p.step) / p.steps_per_second : -1.0;
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "step %lld/%lld | %.0f steps/s | ETA %s | episodes %lld | mean score %.2f (max %.0f) | "
                "mean return %.2f | eps %.4f | loss %.4g | q %.3g | updates %lld",
                static_cast<long long>(p.step), static_cast<long long>(total_steps), p.steps_per_second,
                format_duration(remaining).c_str(), static_cast<long long>(p.episodes), p.mean_score, p.max_score,
                p.mean_return, p.epsilon, p.last_update.loss, p.last_update.q_mean,
                static_cast<long long>(p.updates));
  return buf;
}

// episodes.csv: one row per finished training episode.
class EpisodeLog {
 public:
  // `append`: continue an existing log (a resumed run) without a new header.
  explicit EpisodeLog(const std::filesystem::path& path, bool append = false)
      : out_(path, append ? std::ios::app : std::ios::trunc) {
    require(static_cast<bool>(out_), "cannot write ", path.string());
    if (!append) out_ << "episode,end_step,return,length,score,truncated,wall_seconds\n";
  }
  void write(const rl::EpisodeRecord& e) {
    out_ << e.index << ',' << e.end_step << ',' << e.episode_return << ',' << e.length << ',' << e.score << ','
         << (e.truncated ? 1 : 0) << ',' << e.wall_seconds << '\n';
    out_.flush();
  }

 private:
  std::ofstream out_;
};

struct EvalSummary {
  std::string policy;
  std::uint64_t first_seed = 0;
  std::vector<double> scores;
  std::vector<double> returns;

  double mean_score() const {
    double s = 0;
    for (double x : scores) s += x;
    return scores.empty() ? 0.0 : s / scores.size();
  }
  double max_score() const { return scores.empty() ? 0.0 : *std::max_element(scores.begin(), scores.end()); }

  std::string json() const {
    nlohmann::ordered_json j;
    j["episodes"] = scores.size();
    j["mean_score"] = mean_score();
    j["max_score"] = max_score();
    j["scores"] = scores;
    j["policy"] = policy;
    j["first_seed"] = first_seed;
    return j.dump();
  }

  // eval's output: the JSON line alone, or a line for people.
  void print(bool as_json) const {
    if (as_json)
      std::cout << json() << std::endl;
    else
      std::cout << "mean score " << mean_score() << ", max " << max_score() << " over " << scores.size()
                << " episodes\n";
  }
};

// Runs `body`, turning any qrl or std error into one line on stderr and exit
// code 1, and CLI11's parse errors into one line and its exit code.
template <class Body>
int run_main(const char* program, CLI::App& app, int argc, char** argv, Body&& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << program << ": error: " << e.what() << " (run '" << program << " --help' for usage)\n";
    return e.get_exit_code() ? e.get_exit_code() : 2;
  }
  try {
    return body();
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << '\n';
    return 1;
  }
}

// The weights shipped in the repository's models/ folder (model cards in
// docs/results.md): what play and eval use when no --weights is given.
// QRL_MODELS_DIR is set by examples/CMakeLists.txt to the source tree's
// models/; $QRL_MODELS_DIR overrides it (an installed or moved copy).
inline std::string shipped_weights_path(const std::string& model) {
  const char* from_env = std::getenv("QRL_MODELS_DIR");
#ifdef QRL_MODELS_DIR
  const std::string dir = from_env && *from_env ? from_env : QRL_MODELS_DIR;
#else
  const std::string dir = from_env && *from_env ? from_env : "models";
#endif
  return (std::filesystem::path(dir) / (model + ".safetensors")).string();
}

// --weights for play and eval: the agent plays the user's file, else the
// shipped one, with an error that says what to do when there is none; other
// policies load nothing, but a --weights they were given must exist.
inline std::string eval_weights(const std::string& policy, const std::string& given, const std::string& model,
                                const std::string& program) {
  if (!given.empty()) {
    require(std::filesystem::exists(given), given, ": no such file (check --weights)");
    return given;
  }
  if (policy != "agent") return given;
  const std::string shipped = shipped_weights_path(model);
  require(std::filesystem::exists(shipped), "no --weights given and no shipped weights at ", shipped,
          " (train an agent with '", program, " train' and pass its RUN_DIR/weights.safetensors, or use --policy "
          "random or noop)");
  std::cerr << program << ": using the shipped weights " << shipped << " (docs/results.md)\n";
  return shipped;
}

}  // namespace qrl::examples
