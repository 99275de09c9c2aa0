// The checkpoint fuzz target without libFuzzer (any compiler), as a test:
// 1. crafted damage — each case must be refused with a message that names
//    what is wrong (the cases a fault-injection pass on format 1 found, and
//    the ones its field checks guard against since);
// 2. the unedited checkpoint must load and train on;
// 3. every file of the given corpus directories must behave (load or
//    qrl::Error, no crash).
// `--write-corpus DIR` writes the crafted cases as libFuzzer seeds.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <qrl/io/file.hpp>
#include <qrl/kernels/replay.cuh>

// The fuzz target and its fixture live in checkpoint_fuzzer.cpp, so that the
// training stack is compiled once for both programs' translation units.
#include "checkpoint_fuzz_entry.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Base {
  // The unedited checkpoint itself: prepare() rewrites its work copy for
  // every case, so a case must not read from that.
  fs::path dir = qrl::fuzz::base_checkpoint_directory();
  json state = json::parse(qrl::io::read_file(dir / "state.json"));
  std::string file(const std::string& name) const { return qrl::io::read_file(dir / name); }
  std::string chunk(const std::string& array) const {
    return state["arrays"][array]["chunks"][0].get<std::string>();
  }
};

std::string with_state(const json& state) { return state.dump(); }
std::string with_file(const std::string& name, const std::string& bytes) { return "@@ " + name + "\n" + bytes; }

struct Case {
  const char* name;
  std::function<std::string(const Base&)> input;
  const char* expected;  // substring of the error; nullptr: must load
};

template <class T>
std::string poke(std::string bytes, std::size_t index, T value) {
  std::memcpy(bytes.data() + index * sizeof(T), &value, sizeof(T));
  return bytes;
}

