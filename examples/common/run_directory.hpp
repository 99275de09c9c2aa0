#pragma once
// A run directory across invocations: which checkpoint --resume means, and
// the CSV logs cut back to a checkpoint's step when a run resumes from it,
// so the rerun's rows replace the ones logged past the checkpoint.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <qrl/core/error.hpp>
#include <qrl/io/file.hpp>
#include <qrl/rl/checkpoint.hpp>

namespace qrl::examples {

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

}  // namespace qrl::examples
