// Checkpoints must give back the run that was saved: the key test trains N
// steps straight and N/2 + save + load into freshly built objects + N/2, and
// requires bitwise-identical weights, optimizer moments, epsilon, replay
// contents and episode returns. Damaged checkpoints must be refused, and a
// process killed while saving must leave the previous checkpoint usable.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <qrl/envs/catch.hpp>
#include <qrl/envs/flappy_bird.hpp>
#include <qrl/envs/flappy_bird_state.hpp>  // the game's state in checkpoints
#include <qrl/io/crc32c.hpp>
#include <qrl/io/file.hpp>
#include <qrl/io/state_json.hpp>
#include <qrl/rl/checkpoint.hpp>

#include "resume_support.hpp"
#include "test_support.hpp"

using namespace qrl;
using qrl::test::exact_resume;
using qrl::test::Setup;
using qrl::test::TempDir;
namespace fs = std::filesystem;

namespace {

envs::FlappyBird tiny_flappy() {
  envs::FlappyBirdConfig c;
  c.observation_height = c.observation_width = 12;
  return envs::FlappyBird(c);
}

// Catch as an env whose state cannot be saved (like a browser game): no
// save_state(), a score() of the running episode.
class CatchWithoutState {
 public:
  explicit CatchWithoutState(int size) : game_(size) {}
  env::FrameView reset(std::uint64_t seed) {
    steps_ = 0;
    return game_.reset(seed);
  }
  env::StepResult step(int action) {
    ++steps_;
    return game_.step(action);
  }
  int action_count() const { return game_.action_count(); }
  env::FrameShape observation_shape() const { return game_.observation_shape(); }
  double score() const { return 100.0 + steps_; }  // recognisable in the closed episode's record

 private:
  envs::Catch game_;
  int steps_ = 0;
};
static_assert(!rl::CheckpointableEnvironment<CatchWithoutState>);
// Flappy Bird's state functions live in flappy_bird_state.hpp: still exact.
static_assert(rl::CheckpointableEnvironment<envs::FlappyBird>);

}  // namespace

TEST_CASE("an env without save_state: the learner resumes exactly, the interrupted episode ends as truncated") {
  TempDir dir("nostate");
  Setup<CatchWithoutState> first(CatchWithoutState(8), 8, 3, 300);
  first.trainer.run(200);
  while (first.trainer.state().envs[0].tally.length < 2) first.trainer.run(first.trainer.step() + 1);
  const auto before = first.trainer.state();
  const auto saved = rl::save_checkpoint(dir.path / "checkpoints", first.trainer, first.ctx);
  const auto state = rl::verify_checkpoint(saved);
  CHECK(state["envs"][0]["exact"] == false);
  CHECK(state["envs"][0]["score"].get<double>() == 100.0 + static_cast<double>(before.envs[0].tally.length));

  Setup<CatchWithoutState> resumed(CatchWithoutState(8), 8, 99, 300);
  const auto loaded = rl::load_checkpoint(saved, resumed.trainer, resumed.ctx);
  const auto ta = qrl::test::all_tensors(first.ctx, first.agent), tb = qrl::test::all_tensors(resumed.ctx, resumed.agent);
  REQUIRE(ta.size() == tb.size());
  for (std::size_t i = 0; i < ta.size(); ++i)
    CHECK(std::memcmp(ta[i].data(), tb[i].data(), ta[i].size() * sizeof(float)) == 0);
  CHECK(resumed.agent.updates() == first.agent.updates());
  CHECK(resumed.agent.updates() > 50);
  const auto after = resumed.trainer.state();
  CHECK(after.step == before.step);
  CHECK(after.exploration == before.exploration);
  CHECK(after.sampling == before.sampling);
  CHECK(after.envs[0].episode_seeds == before.envs[0].episode_seeds);
  REQUIRE(resumed.replay.frames() == first.replay.frames());
  CHECK(resumed.replay.transitions() == first.replay.transitions());

  CHECK_FALSE(after.started);
  CHECK(after.episodes == before.episodes + 1);
  REQUIRE(loaded.contains("interrupted_episodes"));
  CHECK(loaded["interrupted_episodes"].size() == 1);
  const auto& closed = after.recent.back();
  CHECK(closed.index == before.episodes);
  CHECK(closed.truncated);
  CHECK(closed.end_step == before.step);
  CHECK(closed.length == before.envs[0].tally.length);
  CHECK(closed.episode_return == before.envs[0].tally.episode_return);
  CHECK(closed.score == 100.0 + static_cast<double>(before.envs[0].tally.length));
  CHECK(static_cast<int>(after.recent.size()) <= resumed.trainer.config().score_window);
  CHECK_FALSE(resumed.replay.position().episode_open);

  // The next step starts a fresh episode: its first frame, then one per step.
  resumed.trainer.run(before.step + 1);
  CHECK(resumed.trainer.state().started);
  CHECK(resumed.trainer.state().envs[0].tally.length == 1);
  CHECK(resumed.replay.frames() == first.replay.frames() + 2);

  // A checkpoint without env state cannot feed an env that expects one.
  Setup<envs::Catch> exact(envs::Catch(8), 8, 3, 300);
  CHECK_THROWS_WITH_AS(rl::load_checkpoint(saved, exact.trainer, exact.ctx),
                       doctest::Contains("saved from an environment without save_state()"), Error);
}

