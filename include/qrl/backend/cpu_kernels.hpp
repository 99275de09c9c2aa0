#pragma once
// Which vector extension the CPU backend's kernels use, against the widest
// this CPU has. The kernels are oneDNN's, generated when a primitive is made
// for the feature bits CPUID reports (no table of CPU models, which is how
// Debian's OpenBLAS 0.3.21 put a 2025 AVX-512 Xeon on SSE3 kernels); what can
// still narrow them is ONEDNN_MAX_CPU_ISA in the environment or a oneDNN
// older than the CPU's extensions. Programs report the result at start and
// warn when it is narrower than the CPU.
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace qrl {

// The vector extensions a kernel can be written for, narrowest first.
enum class VectorIsa { unknown, sse, avx, avx2, avx512 };

inline const char* isa_name(VectorIsa isa) {
  switch (isa) {
    case VectorIsa::sse: return "SSE4.1";
    case VectorIsa::avx: return "AVX";
    case VectorIsa::avx2: return "AVX2+FMA";
    case VectorIsa::avx512: return "AVX-512";
    case VectorIsa::unknown: break;
  }
  return "unknown";
}

// The widest extension this CPU has and the OS enables (libgcc's CPUID
// reading checks XGETBV for the YMM/ZMM state). AVX-512 counts with
// F/BW/DQ/VL, what oneDNN's avx512_core kernels need.
inline VectorIsa cpu_widest_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return VectorIsa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return VectorIsa::avx2;
  if (__builtin_cpu_supports("avx")) return VectorIsa::avx;
  return VectorIsa::sse;
}

// The extension of oneDNN's fp32 kernels for one of its ISA levels.
inline VectorIsa onednn_isa_width(dnnl::cpu_isa isa) {
  using dnnl::cpu_isa;
  switch (isa) {
    case cpu_isa::avx512_core:
    case cpu_isa::avx512_core_vnni:
    case cpu_isa::avx512_core_bf16:
    case cpu_isa::avx512_core_amx: return VectorIsa::avx512;
    case cpu_isa::avx2:
    case cpu_isa::avx2_vnni: return VectorIsa::avx2;
    case cpu_isa::avx: return VectorIsa::avx;
    case cpu_isa::sse41: return VectorIsa::sse;
    default: return VectorIsa::unknown;  // Xeon Phi's avx512_mic, or a level newer than this list
  }
}

inline const char* onednn_isa_name(dnnl::cpu_isa isa) {
  using dnnl::cpu_isa;
  switch (isa) {
    case cpu_isa::sse41: return "sse41";
    case cpu_isa::avx: return "avx";
    case cpu_isa::avx2: return "avx2";
    case cpu_isa::avx2_vnni: return "avx2_vnni";
    case cpu_isa::avx512_mic: return "avx512_mic";
    case cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case cpu_isa::avx512_core: return "avx512_core";
    case cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
  }
}

// The CPU's "model name" from /proc/cpuinfo, for the report and benchmarks.
inline std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      const auto start = line.find_first_not_of(" \t", colon + 1);
      if (colon != std::string::npos && start != std::string::npos) return line.substr(start);
    }
  return "unknown CPU";
}

// What the CPU backend runs, as one line for a program's start.
struct CpuKernels {
  std::string library;     // "oneDNN 2.6.3"
  std::string level;       // oneDNN's ISA level: "avx2", "avx512_core_amx"
  VectorIsa kernels = VectorIsa::unknown;
  VectorIsa cpu = VectorIsa::unknown;
  bool bf16 = false;       // bf16 kernels with fp32 accumulation (AVX512-BF16 or AMX)
  int threads = 1;

  bool narrower_than_cpu() const { return kernels != VectorIsa::unknown && kernels < cpu; }
  std::string line() const {
    std::string s = "cpu kernels: " + library + " " + level + " (" + isa_name(kernels) + (bf16 ? ", bf16" : "") +
                    "), CPU " + cpu_model_name() + " (" + isa_name(cpu) + "), " + std::to_string(threads) +
                    " thread" + (threads == 1 ? "" : "s");
    if (narrower_than_cpu()) s += " -- NARROWER than the CPU: a generic, slower path";
    return s;
  }
};

inline CpuKernels cpu_kernels() {
  CpuKernels k;
  const dnnl_version_t* v = dnnl_version();
  k.library = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  k.level = onednn_isa_name(isa);
  k.kernels = onednn_isa_width(isa);
  k.bf16 = isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  k.cpu = cpu_widest_isa();
  k.threads = omp_get_max_threads();
  return k;
}

// Call at a program's start: warns on stderr, once, when the kernels are
// narrower than the CPU, saying why and what to do.
inline CpuKernels check_cpu_kernels() {
  const CpuKernels k = cpu_kernels();
  if (k.narrower_than_cpu()) {
    const char* limit = std::getenv("ONEDNN_MAX_CPU_ISA");
    if (!limit) limit = std::getenv("DNNL_MAX_CPU_ISA");
    if (limit)
      std::fprintf(stderr, "qrl: warning: %s: ONEDNN_MAX_CPU_ISA=%s limits it; unset it unless you mean to compare\n",
                   k.line().c_str(), limit);
    else
      std::fprintf(stderr, "qrl: warning: %s: this oneDNN does not know the CPU's %s (install a newer libdnnl)\n",
                   k.line().c_str(), isa_name(k.cpu));
  }
  return k;
}

}  // namespace qrl
