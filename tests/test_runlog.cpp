// What a run writes for people and tools to read: TensorBoard event files
// (checked by an independent decoder with its own bitwise CRC-32C), SVG
// charts, GIFs (read back with giflib's decoder) and episode recordings.
#include <doctest/doctest.h>
#include <gif_lib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include <qrl/log/record_video.hpp>
#include <qrl/envs/flappy_bird.hpp>
#include <qrl/io/crc32c.hpp>
#include <qrl/log/gif.hpp>
#include <qrl/log/run_charts.hpp>
#include <qrl/log/svg_plot.hpp>
#include <qrl/log/tensorboard.hpp>


using namespace qrl;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  explicit TempDir(const char* tag)
      : path(fs::temp_directory_path() / ("qrl_runlog_" + std::string(tag) + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// Independent of qrl::io: CRC-32C bit by bit, straight from the polynomial.
std::uint32_t crc32c_bitwise(const std::string& s) {
  std::uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
  }
  return ~c;
}
std::uint32_t masked(std::uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

template <class T>
T read_le(const std::string& s, std::size_t at) {
  T v{};
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

std::uint64_t varint(const std::string& s, std::size_t& at) {
  std::uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    REQUIRE(at < s.size());
    const auto b = static_cast<unsigned char>(s[at++]);
    v |= std::uint64_t{b & 0x7fu} << shift;
    if (!(b & 0x80)) return v;
  }
}

struct DecodedEvent {
  double wall_time = 0;
  std::int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> values;
};

// Generic protobuf walk: field number -> raw value, for the three message levels.
void walk(const std::string& m, const std::function<void(int, int, const std::string&, std::uint64_t)>& field) {
  std::size_t at = 0;
  while (at < m.size()) {
    const auto key = varint(m, at);
    const int number = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
    if (type == 0) {
      field(number, type, {}, varint(m, at));
    } else if (type == 1 || type == 5) {
      const std::size_t n = type == 1 ? 8 : 4;
      REQUIRE(at + n <= m.size());
      field(number, type, m.substr(at, n), 0);
      at += n;
    } else {
      REQUIRE(type == 2);
      const auto n = varint(m, at);
      REQUIRE(at + n <= m.size());
      field(number, type, m.substr(at, n), 0);
      at += n;
    }
  }
}

std::vector<DecodedEvent> read_events(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<DecodedEvent> events;
  std::size_t at = 0;
  while (at < file.size()) {
    REQUIRE(at + 12 <= file.size());
    const auto length = read_le<std::uint64_t>(file, at);
    CHECK(read_le<std::uint32_t>(file, at + 8) == masked(crc32c_bitwise(file.substr(at, 8))));
    REQUIRE(at + 12 + length + 4 <= file.size());
    const std::string data = file.substr(at + 12, length);
    CHECK(read_le<std::uint32_t>(file, at + 12 + length) == masked(crc32c_bitwise(data)));
    at += 12 + length + 4;
    DecodedEvent e;
    walk(data, [&](int n, int, const std::string& bytes, std::uint64_t v) {
      if (n == 1) std::memcpy(&e.wall_time, bytes.data(), 8);
      if (n == 2) e.step = static_cast<std::int64_t>(v);
      if (n == 3) e.file_version = bytes;
      if (n == 5)
        walk(bytes, [&](int sn, int, const std::string& value, std::uint64_t) {
          REQUIRE(sn == 1);
          std::string tag;
          float simple = 0;
          walk(value, [&](int vn, int vt, const std::string& b, std::uint64_t) {
            if (vn == 1) tag = b;
            if (vn == 2 && vt == 5) std::memcpy(&simple, b.data(), 4);
          });
          e.values.emplace_back(tag, simple);
        });
    });
    events.push_back(e);
  }
  return events;
}

GifFileType* open_gif(const fs::path& p) {
  int error = 0;
  GifFileType* gif = DGifOpenFileName(p.c_str(), &error);
  REQUIRE(gif != nullptr);
  REQUIRE(DGifSlurp(gif) == GIF_OK);
  return gif;
}

}  // namespace

TEST_CASE("CRC-32C matches the standard check value and the bitwise definition") {
  CHECK(io::crc32c("123456789", 9) == 0xe3069283u);
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 37 + 11));
  CHECK(io::crc32c(data.data(), data.size()) == crc32c_bitwise(data));
  CHECK(io::crc32c_extend(io::crc32c(data.data(), 333), data.data() + 333, 667) == crc32c_bitwise(data));
}

