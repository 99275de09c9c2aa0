#pragma once
// Atari 2600 games through the Arcade Learning Environment, with Gymnasium's
// AtariPreprocessing in C++ (no-op starts, frame skip, max over the last two
// frames, 84x84 gray, optional terminal on life loss) and ALE's own sticky
// actions and seeding.
//
// ALE is GPL-2.0 and is never part of qrl: `bash scripts/build_ale.sh` builds
// it from the pinned ale-py source distribution into .deps/ale, and CMake
// enables this env (QRL_WITH_ATARI) when it finds it there or installed.
#if !__has_include(<ale/ale_interface.hpp>)
#error "qrl::envs::Atari needs the Arcade Learning Environment: run `bash scripts/build_ale.sh`, then reconfigure CMake (it finds .deps/ale), or link qrl::atari"
#endif

#include <algorithm>
#include <array>
#include <cstring>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ale/ale_interface.hpp>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/env/env.hpp>
#include <qrl/io/state_json.hpp>
#include <qrl/env/preprocess.hpp>
#include <qrl/envs/atari_observation.hpp>

namespace qrl::envs {

struct AtariConfig {
  // A game by its ROM's snake_case name ("pong", "space_invaders"), looked up
  // in roms_dir; or a ROM file, which then wins over `game`.
  std::string game = "pong";
  std::string rom_path;
  // Where game ROMs live. Empty: $ALE_ROMS_DIR, else the directory CMake
  // found next to ALE (QRL_ALE_ROMS_DIR, e.g. .deps/ale/share/ale/roms).
  std::string roms_dir;
  // The game's minimal action set (Gymnasium's default) or all 18 actions.
  bool full_action_set = false;
  // AtariPreprocessing's defaults. A reset plays a uniform 1..noop_max
  // NOOP frames (0: none); a step repeats its action for frame_skip frames,
  // sums their rewards and observes the pixelwise max of the last two.
  int noop_max = 30;
  int frame_skip = 4;
  int screen_size = 84;
  // Losing a life ends the episode as `terminated` (the next reset starts a
  // new game, as in Gymnasium). Off by default.
  bool terminal_on_life_loss = false;
  // Sticky actions: each frame ALE keeps the previous action with this
  // probability. 0.25 is Gymnasium's v5 setting; 0 (v4, and
  // AtariPreprocessing's usual setting) by default.
  float repeat_action_probability = 0.0f;
  // Truncate (not terminate) the episode after this many agent steps; 0:
  // never. 27,000 steps of 4 frames is the v5 limit of 108,000 frames.
  std::int64_t max_episode_steps = 27000;
  // ALE game mode and difficulty; -1: the ROM's defaults.
  int mode = -1;
  int difficulty = -1;
};

// Directory of the ROMs built with ALE, or empty.
inline std::string default_atari_roms_dir() {
  if (const char* dir = std::getenv("ALE_ROMS_DIR"); dir != nullptr && *dir != '\0') return dir;
#ifdef QRL_ALE_ROMS_DIR
  return QRL_ALE_ROMS_DIR;
#else
  return {};
#endif
}

// Game names (ROM file stems) found in `roms_dir`, sorted.
inline std::vector<std::string> atari_games(const std::string& roms_dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> games;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(roms_dir, error)) {
    if (entry.path().extension() == ".bin") games.push_back(entry.path().stem().string());
  }
  std::sort(games.begin(), games.end());
  return games;
}

