#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include <qrl/core/error.hpp>

namespace qrl::rl {

// Exploration rate as a function of the environment step. Plain values, so a
// checkpoint stores the schedule and the step and nothing else.
//  linear:      start -> end over `duration` steps, then end (CleanRL).
//  exponential: start * (end/start)^(t/duration), reaching end at `duration`.
// `delay` steps at `start` come first (the tutorials only decay after their
// OBSERVE phase).
struct EpsilonSchedule {
  enum class Kind { constant, linear, exponential };
  Kind kind = Kind::linear;
  double start = 1.0;
  double end = 0.01;
  std::int64_t duration = 1;
  std::int64_t delay = 0;

  static EpsilonSchedule constant(double value) { return {Kind::constant, value, value, 1, 0}; }
  static EpsilonSchedule linear(double start, double end, std::int64_t duration, std::int64_t delay = 0) {
    return checked({Kind::linear, start, end, duration, delay});
  }
  static EpsilonSchedule exponential(double start, double end, std::int64_t duration, std::int64_t delay = 0) {
    require(start > 0.0 && end > 0.0, "an exponential epsilon schedule needs start and end > 0, got ", start, " and ",
            end);
    return checked({Kind::exponential, start, end, duration, delay});
  }
  // CleanRL: linear over a fraction of the whole run.
  static EpsilonSchedule linear_fraction(double start, double end, double fraction, std::int64_t total_steps) {
    require(fraction > 0.0 && fraction <= 1.0, "exploration fraction must lie in (0, 1], got ", fraction);
    return linear(start, end, std::max<std::int64_t>(1, std::llround(fraction * static_cast<double>(total_steps))));
  }
  // The DQN Flappy Bird tutorial: 0.1 -> 0.0001 over 3M frames after observing.
  static EpsilonSchedule tutorial(std::int64_t observe = 10000, std::int64_t explore = 3000000) {
    return linear(0.1, 0.0001, explore, observe);
  }
  static EpsilonSchedule cleanrl(std::int64_t total_steps, double fraction = 0.1) {
    return linear_fraction(1.0, 0.01, fraction, total_steps);
  }

  double value(std::int64_t step) const {
    if (kind == Kind::constant || step <= delay) return start;
    const double t = std::min(1.0, static_cast<double>(step - delay) / static_cast<double>(duration));
    if (kind == Kind::linear) return start + t * (end - start);
    return start * std::pow(end / start, t);
  }

 private:
  static EpsilonSchedule checked(EpsilonSchedule s) {
    require(s.start >= 0.0 && s.start <= 1.0 && s.end >= 0.0 && s.end <= 1.0,
            "epsilon values must lie in [0, 1], got start ", s.start, " and end ", s.end);
    require(s.duration > 0, "epsilon schedule duration must be positive, got ", s.duration);
    require(s.delay >= 0, "epsilon schedule delay must be >= 0, got ", s.delay);
    return s;
  }
};

}  // namespace qrl::rl
