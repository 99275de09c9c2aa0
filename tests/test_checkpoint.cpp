// Checkpoints must give back the run that was saved: the key test trains N
// steps straight and N/2 + save + load into freshly built objects + N/2, and
// requires bitwise-identical weights, optimizer moments, epsilon, replay
// contents and episode returns. Damaged checkpoints must be refused, and a
// process killed while saving must leave the previous checkpoint usable.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include <qrl/envs/catch.hpp>
#include <qrl/envs/flappy_bird.hpp>
#include <qrl/rl/checkpoint.hpp>

#include "test_support.hpp"

using namespace qrl;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  explicit TempDir(const char* tag)
      : path(fs::temp_directory_path() / ("qrl_ckpt_" + std::string(tag) + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// A whole training setup whose construction depends only on `init_seed`.
template <class Env>
struct Setup {
  Context<cpu> ctx;
  Env env;
  rl::Dqn<cpu> agent;
  rl::ReplayMemory<cpu> replay;
  rl::DqnTrainer<cpu, Env> trainer;
  std::vector<rl::EpisodeRecord> episodes;

  static nn::Sequential<cpu> network(int stack, int size, int actions, std::uint64_t init_seed, Context<cpu>& ctx) {
    nn::Sequential<cpu> net;
    net.add<nn::Conv2d>(stack, 4, 3, 1, Padding::same).add<nn::ReLU>();
    net.add<nn::Flatten>();
    net.add<nn::Dense>(4 * size * size, 16).add<nn::ReLU>();
    net.add<nn::Dense>(16, actions);
    Rng rng(init_seed);
    net.initialize(ctx, rng, nn::Init::pytorch_default);
    return net;
  }
  static rl::DqnConfig dqn_config() {
    rl::DqnConfig c;
    c.batch_size = 8;
    c.learning_starts = 60;
    c.train_frequency = 2;
    c.target_update_interval = 50;
    c.adam.learning_rate = 1e-3f;
    c.adam.max_grad_norm = 10.0f;
    return c;
  }
  static rl::TrainerConfig trainer_config() {
    rl::TrainerConfig c;
    c.seed = 11;
    c.epsilon = rl::EpsilonSchedule::linear(1.0, 0.1, 400);
    c.score_window = 5;
    return c;
  }

  Setup(Env e, int size, std::uint64_t init_seed, std::int64_t capacity)
      : env(std::move(e)),
        agent(ctx, network(2, size, env.action_count(), init_seed, ctx), {2, size, size}, env.action_count(),
              dqn_config()),
        replay({capacity, {size, size, 1}, 2}),
        trainer(env, agent, replay, trainer_config()) {
    trainer.on_episode = [this](const rl::EpisodeRecord& r) { episodes.push_back(r); };
  }
};

std::vector<std::vector<float>> all_tensors(Context<cpu>& ctx, rl::Dqn<cpu>& agent) {
  std::vector<std::vector<float>> out;
  for (auto& p : agent.online().parameters()) out.push_back(to_host(ctx, *p.value));
  for (auto& p : agent.target().parameters()) out.push_back(to_host(ctx, *p.value));
  for (auto& m : agent.optimizer().first_moments()) out.push_back(to_host(ctx, m));
  for (auto& v : agent.optimizer().second_moments()) out.push_back(to_host(ctx, v));
  return out;
}

template <class Env>
void check_same_run(Setup<Env>& a, Setup<Env>& b, const std::vector<rl::EpisodeRecord>& b_episodes) {
  CHECK(a.trainer.step() == b.trainer.step());
  CHECK(a.trainer.episodes() == b.trainer.episodes());
  CHECK(a.agent.updates() == b.agent.updates());
  CHECK(a.agent.optimizer().steps() == b.agent.optimizer().steps());
  CHECK(a.trainer.progress().epsilon == b.trainer.progress().epsilon);
  const auto ta = all_tensors(a.ctx, a.agent), tb = all_tensors(b.ctx, b.agent);
  REQUIRE(ta.size() == tb.size());
  for (std::size_t i = 0; i < ta.size(); ++i) {
    REQUIRE(ta[i].size() == tb[i].size());
    CHECK(std::memcmp(ta[i].data(), tb[i].data(), ta[i].size() * sizeof(float)) == 0);
  }
  CHECK(test::norm(ta.front()) > 0.0);
  // Training moved the weights away from initialisation.
  CHECK(a.agent.updates() > 100);

  REQUIRE(a.replay.frames() == b.replay.frames());
  CHECK(a.replay.transitions() == b.replay.transitions());
  int compared = 0;
  for (std::int64_t k = 0; k < a.replay.frames(); ++k) {
    std::vector<std::uint8_t> sa, na, sb, nb;
    int aa = 0, ab = 0;
    float ra = 0, rb = 0;
    bool ta_ = false, tb_ = false;
    const bool va = a.replay.transition_at(k, sa, na, aa, ra, ta_);
    const bool vb = b.replay.transition_at(k, sb, nb, ab, rb, tb_);
    REQUIRE(va == vb);
    if (!va) continue;
    ++compared;
    CHECK((sa == sb && na == nb && aa == ab && ra == rb && ta_ == tb_));
  }
  CHECK(compared > 100);

  REQUIRE(a.episodes.size() == b_episodes.size());
  for (std::size_t i = 0; i < a.episodes.size(); ++i) {
    CHECK(a.episodes[i].episode_return == b_episodes[i].episode_return);
    CHECK(a.episodes[i].length == b_episodes[i].length);
    CHECK(a.episodes[i].end_step == b_episodes[i].end_step);
    CHECK(a.episodes[i].score == b_episodes[i].score);
  }
}

template <class Env>
void exact_resume(Env env_a, Env env_b, Env env_c, int size, std::int64_t steps, std::int64_t capacity,
                  const char* tag) {
  TempDir dir(tag);
  Setup<Env> straight(std::move(env_a), size, 3, capacity);
  straight.trainer.run(steps);

  Setup<Env> first(std::move(env_b), size, 3, capacity);
  first.trainer.run(steps / 2);
  CHECK(first.trainer.state().in_episode);  // the harder case: the env is mid-episode
  const auto saved = rl::save_checkpoint(dir.path / "checkpoints", first.trainer, first.ctx);
  CHECK(saved.filename() == rl::checkpoint_name(steps / 2));

  // Built with another init seed: everything must come from the checkpoint.
  Setup<Env> resumed(std::move(env_c), size, 99, capacity);
  rl::load_checkpoint(*rl::latest_checkpoint(dir.path / "checkpoints"), resumed.trainer, resumed.ctx);
  CHECK(resumed.trainer.step() == steps / 2);
  resumed.trainer.run(steps);

  auto episodes = first.episodes;
  episodes.insert(episodes.end(), resumed.episodes.begin(), resumed.episodes.end());
  check_same_run(straight, resumed, episodes);
}

envs::FlappyBird tiny_flappy() {
  envs::FlappyBirdConfig c;
  c.observation_height = c.observation_width = 12;
  return envs::FlappyBird(c);
}

}  // namespace

TEST_CASE("exact resume on Catch: N steps straight == N/2, checkpoint, fresh process state, N/2") {
  // Capacity 300 < 1000 steps: the ring wraps before and after the save.
  exact_resume(envs::Catch(8), envs::Catch(8), envs::Catch(8), 8, 1000, 300, "catch");
}

TEST_CASE("a replay memory of several streams round-trips through checkpoint arrays; one stream keeps its format") {
  TempDir dir("streams");
  // 3 streams of 21, 20 and 20 frames; stream s plays episodes of 4 + 3s
  // steps and steps s + 1 times per round, so the rings wrap at different
  // points (stream 0 not at all).
  rl::ReplayMemory<cpu> a({61, {3, 3, 1}, 2, 3});
  std::vector<std::uint8_t> pixels(9);
  auto frame = [&](int stream, int value) {
    for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(stream * 80 + value + i);
    return env::FrameView{pixels.data(), {3, 3, 1}};
  };
  std::vector<int> t(3, 0);
  for (int s = 0; s < 3; ++s) a.begin_episode(frame(s, 0), s);
  for (int round = 0; round < 9; ++round)
    for (int s = 0; s < 3; ++s)
      for (int k = 0; k <= s; ++k) {
        const bool last = ++t[s] % (4 + 3 * s) == 0;
        a.add(t[s] % 2, 0.25f * t[s], last, false, frame(s, t[s] % 50), s);
        if (last) a.begin_episode(frame(s, 60 + t[s] % 10), s);
      }
  CHECK(a.stream_frames(0) < a.stream_capacity(0));
  CHECK(a.stream_frames(2) == a.stream_capacity(2));

  fs::create_directories(dir.path / "arrays");
  rl::CheckpointOptions options;
  rl::detail::CheckpointWriter out(dir.path, options);
  nlohmann::json arrays;
  nlohmann::json state{{"replay", rl::detail::save_replay(out, a, arrays)}};
  state["arrays"] = arrays;
  CHECK(state["replay"]["streams"] == 3);
  CHECK(arrays.contains("replay.frames"));
  CHECK(arrays.contains("replay.stream2.history"));

  rl::ReplayMemory<cpu> b({61, {3, 3, 1}, 2, 3});
  rl::detail::load_replay(dir.path, state, b);
  CHECK(b.frames() == a.frames());
  CHECK(b.transitions() == a.transitions());
  for (int s = 0; s < 3; ++s) {
    CHECK(b.position(s).cursor == a.position(s).cursor);
    CHECK(b.position(s).episode_open == a.position(s).episode_open);
    int compared = 0;
    for (std::int64_t k = 0; k < a.stream_frames(s); ++k) {
      std::vector<std::uint8_t> sa, na, sb, nb;
      int aa = 0, ab = 0;
      float ra = 0, rb = 0;
      bool ta = false, tb = false;
      const bool va = a.transition_at(s, k, sa, na, aa, ra, ta);
      REQUIRE(va == b.transition_at(s, k, sb, nb, ab, rb, tb));
      if (!va) continue;
      ++compared;
      CHECK((sa == sb && na == nb && aa == ab && ra == rb && ta == tb));
      CHECK(test::norm(std::vector<float>(sa.begin(), sa.end())) > 0.0);
    }
    CHECK(compared >= 8);
  }
  rl::ReplayMemory<cpu> fewer({61, {3, 3, 1}, 2, 2});
  CHECK_THROWS_WITH_AS(rl::detail::load_replay(dir.path, state, fewer), doctest::Contains("same number of envs"),
                       Error);

  // One stream: the keys and array names of the format before streams.
  rl::ReplayMemory<cpu> one({20, {3, 3, 1}, 2});
  one.begin_episode(frame(0, 0));
  one.add(1, 1.0f, false, false, frame(0, 1));
  nlohmann::json one_arrays;
  const auto one_json = rl::detail::save_replay(out, one, one_arrays);
  std::vector<std::string> keys;
  for (auto& [k, v] : one_json.items()) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  CHECK(keys == std::vector<std::string>{"capacity", "count", "cursor", "episode_open", "frame", "stack",
                                         "transitions"});
  std::vector<std::string> names;
  for (auto& [k, v] : one_arrays.items()) names.push_back(k);
  CHECK(names == std::vector<std::string>{"replay.actions", "replay.flags", "replay.frames", "replay.history",
                                          "replay.rewards"});
}

TEST_CASE("exact resume on Flappy Bird, stopped mid-episode") {
  exact_resume(tiny_flappy(), tiny_flappy(), tiny_flappy(), 12, 1210, 2000, "flappy");
}

TEST_CASE("Flappy Bird state round-trips mid-episode") {
  auto a = tiny_flappy(), b = tiny_flappy();
  a.reset(5);
  for (int i = 0; i < 40; ++i) a.step(i % 9 == 0);
  b.load_state(a.save_state());
  for (int i = 0; i < 300 && !a.episode_over(); ++i) {
    const auto ra = a.step(i % 7 == 0), rb = b.step(i % 7 == 0);
    REQUIRE(std::equal(ra.observation.bytes().begin(), ra.observation.bytes().end(), rb.observation.bytes().begin()));
    CHECK(ra.reward == rb.reward);
    CHECK(ra.terminated == rb.terminated);
  }
  CHECK(a.save_state() == b.save_state());
  auto bad = a.save_state();
  bad["rng"] = {"0x0", "1", "2", "3"};
  CHECK_THROWS_WITH_AS(b.load_state(bad), doctest::Contains("not a 64-bit hex word"), Error);
}

TEST_CASE("damaged checkpoints are refused with a message naming the file") {
  TempDir dir("damaged");
  Setup<envs::Catch> s(envs::Catch(8), 8, 3, 300);
  s.trainer.run(200);
  const auto ck = rl::save_checkpoint(dir.path / "ck", s.trainer, s.ctx);
  CHECK(rl::verify_checkpoint(ck).at("step") == 200);

  auto fresh_load = [&](const fs::path& p) {
    Setup<envs::Catch> t(envs::Catch(8), 8, 3, 300);
    rl::load_checkpoint(p, t.trainer, t.ctx);
  };
  auto copy = [&](const char* name) {
    const auto to = dir.path / name;
    fs::copy(ck, to, fs::copy_options::recursive);
    return to;
  };

  const auto flipped = copy("flipped");
  {
    std::fstream f(flipped / "arrays/replay.frames.00000.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    char c = 0;
    f.read(&c, 1);
    f.seekp(100);
    c ^= 0x10;
    f.write(&c, 1);
  }
  CHECK_THROWS_WITH_AS(fresh_load(flipped), doctest::Contains("replay.frames.00000.bin: CRC-32C"), Error);

  const auto truncated = copy("truncated");
  fs::resize_file(truncated / "model.safetensors", fs::file_size(truncated / "model.safetensors") - 3);
  CHECK_THROWS_WITH_AS(fresh_load(truncated), doctest::Contains("model.safetensors: "), Error);
  CHECK_THROWS_WITH_AS(fresh_load(truncated), doctest::Contains("(truncated?)"), Error);

  const auto unfinished = copy("unfinished");
  fs::remove(unfinished / "COMPLETE");
  CHECK_THROWS_WITH_AS(fresh_load(unfinished), doctest::Contains("no COMPLETE marker"), Error);

  const auto missing = copy("missing");
  fs::remove(missing / "training.safetensors");
  CHECK_THROWS_WITH_AS(fresh_load(missing), doctest::Contains("training.safetensors: missing"), Error);

  // Another configuration is refused before anything is restored.
  Setup<envs::Catch> other(envs::Catch(8), 8, 3, 400);
  CHECK_THROWS_WITH_AS(rl::load_checkpoint(ck, other.trainer, other.ctx), doctest::Contains("configured for 400"),
                       Error);
}

TEST_CASE("keep-last pruning, named checkpoints and stale temporaries") {
  TempDir dir("prune");
  Setup<envs::Catch> s(envs::Catch(8), 8, 3, 300);
  rl::CheckpointOptions options;
  options.keep_last = 2;
  for (int i = 1; i <= 4; ++i) {
    s.trainer.run(50 * i);
    rl::save_checkpoint(dir.path, s.trainer, s.ctx, {}, options);
  }
  rl::save_checkpoint(dir.path, s.trainer, s.ctx, {}, options, "debug_step_200");
  const auto kept = rl::list_checkpoints(dir.path);
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].filename() == rl::checkpoint_name(150));
  CHECK(kept[1].filename() == rl::checkpoint_name(200));
  CHECK(fs::exists(dir.path / "debug_step_200" / "COMPLETE"));
  // A temporary of a process that no longer exists (pid 2^22 + 1 is above
  // Linux's default pid_max) is removed; one of a live process is not.
  fs::create_directories(dir.path / "step_000000000300.tmp-4194305");
  fs::create_directories(dir.path / ("step_000000000300.tmp-" + std::to_string(::getppid())));
  CHECK(rl::remove_stale_checkpoint_temporaries(dir.path) == 1);
  CHECK(fs::exists(dir.path / ("step_000000000300.tmp-" + std::to_string(::getppid()))));
}

