#pragma once
// The CPU backend's convolutions: oneDNN's JIT kernels, which pick AVX2,
// AVX-512 or AMX code from CPUID when they are created (no table of CPU
// models), in the blocked layouts they choose; qrl's tensors stay NCHW and
// OIHW, reordered on the way in and out. At Nature DQN's shapes this is 1.7x
// im2col + SGEMM for an update and 3x for acting (docs/benchmarks.md).
#include <oneapi/dnnl/dnnl.hpp>

#include <memory>
#include <unordered_map>
#include <vector>

#include <qrl/kernels/geometry.hpp>
#include <qrl/core/error.hpp>

namespace qrl::cpu_detail {

// One engine for the process: primitives made with it run on any Context's stream.
inline const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Every primitive gets its own scratchpad: oneDNN's default shares one
// across primitives, which breaks when two agents' networks run at once
// (dino eval's browsers on their threads, actor threads).
inline dnnl::primitive_attr own_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// A primitive with the scratchpad it runs with.
template <class Primitive>
struct WithScratchpad {
  Primitive primitive;
  dnnl::memory scratchpad;
  WithScratchpad() = default;
  template <class Pd>
  explicit WithScratchpad(const Pd& pd) : primitive(pd), scratchpad(pd.scratchpad_desc(), cpu_engine()) {}
  explicit operator bool() const { return static_cast<bool>(primitive); }
  void execute(dnnl::stream& s, std::unordered_map<int, dnnl::memory> args) {
    args.insert({DNNL_ARG_SCRATCHPAD, scratchpad});
    primitive.execute(s, args);
  }
};

// A reorder between two layouts of one tensor.
inline WithScratchpad<dnnl::reorder> make_reorder(const dnnl::memory& from, const dnnl::memory& to) {
  return WithScratchpad<dnnl::reorder>(dnnl::reorder::primitive_desc(from, to, own_scratchpad()));
}

// One tensor as a primitive wants it: the caller's plain buffer when the
// primitive takes that layout, else a buffer in the primitive's own layout
// with the reorder between the two.
class Staged {
 public:
  Staged() = default;
  Staged(const dnnl::memory::desc& plain, const dnnl::memory::desc& wanted)
      : plain_(plain, cpu_engine(), DNNL_MEMORY_NONE), direct_(plain == wanted) {
    if (!direct_) internal_ = dnnl::memory(wanted, cpu_engine());
  }
  // The memory a primitive reads, holding `data` in its layout.
  const dnnl::memory& read(dnnl::stream& s, const float* data) {
    plain_.set_data_handle(const_cast<float*>(data));
    if (direct_) return plain_;
    if (!into_internal_) into_internal_ = make_reorder(plain_, internal_);
    into_internal_.execute(s, {{DNNL_ARG_FROM, plain_}, {DNNL_ARG_TO, internal_}});
    return internal_;
  }
  // The memory a primitive writes; finish_write() leaves it in `data`.
  const dnnl::memory& write(float* data) {
    plain_.set_data_handle(data);
    return direct_ ? plain_ : internal_;
  }
  void finish_write(dnnl::stream& s) {
    if (direct_) return;
    if (!into_plain_) into_plain_ = make_reorder(internal_, plain_);
    into_plain_.execute(s, {{DNNL_ARG_FROM, internal_}, {DNNL_ARG_TO, plain_}});
  }
  // What the last read() returned, for a second primitive wanting the same layout.
  const dnnl::memory& last_read() const { return direct_ ? plain_ : internal_; }
  dnnl::memory::desc wanted() const { return direct_ ? plain_.get_desc() : internal_.get_desc(); }

 private:
  dnnl::memory plain_, internal_;
  WithScratchpad<dnnl::reorder> into_internal_, into_plain_;
  bool direct_ = true;
};

// The primitives of one convolution geometry (a layer sees a few: the
// update's batch, acting's batch 1), made on first use.
class ConvPlan {
 public:
  explicit ConvPlan(const Conv2dGeometry& g) : geometry(g) {
    using namespace dnnl;
    using tag = memory::format_tag;
    const auto f32 = memory::data_type::f32;
    const memory::dims src{g.batch, g.in_channels, g.in_h, g.in_w},
        weights{g.out_channels, g.in_channels, g.kernel_h, g.kernel_w}, bias{g.out_channels},
        dst{g.batch, g.out_channels, g.out_h, g.out_w};
    strides_ = {g.stride_h, g.stride_w};
    // 'same' puts the extra row/column at the bottom/right (Keras); 'valid'
    // may drop the last input rows, which a zero right padding expresses.
    pad_l_ = {g.pad_top, g.pad_left};
    pad_r_ = {std::max((g.out_h - 1) * g.stride_h + g.kernel_h - g.in_h - g.pad_top, 0),
              std::max((g.out_w - 1) * g.stride_w + g.kernel_w - g.in_w - g.pad_left, 0)};
    src_plain_ = memory::desc(src, f32, tag::nchw);
    weights_plain_ = memory::desc(weights, f32, tag::oihw);
    dst_plain_ = memory::desc(dst, f32, tag::nchw);
    bias_plain_ = memory::desc(bias, f32, tag::x);
    any_src_ = memory::desc(src, f32, tag::any);
    any_weights_ = memory::desc(weights, f32, tag::any);
    any_dst_ = memory::desc(dst, f32, tag::any);
    try {
      forward_pd_ = convolution_forward::primitive_desc(
          {prop_kind::forward_training, algorithm::convolution_direct, any_src_, any_weights_, bias_plain_, any_dst_,
           strides_, pad_l_, pad_r_},
          own_scratchpad(), cpu_engine());
    } catch (const dnnl::error& e) {
      throw Error(qrl::detail::concat("oneDNN has no convolution for ", describe(), ": ", e.what()));
    }
    forward_ = WithScratchpad<convolution_forward>(forward_pd_);
    src_ = Staged(src_plain_, forward_pd_.src_desc());
    weights_ = Staged(weights_plain_, forward_pd_.weights_desc());
    dst_ = Staged(dst_plain_, forward_pd_.dst_desc());
    bias_ = dnnl::memory(bias_plain_, cpu_engine(), DNNL_MEMORY_NONE);
  }

