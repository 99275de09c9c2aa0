#pragma once
// Prioritized experience replay's sampler (Schaul et al. 2016, proportional
// variant, Algorithm 1), on its own: it knows slots and priorities, not
// transitions. A replay memory owns one, tells it which slots hold a
// transition (add / remove), draws batches from it and feeds the TD errors
// back (update).
//
// Semantics, with q_i the value stored for slot i:
//   priority  p_i = |delta_i| + epsilon after an update; a slot added gets
//             the largest p seen so far (1 before any update), so a new
//             transition is replayed at least once soon (Algorithm 1 line 6).
//   stored    q_i = p_i^alpha, 0 for a slot never added or removed.
//   P(i)      = q_i / sum_k q_k                               (total())
//   weight    w_i = (N P(i))^-beta / max_j (N P(j))^-beta over all N slots
//             with q_j > 0 (the whole memory, as Algorithm 1 and OpenAI
//             baselines, not the batch), which simplifies to
//             w_i = (q_min / q_i)^beta with q_min the smallest positive q:
//             N and the total cancel. Weights lie in (0, 1]; 1 for the
//             rarest slot.
//   sampling  stratified: [0, total) is cut into `batch` equal segments and
//             row k draws u uniformly in segment k, then takes the slot
//             whose prefix-sum interval holds u (Schaul's Appendix B.2.1,
//             Dopamine). Rows come out in slot order within a batch, each
//             slot still with marginal probability P(i) per draw.
//
// The tree is kernels::SumTreeSet / SumTreeFind over doubles (the reasons are
// in qrl/kernels/sum_tree.cuh); this class runs them in host loops.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/core/rng.hpp>
#include <qrl/kernels/sum_tree.cuh>

namespace qrl::rl {

// Defaults are Rainbow's (Hessel et al. 2018): alpha 0.5, beta 0.4 -> 1.
struct PrioritizedConfig {
  double alpha = 0.5;       // 0: uniform; 1: fully proportional to p
  double beta_start = 0.4;  // importance-sampling exponent at step 0
  double beta_end = 1.0;    // reached at beta_steps and kept after
  // Length of the linear beta anneal in whatever step the caller counts
  // (environment steps, usually): set it to the run's length. 10M is
  // CleanRL's Atari run; 0 means beta_end from the start.
  std::int64_t beta_steps = 10'000'000;
  double epsilon = 1e-6;  // added to |td error| so no transition gets p = 0

  // beta at `step`, linear from beta_start to beta_end over beta_steps;
  // beta_start before step 0 and beta_end from beta_steps on.
  double beta_at(std::int64_t step) const {
    if (beta_steps <= 0 || step >= beta_steps) return beta_end;
    if (step <= 0) return beta_start;
    const double t = static_cast<double>(step) / static_cast<double>(beta_steps);
    return beta_start + t * (beta_end - beta_start);
  }

  void validate() const {
    require(std::isfinite(alpha) && alpha >= 0.0 && alpha <= 1.0,
            "prioritized replay: alpha must lie in [0, 1] (0 is uniform, Rainbow uses 0.5), got ", alpha);
    require(std::isfinite(beta_start) && beta_start >= 0.0 && beta_start <= 1.0 && std::isfinite(beta_end) &&
                beta_end >= 0.0 && beta_end <= 1.0,
            "prioritized replay: beta_start and beta_end must lie in [0, 1] (Rainbow anneals 0.4 -> 1), got ",
            beta_start, " and ", beta_end);
    require(beta_steps >= 0, "prioritized replay: beta_steps must be >= 0 (0 uses beta_end throughout), got ",
            beta_steps);
    require(std::isfinite(epsilon) && epsilon > 0.0,
            "prioritized replay: epsilon must be finite and > 0, or a transition with a zero TD error would never "
            "be replayed again; got ",
            epsilon);
  }
};

class PrioritizedSampler {
 public:
  // Slots are 0 .. capacity - 1, all empty (never drawn) at first.
  explicit PrioritizedSampler(std::int64_t capacity, PrioritizedConfig config = {}) : config_(config) {
    require(capacity >= 1 && capacity <= max_capacity, "prioritized replay: capacity must lie in [1, ", max_capacity,
            "], got ", capacity);
    config_.validate();
    capacity_ = capacity;
    leaves_ = kernels::sum_tree_leaves(capacity);
    sum_.assign(static_cast<std::size_t>(2 * leaves_), 0.0);
    min_.assign(sum_.size(), HUGE_VAL);
    max_stored_ = power(max_priority_);
  }

