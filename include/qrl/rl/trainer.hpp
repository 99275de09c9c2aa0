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
#include <qrl/env/vector_env.hpp>
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
  int env = 0;                // which env of a vector env played it
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

namespace detail {

// Return and length of the episode an env is playing.
struct EpisodeTally {
  double episode_return = 0.0;
  std::int64_t length = 0;
};

// What the one-env and the vector trainer share: the agent's schedule by
// global env step, the RNG streams of exploration and replay sampling,
// episode records, progress reports and stopping.
template <Backend B>
class TrainerCore {
 public:
  std::function<void(const EpisodeRecord&)> on_episode;
  std::function<void(const Progress&)> on_progress;
  // Called after each gradient update (env step given); reading
  // agent().last_stats() here costs a device sync, so it is opt-in.
  std::function<void(std::int64_t)> on_update;

  std::int64_t step() const { return step_; }
  std::int64_t episodes() const { return episodes_; }
  Dqn<B>& agent() { return *agent_; }
  ReplayMemory<B>& replay() { return *replay_; }
  const TrainerConfig& config() const { return config_; }

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

 protected:
  using clock = std::chrono::steady_clock;

  TrainerCore(Dqn<B>& agent, ReplayMemory<B>& replay, TrainerConfig config, env::FrameShape frame)
      : agent_(&agent),
        replay_(&replay),
        config_(config),
        exploration_(config.seed ^ 0xe4e4e4e4e4e4e4e4ULL),
        sampling_(config.seed ^ 0x5a5a5a5a5a5a5a5aULL) {
    require(frame.height == agent.observation_shape()[1] && frame.width == agent.observation_shape()[2],
            "the environment's ", frame.height, "x", frame.width, " frames do not match the agent's input ",
            agent.observation_shape().str());
  }

  double elapsed() const { return std::chrono::duration<double>(clock::now() - start_time_).count(); }

  void begin_run() {
    if (start_time_ == clock::time_point{}) start_time_ = clock::now();
    interval_start_ = clock::now();
    interval_start_step_ = step_;
    stop_ = false;
  }

  bool running(std::int64_t until_step) const {
    return step_ < until_step && !stop_ && !(stop_flag_ && stop_flag_->load(std::memory_order_relaxed));
  }

  // Counts `env_steps` env steps whose transitions are already stored and
  // runs the agent's schedule at each of them, so train_frequency,
  // learning_starts and target_update_interval count env steps however many
  // envs step at once.
  void advance(int env_steps) {
    for (int k = 0; k < env_steps; ++k) {
      ++step_;
      if (agent_->maybe_train(step_, *replay_, sampling_)) {
        have_stats_ = true;
        if (on_update) on_update(step_);
      }
    }
  }

  void end_episode(EpisodeTally& tally, const env::StepResult& last, int env) {
    EpisodeRecord record{episodes_, step_,          tally.episode_return, tally.length, last.info.score,
                         last.truncated, elapsed(), env};
    ++episodes_;
    tally = {};
    recent_.push_back(record);
    if (static_cast<int>(recent_.size()) > config_.score_window) recent_.pop_front();
    if (on_episode) on_episode(record);
  }

  // Reports progress when the global step has passed a multiple of
  // progress_interval since `previous_step`.
  void report_progress(std::int64_t previous_step) {
    if (!on_progress || step_ / config_.progress_interval == previous_step / config_.progress_interval) return;
    const auto now = clock::now();
    Progress p = progress();
    p.steps_per_second = static_cast<double>(step_ - interval_start_step_) /
                         std::max(1e-9, std::chrono::duration<double>(now - interval_start_).count());
    on_progress(p);
    interval_start_ = now;
    interval_start_step_ = step_;
  }

  Dqn<B>* agent_;
  ReplayMemory<B>* replay_;
  TrainerConfig config_;
  Rng exploration_, sampling_;
  std::int64_t step_ = 0, episodes_ = 0;
  bool stop_ = false, have_stats_ = false;
  const std::atomic<bool>* stop_flag_ = nullptr;
  std::deque<EpisodeRecord> recent_;
  clock::time_point start_time_{}, interval_start_{};
  std::int64_t interval_start_step_ = 0;
};

}  // namespace detail