// The ROM file for `config`, checked to exist and to be a ROM ALE supports.
// ALE itself calls exit() on an unknown ROM, so this must run first.
inline std::string resolve_atari_rom(const AtariConfig& config) {
  namespace fs = std::filesystem;
  std::string path = config.rom_path;
  if (path.empty()) {
    require(!config.game.empty(), "Atari: give a game name (e.g. pong) or a ROM path");
    const std::string dir = config.roms_dir.empty() ? default_atari_roms_dir() : config.roms_dir;
    require(!dir.empty() && fs::is_directory(dir), "Atari: no ROM directory",
            dir.empty() ? std::string() : " (" + dir + " does not exist)",
            "; run `bash scripts/build_ale.sh` (it unpacks the ROMs into .deps/ale/share/ale/roms), set "
            "ALE_ROMS_DIR, or pass a ROM path");
    const fs::path candidate = fs::path(dir) / (config.game + ".bin");
    if (!fs::is_regular_file(candidate)) {
      std::string names;
      for (const auto& name : atari_games(dir)) names += (names.empty() ? "" : ", ") + name;
      fail("Atari: unknown game '", config.game, "'; the games in ", dir, " are: ",
           names.empty() ? std::string("(none)") : names);
    }
    path = candidate.string();
  }
  std::error_code ec;
  const auto status = fs::status(path, ec);
  require(fs::exists(status), "Atari: ROM file ", path, " does not exist");
  require(fs::is_regular_file(status), "Atari: ", path, " is ",
          fs::is_directory(status) ? "a directory" : "not a regular file",
          "; give the path of a ROM file (e.g. .deps/ale/share/ale/roms/pong.bin) or --game NAME");
  // The 2600's cartridges hold at most 512 KiB (ALE's largest ROMs are 64 KiB).
  require(fs::file_size(path, ec) <= (512u << 10), "Atari: ", path, " is ", fs::file_size(path, ec),
          " bytes, too large for an Atari 2600 ROM");
  std::optional<std::string> supported;
  try {
    supported = ale::ALEInterface::isSupportedROM(path);
  } catch (const std::exception& error) {
    fail("Atari: cannot read ROM file ", path, ": ", error.what());
  }
  require(supported.has_value(), "Atari: ", path,
          " is not a ROM ALE supports (its MD5 matches no known game); use the ROMs from `bash "
          "scripts/build_ale.sh` (.deps/ale/share/ale/roms)");
  return path;
}

class Atari {
 public:
  // ALE's screen, rows x cols.
  static constexpr int kScreenHeight = 210;
  static constexpr int kScreenWidth = 160;

  explicit Atari(AtariConfig config = {}) : config_(std::move(config)) {
    require(config_.frame_skip >= 1, "Atari: frame_skip must be >= 1, got ", config_.frame_skip);
    require(config_.noop_max >= 0, "Atari: noop_max must be >= 0, got ", config_.noop_max);
    require(config_.screen_size >= 1 && config_.screen_size <= kScreenWidth, "Atari: screen_size ",
            config_.screen_size, " must lie in [1, ", kScreenWidth, "] (downscaling only)");
    require(config_.repeat_action_probability >= 0.0f && config_.repeat_action_probability < 1.0f,
            "Atari: repeat_action_probability must lie in [0, 1), got ", config_.repeat_action_probability);
    require(config_.max_episode_steps >= 0, "Atari: max_episode_steps must be >= 0 (0 disables it), got ",
            config_.max_episode_steps);
    rom_ = resolve_atari_rom(config_);
    ale::Logger::setMode(ale::Logger::Error);
    ale_ = std::make_unique<ale::ALEInterface>();
    // The wrapper does frame skipping itself (to max the last two frames);
    // ALE applies stickiness per emulated frame, as in v5.
    ale_->setInt("frame_skip", 1);
    ale_->setFloat("repeat_action_probability", config_.repeat_action_probability);
    ale_->setInt("max_num_frames_per_episode", 0);
    load();
    // ALE's gray palette as a table over screen bytes, read through ALE's
    // own conversion, so screens can be kept as raw bytes and converted once
    // in the fused max below.
    std::array<std::uint8_t, 256> index{}, gray_of{};
    for (int i = 0; i < 256; ++i) index[i] = static_cast<std::uint8_t>(i);
    ale_->theOSystem->colourPalette().applyPaletteGrayscale(gray_of.data(), index.data(), index.size());
    observer_.emplace(config_.screen_size, gray_of);
    actions_ = config_.full_action_set ? ale_->getLegalActionSet() : ale_->getMinimalActionSet();
    const std::size_t screen = static_cast<std::size_t>(kScreenHeight) * kScreenWidth;
    frames_[0].resize(screen);
    frames_[1].resize(screen);
  }

  // Starts a new game. The seed fixes ALE's sticky-action draws and the
  // number of no-op frames, so a seed and the actions fix an episode.
  // Gymnasium's reset(seed=...) reloads the ROM with random_seed set, about
  // 0.1 s here; restoring the power-on state saved at construction and
  // reseeding ALE's generator gives the same emulator state and draws.
  env::FrameView reset(std::uint64_t seed) {
    ale_->restoreState(start_);
    ale_->environment->getEnvironmentRNG().seed(static_cast<std::uint32_t>(ale_seed(seed)));
    // Apart from the sequence the ALE seed came from.
    Rng rng(seed, SeedPurpose::noop_starts);
    const int noops = config_.noop_max > 0 ? 1 + static_cast<int>(rng.uniform_index(config_.noop_max)) : 0;
    for (int i = 0; i < noops; ++i) {
      ale_->act(ale::PLAYER_A_NOOP);
      if (ale_->game_over(false)) ale_->reset_game();
    }
    lives_ = ale_->lives();
    steps_ = 0;
    score_ = 0.0;
    grab(0);
    std::copy(frames_[0].begin(), frames_[0].end(), frames_[1].begin());
    observe();
    started_ = true;
    done_ = false;
    return observation();
  }

