#pragma once
// The training side every example shares: run-directory flags, config files,
// resume, checkpoints, logs (CSV, TensorBoard), plots, GIF recordings, Ctrl-C
// and non-finite-loss handling. An example builds its env, network, agent,
// replay memory and trainer, then hands the trainer to run_training().
//
//   examples::RunOptions run;                       // flags shared by all examples
//   examples::add_run_options(train_cmd, run);      // --run-dir --resume --checkpoint-interval ...
//   examples::add_config_option(app, argc, argv);   // --config run.toml (+ RUN_DIR/config.toml on --resume)
//   ...
//   return examples::run_training(ctx, trainer, run, examples::resolved_config(*train_cmd));
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <qrl/log/record_video.hpp>
#include <qrl/log/run_charts.hpp>
#include <qrl/log/tensorboard.hpp>
#include <qrl/rl/checkpoint.hpp>

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

// The newest checkpoint of RUN_DIR, or the checkpoint directory itself.
inline std::filesystem::path resolve_resume(const std::string& resume) {
  const std::filesystem::path p(resume);
  require(std::filesystem::is_directory(p), resume, ": no such run or checkpoint directory (check --resume)");
  if (std::filesystem::exists(p / "COMPLETE") || std::filesystem::exists(p / "state.json")) return p;
  const auto latest = rl::latest_checkpoint(p / "checkpoints");
  if (!latest) {
    // What an interrupted first save left is of no use to anyone.
    const int stale = rl::remove_stale_checkpoint_temporaries(p / "checkpoints");
    fail(resume, ": no checkpoints in ", (p / "checkpoints").string(),
         " (was the run stopped before its first checkpoint?)",
         stale ? "; removed " + std::to_string(stale) + " unfinished one(s) an interrupted save left" : std::string());
  }
  return *latest;
}

// MemAvailable from /proc/meminfo, in bytes; 0 when unknown.
inline std::uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

// Refuses a replay memory that would not fit, before allocating it.
inline void check_replay_fits(std::uint64_t bytes, bool force) {
  const auto available = available_memory_bytes();
  std::cout << "replay memory: " << bytes / 1e6 << " MB";
  if (available) std::cout << " (" << available / 1e6 << " MB available)";
  std::cout << '\n';
  if (force || available == 0) return;
  require(bytes <= available / 10 * 9, "the replay memory needs ", bytes / 1e6, " MB but only ", available / 1e6,
          " MB are available: lower --buffer-size, or pass --force-memory to allocate it anyway");
}

// Keeps only the rows of a CSV whose first column is <= max_value: after a
// resume, the rows logged past the checkpoint are replaced by the rerun's.
inline void truncate_csv_after(const std::filesystem::path& path, int column, double max_value) {
  if (!std::filesystem::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  bool header = true;
  while (std::getline(in, line)) {
    if (!header) {
      std::size_t start = 0;
      for (int c = 0; c < column && start != std::string::npos; ++c) {
        start = line.find(',', start);
        if (start != std::string::npos) ++start;
      }
      if (start == std::string::npos || std::atof(line.c_str() + start) > max_value) continue;
    }
    header = false;
    kept += line + '\n';
  }
  io::write_file_atomically(path, kept);
}

namespace detail {
// Set by SIGINT, SIGTERM and SIGHUP: the run saves a checkpoint after the
// current step and exits 128 + the signal. Schedulers (Slurm, Kubernetes,
// systemd) stop jobs with SIGTERM, a closed terminal sends SIGHUP.
inline std::atomic<bool> interrupted{false};
inline std::atomic<int> stop_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the signal flags must be async-signal-safe");
inline constexpr int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};

inline void on_stop_signal(int sig) {
  if (interrupted) {
    static const char msg[] = "\nsignalled twice: exiting without a checkpoint\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    std::_Exit(128 + sig);
  }
  stop_signal = sig;
  interrupted = true;
  static const char msg_int[] = "\ninterrupted: saving a checkpoint after this step (Ctrl-C again to exit at once)\n";
  static const char msg_other[] = "\nstop signal: saving a checkpoint after this step (signal again to exit at once)\n";
  [[maybe_unused]] auto n = sig == SIGINT ? ::write(2, msg_int, sizeof msg_int - 1)
                                          : ::write(2, msg_other, sizeof msg_other - 1);
}

inline const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT (Ctrl-C)";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
  }
}