TEST_CASE("exact resume on Catch: N steps straight == N/2, checkpoint, fresh process state, N/2") {
  // Capacity 300 < 1000 steps: the ring wraps before and after the save.
  exact_resume([](int) { return envs::Catch(8); }, 8, 1000, 300, "catch");
}

TEST_CASE("exact resume of two envs stepped together: N steps straight == N/2, checkpoint, N/2") {
  exact_resume([](int) { return envs::Catch(8); }, 8, 1000, 300, "catch2", 2);
}

TEST_CASE("exact resume of two envs acting on the backend: the counter-based draws need no saved generator") {
  exact_resume([](int) { return envs::Catch(8); }, 8, 1000, 300, "catch2_backend_acting", 2, rl::ActingPath::backend);
}

TEST_CASE("a replay memory of several rings round-trips through checkpoint arrays; one ring keeps its format") {
  TempDir dir("rings");
  // 3 rings of 21, 20 and 20 frames; ring s plays episodes of 4 + 3s steps
  // and steps s + 1 times per round, so the rings wrap at different points
  // (ring 0 not at all).
  rl::ReplayMemory<cpu> a({61, {3, 3, 1}, 2, 3});
  std::vector<std::uint8_t> pixels(9);
  auto frame = [&](int ring, int value) {
    for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(ring * 80 + value + i);
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
  CHECK(a.ring_frames(0) < a.ring_capacity(0));
  CHECK(a.ring_frames(2) == a.ring_capacity(2));

  fs::create_directories(dir.path / "arrays");
  rl::CheckpointOptions options;
  rl::detail::CheckpointWriter out(dir.path, options);
  nlohmann::json arrays;
  nlohmann::json state{{"replay", rl::detail::save_replay(out, a, arrays)}};
  state["arrays"] = arrays;
  CHECK(state["replay"]["rings"].size() == 3);
  CHECK(state["replay"]["config"]["rings"] == 3);
  CHECK(arrays.contains("replay.ring0.frames"));
  CHECK(arrays.contains("replay.ring2.history"));

  rl::ReplayMemory<cpu> b({61, {3, 3, 1}, 2, 3});
  rl::detail::load_replay(dir.path, state, b, 2);
  CHECK(b.frames() == a.frames());
  CHECK(b.transitions() == a.transitions());
  for (int s = 0; s < 3; ++s) {
    CHECK(b.position(s).cursor == a.position(s).cursor);
    CHECK(b.position(s).episode_open == a.position(s).episode_open);
    int compared = 0;
    for (std::int64_t k = 0; k < a.ring_frames(s); ++k) {
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
  // Another configuration is named by its first differing field.
  rl::ReplayMemory<cpu> fewer({61, {3, 3, 1}, 2, 2});
  CHECK_THROWS_WITH_AS(rl::detail::load_replay(dir.path, state, fewer, 2),
                       doctest::Contains("replay.rings: 3 in the checkpoint, 2 in this run"), Error);
  rl::ReplayConfig n_step{61, {3, 3, 1}, 2, 3};
  n_step.n_step = 3;
  rl::ReplayMemory<cpu> other_horizon(n_step);
  CHECK_THROWS_WITH_AS(rl::detail::load_replay(dir.path, state, other_horizon, 2),
                       doctest::Contains("replay.n_step: 1 in the checkpoint, 3 in this run"), Error);
  // Actions are indices into Q rows: more actions than the agent has is a
  // damaged (or foreign) checkpoint, not a crash later.
  rl::ReplayMemory<cpu> c({61, {3, 3, 1}, 2, 3});
  CHECK_THROWS_WITH_AS(rl::detail::load_replay(dir.path, state, c, 1), doctest::Contains("outside [0, 1)"), Error);
}

TEST_CASE("a checkpoint that calls the replay's rings 'streams' (written before the rename) still loads") {
  TempDir dir("old_names");
  const auto make = [](int) { return envs::Catch(8); };
  Setup<envs::Catch> first(make, 8, 3, 300, 2);
  first.trainer.run(400);
  const auto ck = rl::save_checkpoint(dir.path / "checkpoints", first.trainer, first.ctx);

  // A copy as qrl wrote it before: keys and chunk files under the old names,
  // the manifest re-signed.
  const fs::path old = dir.path / "old";
  fs::copy(ck, old, fs::copy_options::recursive);
  auto state = nlohmann::json::parse(io::read_file(old / "state.json"));
  auto manifest = nlohmann::json::parse(io::read_file(old / "COMPLETE"));
  auto& replay = state["replay"];
  REQUIRE(replay.contains("rings"));
  replay["streams"] = replay["rings"];
  replay.erase("rings");
  replay["config"]["streams"] = replay["config"]["rings"];
  replay["config"].erase("rings");
  nlohmann::json arrays = nlohmann::json::object();
  int renamed = 0;
  for (auto& [name, array] : state["arrays"].items()) {
    std::string key = name;
    if (key.starts_with("replay.ring")) {
      key = "replay.stream" + key.substr(std::string("replay.ring").size());
      for (auto& chunk : array["chunks"]) {
        const std::string from = chunk.get<std::string>();
        const std::string to = "arrays/replay.stream" + from.substr(std::string("arrays/replay.ring").size());
        fs::rename(old / from, old / to);
        manifest["files"][to] = manifest["files"][from];
        manifest["files"].erase(from);
        chunk = to;
      }
      ++renamed;
    }
    arrays[key] = array;
  }
  CHECK(renamed == 10);  // frames, actions, rewards, flags and history of 2 rings
  state["arrays"] = arrays;
  const std::string text = state.dump(1);
  std::ofstream(old / "state.json", std::ios::trunc) << text;
  manifest["files"]["state.json"] = {{"bytes", text.size()},
                                     {"crc32c", io::hex_u64(io::crc32c(text.data(), text.size()))}};
  std::ofstream(old / "COMPLETE", std::ios::trunc) << manifest.dump(1);

  // Loaded under either name, the run goes on identically.
  Setup<envs::Catch> from_new(make, 8, 99, 300, 2), from_old(make, 8, 99, 300, 2);
  rl::load_checkpoint(ck, from_new.trainer, from_new.ctx);
  rl::load_checkpoint(old, from_old.trainer, from_old.ctx);
  CHECK(from_old.replay.frames() == first.replay.frames());
  from_new.trainer.run(700);
  from_old.trainer.run(700);
  qrl::test::check_same_run(from_new, from_old, from_old.episodes);
  CHECK(from_new.episodes.size() > 10);

  // A save of the resumed run writes the ring names.
  const auto resaved = nlohmann::json::parse(
      io::read_file(rl::save_checkpoint(dir.path / "resaved", from_old.trainer, from_old.ctx) / "state.json"));
  CHECK(resaved["replay"].contains("rings"));
  CHECK_FALSE(resaved["replay"].contains("streams"));
  CHECK(resaved["arrays"].contains("replay.ring1.frames"));
}

TEST_CASE("exact resume on Flappy Bird, stopped mid-episode") {
  exact_resume([](int) { return tiny_flappy(); }, 12, 1210, 2000, "flappy");
}

TEST_CASE("exact resume on Flappy Bird with --envs 2 (episodes of different lengths)") {
  exact_resume([](int) { return tiny_flappy(); }, 12, 1220, 2000, "flappy2", 2);
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
    std::fstream f(flipped / "arrays/replay.ring0.frames.00000.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    char c = 0;
    f.read(&c, 1);
    f.seekp(100);
    c ^= 0x10;
    f.write(&c, 1);
  }
  CHECK_THROWS_WITH_AS(fresh_load(flipped), doctest::Contains("replay.ring0.frames.00000.bin: CRC-32C"), Error);

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

  // A training-state tensor reshaped (same values, rank 1) is named with both shapes.
  const auto reshaped = copy("reshaped");
  {
    auto training = io::load_safetensors(reshaped / "training.safetensors");
    auto target = std::find_if(training.tensors.begin(), training.tensors.end(),
                               [](const auto& kv) { return kv.first.starts_with("target.") && kv.second.shape.size() == 2; });
    REQUIRE(target != training.tensors.end());
    const auto expected = "'" + target->first + "' has shape [" + std::to_string(target->second.values.size()) + "]";
    target->second.shape = {static_cast<std::int64_t>(target->second.values.size())};
    io::save_safetensors(reshaped / "training.safetensors", training);
    // Re-sign the edited file so the load gets past the manifest to the shape check.
    const auto bytes = io::read_file(reshaped / "training.safetensors");
    auto manifest = nlohmann::json::parse(io::read_file(reshaped / "COMPLETE"));
    manifest["files"]["training.safetensors"] = {{"bytes", bytes.size()},
                                                 {"crc32c", io::hex_u64(io::crc32c(bytes.data(), bytes.size()))}};
    std::ofstream(reshaped / "COMPLETE", std::ios::trunc) << manifest.dump(1);
    CHECK_THROWS_WITH_AS(fresh_load(reshaped), doctest::Contains(expected.c_str()), ShapeError);
  }

  // Another configuration is refused before anything is restored.
  Setup<envs::Catch> other(envs::Catch(8), 8, 3, 400);
  CHECK_THROWS_WITH_AS(rl::load_checkpoint(ck, other.trainer, other.ctx), doctest::Contains("replay.capacity: 300 in the checkpoint, 400 in this run"),
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
      if (p.filename() == "replay.ring0.frames.00000.bin") ::kill(::getpid(), SIGKILL);
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
