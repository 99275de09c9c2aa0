#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <vector>

#include <qrl/env/env.hpp>
#include <qrl/env/vector_env.hpp>
#include <qrl/rl/dqn.hpp>
#include <qrl/rl/epsilon_schedule.hpp>
#include <qrl/rl/frame_stack.hpp>
#include <qrl/rl/replay_memory.hpp>

namespace qrl::rl {

// When the learner updates, counted in env steps summed over the envs
// (CleanRL's and SB3's loop): once `learning_starts` steps are stored, every
// `train_frequency` steps `gradient_steps` updates run (the replay ratio is
// gradient_steps / train_frequency, so 2 updates per env step is
// train_frequency 1, gradient_steps 2), and every `target_update_interval`
// steps the target network moves toward the online one: a copy with tau = 1,
// Polyak averaging target <- tau * online + (1 - tau) * target below.
struct UpdateSchedule {
  std::int64_t learning_starts = 80000;
  int train_frequency = 4;
  int gradient_steps = 1;
  std::int64_t target_update_interval = 1000;
  float tau = 1.0f;

  void check() const {
    require(learning_starts >= 0, "learning_starts must be >= 0, got ", learning_starts);
    require(train_frequency > 0, "train frequency must be positive, got ", train_frequency);
    require(gradient_steps > 0, "gradient steps must be positive, got ", gradient_steps);
    require(target_update_interval > 0, "target update interval must be positive, got ", target_update_interval);
    require(tau > 0.0f && tau <= 1.0f, "tau must lie in (0, 1] (1 = copy the online network), got ", tau);
  }
  bool updates_at(std::int64_t step) const { return step >= learning_starts && step % train_frequency == 0; }
  bool target_update_at(std::int64_t step) const {
    return step >= learning_starts && step % target_update_interval == 0;
  }
};

// Where the trainer acts. host: each env's stacked state comes from its
// FrameStack on the host and epsilon-greedy draws from the trainer's
// exploration stream (Dqn::act_batch; the states go up and the Q-values come
// back). backend: the states are gathered from the replay memory where they
// already are (ReplayMemory::gather_newest_states), and the Q-values, the
// draws (kernels::EpsilonGreedy, counter-based: seed and global step) and
// the argmax stay on the backend; only the actions come back, and all N
// envs of a vector step explore with that step's epsilon. automatic: host
// where the backend's memory is the host's (the CPU, whose recorded seeded
// runs took that path), backend elsewhere (CUDA).
enum class ActingPath { automatic, host, backend };

struct TrainerConfig {
  std::uint64_t seed = 1;
  ActingPath acting = ActingPath::automatic;
  EpsilonSchedule epsilon = EpsilonSchedule::linear(1.0, 0.01, 100000);
  UpdateSchedule schedule{};
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
  int env = 0;                // which of the trainer's envs played it
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

// Return and length of the episode an env is playing.
struct EpisodeTally {
  double episode_return = 0.0;
  std::int64_t length = 0;
};

// Everything of the loop that training depends on besides the agent, the
// replay memory and the envs' own states: with these restored, the next
// steps are the ones an uninterrupted run would have taken.
struct TrainerState {
  struct EnvSlot {
    EpisodeTally tally;                    // the episode env i is playing
    Rng::State episode_seeds{};            // env i's stream of episode seeds
    std::vector<std::uint8_t> frame_stack;  // the state env i acts on next
  };
  std::int64_t step = 0, episodes = 0;
  bool started = false;  // the envs are inside episodes (false: reset them first)
  bool have_stats = false;
  Rng::State exploration{}, sampling{};
  EpsilonSchedule epsilon;            // fixed when the run starts
  std::vector<EpisodeRecord> recent;  // the running-mean window
  std::vector<EnvSlot> envs;
  double wall_seconds = 0.0;  // training time so far
};

// The DQN loop over N >= 1 envs stepped together (env::VectorEnv; a single
// env is a VectorEnv of one): one batched forward pass picks the greedy
// actions of all N envs, epsilon-greedy per env from one exploration stream
// (env 0 first), env i's transitions go to replay ring i, and the
// UpdateSchedule runs at every env step the vector step passes, so the same
// --steps buys the same number of updates however many envs there are. Env i
// draws its episode seeds from episode_seed_stream(seed, i). The trainer
// pushes transitions and pulls batches; the agent only acts and updates. Its
// state is explicit (state()/restore()) so training can stop and continue.
template <Backend B, env::Environment E>
class Trainer {
 public:
  std::function<void(const EpisodeRecord&)> on_episode;
  std::function<void(const Progress&)> on_progress;
  // Called after each gradient update (env step given); reading
  // agent().last_stats() here costs a device sync, so it is opt-in.
  std::function<void(std::int64_t)> on_update;

