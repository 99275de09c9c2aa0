// libFuzzer target for the safetensors reader: any input must either parse
// or raise qrl::Error — no crash, no other exception, no sanitizer report —
// and whatever parses must survive a write/read round trip unchanged.
//
// Build (clang):  cmake -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DQRL_BUILD_FUZZERS=ON
//                 cmake --build build-fuzz --target fuzz_safetensors
// Run:            build-fuzz/tests/fuzz/fuzz_safetensors -max_total_time=300 tests/fuzz/corpus/safetensors
// The same function is replayed over the corpus by ctest (fuzz.safetensors_corpus).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <qrl/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  qrl::io::SafetensorsFile file;
  try {
    file = qrl::io::parse_safetensors(bytes, "fuzz-input");
  } catch (const qrl::Error&) {
    return 0;
  }
  const std::string again = qrl::io::encode_safetensors(file);
  const auto reread = qrl::io::parse_safetensors(again, "round-trip");
  if (reread.metadata != file.metadata || reread.tensors.size() != file.tensors.size()) std::abort();
  for (const auto& [name, tensor] : file.tensors) {
    const auto& other = reread.tensors.at(name);
    if (other.shape != tensor.shape || other.values.size() != tensor.values.size()) std::abort();
    if (!tensor.values.empty() &&
        std::memcmp(other.values.data(), tensor.values.data(), tensor.values.size() * sizeof(float)) != 0)
      std::abort();
  }
  return 0;
}
