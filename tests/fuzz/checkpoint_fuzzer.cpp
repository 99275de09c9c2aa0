// libFuzzer target for checkpoint loading: every field of a checkpoint is
// hostile. An input edits a real checkpoint (two Catch envs, prioritized
// 2-step replay, trained past learning_starts); the manifest is re-signed
// after the edit, so the input reaches the field checks rather than stopping
// at a CRC mismatch. The load must either succeed — and then the restored
// trainer must keep training without a crash, a sanitizer report or a
// non-finite weight — or raise qrl::Error. Any other exception (bad_alloc,
// a raw JSON exception) or a crash is a bug.
//
// Input format: the text up to the first line "@@ NAME" replaces state.json;
// each "@@ NAME" line starts the new contents of file NAME in the checkpoint
// (a chunk under arrays/, model.safetensors, ...). An empty first part keeps
// state.json as saved. Names that would leave the checkpoint are ignored by
// the harness (the loader must refuse such names inside state.json itself).
//
// Build (clang): see tests/CMakeLists.txt (fuzz.checkpoint_libfuzzer); the
// same function is replayed over the committed corpus and the crafted cases
// of checkpoint_replay_main.cpp by ctest (fuzz.checkpoint_corpus).
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <qrl/envs/catch.hpp>
#include <qrl/io/crc32c.hpp>
#include <qrl/io/file.hpp>
#include <qrl/rl/checkpoint.hpp>

#include "checkpoint_fuzz_entry.hpp"
#include "checkpoint_fuzz_setup.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace qrl;
  const fs::path work = qrl::fuzz::prepare(std::string_view(reinterpret_cast<const char*>(data), size));

  qrl::fuzz::Setup s;
  try {
    rl::load_checkpoint(work, s.trainer, s.ctx);
  } catch (const qrl::Error&) {
    return 0;
  }
  // Loaded: every value it holds must be usable.
  s.trainer.run(s.trainer.step() + 40);
  for (auto& p : s.agent.online().parameters())
    for (float v : to_host(s.ctx, *p.value))
      if (!std::isfinite(v)) std::abort();
  return 0;
}

namespace qrl::fuzz {

const std::filesystem::path& base_checkpoint_directory() { return base_directory(); }

std::string load_message(std::string_view input) {
  const auto dir = prepare(input);
  Setup s;
  try {
    rl::load_checkpoint(dir, s.trainer, s.ctx);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace qrl::fuzz