// Installs on_stop_signal for the stop signals while it lives.
class StopSignals {
 public:
  StopSignals() {
    interrupted = false;
    stop_signal = 0;
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // a write or a CDP wait in progress goes on
    for (std::size_t i = 0; i < std::size(stop_signals); ++i) ::sigaction(stop_signals[i], &action, &previous_[i]);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  ~StopSignals() {
    for (std::size_t i = 0; i < std::size(stop_signals); ++i) ::sigaction(stop_signals[i], &previous_[i], nullptr);
  }

 private:
  struct sigaction previous_[std::size(stop_signals)] {};
};
}  // namespace detail

inline std::function<bool(std::int64_t)> video_trigger(const std::string& spec) {
  if (spec == "off") return {};
  if (spec == "cubic") return log::capped_cubic_video_schedule;
  if (spec.rfind("every:", 0) == 0) {
    const long long n = std::atoll(spec.c_str() + 6);
    require(n > 0, "--record every:N needs N > 0, got '", spec, "'");
    return [n](std::int64_t e) { return e % n == 0; };
  }
  fail("--record '", spec, "': use cubic, every:N or off");
}

// Runs (or resumes) training to o.steps with checkpoints, logs and plots in
// o.run_dir. `config_toml` is the resolved configuration (written to
// RUN_DIR/config.toml and into each checkpoint).
// An env without save_state() (Dino: the game lives in a browser) resumes
// inexactly: see rl::load_checkpoint and docs/runs.md.
template <Backend B, env::Environment E>
int run_training(Context<B>& ctx, rl::Trainer<B, E>& trainer, const RunOptions& o, const std::string& config_toml) {
  namespace fs = std::filesystem;
  // A resumed run stays in its own directory, wherever it was moved to.
  const fs::path run_dir = o.resume.empty() ? fs::path(o.run_dir) : resume_run_dir(o.resume);
  const fs::path checkpoints = run_dir / "checkpoints";
  // Before anything is created: a mistyped --resume must not leave an empty
  // run directory behind.
  const fs::path resume_from = o.resume.empty() ? fs::path() : resolve_resume(o.resume);
  fs::create_directories(run_dir);
  const nlohmann::json run_config{{"toml", config_toml}};

  bool resumed = false;
  std::vector<rl::EpisodeRecord> interrupted_episodes;
  if (!o.resume.empty()) {
    const fs::path& ck = resume_from;
    const nlohmann::json state = rl::load_checkpoint(ck, trainer, ctx);
    resumed = true;
    std::cout << "resumed from " << ck.string() << " at step " << trainer.step() << " (" << trainer.episodes()
              << " episodes, epsilon " << state.at("epsilon").at("value_at_step").get<double>() << ")" << std::endl;
    if (state.contains("interrupted_episodes"))
      for (const auto& e : state["interrupted_episodes"]) {
        const auto& record = interrupted_episodes.emplace_back(rl::detail::episode_from_json(e, ck.string()));
        std::cout << "this environment cannot restore a game in progress: episode " << record.index << " (env "
                  << record.env << ") ends here as truncated after " << record.length
                  << " steps, and a fresh one begins (docs/runs.md)" << std::endl;
      }
    const double step = static_cast<double>(trainer.step());
    // An interrupted episode ends at `step` and is rewritten below; dropping
    // such a row too keeps a second resume from the same checkpoint from
    // listing it twice (no other episode can end at the step of a save that
    // interrupted one).
    truncate_csv_after(run_dir / "episodes.csv", 1, interrupted_episodes.empty() ? step : step - 0.5);
    truncate_csv_after(run_dir / "progress.csv", 0, step);
    truncate_csv_after(run_dir / "q_values.csv", 0, step);
  }
  if (!resumed && !rl::list_checkpoints(checkpoints).empty()) {
    // A fresh run must not mix its checkpoints with an earlier run's (resume
    // would pick whichever step is highest). Keep one generation aside.
    const fs::path old = run_dir / "checkpoints.old";
    fs::remove_all(old);
    fs::rename(checkpoints, old);
    std::cout << "a new run in " << run_dir.string() << ": moved the earlier run's checkpoints to " << old.string()
              << " (use --resume " << run_dir.string() << " to continue a run instead)" << std::endl;
  }
  if (const int stale = rl::remove_stale_checkpoint_temporaries(checkpoints))
    std::cout << "removed " << stale << " unfinished checkpoint(s) left by an interrupted save" << std::endl;
  io::write_file_atomically(run_dir / "config.toml", config_toml);

  const bool append = resumed && fs::exists(run_dir / "episodes.csv");
  EpisodeLog episodes(run_dir / "episodes.csv", append);
  const bool progress_exists = resumed && fs::exists(run_dir / "progress.csv");
  io::AppendFile progress_csv(run_dir / "progress.csv", progress_exists);
  if (!progress_exists)
    progress_csv.write("time/total_timesteps,time/fps,time/episodes,time/time_elapsed,rollout/ep_rew_mean,"
                       "rollout/ep_score_mean,rollout/ep_score_max,rollout/exploration_rate,train/loss,"
                       "train/q_values,train/grad_norm,train/n_updates\n");
  const bool q_exists = resumed && fs::exists(run_dir / "q_values.csv");
  io::AppendFile q_csv(run_dir / "q_values.csv", q_exists);
  if (!q_exists) q_csv.write("step,mean_q,mean_loss,updates\n");
  log::TensorBoardWriter tb(run_dir / "tb");
  const auto log_episode = [&](const rl::EpisodeRecord& e) {
    episodes.write(e);
    tb.add_scalar("charts/episodic_return", e.episode_return, e.end_step);
    tb.add_scalar("charts/episodic_length", static_cast<double>(e.length), e.end_step);
    tb.add_scalar("charts/score", e.score, e.end_step);
  };
  for (const auto& e : interrupted_episodes) log_episode(e);

  // A log that cannot be written stops the run: the callbacks run inside
  // the trainer's step, so they record the failure and stop the trainer,
  // which returns at the step's end; the loop below then saves a
  // checkpoint and reports it.
  std::string log_failure;  // or an env that cannot go on: the run stops the same way
  std::string checkpoint_failure;
  const auto logging = [&](auto&& write) {
    if (!log_failure.empty()) return;
    try {
      write();
    } catch (const std::exception& e) {
      log_failure = e.what();
      trainer.stop();
    }
  };

  // Per 1000 env steps: mean Q and loss over the updates in that block.
  double q_sum = 0, loss_sum = 0;
  std::int64_t q_count = 0, q_block = trainer.step() / 1000;
  bool non_finite = false;
  rl::UpdateStats last{};
  trainer.on_update = [&](std::int64_t step) {
    last = trainer.agent().last_stats();
    if (!std::isfinite(last.loss) || !std::isfinite(last.grad_norm)) {
      non_finite = true;
      trainer.stop();
      return;
    }
    if (step / 1000 != q_block) {
      if (q_count)
        logging([&] {
          q_csv.write(std::to_string(q_block * 1000 + 1000) + ',' + csv_number(q_sum / q_count) + ',' +
                      csv_number(loss_sum / q_count) + ',' + std::to_string(trainer.agent().updates()) + '\n');
        });
      q_block = step / 1000;
      q_sum = loss_sum = 0;
      q_count = 0;
    }
    q_sum += last.q_mean;
    loss_sum += last.loss;
    ++q_count;
    if (trainer.agent().updates() % 100 == 0)
      logging([&] {
        tb.add_scalar("losses/td_loss", last.loss, step);
        tb.add_scalar("losses/q_values", last.q_mean, step);
        tb.add_scalar("losses/grad_norm", last.grad_norm, step);
      });
  };
  trainer.on_episode = [&](const rl::EpisodeRecord& e) { logging([&] { log_episode(e); }); };
  trainer.on_progress = [&](const rl::Progress& p) {
    std::cout << progress_line(p, o.steps) << std::endl;
    logging([&] {
      std::string row = std::to_string(p.step) + ',' + csv_number(p.steps_per_second) + ',' +
                        std::to_string(p.episodes);
      for (const double v : {p.wall_seconds, p.mean_return, p.mean_score, p.max_score, p.epsilon,
                             static_cast<double>(p.last_update.loss), static_cast<double>(p.last_update.q_mean),
                             static_cast<double>(p.last_update.grad_norm)})
        row += ',' + csv_number(v);
      progress_csv.write(row + ',' + std::to_string(p.updates) + '\n');
      tb.add_scalar("charts/SPS", p.steps_per_second, p.step);
      tb.add_scalar("charts/epsilon", p.epsilon, p.step);
      tb.add_scalar("charts/mean_score", p.mean_score, p.step);
      tb.flush();
    });
  };

  rl::CheckpointOptions ck_options;
  ck_options.keep_last = o.keep_checkpoints;
  auto checkpoint = [&](const std::string& name = {}) {
    fs::path dir;
    dir = rl::save_checkpoint(checkpoints, trainer, ctx, run_config, ck_options, name);
    const std::map<std::string, std::string> metadata{{"step", std::to_string(trainer.step())}};
    nn::save_weights(ctx, trainer.agent().online(), run_dir / "weights.safetensors", metadata);
    if (o.keep_weights && name.empty()) {
      fs::create_directories(run_dir / "weights");
      nn::save_weights(ctx, trainer.agent().online(),
                       run_dir / "weights" / (rl::checkpoint_name(trainer.step()) + ".safetensors"), metadata);
    }
    tb.flush();
    log::write_plots(run_dir);
    std::cout << "checkpoint " << dir.string() << " (step " << trainer.step() << ")" << std::endl;
  };

  const detail::StopSignals signals;  // until run_training returns
  trainer.set_stop_flag(&detail::interrupted);
  const std::int64_t until =
      o.stop_after > 0 ? std::min(o.steps, trainer.step() + o.stop_after) : o.steps;
  while (trainer.step() < until && !detail::interrupted && !non_finite && log_failure.empty()) {
    const std::int64_t next =
        std::min(until, (trainer.step() / o.checkpoint_interval + 1) * o.checkpoint_interval);
    try {
      trainer.run(next);  // returns early on a stop signal, a non-finite loss or a failed log write
    } catch (const env::EnvironmentFailure& e) {
      // The env threw inside a step, before the trainer took any of it in.
      log_failure = e.what();
      break;
    }
    if (non_finite || !log_failure.empty()) break;
    try {
      checkpoint();
    } catch (const std::exception& e) {
      checkpoint_failure = e.what();
      break;
    }
  }
  trainer.set_stop_flag(nullptr);
  if (!log_failure.empty() || !checkpoint_failure.empty()) {
    // One line: what stopped the run, and what became of its checkpoints.
    std::string saved;
    if (checkpoint_failure.empty()) {
      try {
        checkpoint();
        saved = "a checkpoint of step " + std::to_string(trainer.step()) + " was saved";
      } catch (const std::exception& e) {
        checkpoint_failure = e.what();
      }
    }
    if (!checkpoint_failure.empty()) {
      const auto newest = rl::latest_checkpoint(checkpoints);
      saved = "no checkpoint could be saved (" + checkpoint_failure + "); " +
              (newest ? "the newest one, " + newest->string() + ", is intact" : std::string("there is none yet"));
    }
    fail("training stopped at step ", trainer.step(), ": ", log_failure.empty() ? "" : log_failure + "; ", saved,
         ". Mend the cause and continue with --resume ", run_dir.string());
  }
  if (non_finite) {
    checkpoint("debug_step_" + std::to_string(trainer.step()));
    fail("the loss or gradient norm became non-finite at step ", trainer.step(), " (loss ", last.loss,
         ", gradient norm ", last.grad_norm, "); a debug checkpoint is in ", checkpoints.string(),
         ". Lower --lr or set --max-grad-norm");
  }
  const int sig = detail::stop_signal;
  if (detail::interrupted) {
    std::cout << "stopped by " << detail::signal_name(sig) << " at step " << trainer.step()
              << "; continue with --resume " << run_dir.string() << std::endl;
    return 128 + sig;
  }
  if (trainer.step() < o.steps)
    std::cout << "stopped at step " << trainer.step() << " (--stop-after); continue with --resume "
              << run_dir.string() << std::endl;
  return 0;
}

// Wraps an env in RecordVideo writing RUN_DIR/videos/episode_N.gif as --record says.
template <env::RenderableEnvironment E>
log::RecordVideo<E> record_videos(E& env, const RunOptions& o, double game_fps, int frames_per_step) {
  log::RecordVideoConfig c;
  c.time_for_game(game_fps, frames_per_step);
  c.folder = std::filesystem::path(o.run_dir) / "videos";
  c.episode_trigger = video_trigger(o.record);
  log::RecordVideo<E> recorder(env, c);
  recorder.on_saved = [](const std::filesystem::path& p, int frames) {
    std::cout << "recorded " << p.string() << " (" << frames << " frames)" << std::endl;
  };
  return recorder;
}

// The examples' `plot RUN_DIR` subcommand.
inline int plot_command(const std::filesystem::path& run_dir) {
  const auto [games, blocks] = log::write_plots(run_dir);
  std::cout << "wrote " << (run_dir / "scores.svg").string() << " (" << games << " games) and "
            << (run_dir / "q_values.svg").string() << " (" << blocks << " blocks of 1000 steps)\n";
  return 0;
}

}  // namespace qrl::examples
