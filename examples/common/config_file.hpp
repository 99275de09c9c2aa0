#pragma once
// The --config file of an example: which one a command line reads, and the
// strict check it gets before CLI11 reads it. CLI11 2.1's reader maps keys to
// options (so a value passes the same validators as on the command line) but
// skips what it does not know: a typo, a key outside its [train] section or a
// file of binary garbage would start a run on the defaults. So the file is
// first parsed as TOML (toml++), and every key must name an option of the
// subcommand whose section holds it, with a value of the option's type.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include <qrl/core/error.hpp>
#include <qrl/io/file.hpp>

namespace qrl::examples {

// The run directory a --resume argument belongs to.
inline std::filesystem::path resume_run_dir(const std::string& resume) {
  std::filesystem::path p(resume);
  if (p.filename().empty()) p = p.parent_path();
  if (p.filename().string().rfind("step_", 0) == 0 || p.filename().string().rfind("debug_", 0) == 0)
    return p.parent_path().parent_path();
  return p;
}

// The config file a command line reads: --config FILE, else, with --resume
// RUN_DIR, that run's RUN_DIR/config.toml when it exists; empty: none.
// `explicit_config`: whether the file came from --config.
struct ConfigChoice {
  std::string path;
  bool explicit_config = false;
};
inline ConfigChoice config_file_in_args(int argc, char** argv) {
  ConfigChoice choice;
  std::string from_resume;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) choice = {argv[i + 1], true};
    if (a.rfind("--config=", 0) == 0) choice = {a.substr(9), true};
    std::string dir;
    if (a == "--resume" && i + 1 < argc) dir = argv[i + 1];
    if (a.rfind("--resume=", 0) == 0) dir = a.substr(9);
    if (!dir.empty()) {
      const auto p = resume_run_dir(dir) / "config.toml";
      std::error_code ec;
      if (std::filesystem::exists(p, ec)) from_resume = p.string();
    }
  }
  if (!choice.explicit_config) choice.path = from_resume;
  return choice;
}

// The file parsed as TOML; errors name the file and line.
inline toml::table read_config_toml(const std::string& path) {
  const std::string text = io::read_file(path, io::config_file_max_bytes, "config file (TOML)");
  try {
    return toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    fail(path, ":", e.source().begin.line, ": not valid TOML: ", e.description(),
         " (write options as `train.steps = 300000` or under a [train] section; docs/runs.md)");
  }
}

namespace detail {

inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// " (did you mean 'steps'?)" for the closest option name, if one is close.
inline std::string did_you_mean(const CLI::App& cmd, const std::string& key) {
  std::string best;
  std::size_t best_distance = 3;  // at most two edits away
  for (const CLI::Option* opt : cmd.get_options())
    for (const auto& name : opt->get_lnames()) {
      const auto d = edit_distance(key, name);
      if (d < best_distance) best = name, best_distance = d;
    }
  return best.empty() ? std::string() : " (did you mean '" + best + "'?)";
}

inline std::string where(const std::string& path, const toml::node& node) {
  const auto line = node.source().begin.line;
  return line > 0 ? path + ":" + std::to_string(line) : path;
}

// The TOML value type an option takes, from CLI11's type name ("INT",
// "UINT", "FLOAT", "TEXT", "BOOLEAN"; validators add ":..." after it).
inline std::string expected_type(const CLI::Option& opt) {
  if (opt.get_expected_min() == 0) return "boolean";
  const std::string type = opt.get_type_name().substr(0, opt.get_type_name().find(':'));
  if (type == "INT" || type == "UINT") return "integer";
  if (type == "FLOAT") return "number";
  return "string";
}

inline bool value_has_type(const toml::node& v, const std::string& type) {
  if (type == "boolean") return v.is_boolean();
  if (type == "integer") return v.is_integer();
  if (type == "number") return v.is_integer() || v.is_floating_point();
  return v.is_string();
}

inline const char* toml_type_name(const toml::node& v) {
  if (v.is_string()) return "a string";
  if (v.is_integer()) return "an integer";
  if (v.is_floating_point()) return "a floating-point number";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "an array";
  if (v.is_table()) return "a table";
  return "a date or time";
}

inline void check_option_value(const std::string& path, const CLI::App& cmd, const std::string& prefix,
                               const std::string& key, const toml::node& value) {
  const CLI::Option* opt = cmd.get_option_no_throw("--" + key);
  const std::string full = prefix + key;
  if (opt == nullptr || opt->get_lnames().empty())
    fail(where(path, value), ": unknown key '", full, "': '", cmd.get_name(), "' has no option --", key,
         did_you_mean(cmd, key));
  require(opt->get_configurable(), where(path, value), ": '", full, "' cannot be set in a config file; give --",
          key, " on the command line");
  const std::string type = expected_type(*opt);
  const auto check_one = [&](const toml::node& v) {
    require(value_has_type(v, type), where(path, v), ": '", full, "' must be ", type == "integer" ? "an " : "a ",
            type, ", not ", toml_type_name(v));
  };
  if (const auto* array = value.as_array()) {
    require(opt->get_expected_max() > 1, where(path, value), ": '", full, "' takes one value, not an array");
    for (const auto& v : *array) check_one(v);
  } else {
    check_one(value);
  }
}

}  // namespace detail

// Checks every key of the config file at `path` against `app`: top-level
// keys name options of the app itself or are sections (tables) named after
// its subcommands, whose keys name that subcommand's options. Also refuses a
// file that is not TOML, not a regular file or too large.
inline void check_config_file(const CLI::App& app, const std::string& path) {
  const toml::table table = read_config_toml(path);
  for (const auto& [key_node, value] : table) {
    const std::string key(key_node.str());
    if (const auto* section = value.as_table()) {
      const CLI::App* cmd = nullptr;
      for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
        if (sub->get_name() == key) cmd = sub;
      if (cmd == nullptr) {
        std::string names;
        for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
          names += (names.empty() ? "" : ", ") + sub->get_name();
        fail(detail::where(path, value), ": unknown section '", key, "' (the sections are the subcommands: ", names,
             ")");
      }
      for (const auto& [option_node, option_value] : *section) {
        require(!option_value.is_table(), detail::where(path, option_value), ": unknown section '", key, ".",
                option_node.str(), "' (options are keys of [", key, "])");
        detail::check_option_value(path, *cmd, key + ".", std::string(option_node.str()), option_value);
      }
      continue;
    }
    if (app.get_option_no_throw("--" + key) == nullptr) {
      // A subcommand's option written without its section.
      std::string owners;
      for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
        if (sub->get_option_no_throw("--" + key) != nullptr) owners += (owners.empty() ? "" : " or ") + sub->get_name() + "." + key;
      require(owners.empty(), detail::where(path, value), ": '", key,
              "' is not an option of the program itself; write it as ", owners, " (or under a [section])");
    }
    detail::check_option_value(path, app, "", key, value);
  }
}

// The value of `section.key` (or a top-level `key`) as a string, from a
// config file that may be unreadable or invalid (then: none; the check
// above reports it once the options exist).
inline std::optional<std::string> config_string(const std::string& path, const std::string& key) {
  try {
    const toml::table table = read_config_toml(path);
    for (const auto& [name, value] : table) {
      if (const auto* section = value.as_table()) {
        if (const auto v = (*section)[key].value<std::string>()) return v;
      } else if (name.str() == key) {
        if (const auto v = value.value<std::string>()) return v;
      }
    }
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace qrl::examples
