#pragma once
// A binary sum tree (and its companion min tree) over the priorities of
// prioritized replay (Schaul et al. 2016, proportional variant), as flat
// arrays a CUDA kernel can take as pointers.
//
// Layout, for `leaves` a power of two >= the capacity (sum_tree_leaves()):
//   node 1 is the root, node n has children 2n and 2n + 1, leaf i is node
//   leaves + i; index 0 is unused. An array holds 2 * leaves values.
//   sum[n] = sum[2n] + sum[2n + 1], so sum[1] is the total.
//   min[n] = min(min[2n], min[2n + 1]) over positive leaves only: a leaf of
//   priority 0 (empty, removed, or padding past the capacity) holds +inf
//   there, so min[1] is the smallest positive priority, +inf when none is.
//
// Values are double. The stored priorities are p^alpha of float TD errors,
// but the tree has to resolve a leaf of 1e-3 (epsilon^alpha) inside a total
// of 1e6 or more: a float total has a grid of 0.06 there, so the draw u could
// not even land in such a leaf, and the descent's subtractions would lose the
// rest. 2 * 2^20 doubles are 16 MB, nothing beside a replay memory's frames.
//
// Parents are always recomputed from their children, never adjusted by a
// delta: each node then is a fixed function of the current leaves, whatever
// the history of updates, so the total cannot drift over millions of updates
// and a tree rebuilt from saved leaves is bit-identical to the live one.
//
// Concurrency: SumTreeSet walks from one leaf to the root. Two threads doing
// so for different leaves share ancestors and may each read the other's
// sibling before it is written, so a kernel either runs the sets of a batch
// in one thread, or writes all leaves first and then runs SumTreeRecompute
// level by level (deepest first) over the touched parents, with a barrier
// between levels. SumTreeFind only reads and may run one draw per thread.
#include <cmath>
#include <cstdint>

#include <qrl/core/host_device.hpp>

namespace qrl::kernels {

// The smallest power of two >= capacity (1 for capacity <= 1).
QRL_HOST_DEVICE inline std::int64_t sum_tree_leaves(std::int64_t capacity) {
  std::int64_t leaves = 1;
  while (leaves < capacity) leaves *= 2;
  return leaves;
}

// Node `node` (< leaves) recomputed from its two children. `min` may be null
// for a tree without the min part.
struct SumTreeRecompute {
  double* sum = nullptr;
  double* min = nullptr;

  QRL_HOST_DEVICE void operator()(std::int64_t node) const {
    const std::int64_t left = 2 * node;
    sum[node] = sum[left] + sum[left + 1];
    if (min != nullptr) min[node] = min[left] < min[left + 1] ? min[left] : min[left + 1];
  }
};

// Leaf `slot` set to `priority` (finite, >= 0: the caller validates) and its
// ancestors recomputed up to the root.
struct SumTreeSet {
  double* sum = nullptr;
  double* min = nullptr;  // may be null
  std::int64_t leaves = 1;

  QRL_HOST_DEVICE void operator()(std::int64_t slot, double priority) const {
    std::int64_t node = leaves + slot;
    sum[node] = priority;
    if (min != nullptr) min[node] = priority > 0.0 ? priority : HUGE_VAL;
    const SumTreeRecompute recompute{sum, min};
    for (node /= 2; node >= 1; node /= 2) recompute(node);
  }
};

// The leaf whose interval [prefix_i, prefix_i + p_i) contains u, where
// prefix_i is the sum of the leaves before i: a value exactly on a boundary
// belongs to the leaf that starts there.
//
// The result always has a positive priority when sum[1] > 0, whatever u is:
// the descent never enters a child whose sum is 0. That covers u outside
// [0, total) (u < 0 and NaN are read as 0; u >= total ends at the last
// positive leaf) and rounding: sum[n] = fl(sum[2n] + sum[2n+1]) may exceed the
// exact sum, and u - sum[left] is rounded, so u can arrive at a node with
// u >= sum[node]; it then keeps to the right through positive children and
// stops at the subtree's last positive leaf instead of falling into the zero
// leaves after it. With sum[1] == 0 the result is 0 and meaningless: callers
// check for an empty tree first.
struct SumTreeFind {
  const double* sum = nullptr;
  std::int64_t leaves = 1;

  QRL_HOST_DEVICE std::int64_t operator()(double u) const {
    if (!(u > 0.0)) u = 0.0;
    std::int64_t node = 1;
    while (node < leaves) {
      const std::int64_t left = 2 * node;
      const double left_sum = sum[left];
      // u < left_sum implies left_sum > 0 (u >= 0); the right child is only
      // taken when it holds something.
      if (u < left_sum || !(sum[left + 1] > 0.0)) {
        node = left;
      } else {
        u -= left_sum;
        node = left + 1;
      }
    }
    return node - leaves;
  }
};

}  // namespace qrl::kernels
