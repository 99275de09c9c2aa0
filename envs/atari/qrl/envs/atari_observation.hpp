#pragma once
// The Atari observation from two raw ALE screens: palette to gray, pixelwise
// max, then the shared preprocessing functor's integer box filter down to
// out x out. Bit-identical to env::preprocess(max screen) (the functor); the
// tests compare every byte, on every code path.
//
// Why it is not a loop over the functor: for Pong the emulator needs about
// 200 us for the four frames of a step, and the functor per output pixel
// (taps and weights recomputed each time) or even a scalar tabulated filter
// cost 25-30 us of that. So the filter's integer weights are tabulated once
// per axis, rows are resampled first (vectorised across the 160 columns in
// 16-bit sums), and where the compiler targets AVX-512 (VBMI for the palette,
// BW for the column gather; -march=native, QRL_NATIVE) the palette lookup, the
// max and the column pass use byte/word permutes instead of one load per
// pixel. Other CPUs take the scalar code, which gives the same bytes.
//
// Needs nothing from ALE, so it can be tested on synthetic screens.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__AVX512BW__)
#include <immintrin.h>
#endif

#include <qrl/core/error.hpp>
#include <qrl/kernels/preprocess.cuh>

namespace qrl::envs {

class AtariObservation {
 public:
  static constexpr int kScreenHeight = 210;
  static constexpr int kScreenWidth = 160;
  static constexpr std::size_t kScreenBytes = static_cast<std::size_t>(kScreenHeight) * kScreenWidth;

  // Which code computes it: the best compiled in, or the portable scalar one
  // (for tests that check the two agree).
  enum class Path { Auto, Scalar };

  // `gray` maps a raw screen byte (palette index) to its gray level.
  AtariObservation(int out_size, const std::array<std::uint8_t, 256>& gray) : out_(out_size), gray_(gray) {
    require(out_size >= 1 && out_size <= kScreenWidth, "AtariObservation: size ", out_size, " must lie in [1, ",
            kScreenWidth, "]");
    const kernels::AxisResampler rows{kScreenHeight, out_}, cols{kScreenWidth, out_};
    total_ = static_cast<std::uint32_t>(rows.total_weight() * cols.total_weight());
    reciprocal_ = (std::uint64_t{1} << 48) / (2 * std::uint64_t{total_}) + 1;
    for (int o = 0; o < out_; ++o) {
      int first = 0, last = 0;
      rows.taps(o, first, last);
      row_first_.push_back(first);
      row_count_.push_back(last - first);
      row_offset_.push_back(static_cast<int>(row_weight_.size()));
      for (int i = first; i < last; ++i) row_weight_.push_back(static_cast<std::uint16_t>(rows.weight(o, i)));
      cols.taps(o, first, last);
      col_first_.push_back(first);
      col_taps_ = std::max(col_taps_, last - first);
    }
    // Columns: every output gets col_taps_ weights, zero past its own taps,
    // so the loop has a fixed trip count; the row sums are zero-padded.
    col_weight_.assign(static_cast<std::size_t>(out_) * col_taps_, 0);
    for (int o = 0; o < out_; ++o) {
      for (int k = 0; k < col_taps_; ++k) {
        col_weight_[static_cast<std::size_t>(o) * col_taps_ + k] = cols.weight(o, col_first_[o] + k);
      }
    }
    row_sums_.assign(kRowSumsSize, 0);
    max_.resize(kScreenBytes);
    pixels_.resize(static_cast<std::size_t>(out_) * out_);
#if defined(__AVX512BW__)
    tabulate_column_chunks();
#endif
  }

  // Computes the observation of screens `a` and `b` (kScreenBytes raw bytes
  // each); readable through pixels() and max_screen() until the next call.
  void compute(const std::uint8_t* a, const std::uint8_t* b, Path path = Path::Auto) {
    if (path == Path::Auto) {
      max_of_screens_vector(a, b);
    } else {
      max_of_screens_scalar(a, b);
    }
    const bool vector_columns = path == Path::Auto && !chunk_base_.empty();
    for (int y = 0; y < out_; ++y) {
      sum_rows(y);
      std::uint8_t* dst = pixels_.data() + static_cast<std::size_t>(y) * out_;
      if (vector_columns) {
        sum_columns_vector(dst);
      } else {
        sum_columns_scalar(dst);
      }
    }
  }

