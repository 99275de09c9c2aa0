#pragma once
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <numeric>
#include <vector>

#include <qrl/env/env.hpp>
#include <qrl/rl/dqn.hpp>
#include <qrl/rl/epsilon_schedule.hpp>
#include <qrl/rl/frame_stack.hpp>
#include <qrl/rl/replay_memory.hpp>

namespace qrl::rl {

struct TrainerConfig {
  std::uint64_t seed = 1;
  EpsilonSchedule epsilon = EpsilonSchedule::linear(1.0, 0.01, 100000);
  std::int64_t progress_interval = 10000;  // env steps between progress reports
  int score_window = 100;                  // episodes in the running means
};

struct EpisodeRecord {
  std::int64_t index = 0;     // 0-based episode number
  std::int64_t end_step = 0;  // global env step at which it ended
  double episode_return = 0.0;
  std::int64_t length = 0;
  double score = 0.0;
  bool truncated = false;
  double wall_seconds = 0.0;  // since training started
};

struct Progress {
  std::int64_t step = 0;
  std::int64_t episodes = 0;
  double steps_per_second = 0.0;  // over the last interval
  double mean_return = 0.0;       // last `score_window` episodes
  double mean_score = 0.0;
  double max_score = 0.0;
  double epsilon = 0.0;
  std::int64_t updates = 0;
  UpdateStats last_update;
  double wall_seconds = 0.0;
};

// Everything of the loop that training depends on besides the agent, the
// replay memory and the environment: with these restored, the next steps are
// the ones an uninterrupted run would have taken.
struct TrainerState {
  std::int64_t step = 0, episodes = 0, episode_length = 0;
  double episode_return = 0.0;
  bool in_episode = false, have_stats = false;
  Rng::State episode_seeds{}, exploration{}, sampling{};
  EpsilonSchedule epsilon;             // fixed when the run starts
  std::vector<EpisodeRecord> recent;   // the running-mean window
  std::vector<std::uint8_t> frame_stack;
  double wall_seconds = 0.0;           // training time so far
};

// The environment loop of DQN: epsilon-greedy acting on stacked frames,
// storing transitions, and the agent's training schedule. Its state (step,
// episode, the RNG streams) is explicit so training can stop and continue.
template <Backend B, env::Environment E>
class DqnTrainer {
 public:
  DqnTrainer(E& env, Dqn<B>& agent, ReplayMemory<B>& replay, TrainerConfig config)
      : env_(&env),
        agent_(&agent),
        replay_(&replay),
        config_(config),
        stack_(env.observation_shape(), static_cast<int>(agent.observation_shape()[0])),
        episode_seeds_(config.seed ^ 0x5eed5eed5eed5eedULL),
        exploration_(config.seed ^ 0xe4e4e4e4e4e4e4e4ULL),
        sampling_(config.seed ^ 0x5a5a5a5a5a5a5a5aULL) {
    const auto frame = env.observation_shape();
    require(frame.height == agent.observation_shape()[1] && frame.width == agent.observation_shape()[2],
            "the environment's ", frame.height, "x", frame.width, " frames do not match the agent's input ",
            agent.observation_shape().str());
  }

  std::function<void(const EpisodeRecord&)> on_episode;
  std::function<void(const Progress&)> on_progress;
  // Called after each gradient update (env step given); reading
  // agent().last_stats() here costs a device sync, so it is opt-in.
  std::function<void(std::int64_t)> on_update;

  std::int64_t step() const { return step_; }
  std::int64_t episodes() const { return episodes_; }
  E& env() { return *env_; }
  Dqn<B>& agent() { return *agent_; }
  ReplayMemory<B>& replay() { return *replay_; }
  const TrainerConfig& config() const { return config_; }

  TrainerState state() const {
    TrainerState s;
    s.step = step_;
    s.episodes = episodes_;
    s.episode_length = episode_length_;
    s.episode_return = episode_return_;
    s.in_episode = in_episode_;
    s.have_stats = have_stats_;
    s.episode_seeds = episode_seeds_.state();
    s.exploration = exploration_.state();
    s.sampling = sampling_.state();
    s.epsilon = config_.epsilon;
    s.recent.assign(recent_.begin(), recent_.end());
    s.frame_stack.assign(stack_.data(), stack_.data() + stack_.bytes());
    s.wall_seconds = start_time_ == std::chrono::steady_clock::time_point{} ? 0.0 : elapsed();
    return s;
  }