TEST_CASE("TensorBoard event files decode record by record with valid CRCs") {
  TempDir dir("tb");
  fs::path path;
  {
    log::TensorBoardWriter tb(dir.path);
    path = tb.path();
    tb.add_scalar("charts/episodic_return", 12.5, 1000);
    tb.add_scalar("losses/td_loss", 0.03125, 123456789012LL);
    tb.add_scalar("charts/SPS", -2.0, 0);
  }
  CHECK(path.filename().string().rfind("events.out.tfevents.", 0) == 0);
  const auto events = read_events(path);
  REQUIRE(events.size() == 4);
  CHECK(events[0].file_version == "brain.Event:2");
  CHECK(events[0].values.empty());
  CHECK(events[0].wall_time > 1.6e9);  // seconds since 1970, not milliseconds
  CHECK(events[0].wall_time < 1e10);
  CHECK(events[1].step == 1000);
  REQUIRE(events[1].values.size() == 1);
  CHECK(events[1].values[0].first == "charts/episodic_return");
  CHECK(events[1].values[0].second == 12.5f);
  CHECK(events[2].step == 123456789012LL);
  CHECK(events[2].values[0].first == "losses/td_loss");
  CHECK(events[2].values[0].second == 0.03125f);
  CHECK(events[3].step == 0);
  CHECK(events[3].values[0].second == -2.0f);
}

TEST_CASE("SVG line charts: round ticks, escaped text, one polyline per series") {
  CHECK(log::detail::nice_step(0, 97, 8) == 20);
  CHECK(log::detail::nice_step(0, 1, 5) == doctest::Approx(0.2));
  CHECK(log::detail::tick_label(250000, 50000) == "250k");
  CHECK(log::detail::tick_label(0.4, 0.2) == "0.4");
  log::LineChart chart{"Score <per> 10 games", "games", "score",
                       {{"mean", "#1f77b4", {10, 20, 30}, {0.5, 1.5, 3.0}}, {"max", "#ff7f0e", {10, 20, 30}, {2, 4, 9}}}};
  const auto svg = chart.svg();
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.find("Score &lt;per&gt; 10 games") != std::string::npos);
  std::size_t polylines = 0;
  for (auto at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++polylines;
  CHECK(polylines == 2);
  // y axis 0..10 in steps of 2, x axis 0..30 in steps of 5.
  for (const char* label : {">0<", ">2<", ">10<", ">30<", ">25<"}) CHECK(svg.find(label) != std::string::npos);
  CHECK(svg.find(">12<") == std::string::npos);
  CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
}

TEST_CASE("score chart: mean and max per block of 10 games") {
  std::vector<double> scores;
  for (int i = 0; i < 25; ++i) scores.push_back(i % 10);  // 0..9, 0..9, 0..4
  const auto chart = log::score_chart(scores);
  REQUIRE(chart.series.size() == 2);
  CHECK(chart.series[0].x == std::vector<double>{10, 20});  // the unfinished block is left out
  CHECK(chart.series[0].y == std::vector<double>{9, 9});    // max
  CHECK(chart.series[1].y == std::vector<double>{4.5, 4.5});  // mean
}

TEST_CASE("GIF writer: frame count, size and exact colours read back by giflib") {
  TempDir dir("gif");
  const int w = 40, h = 30;
  std::vector<std::uint8_t> rgb(static_cast<std::size_t>(w) * h * 3);
  {
    log::GifWriter gif(dir.path / "a.gif", w, h, 5);
    for (int f = 0; f < 3; ++f) {
      for (int i = 0; i < w * h; ++i) {
        rgb[3 * i] = static_cast<std::uint8_t>(f * 80);
        rgb[3 * i + 1] = static_cast<std::uint8_t>(i % w < 20 ? 200 : 10);
        rgb[3 * i + 2] = 33;
      }
      gif.add_frame({rgb.data(), {h, w, 3}});
    }
    // More than 256 colours: quantised to the 3-3-2 cube.
    for (int i = 0; i < w * h; ++i) {
      rgb[3 * i] = static_cast<std::uint8_t>(i % 256);
      rgb[3 * i + 1] = static_cast<std::uint8_t>(i / 7 % 256);
      rgb[3 * i + 2] = static_cast<std::uint8_t>(i / 3 % 256);
    }
    gif.add_frame({rgb.data(), {h, w, 3}});
    CHECK(gif.frames() == 4);
    gif.close();
    CHECK_THROWS_AS(gif.add_frame({rgb.data(), {h, w, 3}}), Error);
  }
  GifFileType* gif = open_gif(dir.path / "a.gif");
  CHECK(gif->SWidth == w);
  CHECK(gif->SHeight == h);
  REQUIRE(gif->ImageCount == 4);
  const SavedImage& third = gif->SavedImages[2];
  const ColorMapObject* map = third.ImageDesc.ColorMap;
  REQUIRE(map != nullptr);
  const GifColorType left = map->Colors[third.RasterBits[0]], right = map->Colors[third.RasterBits[w - 1]];
  CHECK((left.Red == 160 && left.Green == 200 && left.Blue == 33));
  CHECK((right.Red == 160 && right.Green == 10 && right.Blue == 33));
  GraphicsControlBlock gcb;
  REQUIRE(DGifSavedExtensionToGCB(gif, 1, &gcb) == GIF_OK);
  CHECK(gcb.DelayTime == 5);
  const SavedImage& quantised = gif->SavedImages[3];
  const GifColorType c = quantised.ImageDesc.ColorMap->Colors[quantised.RasterBits[300]];
  CHECK(std::abs(int(c.Red) - 300 % 256) <= 19);
  int error = 0;
  DGifCloseFile(gif, &error);

  CHECK_THROWS_WITH_AS(log::GifWriter(dir.path / "no/such/dir/x.gif", w, h), doctest::Contains("cannot write"), Error);
}

