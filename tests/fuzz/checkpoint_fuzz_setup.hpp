#pragma once
// The checkpoint fuzzer's fixture: a small, fully featured training setup
// (two Catch envs, prioritized 2-step replay, Double DQN), the checkpoint it
// saves, and the edit-and-re-sign step applied to a copy of it per input.
#include <unistd.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <qrl/backend/cpu.hpp>
#include <qrl/envs/catch.hpp>
#include <qrl/io/crc32c.hpp>
#include <qrl/io/file.hpp>
#include <qrl/io/state_json.hpp>
#include <qrl/rl/checkpoint.hpp>

namespace qrl::fuzz {

namespace fs = std::filesystem;

inline constexpr int catch_size = 6;

struct Setup {
  Context<cpu> ctx;
  env::VectorEnv<envs::Catch> envs{2, [](int) { return envs::Catch(catch_size); }};
  rl::Dqn<cpu> agent{ctx, network(ctx), {2, catch_size, catch_size}, envs.action_count(), dqn_config()};
  rl::ReplayMemory<cpu> replay{replay_config()};
  rl::Trainer<cpu, envs::Catch> trainer{envs, agent, replay, trainer_config()};

  static nn::Sequential<cpu> network(Context<cpu>& ctx) {
    nn::Sequential<cpu> net;
    net.add<nn::Flatten>();
    net.add<nn::Dense>(2 * catch_size * catch_size, 16).add<nn::ReLU>();
    net.add<nn::Dense>(16, 3);
    Rng rng(7);
    net.initialize(ctx, rng, nn::Init::pytorch_default);
    return net;
  }
  static rl::DqnConfig dqn_config() {
    rl::DqnConfig c;
    c.batch_size = 8;
    c.adam.learning_rate = 1e-3f;
    c.double_dqn = true;
    return c;
  }
  static rl::ReplayConfig replay_config() {
    rl::ReplayConfig c{200, {catch_size, catch_size, 1}, 2, 2};
    c.n_step = 2;
    c.prioritized = rl::PrioritizedConfig{};
    c.prioritized->beta_steps = 1000;
    return c;
  }
  static rl::TrainerConfig trainer_config() {
    rl::TrainerConfig c;
    c.seed = 3;
    c.epsilon = rl::EpsilonSchedule::linear(1.0, 0.1, 200);
    c.schedule.learning_starts = 30;
    c.schedule.train_frequency = 2;
    c.schedule.target_update_interval = 20;
    return c;
  }
};

// Trains 75 steps per env (past learning_starts; each ring of 100 slots is
// part full, so unused slots exist) and saves; built once per process in a
// directory of its own.
inline fs::path base_checkpoint() {
  static const fs::path root = fs::temp_directory_path() / ("qrl_checkpoint_fuzz_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(root, ec);
  });
  Setup s;
  s.trainer.run(150);
  return rl::save_checkpoint(root / "base", s.trainer, s.ctx);
}

// Applies an input (format in checkpoint_fuzzer.cpp) to checkpoint `dir`.
inline void apply_edits(const fs::path& dir, std::string_view input) {
  auto write = [&](const std::string& name, std::string_view bytes) {
    if (name.empty() || name[0] == '/' || name.find("..") != std::string::npos) return;
    for (const char c : name)  // names the manifest (JSON, UTF-8) can hold
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' || c == '/')) return;
    const fs::path path = dir / name;
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    if (ec) return;
    fs::remove(path, ec);  // a symlink in the copy is replaced, not written through
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };
  constexpr std::string_view marker = "@@ ";
  auto next_marker = [&](std::size_t from) {
    for (std::size_t p = from; p < input.size();) {
      if (input.compare(p, marker.size(), marker) == 0 && (p == 0 || input[p - 1] == '\n')) return p;
      const auto nl = input.find('\n', p);
      if (nl == std::string_view::npos) break;
      p = nl + 1;
    }
    return input.size();
  };
  std::size_t at = next_marker(0);
  const std::string_view state = input.substr(0, at);
  if (!state.empty()) write("state.json", state.substr(0, state.size() - (state.back() == '\n' && at < input.size())));
  while (at < input.size()) {
    const auto name_end = input.find('\n', at);
    if (name_end == std::string_view::npos) break;
    const std::string name(input.substr(at + marker.size(), name_end - at - marker.size()));
    const std::size_t next = next_marker(name_end + 1);
    std::string_view bytes = input.substr(name_end + 1, next - name_end - 1);
    if (next < input.size() && !bytes.empty() && bytes.back() == '\n') bytes.remove_suffix(1);
    write(name, bytes);
    at = next;
  }
}

// Rewrites the manifest so every regular file the checkpoint holds is listed
// with its current size and CRC-32C.
inline void resign(const fs::path& dir) {
  nlohmann::json files = nlohmann::json::object();
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file() || entry.path().filename() == "COMPLETE") continue;
    const auto bytes = io::read_file(entry.path());
    files[fs::relative(entry.path(), dir).string()] = {{"bytes", bytes.size()},
                                                       {"crc32c", io::hex_u64(io::crc32c(bytes.data(), bytes.size()))}};
  }
  nlohmann::json manifest{{"format", "qrl-checkpoint"}, {"format_version", rl::checkpoint_format_version}, {"files", files}};
  std::ofstream(dir / "COMPLETE", std::ios::trunc) << manifest.dump(1);
}

// A fresh copy of the base checkpoint with `input` applied and re-signed.
// The unedited checkpoint (read-only: edits go to copies).
inline const fs::path& base_directory() {
  static const fs::path base = base_checkpoint();
  return base;
}

inline fs::path prepare(std::string_view input) {
  const fs::path& base = base_directory();
  const fs::path work = base.parent_path() / "work";
  fs::remove_all(work);
  fs::copy(base, work, fs::copy_options::recursive);
  apply_edits(work, input);
  resign(work);
  return work;
}

}  // namespace qrl::fuzz
