// doctest's main, warning first when the CPU backend's kernels are narrower
// than the CPU (qrl/backend/cpu_kernels.hpp).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <qrl/backend/cpu_kernels.hpp>

int main(int argc, char** argv) {
  qrl::check_cpu_kernels();
  doctest::Context context(argc, argv);
  return context.run();
}