  const Conv2dGeometry geometry;

  void forward(dnnl::stream& s, const float* x, const float* w, const float* b, float* y) {
    bias_.set_data_handle(const_cast<float*>(b));
    forward_.execute(s, {{DNNL_ARG_SRC, src_.read(s, x)},
                         {DNNL_ARG_WEIGHTS, weights_.read(s, w)},
                         {DNNL_ARG_BIAS, bias_},
                         {DNNL_ARG_DST, dst_.write(y)}});
    dst_.finish_write(s);
    s.wait();
  }

  // After forward() on the same x and w (the layer's input and weights).
  void backward(dnnl::stream& s, const float* x, const float* w, const float* grad_y, float* grad_x, float* grad_w,
                float* grad_b) {
    make_backward_weights();
    const dnnl::memory& diff_dst = diff_dst_weights_.read(s, grad_y);
    bias_grad_.set_data_handle(grad_b);
    const bool same_src = backward_weights_pd_.src_desc() == src_.wanted();
    backward_weights_.execute(s, {{DNNL_ARG_SRC, same_src ? src_.last_read() : src_weights_.read(s, x)},
                                  {DNNL_ARG_DIFF_DST, diff_dst},
                                  {DNNL_ARG_DIFF_WEIGHTS, diff_weights_.write(grad_w)},
                                  {DNNL_ARG_DIFF_BIAS, bias_grad_}});
    diff_weights_.finish_write(s);
    if (grad_x) {
      make_backward_data();
      const bool same_diff_dst = backward_data_pd_.diff_dst_desc() == diff_dst_weights_.wanted();
      const bool same_weights = backward_data_pd_.weights_desc() == weights_.wanted();
      backward_data_.execute(
          s, {{DNNL_ARG_DIFF_DST, same_diff_dst ? diff_dst : diff_dst_data_.read(s, grad_y)},
              {DNNL_ARG_WEIGHTS, same_weights ? weights_.last_read() : weights_data_.read(s, w)},
              {DNNL_ARG_DIFF_SRC, diff_src_.write(grad_x)}});
      diff_src_.finish_write(s);
    }
    s.wait();
  }
  // "jit:avx2" and the like, for reports.
  std::string kernels() const { return forward_pd_.impl_info_str(); }

 private:
  std::string describe() const {
    const auto& g = geometry;
    return qrl::detail::concat("batch ", g.batch, ", ", g.in_channels, "x", g.in_h, "x", g.in_w, " -> ",
                               g.out_channels, "x", g.out_h, "x", g.out_w, ", kernel ", g.kernel_h, "x", g.kernel_w,
                               ", stride ", g.stride_h);
  }
  void make_backward_weights() {
    using namespace dnnl;
    if (backward_weights_) return;
    backward_weights_pd_ = convolution_backward_weights::primitive_desc(
        {algorithm::convolution_direct, any_src_, any_weights_, bias_plain_, any_dst_, strides_, pad_l_, pad_r_},
        own_scratchpad(), cpu_engine(), forward_pd_);
    backward_weights_ = WithScratchpad<convolution_backward_weights>(backward_weights_pd_);
    diff_dst_weights_ = Staged(dst_plain_, backward_weights_pd_.diff_dst_desc());
    src_weights_ = Staged(src_plain_, backward_weights_pd_.src_desc());
    diff_weights_ = Staged(weights_plain_, backward_weights_pd_.diff_weights_desc());
    bias_grad_ = dnnl::memory(bias_plain_, cpu_engine(), DNNL_MEMORY_NONE);
  }
  void make_backward_data() {
    using namespace dnnl;
    if (backward_data_) return;
    backward_data_pd_ = convolution_backward_data::primitive_desc(
        {algorithm::convolution_direct, any_src_, any_weights_, any_dst_, strides_, pad_l_, pad_r_}, own_scratchpad(),
        cpu_engine(), forward_pd_);
    backward_data_ = WithScratchpad<convolution_backward_data>(backward_data_pd_);
    diff_dst_data_ = Staged(dst_plain_, backward_data_pd_.diff_dst_desc());
    weights_data_ = Staged(weights_plain_, backward_data_pd_.weights_desc());
    diff_src_ = Staged(src_plain_, backward_data_pd_.diff_src_desc());
  }

  dnnl::memory::dims strides_, pad_l_, pad_r_;
  dnnl::memory::desc src_plain_, weights_plain_, dst_plain_, bias_plain_, any_src_, any_weights_, any_dst_;
  dnnl::convolution_forward::primitive_desc forward_pd_;
  WithScratchpad<dnnl::convolution_forward> forward_;
  dnnl::convolution_backward_weights::primitive_desc backward_weights_pd_;
  WithScratchpad<dnnl::convolution_backward_weights> backward_weights_;
  dnnl::convolution_backward_data::primitive_desc backward_data_pd_;
  WithScratchpad<dnnl::convolution_backward_data> backward_data_;
  Staged src_, weights_, dst_, diff_dst_weights_, src_weights_, diff_weights_, diff_dst_data_, weights_data_,
      diff_src_;
  dnnl::memory bias_, bias_grad_;
};

}  // namespace qrl::cpu_detail