  Trainer(env::VectorEnv<E>& envs, Dqn<B>& agent, ReplayMemory<B>& replay, TrainerConfig config)
      : envs_(&envs),
        agent_(&agent),
        replay_(&replay),
        config_(config),
        exploration_(config.seed, SeedPurpose::exploration),
        sampling_(config.seed, SeedPurpose::sampling),
        tallies_(static_cast<std::size_t>(envs.size())) {
    config.schedule.check();
    const env::FrameShape frame = envs.observation_shape();
    require(frame.height == agent.observation_shape()[1] && frame.width == agent.observation_shape()[2],
            "the environment's ", frame.height, "x", frame.width, " frames do not match the agent's input ",
            agent.observation_shape().str());
    require(replay.rings() == envs.size(), "the replay memory has ", replay.rings(), " rings for ",
            envs.size(), " envs; configure ReplayConfig::rings = the env count");
    const int depth = static_cast<int>(agent.observation_shape()[0]);
    require(replay.config().stack == depth, "the replay memory stacks ", replay.config().stack,
            " frames, the agent takes ", depth);
    for (int i = 0; i < envs.size(); ++i) stacks_.emplace_back(frame, depth);
    states_.resize(stacks_[0].bytes() * static_cast<std::size_t>(envs.size()));
    epsilons_.resize(envs.size());
    actions_.resize(envs.size());
  }

  // The seed of env i's stream of episode seeds; env 0's is the same for
  // every env count.
  static std::uint64_t episode_seed_stream(std::uint64_t seed, int env) {
    return Rng::derive(seed, SeedPurpose::episode_seeds, static_cast<std::uint64_t>(env));
  }

  std::int64_t step() const { return step_; }
  std::int64_t episodes() const { return episodes_; }
  Dqn<B>& agent() { return *agent_; }
  ReplayMemory<B>& replay() { return *replay_; }
  env::VectorEnv<E>& envs() { return *envs_; }
  int env_count() const { return envs_->size(); }
  const TrainerConfig& config() const { return config_; }
  // Whether run() acts on the backend (see ActingPath).
  bool acts_on_backend() const {
    return config_.acting == ActingPath::backend ||
           (config_.acting == ActingPath::automatic && !backend_traits<B>::host_memory);
  }

  // DQfD: from now on every update draws agent().config().demonstration_rows
  // rows of its batch from `demonstrations` (the demonstrator's transitions)
  // and adds the large-margin term on them. The memory must outlive the
  // training; nullptr detaches it.
  void use_demonstrations(const ReplayMemory<B>* demonstrations) {
    require(demonstrations == nullptr || !replay_->prioritized(), "demonstrations (DQfD) with prioritized replay "
            "are not supported yet: train with one of the two");
    demonstrations_ = demonstrations;
  }

  // DQfD's pre-training: `updates` updates on whole batches of
  // demonstrations before the agent acts, the target updated as often per
  // update as the schedule does during training. Sampled from `sampling`, a
  // stream of its own: pre-training is regenerated, not checkpointed.
  void pretrain(ReplayMemory<B>& demonstrations, std::int64_t updates, Rng& sampling) {
    const auto& s = config_.schedule;
    const std::int64_t updates_per_target =
        std::max<std::int64_t>(1, s.target_update_interval / s.train_frequency * s.gradient_steps);
    for (std::int64_t u = 0; u < updates; ++u) {
      demonstrations.sample(agent_->context(), sampling, agent_->config().batch_size, agent_->config().gamma,
                            batch_);
      agent_->update(batch_, agent_->config().batch_size);
      if ((u + 1) % updates_per_target == 0) agent_->update_target(s.tau);
    }
    agent_->sync_target();
  }

  void stop() { stop_ = true; }
  // A flag that ends run() after the current step when set, e.g. from a
  // SIGINT handler (lock-free atomics are async-signal-safe, a plain bool
  // member is not).
  void set_stop_flag(const std::atomic<bool>* flag) { stop_flag_ = flag; }

