// The CPU compute libraries Debian ships, side by side in one run, at the
// shapes of a Nature-DQN update (batch 32) and of acting (batch 1): how the
// CPU backend's library was chosen (docs/architecture.md, "The CPU compute
// path"). One JSON line per figure:
//   sgemm_peak        a 2048^3 SGEMM: OpenBLAS, BLIS, oneDNN's dnnl_sgemm, Eigen (-march=native)
//   sgemm_dqn_shapes  the update's GEMMs as im2col + SGEMM issues them (and the dense layers), each library,
//                     and as a ratio to its peak
//   conv_dqn          Nature DQN's convolutions as in an update at batch 32 (two forwards, backward data and
//                     weights) and as in acting at batch 1 (one forward): qrl's CPU backend (oneDNN's JIT
//                     kernels, NCHW tensors reordered in and out) against oneDNN on plain NCHW (its GEMM path)
//                     and oneDNN in blocked layouts without any reorder (the floor)
//
//   build/bench/bench_cpu_kernels [seconds-per-figure] [threads]
// OpenBLAS's cblas.h first: blis.h declares a CBLAS of its own under the
// same include guard, without OpenBLAS's extensions.
#include <cblas.h>

#include <qrl/backend/cpu.hpp>
#include <qrl/backend/cpu_kernels.hpp>
#include <qrl/core/rng.hpp>

#include "timing.hpp"

#include <blis.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

void eigen_sgemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, const float* b, float* c);
const char* eigen_simd();

namespace {

using bench::seconds_per_call;

struct Gemm {
  bool trans_a, trans_b;
  int m, n, k;
  double flops() const { return 2.0 * m * n * k; }
};

// Row-major C = op(A) op(B), one library each.
using SgemmFn = std::function<void(const Gemm&, const float*, const float*, float*)>;
struct Library {
  std::string name;
  SgemmFn sgemm;
};

std::vector<Library> libraries() {
  std::vector<Library> libs;
  const std::string openblas = openblas_get_config();  // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen ..."
  libs.push_back({openblas.substr(0, openblas.find(' ', 9)) + " " + openblas_get_corename(), [](const Gemm& g, const float* a,
                                                                                 const float* b, float* c) {
                    cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
                                g.trans_b ? CblasTrans : CblasNoTrans, g.m, g.n, g.k, 1.0f, a, g.trans_a ? g.m : g.k,
                                b, g.trans_b ? g.k : g.n, 0.0f, c, g.n);
                  }});
  const arch_t arch = bli_arch_query_id();
  libs.push_back({std::string("BLIS ") + bli_info_get_version_str() + " " + bli_arch_string(arch),
                  [](const Gemm& g, const float* a, const float* b, float* c) {
                    float one = 1.0f, zero = 0.0f;
                    // Row-major: strides (row, col) = (ld, 1).
                    bli_sgemm(g.trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                              g.trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, g.m, g.n, g.k, &one,
                              const_cast<float*>(a), g.trans_a ? g.m : g.k, 1, const_cast<float*>(b),
                              g.trans_b ? g.k : g.n, 1, &zero, c, g.n, 1);
                  }});
  const dnnl_version_t* v = dnnl_version();
  libs.push_back({"oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                      std::to_string(v->patch) + " dnnl_sgemm",
                  [](const Gemm& g, const float* a, const float* b, float* c) {
                    dnnl_sgemm(g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', g.m, g.n, g.k, 1.0f, a,
                               g.trans_a ? g.m : g.k, b, g.trans_b ? g.k : g.n, 0.0f, c, g.n);
                  }});
  libs.push_back({std::string("Eigen 3.4 ") + eigen_simd(), [](const Gemm& g, const float* a, const float* b, float* c) {
                    eigen_sgemm(g.trans_a, g.trans_b, g.m, g.n, g.k, a, b, c);
                  }});
  return libs;
}

// Nature DQN (4x84x84 -> 32c8s4 -> 64c4s2 -> 64c3s1 -> 512 -> actions) at `batch`.
std::vector<qrl::Conv2dGeometry> nature_convs(int batch) {
  std::vector<qrl::Conv2dGeometry> convs;
  int c = 4, h = 84;
  for (auto [oc, k, s] : {std::tuple{32, 8, 4}, {64, 4, 2}, {64, 3, 1}}) {
    qrl::Conv2dGeometry g;
    g.batch = batch, g.in_channels = c, g.in_h = g.in_w = h, g.out_channels = oc, g.kernel_h = g.kernel_w = k;
    g.stride_h = g.stride_w = s, g.out_h = g.out_w = (h - k) / s + 1;
    convs.push_back(g);
    c = oc, h = g.out_h;
  }
  return convs;
}