  int size() const { return out_; }
  const std::vector<std::uint8_t>& pixels() const { return pixels_; }
  // The gray pixelwise max of the two screens (210 x 160).
  const std::vector<std::uint8_t>& max_screen() const { return max_; }
  // Whether Path::Auto uses vector code for the palette and max, and for
  // the column pass (which needs out_size >= 41).
  static constexpr bool vector_palette() {
#if defined(__AVX512BW__) && defined(__AVX512VBMI__)
    return true;
#else
    return false;
#endif
  }
  bool vector_columns() const { return !chunk_base_.empty(); }

 private:
  // Row sums: 160 columns, zero padding for the fixed-tap column loop and
  // for the vector path's 64-wide windows.
  static constexpr std::size_t kRowSumsSize = kScreenWidth + 64 + 32;
  static constexpr int kChunk = 16;  // outputs per vector column chunk

  void max_of_screens_scalar(const std::uint8_t* __restrict a, const std::uint8_t* __restrict b) {
    const std::uint8_t* __restrict gray = gray_.data();
    std::uint8_t* __restrict m = max_.data();
    for (std::size_t i = 0; i < kScreenBytes; ++i) m[i] = std::max(gray[a[i]], gray[b[i]]);
  }

  void max_of_screens_vector(const std::uint8_t* a, const std::uint8_t* b) {
#if defined(__AVX512BW__) && defined(__AVX512VBMI__)
    // vpermi2b looks up 128 entries by the low 7 bits; the high bit picks
    // one of the two halves of the table.
    const __m512i t0 = _mm512_loadu_si512(gray_.data()), t1 = _mm512_loadu_si512(gray_.data() + 64);
    const __m512i t2 = _mm512_loadu_si512(gray_.data() + 128), t3 = _mm512_loadu_si512(gray_.data() + 192);
    auto lookup = [&](__m512i index) {
      const __m512i low = _mm512_permutex2var_epi8(t0, index, t1);
      const __m512i high = _mm512_permutex2var_epi8(t2, index, t3);
      return _mm512_mask_blend_epi8(_mm512_movepi8_mask(index), low, high);
    };
    std::size_t i = 0;
    for (; i + 64 <= kScreenBytes; i += 64) {
      const __m512i ga = lookup(_mm512_loadu_si512(a + i)), gb = lookup(_mm512_loadu_si512(b + i));
      _mm512_storeu_si512(max_.data() + i, _mm512_max_epu8(ga, gb));
    }
    for (; i < kScreenBytes; ++i) max_[i] = std::max(gray_[a[i]], gray_[b[i]]);
#else
    max_of_screens_scalar(a, b);
#endif
  }

  // Output row y's weighted sum of source rows, per column. At most
  // 255 * 210 = 53,550 (the weights of an output sum to 210): 16 bits do.
  void sum_rows(int y) {
    std::uint16_t* __restrict acc = row_sums_.data();
    std::fill(acc, acc + kScreenWidth, std::uint16_t{0});
    const std::uint16_t* wy = row_weight_.data() + row_offset_[y];
    for (int k = 0; k < row_count_[y]; ++k) {
      const std::uint8_t* __restrict src = max_.data() + static_cast<std::size_t>(row_first_[y] + k) * kScreenWidth;
      const std::uint16_t w = wy[k];
      for (int x = 0; x < kScreenWidth; ++x) acc[x] = static_cast<std::uint16_t>(acc[x] + w * src[x]);
    }
  }

  // Round half up, as the functor does: (2 sum + total) / (2 total), by a
  // multiply with a 48-bit reciprocal. Exact: sum <= 255 * 33,600 so the
  // numerator is below 2^25, and the reciprocal's error stays under 2^-23,
  // less than a fractional part can lack to reach the next integer (1 / 67,200).
  std::uint8_t rounded_mean(std::uint32_t sum) const {
    return static_cast<std::uint8_t>((static_cast<std::uint64_t>(2 * sum + total_) * reciprocal_) >> 48);
  }

