#pragma once
// Pieces every example binary shares: the progress line, the episode log, the
// eval summary JSON and one-line error reporting.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <qrl/backend/cpu_kernels.hpp>
#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/io/file.hpp>
#include <qrl/rl/trainer.hpp>

#include "config_file.hpp"

namespace qrl::examples {

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

// Whether the agent's next step is a random one. The sequence is drawn only
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

// A number in a CSV log as an ostream writes it by default (%g, 6 digits).
inline std::string csv_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// episodes.csv: one row per finished training episode, each written through
// at once (a failed write is an error, not a lost row).
class EpisodeLog {
 public:
  // `append`: continue an existing log (a resumed run) without a new header.
  explicit EpisodeLog(const std::filesystem::path& path, bool append = false) : out_(path, append) {
    if (!append) out_.write("episode,end_step,return,length,score,truncated,wall_seconds\n");
  }
  void write(const rl::EpisodeRecord& e) {
    out_.write(std::to_string(e.index) + ',' + std::to_string(e.end_step) + ',' + csv_number(e.episode_return) +
               ',' + std::to_string(e.length) + ',' + csv_number(e.score) + ',' + (e.truncated ? "1" : "0") + ',' +
               csv_number(e.wall_seconds) + '\n');
  }

 private:
  io::AppendFile out_;
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

// Exit statuses of the example programs (docs/runs.md, "Exit statuses").
inline constexpr int exit_error = 1;  // a run or file problem; the message says what to do
inline constexpr int exit_usage = 2;  // a bad flag or config file; nothing was started
// A run stopped by a signal exits 128 + its number (130 Ctrl-C, 143 SIGTERM,
// 129 SIGHUP), as a shell reports a process the signal killed, but only
// after its checkpoint is written.

// --steps 1e30 or 99999999999999999999 must not become some other number:
// CLI11 2.1 converts integers with strtoll, which clamps on overflow, and
// strtoull, which turns -1 into 18446744073709551615. Every integer option
// gets this check first: decimal digits, in the type's range.
inline void strict_integers(CLI::App& app) {
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_expected_min() == 0) continue;  // flags
    const std::string type = opt->get_type_name().substr(0, opt->get_type_name().find(':'));
    if (type != "INT" && type != "UINT") continue;
    const bool is_unsigned = type == "UINT";
    opt->check(CLI::Validator(
        [is_unsigned](std::string& text) -> std::string {
          const char* begin = text.data() + (!text.empty() && text[0] == '+');
          const char* end = text.data() + text.size();
          if (is_unsigned && !text.empty() && text[0] == '-')
            return "'" + text + "' is negative; give an integer from 0 to 18446744073709551615";
          std::from_chars_result r{};
          if (is_unsigned) {
            std::uint64_t v;
            r = std::from_chars(begin, end, v);
          } else {
            std::int64_t v;
            r = std::from_chars(begin, end, v);
          }
          const auto [stop, ec] = r;
          if (ec == std::errc::result_out_of_range)
            return "'" + text + "' is too large for this option (at most " +
                   (is_unsigned ? std::string("18446744073709551615") : std::string("9223372036854775807")) + ")";
          if (ec != std::errc() || stop != end || begin == end) return "'" + text + "' is not a whole number";
          return {};
        },
        "", "integer"));
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) strict_integers(*sub);
}

// Range checks with short messages (examples::positive prints its bound
// with 300 digits).
inline const CLI::Validator positive(
    [](std::string& text) -> std::string {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0') return "'" + text + "' is not a number";
      return v > 0 ? std::string() : "'" + text + "' must be greater than 0";
    },
    "POSITIVE", "positive");
inline const CLI::Validator non_negative(
    [](std::string& text) -> std::string {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0') return "'" + text + "' is not a number";
      return v >= 0 ? std::string() : "'" + text + "' must be 0 or more";
    },
    "NONNEGATIVE", "non_negative");

// Warns when the CPU backend's kernels are narrower than the CPU, then runs
// `body`, turning any qrl or std error into one line on stderr and exit status 1, and
// a bad command line or config file into one line and status 2.
template <class Body>
int run_main(const char* program, CLI::App& app, int argc, char** argv, Body&& body) {
  check_cpu_kernels();
  strict_integers(app);
  const auto usage_error = [&](const std::string& what) {
    std::cerr << program << ": error: " << what << " (run '" << program << " --help' for usage)\n";
    return exit_usage;
  };
  try {
    // Before CLI11 reads the file: it would skip unknown keys and garbage.
    const ConfigChoice config = config_file_in_args(argc, argv);
    if (!config.path.empty()) check_config_file(app, config.path);
  } catch (const Error& e) {
    return usage_error(e.what());
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  }
  // A training run's header starts with the kernels it runs.
  for (const CLI::App* sub : app.get_subcommands())
    if (sub->get_name() == "train") std::cout << cpu_kernels().line() << std::endl;
  try {
    return body();
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << '\n';
    return exit_error;
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