  env::StepResult step(int action) {
    require(started_, "Atari::step: no episode yet; call reset(seed) first");
    require(!done_, "Atari::step: the episode is over (terminated or truncated); call reset(seed) before stepping");
    // Not require(): its message arguments, game_name() among them, would
    // be built on every step.
    if (action < 0 || action >= action_count()) {
      fail("Atari::step: action ", action, " is outside [0, ", action_count(), ") for ", game_name());
    }
    env::StepResult result;
    const ale::Action ale_action = actions_[static_cast<std::size_t>(action)];
    bool ended = false;
    for (int t = 0; t < config_.frame_skip; ++t) {
      result.reward += ale_->act(ale_action);
      if (ale_->game_over(false)) {
        result.terminated = true;
      }
      if (config_.terminal_on_life_loss) {
        const int lives = ale_->lives();
        if (lives < lives_) result.terminated = true;
        lives_ = lives;
      }
      if (result.terminated) {
        // A step cut short observes its final frame alone (Gymnasium would
        // reuse the previous step's buffers here).
        grab(0);
        std::copy(frames_[0].begin(), frames_[0].end(), frames_[1].begin());
        ended = true;
        break;
      }
      if (t == config_.frame_skip - 2) grab(1);
      if (t == config_.frame_skip - 1) grab(0);
    }
    if (!ended && config_.frame_skip == 1) std::copy(frames_[0].begin(), frames_[0].end(), frames_[1].begin());
    lives_ = ale_->lives();
    ++steps_;
    score_ += result.reward;
    if (!result.terminated && config_.max_episode_steps > 0 && steps_ >= config_.max_episode_steps) {
      result.truncated = true;
    }
    done_ = result.terminated || result.truncated;
    observe();
    result.observation = observation();
    result.info.score = score_;
    result.info.lives = lives_;
    result.info.episode_frame = ale_->getEpisodeFrameNumber();
    return result;
  }

  int action_count() const { return static_cast<int>(actions_.size()); }
  env::FrameShape observation_shape() const { return {config_.screen_size, config_.screen_size, 1}; }
  env::FrameView observation() const { return {observer_->pixels().data(), observation_shape()}; }

  // The spec that turns the max-pooled 210x160 gray screen into the
  // observation: the shared preprocessing functor, box-filtered like
  // OpenCV's INTER_AREA.
  env::PreprocessSpec observation_spec() const {
    env::PreprocessSpec spec;
    spec.layout = env::PixelLayout::Gray;
    spec.out_height = config_.screen_size;
    spec.out_width = config_.screen_size;
    return spec;
  }

  // The current 210x160 RGB screen, for people and GIFs.
  env::FrameView render_rgb() {
    ale_->getScreenRGB(rgb_);
    return {rgb_.data(), {kScreenHeight, kScreenWidth, 3}};
  }
  // The current 210x160 screen in ALE's own gray palette (what the
  // observation is computed from).
  env::FrameView screen_gray() {
    ale_->getScreenGrayscale(gray_);
    return {gray_.data(), {kScreenHeight, kScreenWidth, 1}};
  }

  // The pixelwise max of the two screens the observation was made from:
  // env::preprocess(max_screen(), observation_spec()) is the observation.
  env::FrameView max_screen() const { return {observer_->max_screen().data(), {kScreenHeight, kScreenWidth, 1}}; }

  int lives() const { return ale_->lives(); }
  std::int64_t episode_steps() const { return steps_; }
  const std::string& rom_path() const { return rom_; }
  std::string game_name() const { return std::filesystem::path(rom_).stem().string(); }
  // ALE's action codes behind the indices step() takes.
  const std::vector<ale::Action>& actions() const { return actions_; }
  const AtariConfig& config() const { return config_; }
  // ALE's random_seed for an episode seed: what a freshly loaded ROM would
  // need to replay an episode of this env (ALE takes a non-negative int).
  static int ale_seed(std::uint64_t seed) { return static_cast<int>(Rng(seed).next_u64() >> 33); }
  // The emulator itself, for benchmarks and for checking against ALE.
  ale::ALEInterface& ale() { return *ale_; }

