#pragma once
// Chrome Dino (chrome://dino), lock-step and seeded, as a CanvasGame
// configuration. envs/dino/games/dino.toml is the same configuration as a
// file (a test keeps the two equal), the starting point for other games.
#include <cstdint>
#include <string>
#include <utility>

#include <qrl/envs/canvas_game.hpp>

namespace qrl::envs {

struct DinoConfig {
  // 3: nothing / jump / duck (duck held while chosen); 2: nothing / jump, as in the tutorial.
  int actions = 3;
  // The tutorial's variant: the game keeps its starting speed.
  bool constant_speed = false;
  int frame_skip = 4;
  int observation_height = 80;
  int observation_width = 80;
  double reward_alive = 0.1;
  double reward_crash = -1.0;
  std::int64_t max_steps = 0;  // truncate after this many steps; 0: never
};

inline CanvasGameConfig dino_game_config(const DinoConfig& d = {}) {
  require(d.actions == 2 || d.actions == 3, "Dino: actions must be 2 (nothing, jump) or 3 (nothing, jump, duck), got ",
          d.actions);
  CanvasGameConfig c;
  c.name = "dino";
  c.url = "chrome://dino";
  c.fallback_url = "http://qrl-dino.invalid/";
  c.canvas = ".runner-canvas";
  c.ready = "typeof Runner === 'function' && typeof Runner.getInstance === 'function' && !!Runner.getInstance()";
  c.ready_error =
      "Runner.getInstance() is missing: this Chromium's Dino page changed; update 'ready', 'start', 'score' and "
      "'game_over' (docs/dino.md)";
  c.setup =
      "const r = Runner.getInstance();\n"
      "r.invert = () => {};\n"
      "r.saveHighScore = () => {};\n";
  if (d.constant_speed) c.setup += "r.config.acceleration = 0;\n";
  c.start =
      "const r = Runner.getInstance();\n"
      "r.isArcadeMode = () => false;\n"
      "r.containerEl.style.width = r.dimensions.width + 'px';\n"
      "r.setPlayStatus(true);\n"
      "r.activated = true;\n"
      "r.startGame();\n"
      "r.update();\n";
  c.score = "Runner.getInstance().distanceMeter.getActualDistance(Math.ceil(Runner.getInstance().distanceRan))";
  c.game_over = "Runner.getInstance().crashed";
  c.frame_skip = d.frame_skip;
  c.observation_height = d.observation_height;
  c.observation_width = d.observation_width;
  c.background = {255, 255, 255};
  c.reward_alive = d.reward_alive;
  c.reward_crash = d.reward_crash;
  c.max_steps = d.max_steps;
  c.actions = {{"noop", {}}, {"jump", {"ArrowUp"}}};
  if (d.actions == 3) c.actions.push_back({"duck", {"ArrowDown"}});
  return c;
}

class Dino : public CanvasGame {
 public:
  static constexpr int kNoop = 0;
  static constexpr int kJump = 1;
  static constexpr int kDuck = 2;

  explicit Dino(DinoConfig config = {}, BrowserConfig browser = {})
      : CanvasGame(dino_game_config(config), std::move(browser)) {}
};

}  // namespace qrl::envs