  // Runs vector steps until the global env step reaches `until_step` (it may
  // pass it by up to N - 1), or stop() is called.
  void run(std::int64_t until_step) {
    begin_run();
    const int n = envs_->size();
    if (!started_) start_episodes();
    const std::size_t state_bytes = stacks_[0].bytes();
    const bool on_backend = acts_on_backend();
    while (running(until_step)) {
      const std::int64_t before = step_;
      if (on_backend) {
        replay_->gather_newest_states(agent_->context(), backend_states_);
        const kernels::CounterRng draws{backend_exploration_seed(), static_cast<std::uint64_t>(before)};
        const kernels::EpsilonGreedy policy{static_cast<float>(config_.epsilon.value(before)), draws};
        agent_->act_on_backend(backend_states_.data(), n, policy, actions_);
      } else {
        for (int i = 0; i < n; ++i) {
          std::copy_n(stacks_[i].data(), state_bytes, states_.data() + i * state_bytes);
          epsilons_[i] = config_.epsilon.value(before + i);
        }
        agent_->act_batch(states_.data(), n, epsilons_, exploration_, actions_);
      }
      const auto results = envs_->step(actions_);
      for (int i = 0; i < n; ++i) {
        const env::StepResult& r = results[i].result;
        tallies_[i].episode_return += r.reward;
        ++tallies_[i].length;
        replay_->add(actions_[i], static_cast<float>(r.reward), r.terminated, r.truncated, r.observation, i);
      }
      // Training sees all N new transitions; the new episodes' first frames
      // enter the replay memory after it.
      advance(n);
      for (int i = 0; i < n; ++i) {
        if (results[i].autoreset) {
          end_episode(i, results[i].result);
          begin_episode(i);
        } else {
          stacks_[i].push(envs_->observation(i));
        }
      }
      report_progress(before);
    }
  }

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

  TrainerState state() const {
    TrainerState s;
    s.step = step_;
    s.episodes = episodes_;
    s.started = started_;
    s.have_stats = have_stats_;
    s.exploration = exploration_.state();
    s.sampling = sampling_.state();
    s.epsilon = config_.epsilon;
    s.recent.assign(recent_.begin(), recent_.end());
    for (int i = 0; i < envs_->size(); ++i) {
      TrainerState::EnvSlot slot;
      slot.tally = tallies_[i];
      slot.episode_seeds = started_ || seeds_restored_ ? envs_->episode_seed_state(i)
                                                       : Rng(episode_seed_stream(config_.seed, i)).state();
      slot.frame_stack.assign(stacks_[i].data(), stacks_[i].data() + stacks_[i].bytes());
      s.envs.push_back(std::move(slot));
    }
    s.wall_seconds = start_time_ == clock::time_point{} ? 0.0 : elapsed();
    return s;
  }

  // Restores the loop. With s.started the envs' own states must have been
  // restored to the saved step (load_state) and the loop steps on from
  // there; without it the next run() begins a fresh episode in every env
  // with the next seed of its restored stream.
  void restore(const TrainerState& s) {
    require(s.step >= 0 && s.episodes >= 0, "trainer state has negative counters (step ", s.step, ", episodes ",
            s.episodes, ")");
    require(static_cast<int>(s.envs.size()) == envs_->size(), "the trainer state holds ", s.envs.size(),
            " envs, this run has ", envs_->size(), " (resume with the same number of envs)");
    std::vector<Rng::State> seeds;
    for (int i = 0; i < envs_->size(); ++i) {
      const auto& slot = s.envs[i];
      require(slot.tally.length >= 0 && std::isfinite(slot.tally.episode_return), "trainer state of env ", i,
              " has an impossible episode (length ", slot.tally.length, ", return ", slot.tally.episode_return, ")");
      stacks_[i].set_data(slot.frame_stack.data(), slot.frame_stack.size());
      tallies_[i] = slot.tally;
      seeds.push_back(slot.episode_seeds);
    }
    envs_->set_episode_seed_states(seeds);
    seeds_restored_ = true;
    step_ = s.step;
    episodes_ = s.episodes;
    have_stats_ = s.have_stats;
    exploration_.set_state(s.exploration);
    sampling_.set_state(s.sampling);
    config_.epsilon = s.epsilon;
    recent_.assign(s.recent.begin(), s.recent.end());
    started_ = s.started;
    if (started_) envs_->mark_started();
    start_time_ = clock::now() -
                  std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(s.wall_seconds));
  }