// Slot 2 of ring `s` holds a transition in the base checkpoint (checked).
std::vector<Case> cases() {
  return {
      {"unedited", [](const Base&) { return std::string(); }, nullptr},
      {"negative_action",
       [](const Base& b) {
         const auto c = b.chunk("replay.ring0.actions");
         return with_file(c, poke<std::int16_t>(b.file(c), 2, -1));
       },
       "holds action -1, outside [0, 3)"},
      {"action_out_of_range",
       [](const Base& b) {
         const auto c = b.chunk("replay.ring1.actions");
         return with_file(c, poke<std::int16_t>(b.file(c), 2, 7));
       },
       "holds action 7, outside [0, 3)"},
      {"nan_reward",
       [](const Base& b) {
         const auto c = b.chunk("replay.ring1.rewards");
         return with_file(c, poke<float>(b.file(c), 2, std::numeric_limits<float>::quiet_NaN()));
       },
       "holds reward nan, not a finite value within"},
      {"huge_reward",
       [](const Base& b) {  // finite, but its TD errors and priorities would overflow
         const auto c = b.chunk("replay.ring1.rewards");
         return with_file(c, poke<float>(b.file(c), 3, 1.38e31f));
       },
       "holds reward 1.38e+31, not a finite value within"},
      {"invalid_flags",
       [](const Base& b) {
         const auto c = b.chunk("replay.ring0.flags");
         return with_file(c, poke<std::uint8_t>(b.file(c), 2, 0x7));
       },
       "invalid flags 7"},
      {"chunk_is_dev_zero",
       [](const Base& b) {
         auto s = b.state;
         s["arrays"]["replay.ring0.frames"]["chunks"] = {"/dev/zero"};
         return with_state(s);
       },
       "leaves the checkpoint directory"},
      {"chunk_leaves_directory",
       [](const Base& b) {
         auto s = b.state;
         s["arrays"]["replay.ring0.actions"]["chunks"] = {"arrays/../../../etc/passwd"};
         return with_state(s);
       },
       "leaves the checkpoint directory"},
      {"huge_array",
       [](const Base& b) {
         auto s = b.state;
         s["arrays"]["replay.ring1.frames"]["bytes"] = 1'000'000'000'000'000'000ULL;
         return with_state(s);
       },
       "expected"},
      {"missing_trainer",
       [](const Base& b) {
         auto s = b.state;
         s.erase("trainer");
         return with_state(s);
       },
       "missing 'trainer'"},
      {"missing_env_state",
       [](const Base& b) {
         auto s = b.state;
         s["envs"] = json::array();
         return with_state(s);
       },
       "'envs' must list 2 env states"},
      {"count_above_capacity",
       [](const Base& b) {
         auto s = b.state;
         s["replay"]["rings"][1]["count"] = 101;
         return with_state(s);
       },
       "is impossible for ring 1 of capacity 100"},
      {"transitions_disagree",
       [](const Base& b) {
         auto s = b.state;
         s["replay"]["rings"][0]["transitions"] = s["replay"]["rings"][0]["transitions"].get<int>() - 1;
         return with_state(s);
       },
       "transitions, its position says"},
      {"cursor_not_a_number",
       [](const Base& b) {
         auto s = b.state;
         s["replay"]["rings"][0]["cursor"] = "ten";
         return with_state(s);
       },
       "cursor"},
      {"priority_on_unused_slot",
       [](const Base& b) {
         const auto c = b.chunk("replay.priorities");
         return with_file(c, poke<double>(b.file(c), 99, 0.5));  // ring 0's last slot; it holds 75
       },
       "slot 99 has a priority but no transition"},
      {"priority_nan",
       [](const Base& b) {
         const auto c = b.chunk("replay.priorities");
         return with_file(c, poke<double>(b.file(c), 3, std::numeric_limits<double>::quiet_NaN()));
       },
       "every leaf must be finite"},
      {"max_priority_negative",
       [](const Base& b) {
         auto s = b.state;
         s["replay"]["max_priority"] = -1.0;
         return with_state(s);
       },
       "max_priority"},
      {"other_gamma",
       [](const Base& b) {
         auto s = b.state;
         s["agent"]["config"]["gamma"] = 0.5;
         return with_state(s);
       },
       "agent.gamma: 0.5 in the checkpoint"},
      {"state_not_json", [](const Base&) { return std::string("{\"step\": "); }, "not valid JSON"},
      {"negative_step",
       [](const Base& b) {
         auto s = b.state;
         s["step"] = -3;
         return with_state(s);
       },
       "negative step"},
      {"episode_record_negative_length",
       [](const Base& b) {
         auto s = b.state;
         auto& recent = s["trainer"]["recent_episodes"];
         if (recent.empty()) return std::string("base checkpoint has no episode record");
         recent[0]["length"] = -5;
         return with_state(s);
       },
       "is impossible (negative count or non-finite value)"},
      {"frame_stack_short",
       [](const Base& b) {
         const auto c = b.chunk("trainer.frame_stack.1");
         return with_file(c, b.file(c).substr(1));
       },
       "trainer.frame_stack.1"},
      {"weights_truncated",
       [](const Base& b) { return with_file("model.safetensors", b.file("model.safetensors").substr(0, 40)); },
       "model.safetensors"},
  };
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> corpora;
  std::string write_dir;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--write-corpus") == 0 && i + 1 < argc)
      write_dir = argv[++i];
    else
      corpora.push_back(argv[i]);
  }
  const Base base;
  // The cases poke slot 2 of each ring: it must hold a transition.
  for (int s = 0; s < 2; ++s)
    if (!(qrl::io::read_file(base.dir / base.chunk("replay.ring" + std::to_string(s) + ".flags"))[2] &
          qrl::kernels::replay_has_transition)) {
      std::printf("FAIL: the base checkpoint's slot 2 of ring %d holds no transition; move the cases' slot\n", s);
      return 1;
    }
  int failures = 0;
  for (const auto& c : cases()) {
    const std::string input = c.input(base);
    if (!write_dir.empty()) {
      std::ofstream(fs::path(write_dir) / c.name, std::ios::binary) << input;
      continue;
    }
    const std::string message = qrl::fuzz::load_message(input);
    const bool ok = c.expected ? message.find(c.expected) != std::string::npos : message.empty();
    std::printf("%s %-24s %s\n", ok ? "ok  " : "FAIL", c.name, message.empty() ? "(loaded)" : message.c_str());
    if (!ok) {
      std::printf("     expected %s\n", c.expected ? c.expected : "the checkpoint to load");
      ++failures;
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
  }
  if (!write_dir.empty()) return 0;
  int files = 0;
  for (const auto& dir : corpora)
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      ++files;
    }
  std::printf("%zu crafted cases, %d failed; replayed %d corpus files\n", cases().size(), failures, files);
  return failures == 0 ? 0 : 1;
}
