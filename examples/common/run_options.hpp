#pragma once
// The flags every example's `train` shares (run directory, resume,
// checkpoint and progress intervals, recordings), the --config option, and
// the resolved options written to RUN_DIR/config.toml, so that a resumed run
// reads back exactly the settings it was started with.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "config_file.hpp"
#include "example_support.hpp"

namespace qrl::examples {

struct RunOptions {
  std::string run_dir = "runs/run";
  std::string resume;                      // RUN_DIR or a checkpoint directory
  std::int64_t steps = 100000;
  std::int64_t progress_interval = 10000;
  std::int64_t checkpoint_interval = 50000;
  int keep_checkpoints = 3;
  bool keep_weights = false;               // also keep every checkpoint's weights in RUN_DIR/weights/
  std::int64_t stop_after = 0;             // stop (with a checkpoint) after this many steps of this invocation
  std::string record = "cubic";            // GIF trigger: cubic | every:N | off
  bool force_memory = false;
};

inline void add_run_options(CLI::App* cmd, RunOptions& o) {
  cmd->add_option("--steps", o.steps, "Environment steps to train for (in total, across resumes)")
      ->check(examples::positive)->capture_default_str();
  cmd->add_option("--run-dir", o.run_dir, "Directory for checkpoints, logs, plots and videos")->capture_default_str();
  cmd->add_option("--resume", o.resume,
                  "Continue a run exactly where it stopped: RUN_DIR (newest checkpoint, its config.toml) or "
                  "RUN_DIR/checkpoints/step_N")
      ->configurable(false);
  cmd->add_option("--progress-interval", o.progress_interval, "Steps between progress lines and progress.csv rows")
      ->check(examples::positive)->capture_default_str();
  cmd->add_option("--checkpoint-interval,--save-interval", o.checkpoint_interval,
                  "Steps between checkpoints (weights, optimizer, replay memory, RNG states); plots refresh with them")
      ->check(examples::positive)->capture_default_str();
  cmd->add_option("--keep-checkpoints", o.keep_checkpoints, "Newest checkpoints kept (0 = all)")
      ->check(examples::non_negative)->capture_default_str();
  add_switch(cmd, "--keep-weights", o.keep_weights,
                "Also keep the weights of every checkpoint as RUN_DIR/weights/step_N.safetensors, never pruned, to "
                "pick the best snapshot on validation seeds later (DQN's snapshots differ a lot)");
  cmd->add_option("--stop-after", o.stop_after,
                  "Stop with a checkpoint after this many steps of this invocation (0 = run to --steps); "
                  "continue with --resume")
      ->check(examples::non_negative)->capture_default_str()->configurable(false);
  cmd->add_option("--record", o.record,
                  "GIFs of training episodes in RUN_DIR/videos: 'cubic' (episodes 0,1,8,27,...,1000,2000,...), "
                  "'every:N' or 'off'")
      ->capture_default_str();
  add_switch(cmd, "--force-memory", o.force_memory, "Allocate the replay memory even if it exceeds available memory")
      ->configurable(false);
}

// --config FILE (TOML, as CLI11 reads it). With --resume RUN_DIR and no
// --config, RUN_DIR/config.toml is read, so a resumed run keeps its settings;
// flags given on the command line still win.
inline void add_config_option(CLI::App& app, int argc, char** argv) {
  const ConfigChoice config = config_file_in_args(argc, argv);
  // Subcommands (created after this) pass --config up to the app, so
  // "flappy train --config run.toml" works as well as "flappy --config run.toml train".
  app.fallthrough();
  app.set_config("--config", config.explicit_config ? "" : config.path,
                 "Read options from a TOML file (keys as the long flags, under [train]/[eval]/[play]); the "
                 "resolved options of a run are written to RUN_DIR/config.toml");
}

// The options of one subcommand as TOML ("section.key=value" lines, as
// CLI11 reads them back with --config): the values in effect, given or
// default. Written by hand because CLI11 2.1's config_to_str misreports
// negatable flags (--double-dqn,!--no-double-dqn) left at their default.
inline std::string resolved_config(const CLI::App& cmd) {
  std::string out = "# resolved options of '" + cmd.get_name() + "'; rerun with --config this-file\n";
  for (const CLI::Option* opt : cmd.get_options()) {
    if (!opt->get_configurable() || opt->get_lnames().empty() || opt->get_lnames()[0] == "help") continue;
    std::string value;
    if (opt->get_expected_min() == 0) {  // a flag: its default string is set by add_switch()
      value = opt->count() ? (opt->as<bool>() ? "true" : "false") : opt->get_default_str();
      if (value.empty()) continue;
    } else if (opt->count()) {
      value = opt->as<std::string>();
    } else {
      value = opt->get_default_str();
      if (value.empty()) continue;  // no default to record: a rerun gets the same built-in default
    }
    const bool number = !value.empty() && value.find_first_not_of("0123456789.-+eE") == std::string::npos &&
                        value.find_first_of("0123456789") != std::string::npos;
    if (!(number || value == "true" || value == "false")) {
      std::string quoted = "\"";
      for (char c : value) quoted += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
      value = quoted + "\"";
    }
    out += cmd.get_name() + "." + opt->get_lnames()[0] + "=" + value + "\n";
  }
  return out;
}

}  // namespace qrl::examples
