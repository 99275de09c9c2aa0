// The TOML reader of canvas game configs: toml++ compiled once, here.
#include <qrl/envs/canvas_game_config.hpp>

#include <cstdio>
#include <initializer_list>
#include <set>
#include <type_traits>
#include <utility>

#include <toml++/toml.h>

#include <qrl/io/file.hpp>

namespace qrl::envs {

CanvasGameConfig parse_game_config(std::string_view text, const std::string& source) {
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    fail(source, ":", e.source().begin.line, ": ", e.description());
  }
  CanvasGameConfig c;
  static const std::set<std::string> known{"name",       "url",     "fallback_url", "canvas",   "ready",
                                           "ready_error", "setup",  "start",        "restart",  "score",
                                           "game_over",  "reload",  "frame_skip",   "observation", "background",
                                           "reward_alive", "reward_crash", "max_steps", "load_timeout_ms", "action",
                                           "key_events"};
  for (const auto& [key, value] : table) {
    const std::string k(key.str());
    if (!known.count(k)) {
      std::string list;
      for (const auto& name : known) list += (list.empty() ? "" : ", ") + name;
      fail(source, ": unknown key '", k, "' (known keys: ", list, ")");
    }
  }
  // A string, float or integer key, read as the type of `out`.
  auto get = [&](const char* key, auto& out) {
    if (auto node = table.get(key)) {
      using T = std::remove_reference_t<decltype(out)>;
      if constexpr (std::is_same_v<T, std::string>) {
        auto v = node->value<std::string>();
        require(v.has_value() && node->is_string(), source, ": '", key, "' must be a string");
        out = *v;
      } else if constexpr (std::is_floating_point_v<T>) {
        auto v = node->value<double>();
        require(v.has_value(), source, ": '", key, "' must be a number");
        out = static_cast<T>(*v);
      } else {
        auto v = node->value<std::int64_t>();
        require(v.has_value() && node->is_integer(), source, ": '", key, "' must be an integer");
        out = static_cast<T>(*v);
      }
    }
  };
  using StringKey = std::pair<const char*, std::string*>;
  for (auto [key, field] : std::initializer_list<StringKey>{
           {"name", &c.name}, {"url", &c.url}, {"fallback_url", &c.fallback_url}, {"canvas", &c.canvas},
           {"ready", &c.ready}, {"ready_error", &c.ready_error}, {"setup", &c.setup}, {"start", &c.start},
           {"restart", &c.restart}, {"score", &c.score}, {"game_over", &c.game_over}})
    get(key, *field);
  if (auto node = table.get("reload")) {
    require(node->is_boolean(), source, ": 'reload' must be true or false");
    c.reload = *node->value<bool>();
  }
  if (auto node = table.get("key_events")) {
    auto v = node->value<std::string>();
    require(v && (*v == "page" || *v == "browser"), source, ": 'key_events' must be \"page\" or \"browser\"");
    c.key_events = *v == "page" ? KeyEvents::Page : KeyEvents::Browser;
  }
  get("frame_skip", c.frame_skip);
  get("reward_alive", c.reward_alive);
  get("reward_crash", c.reward_crash);
  get("max_steps", c.max_steps);
  get("load_timeout_ms", c.load_timeout_ms);
  if (auto node = table.get("observation")) {
    auto* arr = node->as_array();
    require(arr && arr->size() == 2 && (*arr)[0].is_integer() && (*arr)[1].is_integer(), source,
            ": 'observation' must be [height, width], e.g. [80, 80]");
    c.observation_height = static_cast<int>(*(*arr)[0].value<std::int64_t>());
    c.observation_width = static_cast<int>(*(*arr)[1].value<std::int64_t>());
  }
  if (auto node = table.get("background")) {
    auto v = node->value<std::string>();
    require(v && v->size() == 7 && (*v)[0] == '#', source, ": 'background' must be a colour like \"#ffffff\"");
    for (int i = 0; i < 3; ++i) {
      unsigned value = 0;
      require(std::sscanf(v->c_str() + 1 + 2 * i, "%2x", &value) == 1, source, ": 'background' ", *v,
              " is not a hex colour");
      c.background[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(value);
    }
  }
  if (auto node = table.get("action")) {
    auto* arr = node->as_array();
    require(arr && arr->is_array_of_tables(), source,
            ": 'action' must be an array of tables: [[action]] name = \"jump\" keys = [\"ArrowUp\"]");
    c.actions.clear();
    for (auto& element : *arr) {
      const auto& t = *element.as_table();
      GameAction action;
      for (const auto& [key, value] : t) {
        const std::string k(key.str());
        require(k == "name" || k == "keys", source, ": unknown key '", k, "' in [[action]] (known keys: keys, name)");
      }
      auto name = t["name"].value<std::string>();
      require(name.has_value(), source, ": every [[action]] needs a name");
      action.name = *name;
      if (auto keys = t["keys"].as_array()) {
        for (auto& key : *keys) {
          auto s = key.value<std::string>();
          require(s.has_value(), source, ": keys of action '", action.name, "' must be strings");
          action.keys.push_back(*s);
        }
      }
      c.actions.push_back(std::move(action));
    }
  }
  require(!c.url.empty(), source, ": 'url' is required (the game's page: http, https, file or chrome URL)");
  require(!c.actions.empty(), source, ": at least one [[action]] is required");
  require(c.frame_skip >= 1 && c.frame_skip <= 1000, source, ": 'frame_skip' must be 1..1000, got ", c.frame_skip);
  require(c.observation_height >= 1 && c.observation_width >= 1 && c.observation_height <= 1024 &&
              c.observation_width <= 1024,
          source, ": 'observation' sides must be 1..1024");
  require(c.reload || !c.restart.empty(), source, ": 'reload = false' needs a 'restart' script");
  require(c.max_steps >= 0, source, ": 'max_steps' must be >= 0");
  return c;
}

CanvasGameConfig load_game_config(const std::filesystem::path& path) {
  require(std::filesystem::exists(path), path.string(), ": cannot open the game config (check --game-config)");
  // A game config is a page of TOML; anything larger is the wrong file.
  return parse_game_config(io::read_file(path, io::config_file_max_bytes, "game config (TOML, docs/dino.md)"), path.string());
}

}  // namespace qrl::envs