  void restore(const TrainerState& s) {
    require(s.step >= 0 && s.episodes >= 0 && s.episode_length >= 0, "trainer state has negative counters");
    stack_.set_data(s.frame_stack.data(), s.frame_stack.size());
    step_ = s.step;
    episodes_ = s.episodes;
    episode_length_ = s.episode_length;
    episode_return_ = s.episode_return;
    in_episode_ = s.in_episode;
    have_stats_ = s.have_stats;
    episode_seeds_.set_state(s.episode_seeds);
    exploration_.set_state(s.exploration);
    sampling_.set_state(s.sampling);
    config_.epsilon = s.epsilon;
    recent_.assign(s.recent.begin(), s.recent.end());
    start_time_ = std::chrono::steady_clock::now() -
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(s.wall_seconds));
  }

  // Runs until the global env step reaches `until_step` (or stop() is called).
  void run(std::int64_t until_step) {
    using clock = std::chrono::steady_clock;
    if (start_time_ == clock::time_point{}) start_time_ = clock::now();
    auto interval_start = clock::now();
    std::int64_t interval_start_step = step_;
    stop_ = false;
    while (step_ < until_step && !stop_ && !(stop_flag_ && stop_flag_->load(std::memory_order_relaxed))) {
      if (!in_episode_) begin_episode();
      const double epsilon = config_.epsilon.value(step_);
      const int action = agent_->act(stack_.data(), epsilon, exploration_);
      const env::StepResult result = env_->step(action);
      ++step_;
      episode_return_ += result.reward;
      ++episode_length_;
      replay_->add(action, static_cast<float>(result.reward), result.terminated, result.truncated,
                   result.observation);
      stack_.push(result.observation);
      if (agent_->maybe_train(step_, *replay_, sampling_)) {
        have_stats_ = true;
        if (on_update) on_update(step_);
      }
      if (result.terminated || result.truncated) end_episode(result);
      if (on_progress && step_ % config_.progress_interval == 0) {
        const auto now = clock::now();
        Progress p = progress();
        p.steps_per_second = static_cast<double>(step_ - interval_start_step) /
                             std::max(1e-9, std::chrono::duration<double>(now - interval_start).count());
        on_progress(p);
        interval_start = now;
        interval_start_step = step_;
      }
    }
  }

  void stop() { stop_ = true; }
  // A flag that ends run() after the current step when set, e.g. from a
  // SIGINT handler (lock-free atomics are async-signal-safe, a plain bool
  // member is not).
  void set_stop_flag(const std::atomic<bool>* flag) { stop_flag_ = flag; }

  Progress progress() {
    Progress p;
    p.step = step_;
    p.episodes = episodes_;
    p.epsilon = config_.epsilon.value(step_);
    p.updates = agent_->updates();
    if (have_stats_) p.last_update = agent_->last_stats();
    if (!recent_.empty()) {
      double sum_return = 0, sum_score = 0, max_score = recent_.front().score;
      for (const auto& e : recent_) {
        sum_return += e.episode_return;
        sum_score += e.score;
        max_score = std::max(max_score, e.score);
      }
      p.mean_return = sum_return / recent_.size();
      p.mean_score = sum_score / recent_.size();
      p.max_score = max_score;
    }
    p.wall_seconds = elapsed();
    return p;
  }

 private:
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time_).count();
  }

  void begin_episode() {
    const env::FrameView first = env_->reset(episode_seeds_.next_u64());
    stack_.reset(first);
    replay_->begin_episode(first);
    in_episode_ = true;
    episode_return_ = 0.0;
    episode_length_ = 0;
  }

  void end_episode(const env::StepResult& last) {
    EpisodeRecord record{episodes_, step_, episode_return_, episode_length_, last.info.score, last.truncated,
                         elapsed()};
    ++episodes_;
    in_episode_ = false;
    recent_.push_back(record);
    if (static_cast<int>(recent_.size()) > config_.score_window) recent_.pop_front();
    if (on_episode) on_episode(record);
  }

  E* env_;
  Dqn<B>* agent_;
  ReplayMemory<B>* replay_;
  TrainerConfig config_;
  FrameStack stack_;
  Rng episode_seeds_, exploration_, sampling_;
  std::int64_t step_ = 0, episodes_ = 0, episode_length_ = 0;
  double episode_return_ = 0.0;
  bool in_episode_ = false, stop_ = false, have_stats_ = false;
  const std::atomic<bool>* stop_flag_ = nullptr;
  std::deque<EpisodeRecord> recent_;
  std::chrono::steady_clock::time_point start_time_{};
};

}  // namespace qrl::rl
