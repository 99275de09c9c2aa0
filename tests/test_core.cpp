#include <doctest/doctest.h>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>

#include <vector>

TEST_SUITE("core") {
  TEST_CASE("Rng is reproducible and its state round-trips") {
    qrl::Rng a(42), b(42), c(43);
    for (int i = 0; i < 10; ++i) {
      const auto x = a.next_u64();
      CHECK(x == b.next_u64());
      CHECK(x != c.next_u64());
    }
    const auto saved = a.state();
    std::vector<std::uint64_t> first;
    for (int i = 0; i < 5; ++i) first.push_back(a.next_u64());
    a.set_state(saved);
    for (int i = 0; i < 5; ++i) CHECK(a.next_u64() == first[i]);
  }

  TEST_CASE("Rng uniform_index covers the range evenly") {
    qrl::Rng rng(7);
    std::vector<int> counts(10, 0);
    constexpr int draws = 100000;
    for (int i = 0; i < draws; ++i) ++counts[rng.uniform_index(10)];
    for (int count : counts) CHECK(count == doctest::Approx(draws / 10).epsilon(0.05));
  }

  TEST_CASE("Rng normal has unit variance") {
    qrl::Rng rng(3);
    double sum = 0, sum_sq = 0;
    constexpr int draws = 200000;
    for (int i = 0; i < draws; ++i) {
      const double x = rng.normal();
      sum += x;
      sum_sq += x * x;
    }
    CHECK(sum / draws == doctest::Approx(0.0).epsilon(0.01).scale(1.0));
    CHECK(sum_sq / draws == doctest::Approx(1.0).epsilon(0.02));
  }

  TEST_CASE("require throws qrl::Error with the message") {
    CHECK_THROWS_WITH_AS(qrl::require(false, "batch size ", 3, " must be even"), "batch size 3 must be even", qrl::Error);
    CHECK_NOTHROW(qrl::require(true, "never"));
  }
}

#include <qrl/backend/cpu_convolution.hpp>
#include <qrl/backend/cpu_kernels.hpp>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace {
// The widest extension by /proc/cpuinfo's flags: a second reading of the CPU,
// independent of libgcc's CPUID code that cpu_widest_isa() uses.
qrl::VectorIsa isa_from_proc_cpuinfo() {
  std::ifstream in("/proc/cpuinfo");
  std::set<std::string> flags;
  for (std::string line; std::getline(in, line);)
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      for (std::string w; words >> w;) flags.insert(w);
      break;
    }
  REQUIRE_MESSAGE(!flags.empty(), "/proc/cpuinfo has no flags line");
  const auto has = [&](const char* f) { return flags.count(f) > 0; };
  if (has("avx512f") && has("avx512bw") && has("avx512dq") && has("avx512vl")) return qrl::VectorIsa::avx512;
  if (has("avx2") && has("fma")) return qrl::VectorIsa::avx2;
  if (has("avx")) return qrl::VectorIsa::avx;
  return qrl::VectorIsa::sse;
}
}  // namespace

TEST_SUITE("core") {
  TEST_CASE("the CPU backend's kernels are as wide as this CPU's vector units") {
    const qrl::CpuKernels k = qrl::cpu_kernels();
    INFO(k.line());
    CHECK(k.cpu == isa_from_proc_cpuinfo());
    REQUIRE_MESSAGE(k.kernels != qrl::VectorIsa::unknown, "oneDNN's ISA level '", k.level,
                    "' is not in qrl::onednn_isa_width: add it");
    CHECK_MESSAGE(k.kernels == k.cpu, "a generic path: oneDNN runs ", qrl::isa_name(k.kernels), " kernels on a CPU with ",
                  qrl::isa_name(k.cpu), " (is ONEDNN_MAX_CPU_ISA set?)");
    CHECK(k.line().find("NARROWER") == std::string::npos);
    CHECK(k.line().find(k.library) != std::string::npos);
    CHECK(k.threads >= 1);
  }

  TEST_CASE("a convolution's JIT kernels use the ISA oneDNN reports") {
    // What oneDNN made for Nature DQN's second layer names its ISA level
    // ("jit:avx2", "brg:avx512_core"): the report above is what runs.
    qrl::Conv2dGeometry g;
    g.batch = 32, g.in_channels = 32, g.in_h = g.in_w = 20, g.out_channels = 64, g.kernel_h = g.kernel_w = 4;
    g.stride_h = g.stride_w = 2, g.out_h = g.out_w = 9;
    const qrl::cpu_detail::ConvPlan plan(g);
    const std::string kernels = plan.kernels();
    INFO("oneDNN chose ", kernels);
    CHECK(kernels.find("jit") != std::string::npos);
    CHECK(kernels.find("gemm") == std::string::npos);  // not its im2col fallback
    const std::string level = qrl::cpu_kernels().level;
    const std::string family = level.substr(0, level.find('_'));  // "avx512" of "avx512_core_amx"
    CHECK(kernels.find(family) != std::string::npos);
  }

  TEST_CASE("oneDNN's ISA levels map to the vector extension of their fp32 kernels") {
    using dnnl::cpu_isa;
    using qrl::VectorIsa;
    CHECK(qrl::onednn_isa_width(cpu_isa::sse41) == VectorIsa::sse);
    CHECK(qrl::onednn_isa_width(cpu_isa::avx) == VectorIsa::avx);
    CHECK(qrl::onednn_isa_width(cpu_isa::avx2) == VectorIsa::avx2);
    CHECK(qrl::onednn_isa_width(cpu_isa::avx2_vnni) == VectorIsa::avx2);
    CHECK(qrl::onednn_isa_width(cpu_isa::avx512_core) == VectorIsa::avx512);
    CHECK(qrl::onednn_isa_width(cpu_isa::avx512_core_amx) == VectorIsa::avx512);
    CHECK(qrl::onednn_isa_width(cpu_isa::avx512_mic) == VectorIsa::unknown);
    CHECK(std::string(qrl::onednn_isa_name(cpu_isa::avx512_core_bf16)) == "avx512_core_bf16");
  }
}