// The environment loop of DQN: epsilon-greedy acting on stacked frames,
// storing transitions, and the agent's training schedule. Its state (step,
// episode, the RNG streams) is explicit so training can stop and continue.
template <Backend B, env::Environment E>
class DqnTrainer : public detail::TrainerCore<B> {
  using Core = detail::TrainerCore<B>;

 public:
  DqnTrainer(E& env, Dqn<B>& agent, ReplayMemory<B>& replay, TrainerConfig config)
      : Core(agent, replay, config, env.observation_shape()),
        env_(&env),
        stack_(env.observation_shape(), static_cast<int>(agent.observation_shape()[0])),
        episode_seeds_(config.seed ^ 0x5eed5eed5eed5eedULL) {
    require(replay.streams() == 1, "DqnTrainer drives one env but the replay memory has ", replay.streams(),
            " streams: use VectorDqnTrainer, or a replay memory with streams = 1");
  }

  E& env() { return *env_; }

  TrainerState state() const {
    TrainerState s;
    s.step = this->step_;
    s.episodes = this->episodes_;
    s.episode_length = tally_.length;
    s.episode_return = tally_.episode_return;
    s.in_episode = in_episode_;
    s.have_stats = this->have_stats_;
    s.episode_seeds = episode_seeds_.state();
    s.exploration = this->exploration_.state();
    s.sampling = this->sampling_.state();
    s.epsilon = this->config_.epsilon;
    s.recent.assign(this->recent_.begin(), this->recent_.end());
    s.frame_stack.assign(stack_.data(), stack_.data() + stack_.bytes());
    s.wall_seconds = this->start_time_ == typename Core::clock::time_point{} ? 0.0 : this->elapsed();
    return s;
  }

  void restore(const TrainerState& s) {
    require(s.step >= 0 && s.episodes >= 0 && s.episode_length >= 0, "trainer state has negative counters");
    stack_.set_data(s.frame_stack.data(), s.frame_stack.size());
    this->step_ = s.step;
    this->episodes_ = s.episodes;
    tally_ = {s.episode_return, s.episode_length};
    in_episode_ = s.in_episode;
    this->have_stats_ = s.have_stats;
    episode_seeds_.set_state(s.episode_seeds);
    this->exploration_.set_state(s.exploration);
    this->sampling_.set_state(s.sampling);
    this->config_.epsilon = s.epsilon;
    this->recent_.assign(s.recent.begin(), s.recent.end());
    this->start_time_ = Core::clock::now() - std::chrono::duration_cast<typename Core::clock::duration>(
                                                 std::chrono::duration<double>(s.wall_seconds));
  }

  // Runs until the global env step reaches `until_step` (or stop() is called).
  void run(std::int64_t until_step) {
    this->begin_run();
    while (this->running(until_step)) {
      if (!in_episode_) begin_episode();
      const std::int64_t before = this->step_;
      const int action = this->agent_->act(stack_.data(), this->config_.epsilon.value(before), this->exploration_);
      const env::StepResult result = env_->step(action);
      tally_.episode_return += result.reward;
      ++tally_.length;
      this->replay_->add(action, static_cast<float>(result.reward), result.terminated, result.truncated,
                         result.observation);
      stack_.push(result.observation);
      this->advance(1);
      if (result.terminated || result.truncated) {
        in_episode_ = false;
        this->end_episode(tally_, result, 0);
      }
      this->report_progress(before);
    }
  }

 private:
  void begin_episode() {
    const env::FrameView first = env_->reset(episode_seeds_.next_u64());
    stack_.reset(first);
    this->replay_->begin_episode(first);
    in_episode_ = true;
    tally_ = {};
  }

  E* env_;
  FrameStack stack_;
  Rng episode_seeds_;
  detail::EpisodeTally tally_;
  bool in_episode_ = false;
};

