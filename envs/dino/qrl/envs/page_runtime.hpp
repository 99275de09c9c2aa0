#pragma once
// The C++ side of the page runtime (page_runtime.js, whose text CMake embeds
// in qrl::dino): the script installed for an episode's seed, and the
// statements that bind a game config to window.__qrl in a loaded page.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <qrl/envs/canvas_game_config.hpp>

namespace qrl::envs {

namespace detail {
// page_runtime.js, verbatim (defined in the generated page_runtime_js.cpp).
extern const std::string_view page_runtime_js;

inline std::string js_string(const std::string& s) { return nlohmann::json(s).dump(); }
}  // namespace detail

// The runtime's mulberry32 state for an episode seed. Shipped agents' scores
// and the seeded tests depend on this fold bit for bit.
inline std::uint32_t page_seed(std::uint64_t seed) { return static_cast<std::uint32_t>(seed ^ (seed >> 32)); }

// Installed with Page.addScriptToEvaluateOnNewDocument, so it runs before
// any script of the page: from then on the page sees only virtual time.
inline std::string page_runtime_script(std::uint64_t seed) {
  return std::string(detail::page_runtime_js) + "(" + std::to_string(page_seed(seed)) + ");\n";
}

// A new episode in the loaded page (reload = false): the sequence a reload
// with `seed` would give, and the frame count from zero.
inline std::string reseed_script(std::uint64_t seed) { return "__qrl.reseed(" + std::to_string(page_seed(seed)) + ")"; }

// Where the runtime finds the game's canvas, score and game over, and the
// observation it computes for canvas capture.
inline std::string game_binding_script(const CanvasGameConfig& game) {
  return "window.__qrl_game = {selector: " + detail::js_string(game.canvas) + ", score: () => (" + game.score +
         "), over: () => (" + game.game_over + ")};\n__qrl.setObservation(" +
         std::to_string(game.observation_height) + ", " + std::to_string(game.observation_width) + ", [" +
         std::to_string(game.background[0]) + ", " + std::to_string(game.background[1]) + ", " +
         std::to_string(game.background[2]) + "]);\n0";
}

}  // namespace qrl::envs