  const PrioritizedConfig& config() const { return config_; }
  std::int64_t capacity() const { return capacity_; }
  // Slots with a positive priority: the N of the weights.
  std::int64_t size() const { return size_; }
  // sum of q_i over all slots.
  double total() const { return sum_[1]; }
  // Largest raw priority p (not p^alpha) given so far: what add() uses.
  double max_priority() const { return max_priority_; }
  // q_min, the smallest positive q; +inf while size() == 0.
  double min_stored() const { return min_[1]; }
  // q_i = p_i^alpha, 0 for an empty slot.
  double stored(std::int64_t slot) const {
    check_slot(slot, "stored");
    return leaf(slot);
  }
  double probability(std::int64_t slot) const {
    check_slot(slot, "probability");
    return size_ == 0 ? 0.0 : leaf(slot) / total();
  }
  // w_i as in the header comment; the slot must be non-empty.
  double weight(std::int64_t slot, double beta) const {
    check_slot(slot, "weight");
    check_beta(beta);
    require(leaf(slot) > 0.0, "prioritized replay: slot ", slot,
            " is empty and has no importance weight; draw slots with sample() or draw()");
    return weight_unchecked(slot, beta);
  }
  double beta_at(std::int64_t step) const { return config_.beta_at(step); }

  // A new transition in `slot` (replacing whatever was there) at the largest
  // priority so far.
  void add(std::int64_t slot) {
    check_slot(slot, "add");
    set_leaf(slot, max_stored_);
  }

  // `slot` no longer holds a usable transition: never drawn until add().
  void remove(std::int64_t slot) {
    check_slot(slot, "remove");
    set_leaf(slot, 0.0);
  }

  // New priorities |td| + epsilon for sampled slots, in order (a slot given
  // twice keeps its last error). Every slot and error is checked before any
  // is written, so a rejected batch leaves the sampler as it was. A slot
  // removed since it was sampled stays removed and its error is ignored:
  // giving it a priority would make a slot the memory gave up drawable.
  void update(std::span<const std::int64_t> slots, std::span<const float> td_errors) {
    require(slots.size() == td_errors.size(), "prioritized replay: update() got ", slots.size(), " slots but ",
            td_errors.size(), " TD errors; pass one error per sampled slot");
    for (std::size_t k = 0; k < slots.size(); ++k) {
      check_slot(slots[k], "update");
      require(std::isfinite(td_errors[k]), "prioritized replay: TD error ", td_errors[k], " for slot ", slots[k],
              " (row ", k, ") is not finite; a NaN or infinite priority would corrupt the sum tree for good, so "
              "check the loss for divergence (learning rate, reward scale) before updating priorities");
    }
    for (std::size_t k = 0; k < slots.size(); ++k) {
      if (leaf(slots[k]) == 0.0) continue;
      const double p = std::fabs(static_cast<double>(td_errors[k])) + config_.epsilon;
      if (p > max_priority_) {
        max_priority_ = p;
        max_stored_ = power(p);
      }
      set_leaf(slots[k], power(p));
    }
  }