// The GEMMs of one update as im2col + SGEMM issues them: two forwards
// (target on s', online on s), one backward (no input gradient for the first
// layer), with columns laid out [patch, batch * pixels].
std::vector<Gemm> update_gemms(int batch, int actions) {
  std::vector<Gemm> fwd, bwd;
  bool first = true;
  for (const auto& g : nature_convs(batch)) {
    const int patch = static_cast<int>(g.patch_size()), cols = static_cast<int>(batch * g.output_pixels());
    fwd.push_back({false, false, g.out_channels, cols, patch});
    bwd.push_back({false, true, g.out_channels, patch, cols});
    if (!first) bwd.push_back({true, false, patch, cols, g.out_channels});
    first = false;
  }
  for (auto [in, out] : {std::pair{3136, 512}, {512, actions}}) {
    fwd.push_back({false, true, batch, out, in});  // y = x W^T
    bwd.push_back({true, false, out, in, batch});  // dW = dy^T x
    bwd.push_back({false, false, batch, in, out}); // dx = dy W
  }
  std::vector<Gemm> all = fwd;
  all.insert(all.end(), fwd.begin(), fwd.end());
  all.insert(all.end(), bwd.begin(), bwd.end());
  return all;
}

std::vector<float> random_floats(std::size_t n, qrl::Rng& rng) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.uniform()) - 0.5f;
  return v;
}

// oneDNN's convolutions for the three layers: forward training, backward
// data (not for the first layer) and backward weights with bias; or, for
// acting, one forward inference.
struct OneDnnConvs {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::vector<dnnl::primitive> primitives;
  std::vector<std::unordered_map<int, dnnl::memory>> arguments;
  std::string kernels;

  OneDnnConvs(const std::vector<qrl::Conv2dGeometry>& convs, bool blocked, bool acting) {
    using namespace dnnl;
    using tag = memory::format_tag;
    const auto f32 = memory::data_type::f32;
    bool first = true;
    for (const auto& g : convs) {
      const memory::dims src{g.batch, g.in_channels, g.in_h, g.in_w}, wei{g.out_channels, g.in_channels, g.kernel_h, g.kernel_w},
          bias{g.out_channels}, dst{g.batch, g.out_channels, g.out_h, g.out_w}, strides{g.stride_h, g.stride_w}, pad{0, 0};
      const memory::desc src_md(src, f32, blocked ? tag::any : tag::nchw), wei_md(wei, f32, blocked ? tag::any : tag::oihw),
          bias_md(bias, f32, tag::x), dst_md(dst, f32, blocked ? tag::any : tag::nchw);
      const convolution_forward::primitive_desc fwd(
          {acting ? prop_kind::forward_inference : prop_kind::forward_training, algorithm::convolution_direct, src_md, wei_md, bias_md, dst_md, strides, pad, pad},
          engine);
      if (acting) {
        memory s(fwd.src_desc(), engine), w(fwd.weights_desc(), engine), b(fwd.bias_desc(), engine), d(fwd.dst_desc(), engine);
        primitives.push_back(convolution_forward(fwd));
        arguments.push_back({{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, d}});
        kernels += std::string(kernels.empty() ? "" : ", ") + fwd.impl_info_str();
        continue;
      }
      const convolution_backward_weights::primitive_desc bwd_w(
          {algorithm::convolution_direct, src_md, wei_md, bias_md, dst_md, strides, pad, pad}, engine, fwd);
      memory s(fwd.src_desc(), engine), w(fwd.weights_desc(), engine), b(fwd.bias_desc(), engine), d(fwd.dst_desc(), engine);
      memory dd(bwd_w.diff_dst_desc(), engine), dw(bwd_w.diff_weights_desc(), engine), db(bwd_w.diff_bias_desc(), engine);
      for (const memory& m : {s, w, b, d, dd, dw, db}) std::fill_n(static_cast<float*>(m.get_data_handle()), m.get_desc().get_size() / 4, 0.01f);
      for (int pass = 0; pass < 2; ++pass) {  // the target's forward and the online network's
        primitives.push_back(convolution_forward(fwd));
        arguments.push_back({{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, d}});
      }
      primitives.push_back(convolution_backward_weights(bwd_w));
      arguments.push_back({{DNNL_ARG_SRC, s}, {DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_DIFF_WEIGHTS, dw}, {DNNL_ARG_DIFF_BIAS, db}});
      kernels += std::string(kernels.empty() ? "" : ", ") + fwd.impl_info_str() + "/" + bwd_w.impl_info_str();
      if (!first) {
        const convolution_backward_data::primitive_desc bwd_d(
            {algorithm::convolution_direct, src_md, wei_md, dst_md, strides, pad, pad}, engine, fwd);
        memory ds(bwd_d.diff_src_desc(), engine);
        primitives.push_back(convolution_backward_data(bwd_d));
        arguments.push_back({{DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, ds}});
        kernels += std::string("/") + bwd_d.impl_info_str();
      }
      first = false;
    }
  }
  void run() {
    for (std::size_t i = 0; i < primitives.size(); ++i) primitives[i].execute(stream, arguments[i]);
    stream.wait();
  }
};

