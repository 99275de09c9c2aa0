#pragma once
// What checkpoint_replay_main.cpp calls of checkpoint_fuzzer.cpp: declarations
// only, so the replay program's own translation unit does not compile the
// training stack a second time.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace qrl::fuzz {

// The unedited checkpoint the inputs edit copies of (read-only).
const std::filesystem::path& base_checkpoint_directory();

// "" when `input` (format in checkpoint_fuzzer.cpp) loads, else the error's message.
std::string load_message(std::string_view input);

}  // namespace qrl::fuzz