TEST_CASE("a process killed with SIGKILL in the middle of a save leaves the previous checkpoint loadable") {
  TempDir dir("sigkill");
  Setup<envs::Catch> s(envs::Catch(8), 8, 3, 300);
  s.trainer.run(300);
  rl::save_checkpoint(dir.path, s.trainer, s.ctx);
  s.trainer.run(400);
  // The child only saves (no OpenMP work after fork) and kills itself once
  // the replay frames of the new checkpoint are on disk, before its manifest.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    rl::CheckpointOptions options;
    options.after_file = [](const fs::path& p) {
      if (p.filename() == "replay.frames.00000.bin") ::kill(::getpid(), SIGKILL);
    };
    try {
      rl::save_checkpoint(dir.path, s.trainer, s.ctx, {}, options);
    } catch (...) {
    }
    ::_exit(0);  // not reached when the kill works; the parent then fails
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK(fs::exists(dir.path / ("step_000000000400.tmp-" + std::to_string(child))));
  const auto latest = rl::latest_checkpoint(dir.path);
  REQUIRE(latest);
  CHECK(latest->filename() == rl::checkpoint_name(300));
  Setup<envs::Catch> t(envs::Catch(8), 8, 3, 300);
  rl::load_checkpoint(*latest, t.trainer, t.ctx);
  CHECK(t.trainer.step() == 300);
  CHECK(rl::remove_stale_checkpoint_temporaries(dir.path) == 1);
}
