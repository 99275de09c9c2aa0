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
//
// Its parts: run_options.hpp (the flags, --config, the resolved options),
// run_directory.hpp (what --resume means, logs cut back on resume) and
// stop_signals.hpp (Ctrl-C and the other stop signals); the replay memory's
// fit check is in train.hpp, which builds the memory.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
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
#include "run_directory.hpp"
#include "run_options.hpp"
#include "stop_signals.hpp"

namespace qrl::examples {

// Which training episodes --record turns into GIFs.
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
