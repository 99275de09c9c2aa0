#pragma once
// Gymnasium's RecordVideo as an environment wrapper: episodes chosen by a
// trigger on the episode number are rendered (render_rgb) into GIFs. Wrapping
// keeps the learner unaware of recording, and the wrapper is itself an
// Environment (and checkpointable when the inner one is).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include <qrl/env/env.hpp>
#include <qrl/log/gif.hpp>

namespace qrl::log {

// Gymnasium's default trigger: episodes 0, 1, 8, 27, ... 729, then every 1000th.
inline bool capped_cubic_video_schedule(std::int64_t episode) {
  if (episode < 1000) {
    const auto root = static_cast<std::int64_t>(std::llround(std::cbrt(static_cast<double>(episode))));
    return root * root * root == episode;
  }
  return episode % 1000 == 0;
}

struct RecordVideoConfig {
  std::filesystem::path folder;
  std::function<bool(std::int64_t)> episode_trigger = capped_cubic_video_schedule;
  int frame_every = 2;              // keep every k-th frame (a 30 fps game at k = 2 plays in real time at 6 cs)
  int delay_cs = 6;                 // GIF frame time, 1/100 s
  std::int64_t max_frames = 3000;   // a recording stops growing here (the episode goes on)
  std::string prefix = "episode";

  // GIF timing for a game drawn at `game_fps` whose env step spans
  // `frames_per_step` game frames (its frame skip): keep about 15 pictures a
  // second of game time, each shown for as long as the game time it covers.
  void time_for_game(double game_fps, int frames_per_step) {
    require(game_fps > 0 && frames_per_step >= 1, "RecordVideoConfig: game_fps must be > 0 and frames_per_step >= 1");
    frame_every = std::max(1, static_cast<int>(std::lround(game_fps / 15.0 / frames_per_step)));
    delay_cs = std::max(1, static_cast<int>(std::lround(100.0 * frame_every * frames_per_step / game_fps)));
  }
};

template <env::RenderableEnvironment E>
class RecordVideo {
 public:
  RecordVideo(E& env, RecordVideoConfig config) : env_(&env), config_(std::move(config)) {
    require(config_.frame_every >= 1, "RecordVideo: frame_every must be >= 1");
  }

  std::function<void(const std::filesystem::path&, int frames)> on_saved;
  // Called once when a recording cannot be written (a full disk): the
  // partial file is removed and recording stops for the rest of the run,
  // while the episodes go on. Default: a warning on stderr.
  std::function<void(const std::string& what)> on_failed = [](const std::string& what) {
    std::cerr << "qrl: warning: " << what << "; no more episodes are recorded in this run\n";
  };

  env::FrameView reset(std::uint64_t seed) {
    finish();
    const env::FrameView first = env_->reset(seed);
    ++episode_;
    if (config_.episode_trigger && config_.episode_trigger(episode_)) {
      char name[64];
      std::snprintf(name, sizeof name, "%s_%06lld.gif", config_.prefix.c_str(), static_cast<long long>(episode_));
      const env::FrameView rgb = env_->render_rgb();
      recording([&] {
        std::filesystem::create_directories(config_.folder);
        writer_ = std::make_unique<GifWriter>(config_.folder / name, rgb.shape.width, rgb.shape.height,
                                                  config_.delay_cs);
        writer_->add_frame(rgb);
      });
      frame_ = 0;
    }
    return first;
  }

  env::StepResult step(int action) {
    env::StepResult r = env_->step(action);
    if (writer_) {
      ++frame_;
      const bool last = r.terminated || r.truncated;
      if ((frame_ % config_.frame_every == 0 || last) && writer_->frames() < config_.max_frames) {
        const env::FrameView rgb = env_->render_rgb();  // an env's own error is not a recording's
        recording([&] { writer_->add_frame(rgb); });
      }
      if (last) finish();
    }
    return r;
  }

  int action_count() const { return env_->action_count(); }
  env::FrameShape observation_shape() const { return env_->observation_shape(); }
  E& inner() { return *env_; }
  std::int64_t episode_id() const { return episode_; }

  // A recording in progress is not part of the state: a resumed run starts
  // recording again at the next triggered episode.
  nlohmann::json save_state() const
    requires requires(const E& e) { e.save_state(); }
  {
    return {{"inner", env_->save_state()}, {"episode_id", episode_}};
  }
  void load_state(const nlohmann::json& j)
    requires requires(E& e, const nlohmann::json& s) { e.load_state(s); }
  {
    writer_.reset();
    env_->load_state(j.at("inner"));
    episode_ = j.at("episode_id").get<std::int64_t>();
  }
  // For an inner env without save_state() (a browser game), the recorder's
  // own counter still survives a resume, so recordings keep their numbering
  // instead of overwriting episode_000000.gif and the rest.
  nlohmann::json save_counters() const { return {{"episode_id", episode_}}; }
  void load_counters(const nlohmann::json& j) {
    writer_.reset();
    episode_ = j.at("episode_id").get<std::int64_t>();
  }
  double score() const
    requires requires(const E& e) { { e.score() } -> std::convertible_to<double>; }
  {
    return env_->score();
  }

 private:
  void finish() {
    if (!writer_) return;
    const auto path = writer_->path();
    const int frames = writer_->frames();
    if (!recording([&] { writer_->close(); })) return;
    writer_.reset();
    if (on_saved) on_saved(path, frames);
  }

  // Runs a GIF write; on failure drops the recording (its destructor removes
  // the partial file) and turns recording off. False when it failed.
  template <class Write>
  bool recording(Write&& write) {
    if (failed_) return false;
    try {
      write();
      return true;
    } catch (const std::exception& e) {  // qrl's errors and the file system's
      writer_.reset();
      failed_ = true;
      config_.episode_trigger = {};
      if (on_failed) on_failed(e.what());
      return false;
    }
  }

  E* env_;
  RecordVideoConfig config_;
  std::int64_t episode_ = -1;
  std::int64_t frame_ = 0;
  std::unique_ptr<GifWriter> writer_;
  bool failed_ = false;
};

}  // namespace qrl::log
