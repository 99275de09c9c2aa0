#pragma once
// --backend for every example: one --backend option and one dispatch from
// its value to a backend tag, so flappy, atari and dino accept and refuse the
// same things with the same words.
//
// The CUDA branch exists when the example links qrl::cuda (which defines
// QRL_HAVE_CUDA); a build without it, or a machine without a usable device,
// gets one error line before anything is built.
#include <CLI/CLI.hpp>

#include <string>
#include <utility>

#include <qrl/backend/cpu.hpp>
#include <qrl/core/error.hpp>
#if defined(QRL_HAVE_CUDA)
#include <qrl/backend/cuda.hpp>
#endif

namespace qrl::examples {

// Whether this binary was built with the CUDA backend (for --help).
inline constexpr bool built_with_cuda =
#if defined(QRL_HAVE_CUDA)
    true;
#else
    false;
#endif

inline CLI::Option* add_backend_option(CLI::App* cmd, std::string& backend) {
  return cmd
      ->add_option("--backend", backend,
                   built_with_cuda ? "Compute backend (cuda: an NVIDIA GPU through cuDNN and cuBLAS)"
                                   : "Compute backend (this build has no CUDA backend: cuda stops with an error)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
}

// Calls fn(cpu{}) or fn(cuda{}) by name; both instantiations are compiled in
// a CUDA build, so the examples' code must serve both backends.
template <class Fn>
int with_backend(const std::string& backend, Fn&& fn) {
  if (backend == "cpu") return std::forward<Fn>(fn)(cpu{});
  require(backend == "cuda", "--backend ", backend, ": unknown backend; use cpu or cuda");
#if defined(QRL_HAVE_CUDA)
  // Checked before anything is built, so a machine without a GPU gets one
  // line instead of an error from deep inside the first allocation.
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) fail("--backend cuda: ", reason);
  return std::forward<Fn>(fn)(cuda{});
#else
  fail("--backend cuda: this build has no CUDA backend (configure with the CUDA toolkit and cuDNN installed, "
       "QRL_ENABLE_CUDA=ON); use --backend cpu");
#endif
}

}  // namespace qrl::examples