  // One slot drawn with u uniform in [lo, hi) (0 <= lo < hi <= total()):
  // the redraw of a row the caller rejected, within the row's segment().
  std::int64_t draw(Rng& rng, double lo, double hi) const {
    require_nonempty("draw");
    require(lo >= 0.0 && lo < hi && hi <= total(), "prioritized replay: draw() needs 0 <= lo < hi <= total() = ",
            total(), ", got [", lo, ", ", hi, "); take the bounds from segment()");
    return draw_unchecked(rng, lo, hi);
  }

  struct Segment {
    double lo;
    double hi;
  };
  // Row `row`'s share [total * row / rows, total * (row + 1) / rows).
  Segment segment(int row, int rows) const {
    require(rows >= 1 && row >= 0 && row < rows, "prioritized replay: segment ", row, " of ", rows,
            " does not exist; rows must be >= 1 and 0 <= row < rows");
    return segment_unchecked(row, rows);
  }

  // A stratified batch of slots.size() rows: slots[k] from segment k and its
  // importance weight at `beta` (config().beta_at(step), usually).
  void sample(Rng& rng, double beta, std::span<std::int64_t> slots, std::span<float> weights) const {
    sample(rng, beta, slots, weights, [](std::int64_t) { return true; });
  }

  // The same, where `accept(slot)` may reject a drawn slot (a transition
  // whose stacked state is incomplete): the row is drawn again within its
  // own segment, up to max_draws times, so the strata stay intact. Rejected
  // slots still count in N and q_min; remove() those that stay unusable.
  template <class Accept>
  void sample(Rng& rng, double beta, std::span<std::int64_t> slots, std::span<float> weights, Accept&& accept,
              int max_draws = 100) const {
    require(!slots.empty() && slots.size() == weights.size(), "prioritized replay: sample() needs as many weights as ",
            "slots and at least one row, got ", slots.size(), " slots and ", weights.size(), " weights");
    require(slots.size() <= static_cast<std::size_t>(max_rows), "prioritized replay: a batch of ", slots.size(),
            " rows is too large; at most ", max_rows);
    require(max_draws >= 1, "prioritized replay: max_draws must be >= 1, got ", max_draws);
    check_beta(beta);
    require_nonempty("sample");
    const int rows = static_cast<int>(slots.size());
    for (int k = 0; k < rows; ++k) {
      const auto [lo, hi] = segment_unchecked(k, rows);
      std::int64_t slot = -1;
      for (int attempt = 0; attempt < max_draws && slot < 0; ++attempt) {
        const std::int64_t candidate = draw_unchecked(rng, lo, hi);
        if (accept(candidate)) slot = candidate;
      }
      require(slot >= 0, "prioritized replay: row ", k, " of ", rows, " found no acceptable slot in ", max_draws,
              " draws within its segment [", lo, ", ", hi, "); remove() slots that cannot be replayed so they stop "
              "taking up probability");
      slots[static_cast<std::size_t>(k)] = slot;
      weights[static_cast<std::size_t>(k)] = static_cast<float>(weight_unchecked(slot, beta));
    }
  }

  // Checkpointing: q_i of every slot (capacity() values) and max_priority();
  // restore() takes the same two back. Saving the leaves rather than the
  // whole tree leaves nothing inconsistent to load: restore() rebuilds the
  // rest, bit-identical to the tree that was saved.
  std::span<const double> leaf_priorities() const {
    return {sum_.data() + leaves_, static_cast<std::size_t>(capacity_)};
  }