TEST_CASE("GIF writer: a recording is named only once finished; one given up leaves no file") {
  TempDir dir("gif_partial");
  std::vector<std::uint8_t> rgb(8 * 6 * 3, 90);
  const env::FrameView frame{rgb.data(), {6, 8, 3}};
  {
    log::GifWriter gif(dir.path / "kept.gif", 8, 6);
    gif.add_frame(frame);
    CHECK(!fs::exists(dir.path / "kept.gif"));
    CHECK(fs::exists(dir.path / "kept.gif.partial"));
    gif.close();
  }
  CHECK(fs::exists(dir.path / "kept.gif"));
  {
    log::GifWriter gif(dir.path / "dropped.gif", 8, 6);
    gif.add_frame(frame);
  }  // destroyed without close(): an episode whose recording failed
  CHECK(!fs::exists(dir.path / "dropped.gif"));
  CHECK(!fs::exists(dir.path / "dropped.gif.partial"));
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

TEST_CASE("RecordVideo: a recording that cannot be written warns once, leaves nothing, and the episodes go on") {
  TempDir dir("video_fail");
  envs::FlappyBird game;
  log::RecordVideoConfig config;
  config.folder = dir.path / "videos";
  config.episode_trigger = [](std::int64_t) { return true; };
  log::RecordVideo<envs::FlappyBird> env(game, config);
  std::vector<std::string> warnings;
  env.on_failed = [&](const std::string& what) { warnings.push_back(what); };
  // A regular file where the folder should be: every GIF fails to open.
  std::ofstream(dir.path / "videos") << "in the way";
  for (int e = 0; e < 3; ++e) {
    env.reset(100 + e);
    env::StepResult r;
    do r = env.step(0);
    while (!r.terminated && !r.truncated);
  }
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("videos") != std::string::npos);
}

TEST_CASE("RecordVideo records the triggered episodes of Flappy Bird as GIFs") {
  TempDir dir("video");
  envs::FlappyBird game;
  log::RecordVideoConfig config;
  config.folder = dir.path;
  config.episode_trigger = [](std::int64_t e) { return e % 2 == 0; };
  log::RecordVideo<envs::FlappyBird> env(game, config);
  std::map<std::string, int> saved;
  env.on_saved = [&](const fs::path& p, int frames) { saved[p.filename().string()] = frames; };
  std::vector<std::int64_t> lengths;
  for (int e = 0; e < 3; ++e) {
    env.reset(100 + e);
    env::StepResult r;
    do r = env.step(0);  // never flap: falls to the ground
    while (!r.terminated && !r.truncated);
    lengths.push_back(r.info.episode_frame);
  }
  REQUIRE(saved.size() == 2);
  REQUIRE(saved.count("episode_000000.gif") == 1);
  REQUIRE(saved.count("episode_000002.gif") == 1);
  CHECK(!fs::exists(dir.path / "episode_000001.gif"));
  // First frame, every other frame, and the last one.
  const auto expected = [](std::int64_t length) { return static_cast<int>(1 + length / 2 + length % 2); };
  CHECK(saved["episode_000000.gif"] == expected(lengths[0]));
  GifFileType* gif = open_gif(dir.path / "episode_000002.gif");
  CHECK(gif->ImageCount == expected(lengths[2]));
  CHECK(gif->SWidth == envs::FlappyBird::kScreenWidth);
  CHECK(gif->SHeight == envs::FlappyBird::kScreenHeight);
  int error = 0;
  DGifCloseFile(gif, &error);
  CHECK(log::capped_cubic_video_schedule(27));
  CHECK(!log::capped_cubic_video_schedule(28));
  CHECK(log::capped_cubic_video_schedule(2000));
  CHECK(!log::capped_cubic_video_schedule(1001));
}