  // The dynamic state, for exact resumption mid-episode: ALE's own
  // serialisation of the emulator with its sticky-action generator
  // (cloneState(true), base64), the two raw screens the next max-pool may
  // read, and the wrapper's counters. The configuration is not part of it;
  // the game is checked. One thing ALE keeps outside its state is the
  // previous action a sticky frame repeats: with repeat_action_probability
  // > 0 the first frames after a load may repeat NOOP instead (docs/runs.md).
  nlohmann::json save_state() const {
    auto& ale = *ale_;
    std::string emulator = ale.cloneState(/*include_rng=*/true).serialize();
    auto blob = [](const std::vector<unsigned char>& v) {
      return io::base64_encode({reinterpret_cast<const char*>(v.data()), v.size()});
    };
    return {{"game", game_name()},
            {"ale_version", ALE_VERSION},
            {"ale_state", io::base64_encode(emulator)},
            {"screens", {blob(frames_[0]), blob(frames_[1])}},
            {"lives", lives_},
            {"steps", steps_},
            {"score", score_},
            {"started", started_},
            {"done", done_}};
  }

  void load_state(const nlohmann::json& j) {
    const std::string where = "Atari state";
    const auto game = io::json_get<std::string>(j, "game", where);
    require(game == game_name(), where, ": saved for game '", game, "', this env plays '", game_name(),
            "' (resume with the run's own --game)");
    const auto version = io::json_get<std::string>(j, "ale_version", where);
    require(version == ALE_VERSION, where, ": saved by ALE ", version, ", this build links ALE ", ALE_VERSION,
            " (its state format may differ; resume with the ALE the run was trained with)");
    const auto screens = io::json_get<std::vector<std::string>>(j, "screens", where);
    require(screens.size() == 2, where, ": 'screens' must hold 2 screens, got ", screens.size());
    std::array<std::string, 2> raw{io::base64_decode(screens[0], where + " screens[0]"),
                                   io::base64_decode(screens[1], where + " screens[1]")};
    for (const auto& r : raw)
      require(r.size() == frames_[0].size(), where, ": a screen holds ", r.size(), " bytes, expected ",
              frames_[0].size());
    const std::string emulator = io::base64_decode(io::json_get<std::string>(j, "ale_state", where), where + " ale_state");
    ale_->restoreState(ale::ALEState(emulator));
    for (int k = 0; k < 2; ++k) std::memcpy(frames_[k].data(), raw[k].data(), raw[k].size());
    lives_ = io::json_get<int>(j, "lives", where);
    steps_ = io::json_get<std::int64_t>(j, "steps", where);
    score_ = io::json_get<double>(j, "score", where);
    started_ = io::json_get<bool>(j, "started", where);
    done_ = io::json_get<bool>(j, "done", where);
    observe();
  }

 private:
  void load() {
    ale_->setInt("random_seed", 0);
    ale_->loadROM(rom_);
    if (config_.mode >= 0) {
      const auto modes = ale_->getAvailableModes();
      require(std::find(modes.begin(), modes.end(), static_cast<ale::game_mode_t>(config_.mode)) != modes.end(),
              "Atari: mode ", config_.mode, " is not available for ", game_name());
      ale_->setMode(static_cast<ale::game_mode_t>(config_.mode));
    }
    if (config_.difficulty >= 0) {
      const auto levels = ale_->getAvailableDifficulties();
      require(std::find(levels.begin(), levels.end(), static_cast<ale::difficulty_t>(config_.difficulty)) !=
                  levels.end(),
              "Atari: difficulty ", config_.difficulty, " is not available for ", game_name());
      ale_->setDifficulty(static_cast<ale::difficulty_t>(config_.difficulty));
    }
    ale_->reset_game();
    start_ = ale_->cloneState();
  }

  // Keeps the raw screen bytes; gray conversion happens in observe().
  void grab(int slot) {
    const ale::ALEScreen& screen = ale_->getScreen();
    std::memcpy(frames_[slot].data(), screen.getArray(), frames_[slot].size());
  }

  // The observation of the two kept screens (gray, max, box filter).
  void observe() { observer_->compute(frames_[0].data(), frames_[1].data()); }

  AtariConfig config_;
  std::string rom_;
  std::unique_ptr<ale::ALEInterface> ale_;
  ale::ALEState start_;
  std::vector<ale::Action> actions_;
  std::vector<unsigned char> frames_[2];
  std::optional<AtariObservation> observer_;
  std::vector<unsigned char> rgb_, gray_;
  int lives_ = 0;
  std::int64_t steps_ = 0;
  double score_ = 0.0;
  bool started_ = false, done_ = false;
};

}  // namespace qrl::envs