// DQN over N envs stepped together (env::VectorEnv): one batched forward pass
// picks the greedy actions of all N envs, epsilon-greedy per env from the
// trainer's one exploration stream (env 0 first), and env i's transitions go
// to replay stream i. The global step counts env steps summed over envs, so
// each vector step advances it by N and the agent's schedule (learning
// starts, train frequency, target updates, epsilon) runs at every env step it
// passes: the same budget of --steps buys the same number of updates. Env i
// draws its episode seeds from episode_seed_stream(seed, i); env 0's stream
// is the one-env trainer's, so with N = 1 this trainer takes exactly the
// steps DqnTrainer takes. It has no state()/restore(): a vector run cannot be
// checkpointed yet.
template <Backend B, env::Environment E>
class VectorDqnTrainer : public detail::TrainerCore<B> {
  using Core = detail::TrainerCore<B>;

 public:
  VectorDqnTrainer(env::VectorEnv<E>& envs, Dqn<B>& agent, ReplayMemory<B>& replay, TrainerConfig config)
      : Core(agent, replay, config, envs.observation_shape()), envs_(&envs), tallies_(envs.size()) {
    require(replay.streams() == envs.size(), "VectorDqnTrainer: the replay memory has ", replay.streams(),
            " streams for ", envs.size(), " envs; configure ReplayConfig::streams = the env count");
    const int depth = static_cast<int>(agent.observation_shape()[0]);
    for (int i = 0; i < envs.size(); ++i) stacks_.emplace_back(envs.observation_shape(), depth);
    states_.resize(stacks_[0].bytes() * envs.size());
    epsilons_.resize(envs.size());
    actions_.resize(envs.size());
  }

  // The seed of env i's stream of episode seeds.
  static std::uint64_t episode_seed_stream(std::uint64_t seed, int env) {
    return (seed ^ 0x5eed5eed5eed5eedULL) + static_cast<std::uint64_t>(env) * 0xd1b54a32d192ed03ULL;
  }

  env::VectorEnv<E>& envs() { return *envs_; }

  // Runs vector steps until the global env step reaches `until_step` (it may
  // pass it by up to N - 1), or stop() is called.
  void run(std::int64_t until_step) {
    this->begin_run();
    const int n = envs_->size();
    if (!started_) {
      std::vector<std::uint64_t> streams(n);
      for (int i = 0; i < n; ++i) streams[i] = episode_seed_stream(this->config_.seed, i);
      envs_->reset(std::span<const std::uint64_t>(streams));
      for (int i = 0; i < n; ++i) begin_episode(i);
      started_ = true;
    }
    const std::size_t state_bytes = stacks_[0].bytes();
    while (this->running(until_step)) {
      const std::int64_t before = this->step_;
      for (int i = 0; i < n; ++i) {
        std::copy_n(stacks_[i].data(), state_bytes, states_.data() + i * state_bytes);
        epsilons_[i] = this->config_.epsilon.value(before + i);
      }
      this->agent_->act_batch(states_.data(), n, epsilons_, this->exploration_, actions_);
      const auto results = envs_->step(actions_);
      for (int i = 0; i < n; ++i) {
        const env::StepResult& r = results[i].result;
        tallies_[i].episode_return += r.reward;
        ++tallies_[i].length;
        this->replay_->add(actions_[i], static_cast<float>(r.reward), r.terminated, r.truncated, r.observation, i);
      }
      // Training sees all N new transitions; the new episodes' first frames
      // enter the replay memory after it, as they do in DqnTrainer.
      this->advance(n);
      for (int i = 0; i < n; ++i) {
        if (results[i].autoreset) {
          this->end_episode(tallies_[i], results[i].result, i);
          begin_episode(i);
        } else {
          stacks_[i].push(envs_->observation(i));
        }
      }
      this->report_progress(before);
    }
  }

 private:
  void begin_episode(int i) {
    const env::FrameView first = envs_->observation(i);
    stacks_[i].reset(first);
    this->replay_->begin_episode(first, i);
  }

  env::VectorEnv<E>* envs_;
  std::vector<FrameStack> stacks_;
  std::vector<detail::EpisodeTally> tallies_;
  std::vector<std::uint8_t> states_;
  std::vector<double> epsilons_;
  std::vector<int> actions_;
  bool started_ = false;
};

}  // namespace qrl::rl