 private:
  using clock = std::chrono::steady_clock;

  double elapsed() const { return std::chrono::duration<double>(clock::now() - start_time_).count(); }

  // The counter-based exploration draws of backend acting: a function of
  // the seed and the global step only, so a resumed run draws what the
  // uninterrupted one would have without saving any generator state.
  std::uint64_t backend_exploration_seed() const { return Rng::derive(config_.seed, SeedPurpose::exploration); }

  void begin_run() {
    if (start_time_ == clock::time_point{}) start_time_ = clock::now();
    interval_start_ = clock::now();
    interval_start_step_ = step_;
    stop_ = false;
  }

  bool running(std::int64_t until_step) const {
    return step_ < until_step && !stop_ && !(stop_flag_ && stop_flag_->load(std::memory_order_relaxed));
  }

  void start_episodes() {
    const int n = envs_->size();
    if (seeds_restored_) {
      envs_->reset_all();
    } else {
      std::vector<std::uint64_t> streams(n);
      for (int i = 0; i < n; ++i) streams[i] = episode_seed_stream(config_.seed, i);
      envs_->reset(std::span<const std::uint64_t>(streams));
    }
    for (int i = 0; i < n; ++i) begin_episode(i);
    started_ = true;
  }

  void begin_episode(int i) {
    const env::FrameView first = envs_->observation(i);
    stacks_[i].reset(first);
    replay_->begin_episode(first, i);
    tallies_[i] = {};
  }

  // Counts `env_steps` env steps whose transitions are already stored and
  // runs the schedule at each of them.
  void advance(int env_steps) {
    const UpdateSchedule& s = config_.schedule;
    const int demonstration_rows = demonstrations_ ? agent_->config().demonstration_rows : 0;
    const int batch = agent_->config().batch_size;
    for (int k = 0; k < env_steps; ++k) {
      ++step_;
      if (s.updates_at(step_) && replay_->can_sample(batch - demonstration_rows)) {
        for (int g = 0; g < s.gradient_steps; ++g) {
          const float gamma = agent_->config().gamma;
          if (demonstrations_)
            replay_->sample_with_demonstrations(agent_->context(), sampling_, batch, gamma, *demonstrations_,
                                                demonstration_rows, batch_);
          else if (replay_->prioritized())
            replay_->sample_prioritized(agent_->context(), sampling_, batch, gamma,
                                        replay_->prioritized_sampler().beta_at(step_), batch_);
          else
            replay_->sample(agent_->context(), sampling_, batch, gamma, batch_);
          agent_->update(batch_, demonstration_rows);
          if (replay_->prioritized()) replay_->update_priorities(batch_.slots, agent_->last_td_errors());
          have_stats_ = true;
          if (on_update) on_update(step_);
        }
      }
      if (s.target_update_at(step_)) agent_->update_target(s.tau);
    }
  }

  void end_episode(int i, const env::StepResult& last) {
    EpisodeRecord record{episodes_,      step_,     tallies_[i].episode_return, tallies_[i].length, last.info.score,
                         last.truncated, elapsed(), i};
    ++episodes_;
    tallies_[i] = {};
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

  env::VectorEnv<E>* envs_;
  Dqn<B>* agent_;
  ReplayMemory<B>* replay_;
  TrainerConfig config_;
  Rng exploration_, sampling_;
  std::int64_t step_ = 0, episodes_ = 0;
  bool started_ = false, seeds_restored_ = false;
  bool stop_ = false, have_stats_ = false;
  const std::atomic<bool>* stop_flag_ = nullptr;
  const ReplayMemory<B>* demonstrations_ = nullptr;
  ReplayBatch<B> batch_;
  std::deque<EpisodeRecord> recent_;
  std::vector<FrameStack> stacks_;
  std::vector<EpisodeTally> tallies_;
  std::vector<std::uint8_t> states_;
  Tensor<B, std::uint8_t> backend_states_;  // backend acting: [N, stack, H, W]
  std::vector<double> epsilons_;
  std::vector<int> actions_;
  clock::time_point start_time_{}, interval_start_{};
  std::int64_t interval_start_step_ = 0;
};

}  // namespace qrl::rl
