// Eigen's own GEMM for bench_cpu_kernels, in its own translation unit so
// that only Eigen is compiled with -march=native (bench/CMakeLists.txt).
#include <Eigen/Core>

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void eigen_sgemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, const float* b, float* c) {
  Eigen::Map<RowMajor> out(c, m, n);
  const Eigen::Map<const RowMajor> a_mat(a, trans_a ? k : m, trans_a ? m : k), b_mat(b, trans_b ? n : k, trans_b ? k : n);
  if (trans_a && trans_b) out.noalias() = a_mat.transpose() * b_mat.transpose();
  else if (trans_a) out.noalias() = a_mat.transpose() * b_mat;
  else if (trans_b) out.noalias() = a_mat * b_mat.transpose();
  else out.noalias() = a_mat * b_mat;
}

const char* eigen_simd() { return Eigen::SimdInstructionSetsInUse(); }