  void sum_columns_scalar(std::uint8_t* dst) const {
    const std::uint16_t* acc = row_sums_.data();
    for (int x = 0; x < out_; ++x) {
      const std::uint32_t* wx = col_weight_.data() + static_cast<std::size_t>(x) * col_taps_;
      const std::uint16_t* src = acc + col_first_[x];
      std::uint32_t sum = 0;
      for (int k = 0; k < col_taps_; ++k) sum += wx[k] * src[k];
      dst[x] = rounded_mean(sum);
    }
  }

#if defined(__AVX512BW__)
  // Columns in chunks of 16 outputs whose taps lie in a 64-column window
  // from chunk_base_[c]: one word permute per tap gathers them, 32-bit
  // multiplies weigh them. Left empty (scalar columns) when a chunk's taps
  // span more than 64 columns (out_size < 41).
  void tabulate_column_chunks() {
    const int chunks = (out_ + kChunk - 1) / kChunk;
    std::vector<int> base(chunks);
    for (int c = 0; c < chunks; ++c) {
      base[c] = col_first_[c * kChunk];
      const int last = std::min(out_, (c + 1) * kChunk) - 1;
      if (col_first_[last] + col_taps_ - base[c] > 64) return;
    }
    chunk_index_.assign(static_cast<std::size_t>(chunks) * col_taps_ * 32, 0);
    chunk_weight_.assign(static_cast<std::size_t>(chunks) * col_taps_ * kChunk, 0);
    for (int c = 0; c < chunks; ++c) {
      for (int k = 0; k < col_taps_; ++k) {
        for (int lane = 0; lane < kChunk && c * kChunk + lane < out_; ++lane) {
          const int o = c * kChunk + lane;
          const std::size_t at = static_cast<std::size_t>(c) * col_taps_ + k;
          chunk_index_[at * 32 + 2 * lane] = static_cast<std::uint16_t>(col_first_[o] + k - base[c]);
          chunk_weight_[at * kChunk + lane] = col_weight_[static_cast<std::size_t>(o) * col_taps_ + k];
        }
      }
    }
    chunk_base_ = std::move(base);
  }

  void sum_columns_vector(std::uint8_t* dst) const {
    const std::uint16_t* acc = row_sums_.data();
    const __m512i total = _mm512_set1_epi32(static_cast<int>(total_));
    const __m512i twice_total = _mm512_set1_epi32(static_cast<int>(2 * total_));
    const __m512 inverse = _mm512_set1_ps(1.0f / (2.0f * static_cast<float>(total_)));
    const int chunks = static_cast<int>(chunk_base_.size());
    for (int c = 0; c < chunks; ++c) {
      const __m512i low = _mm512_loadu_si512(acc + chunk_base_[c]);
      const __m512i high = _mm512_loadu_si512(acc + chunk_base_[c] + 32);
      __m512i sum = _mm512_setzero_si512();
      for (int k = 0; k < col_taps_; ++k) {
        const std::size_t at = static_cast<std::size_t>(c) * col_taps_ + k;
        const __m512i index = _mm512_loadu_si512(chunk_index_.data() + at * 32);
        // Even words gather the taps, odd words are zeroed: 16 zero-extended
        // 32-bit lanes.
        const __m512i taps = _mm512_maskz_permutex2var_epi16(0x55555555u, low, index, high);
        sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(taps, _mm512_loadu_si512(chunk_weight_.data() + at * kChunk)));
      }
      // (2 sum + total) / (2 total): the numerator is below 2^25, so the
      // float quotient is within one of the exact one; fix it by the remainder.
      // (Masked forms with a full mask: GCC 12 warns that the plain ones'
      // undefined pass-through may be used uninitialised.)
      const __m512i numerator = _mm512_add_epi32(_mm512_add_epi32(sum, sum), total);
      __m512i quotient =
          _mm512_maskz_cvttps_epi32(0xFFFF, _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, numerator), inverse));
      const __m512i remainder = _mm512_sub_epi32(numerator, _mm512_mullo_epi32(quotient, twice_total));
      quotient = _mm512_mask_sub_epi32(quotient, _mm512_cmplt_epi32_mask(remainder, _mm512_setzero_si512()), quotient,
                                       _mm512_set1_epi32(1));
      quotient = _mm512_mask_add_epi32(quotient, _mm512_cmpge_epi32_mask(remainder, twice_total), quotient,
                                       _mm512_set1_epi32(1));
      const int lanes = std::min(kChunk, out_ - c * kChunk);
      _mm512_mask_cvtepi32_storeu_epi8(dst + c * kChunk, static_cast<__mmask16>((1u << lanes) - 1u), quotient);
    }
  }
#else
  void sum_columns_vector(std::uint8_t* dst) const { sum_columns_scalar(dst); }
#endif

  int out_;
  std::array<std::uint8_t, 256> gray_;
  std::uint32_t total_ = 0;
  std::uint64_t reciprocal_ = 0;
  std::vector<int> row_first_, row_count_, row_offset_;
  std::vector<std::uint16_t> row_weight_;
  std::vector<int> col_first_;
  int col_taps_ = 0;
  std::vector<std::uint32_t> col_weight_;
  std::vector<int> chunk_base_;
  std::vector<std::uint16_t> chunk_index_;
  std::vector<std::uint32_t> chunk_weight_;
  std::vector<std::uint16_t> row_sums_;
  std::vector<std::uint8_t> max_;
  std::vector<std::uint8_t> pixels_;
};

}  // namespace qrl::envs