// qrl's convolutions through the CPU backend, the same passes.
struct QrlConvs {
  qrl::backend_traits<qrl::cpu>::Context ctx;
  std::vector<qrl::Conv2dGeometry> convs;
  std::vector<qrl::backend_traits<qrl::cpu>::Conv2dState> states;
  std::vector<std::vector<float>> x, w, b, y, dx, dw, db;
  explicit QrlConvs(const std::vector<qrl::Conv2dGeometry>& g, qrl::Rng& rng) : convs(g), states(g.size()) {
    for (const auto& c : convs) {
      x.push_back(random_floats(c.input_size(), rng));
      w.push_back(random_floats(c.weight_size(), rng));
      b.push_back(random_floats(c.out_channels, rng));
      y.push_back(random_floats(c.output_size(), rng));
      dx.push_back(std::vector<float>(c.input_size()));
      dw.push_back(std::vector<float>(c.weight_size()));
      db.push_back(std::vector<float>(c.out_channels));
    }
  }
  std::string kernels() const {
    std::string k;
    for (const auto& s : states) k += (k.empty() ? "" : ", ") + s.last->kernels();
    return k;
  }
  void run(bool acting) {
    using cpu = qrl::backend_traits<qrl::cpu>;
    for (int pass = 0; pass < (acting ? 1 : 2); ++pass)
      for (std::size_t i = 0; i < convs.size(); ++i)
        cpu::conv2d_forward(ctx, states[i], convs[i], x[i].data(), w[i].data(), b[i].data(), y[i].data());
    if (acting) return;
    for (std::size_t i = convs.size(); i-- > 0;)
      cpu::conv2d_backward(ctx, states[i], convs[i], w[i].data(), y[i].data(), i == 0 ? nullptr : dx[i].data(),
                           dw[i].data(), db[i].data());
  }
};

}  // namespace

int main(int argc, char** argv) {
  qrl::check_cpu_kernels();
  const double budget = argc > 1 ? std::atof(argv[1]) : 2.0;
  const int threads = argc > 2 ? std::atoi(argv[2]) : omp_get_max_threads();
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  bli_thread_set_num_threads(threads);
  std::printf("{\"bench\":\"cpu_kernels\",\"line\":\"%s\"}\n", qrl::cpu_kernels().line().c_str());

  qrl::Rng rng(1);
  constexpr int square = 2048;
  const auto big_a = random_floats(std::size_t{square} * square, rng), big_b = random_floats(std::size_t{square} * square, rng);
  std::vector<float> big_c(std::size_t{square} * square);
  const std::vector<Gemm> shapes = update_gemms(32, 6);
  std::size_t most = 0;
  double update_flops = 0;
  for (const auto& g : shapes) {
    most = std::max({most, std::size_t(g.m) * g.k, std::size_t(g.k) * g.n, std::size_t(g.m) * g.n});
    update_flops += g.flops();
  }
  const auto a = random_floats(most, rng), b = random_floats(most, rng);
  std::vector<float> c(most);

  for (const Library& lib : libraries()) {
    const Gemm big{false, false, square, square, square};
    const double peak = big.flops() / seconds_per_call([&] { lib.sgemm(big, big_a.data(), big_b.data(), big_c.data()); }, budget) / 1e9;
    std::printf("{\"bench\":\"sgemm_peak\",\"value\":%.1f,\"unit\":\"GFLOP/s\",\"size\":%d,\"threads\":%d,\"library\":\"%s\"}\n",
                peak, square, threads, lib.name.c_str());
    const double t = seconds_per_call([&] { for (const auto& g : shapes) lib.sgemm(g, a.data(), b.data(), c.data()); }, budget);
    std::printf("{\"bench\":\"sgemm_dqn_shapes\",\"value\":%.1f,\"unit\":\"GFLOP/s\",\"ms\":%.3f,\"ratio_to_peak\":%.3f,"
                "\"gemms\":%zu,\"batch\":32,\"threads\":%d,\"library\":\"%s\"}\n",
                update_flops / t / 1e9, t * 1e3, update_flops / t / 1e9 / peak, shapes.size(), threads, lib.name.c_str());
    std::fflush(stdout);
  }

  for (int batch : {32, 1}) {
    const bool acting = batch == 1;
    const auto convs = nature_convs(batch);
    QrlConvs qrl_convs(convs, rng);
    const double t_qrl = seconds_per_call([&] { qrl_convs.run(acting); }, budget);
    std::printf("{\"bench\":\"conv_dqn\",\"value\":%.3f,\"unit\":\"ms\",\"batch\":%d,\"passes\":\"%s\",\"threads\":%d,"
                "\"impl\":\"qrl cpu backend\",\"kernels\":\"%s\"}\n",
                t_qrl * 1e3, batch, acting ? "forward" : "update", threads, qrl_convs.kernels().c_str());
    for (bool blocked : {false, true}) {
      OneDnnConvs dnnl_convs(convs, blocked, acting);
      const double t = seconds_per_call([&] { dnnl_convs.run(); }, budget);
      std::printf("{\"bench\":\"conv_dqn\",\"value\":%.3f,\"unit\":\"ms\",\"ratio_to_qrl\":%.3f,\"batch\":%d,\"passes\":\"%s\","
                  "\"threads\":%d,\"impl\":\"oneDNN %s\",\"kernels\":\"%s\"}\n",
                  t * 1e3, t / t_qrl, batch, acting ? "forward" : "update", threads, blocked ? "blocked layouts" : "NCHW", dnnl_convs.kernels.c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