  // Validates everything first (a rejected restore changes nothing).
  void restore(std::span<const double> leaves, double max_priority) {
    require(leaves.size() == static_cast<std::size_t>(capacity_), "prioritized replay: restore() got ", leaves.size(),
            " leaf priorities for a capacity of ", capacity_, "; the checkpoint belongs to a replay of another size");
    require(std::isfinite(max_priority) && max_priority > 0.0, "prioritized replay: restore() got max_priority ",
            max_priority, "; it must be finite and > 0 (a fresh sampler has 1)");
    const double max_stored = power(max_priority);
    // q_i <= max_priority^alpha for every slot written with this alpha; the
    // margin absorbs pow's rounding.
    const double bound = max_stored * (1.0 + 1e-12);
    for (std::size_t i = 0; i < leaves.size(); ++i) {
      const double q = leaves[i];
      require(std::isfinite(q) && q >= 0.0, "prioritized replay: restore() got leaf priority ", q, " for slot ", i,
              "; every leaf must be finite and >= 0 (0 for an empty slot): the checkpoint is corrupt");
      require(q <= bound, "prioritized replay: restore() got leaf priority ", q, " for slot ", i,
              ", above max_priority^alpha = ", max_stored, " (max_priority ", max_priority, ", alpha ", config_.alpha,
              "); the checkpoint was saved with another alpha or its max_priority does not belong to these leaves");
    }
    std::int64_t size = 0;
    for (std::int64_t i = 0; i < leaves_; ++i) {
      const double q = i < capacity_ ? leaves[static_cast<std::size_t>(i)] : 0.0;
      sum_[static_cast<std::size_t>(leaves_ + i)] = q;
      min_[static_cast<std::size_t>(leaves_ + i)] = q > 0.0 ? q : HUGE_VAL;
      size += q > 0.0 ? 1 : 0;
    }
    const kernels::SumTreeRecompute recompute{sum_.data(), min_.data()};
    for (std::int64_t node = leaves_ - 1; node >= 1; --node) recompute(node);
    size_ = size;
    max_priority_ = max_priority;
    max_stored_ = max_stored;
  }

 private:
  // Keeps 2 * leaves and the tree's int64 indices far from overflow.
  static constexpr std::int64_t max_capacity = std::int64_t{1} << 40;
  static constexpr int max_rows = 1 << 24;

  // p^alpha, what the tree stores for raw priority p.
  double power(double priority) const { return std::pow(priority, config_.alpha); }
  double leaf(std::int64_t slot) const { return sum_[static_cast<std::size_t>(leaves_ + slot)]; }

  void set_leaf(std::int64_t slot, double q) {
    size_ += (q > 0.0 ? 1 : 0) - (leaf(slot) > 0.0 ? 1 : 0);
    kernels::SumTreeSet{sum_.data(), min_.data(), leaves_}(slot, q);
  }

  Segment segment_unchecked(int row, int rows) const {
    const double t = total();
    // The last segment ends at the total exactly, not at a rounded t * 1.
    return {t * row / rows, row + 1 == rows ? t : t * (row + 1) / rows};
  }

  std::int64_t draw_unchecked(Rng& rng, double lo, double hi) const {
    double u = lo + rng.uniform() * (hi - lo);
    // lo + x (hi - lo) can round up to hi: keep u in its segment.
    if (u >= hi) u = std::nextafter(hi, lo);
    return kernels::SumTreeFind{sum_.data(), leaves_}(u);
  }

  double weight_unchecked(std::int64_t slot, double beta) const { return std::pow(min_stored() / leaf(slot), beta); }

  void check_slot(std::int64_t slot, const char* what) const {
    require(slot >= 0 && slot < capacity_, "prioritized replay: ", what, "() got slot ", slot,
            ", outside [0, ", capacity_, ")");
  }
  static void check_beta(double beta) {
    require(std::isfinite(beta) && beta >= 0.0 && beta <= 1.0,
            "prioritized replay: beta must lie in [0, 1] (take it from beta_at(step)), got ", beta);
  }
  void require_nonempty(const char* what) const {
    require(size_ > 0, "prioritized replay: ", what, "() with no slot holding a priority; add() transitions first");
  }

  PrioritizedConfig config_;
  std::int64_t capacity_ = 0;
  std::int64_t leaves_ = 1;
  std::vector<double> sum_;
  std::vector<double> min_;
  std::int64_t size_ = 0;
  double max_priority_ = 1.0;
  double max_stored_ = 1.0;
};

}  // namespace qrl::rl
