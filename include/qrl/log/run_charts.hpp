#pragma once
// A run directory's charts, drawn from its CSV logs: score per 10 games
// (mean and max, as the DQN tutorials plot it) and mean Q per 1000 steps.
// The examples refresh them at each checkpoint and in `plot RUN_DIR`.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <qrl/io/file.hpp>
#include <qrl/log/svg_plot.hpp>

namespace qrl::log {

// Columns of a CSV with a header row, by name.
inline std::map<std::string, std::vector<double>> read_csv_columns(const std::filesystem::path& path) {
  std::map<std::string, std::vector<double>> out;
  std::ifstream in(path);
  if (!in) return out;
  std::string line;
  std::vector<std::string> names;
  if (std::getline(in, line)) {
    std::stringstream header(line);
    for (std::string name; std::getline(header, name, ',');) names.push_back(name);
  }
  while (std::getline(in, line)) {
    std::stringstream row(line);
    std::vector<double> values;
    for (std::string cell; std::getline(row, cell, ',');) values.push_back(std::atof(cell.c_str()));
    if (values.size() != names.size()) continue;  // a row cut by a crash
    for (std::size_t i = 0; i < names.size(); ++i) out[names[i]].push_back(values[i]);
  }
  return out;
}

inline LineChart score_chart(const std::vector<double>& scores, int block = 10) {
  ChartSeries mean{"mean score per " + std::to_string(block) + " games", "#1f77b4", {}, {}};
  ChartSeries max{"max score per " + std::to_string(block) + " games", "#ff7f0e", {}, {}};
  for (std::size_t start = 0; start + block <= scores.size(); start += block) {
    double sum = 0, best = scores[start];
    for (int i = 0; i < block; ++i) {
      sum += scores[start + i];
      best = std::max(best, scores[start + i]);
    }
    const double games = static_cast<double>(start + block);
    mean.x.push_back(games);
    mean.y.push_back(sum / block);
    max.x.push_back(games);
    max.y.push_back(best);
  }
  return {"Score during training", "games played", "score", {max, mean}};
}

inline LineChart q_chart(const std::vector<double>& steps, const std::vector<double>& q) {
  return {"Mean Q per 1000 steps", "environment steps", "mean Q(s, a) of the sampled batches",
          {{"mean Q", "#2ca02c", steps, q}}};
}

// Writes RUN_DIR/scores.svg and RUN_DIR/q_values.svg; returns how many games
// and Q blocks they show.
inline std::pair<std::size_t, std::size_t> write_plots(const std::filesystem::path& run_dir) {
  const auto episodes = read_csv_columns(run_dir / "episodes.csv");
  const auto q = read_csv_columns(run_dir / "q_values.csv");
  const auto scores = episodes.count("score") ? episodes.at("score") : std::vector<double>{};
  const auto steps = q.count("step") ? q.at("step") : std::vector<double>{};
  const auto mean_q = q.count("mean_q") ? q.at("mean_q") : std::vector<double>{};
  io::write_file_atomically(run_dir / "scores.svg", score_chart(scores).svg());
  io::write_file_atomically(run_dir / "q_values.svg", q_chart(steps, mean_q).svg());
  return {scores.size(), steps.size()};
}

}  // namespace qrl::log
