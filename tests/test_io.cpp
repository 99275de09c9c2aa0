#include <doctest/doctest.h>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include <qrl/nn/models.hpp>
#include <qrl/io/file.hpp>
#include <qrl/io/safetensors.hpp>
#include <qrl/io/state_json.hpp>
#include <qrl/nn/serialize.hpp>

#include "test_support.hpp"

using namespace qrl;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  fs::path path;
  TempDir() : path(fs::temp_directory_path() / ("qrl_test_" + std::to_string(::getpid()))) {
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

void write_raw(const fs::path& p, const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((std::uint64_t(json.size()) >> (8 * i)) & 0xff);
  out += json + data;
  std::ofstream(p, std::ios::binary) << out;
}
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("weights round-trip through safetensors under PyTorch names", B, weights_roundtrip) {
  if (!test::backend_available<B>()) return;
  TempDir dir;
  Context<B> ctx;
  Rng rng(4);
  auto net = nn::tutorial_dqn<B>(4, 80, 80, 2);
  net.initialize(ctx, rng, nn::Init::pytorch_default);
  nn::save_weights(ctx, net, dir.path / "w.safetensors", {{"game", "flappy"}});
  auto raw = io::load_safetensors(dir.path / "w.safetensors");
  CHECK(raw.tensors.count("0.weight") == 1);
  CHECK(raw.tensors.at("0.weight").shape == std::vector<std::int64_t>{32, 4, 8, 8});
  CHECK(raw.tensors.count("12.bias") == 1);  // the last Dense sits at index 12 of the Sequential
  CHECK(raw.metadata.at("game") == "flappy");

  auto other = nn::tutorial_dqn<B>(4, 80, 80, 2);
  Rng rng2(5);
  other.initialize(ctx, rng2, nn::Init::pytorch_default);
  nn::load_weights(ctx, other, dir.path / "w.safetensors");
  auto a = net.parameters(), b = other.parameters();
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(to_host(ctx, *a[i].value) == to_host(ctx, *b[i].value));

  auto wrong = nn::tutorial_dqn<B>(4, 80, 80, 3);
  CHECK_THROWS_WITH_AS(nn::load_weights(ctx, wrong, dir.path / "w.safetensors"),
                       doctest::Contains("the network expects [3, "), ShapeError);
  CHECK_THROWS_WITH_AS(nn::load_weights(ctx, wrong, dir.path / "w.safetensors"), doctest::Contains("config.toml"),
                       ShapeError);
  // Same element count, other rank: still a shape error, with the same hint.
  auto flattened = raw;
  flattened.tensors.at("0.weight").shape = {32 * 4 * 8 * 8};
  io::save_safetensors(dir.path / "flat.safetensors", flattened);
  CHECK_THROWS_WITH_AS(nn::load_weights(ctx, other, dir.path / "flat.safetensors"),
                       doctest::Contains("'0.weight' has shape [8192], the network expects [32, 4, 8, 8]"), ShapeError);
  CHECK_THROWS_WITH_AS(nn::load_weights(ctx, other, dir.path / "flat.safetensors"), doctest::Contains("config.toml"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(nn::load_weights(ctx, wrong, dir.path / "missing.safetensors"),
                       doctest::Contains("no such file"), Error);
}

TEST_CASE("safetensors reader rejects hostile files with a clear message") {
  TempDir dir;
  const auto p = dir.path / "bad.safetensors";
  const std::string four_floats(16, '\0');
  auto expect = [&](const std::string& json, const std::string& data, const char* message) {
    write_raw(p, json, data);
    CHECK_THROWS_WITH_AS(io::load_safetensors(p), doctest::Contains(message), Error);
  };
  expect(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", "", "larger than the file");
  expect(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", std::string(4, '\0'), "outside");
  expect(R"({"a":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}})", four_floats, "shape needs");
  expect(R"({"a":{"dtype":"F16","shape":[8],"data_offsets":[0,16]}})", four_floats, "dtype F16");
  expect(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
         std::string(12, '\0'), "overlap");
  expect(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four_floats, "belong to no tensor");
  expect(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
         four_floats, "appears twice");
  expect(R"([1,2,3])", "", "must be a JSON object");
  expect(R"({"a":)", "", "not valid JSON");
  expect(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", "", "non-negative integer");
  std::ofstream(p, std::ios::binary) << std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8);
  CHECK_THROWS_WITH_AS(io::load_safetensors(p), doctest::Contains("exceeds"), Error);
  std::ofstream(p, std::ios::binary) << "abc";
  CHECK_THROWS_WITH_AS(io::load_safetensors(p), doctest::Contains("not a safetensors file"), Error);
}

TEST_CASE("safetensors reader: the spec's remaining rules, each with its own message") {
  TempDir dir;
  const auto p = dir.path / "bad.safetensors";
  auto expect = [&](const std::string& json, const std::string& data, const char* message) {
    write_raw(p, json, data);
    CHECK_THROWS_WITH_AS(io::load_safetensors(p), doctest::Contains(message), Error);
    CHECK_THROWS_WITH_AS(io::load_safetensors(p), doctest::Contains(p.string().c_str()), Error);
  };
  expect("", "", "must be a JSON object starting with '{'");
  expect(R"( {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'), "starting with '{'");
  expect(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'), "unknown dtype 'F33'");
  expect(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0'), "gap in the data section");
  expect(R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[0,4]}})", std::string(4, '\0'), "shape needs 3 x 1");
  expect(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"k":1}})", std::string(4, '\0'),
         "is not a string");
  expect(R"({"a":{"dtype":"F32","shape":[1]}})", "", "needs dtype, shape and data_offsets");
  // Valid in the format but not a float32 tensor: refused after full validation.
  expect(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0'), "dtype F16");

  // What is accepted: empty tensors, scalars, metadata; values exact.
  const float pi = 3.14159f;
  write_raw(p, R"({"__metadata__":{"k":"v"},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},)"
               R"("s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",
            std::string(reinterpret_cast<const char*>(&pi), 4));
  const auto file = io::load_safetensors(p);
  CHECK(file.metadata.at("k") == "v");
  CHECK(file.tensors.at("e").values.empty());
  CHECK(file.tensors.at("e").shape == std::vector<std::int64_t>{0, 3});
  CHECK(file.tensors.at("s").values == std::vector<float>{pi});
  CHECK(file.tensors.at("s").shape.empty());
}

TEST_CASE("base64 for binary env states: RFC 4648 vectors, every byte value, and damaged text refused") {
  using qrl::io::base64_decode;
  using qrl::io::base64_encode;
  // RFC 4648 section 10.
  const char* vectors[][2] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
                              {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (const auto& v : vectors) {
    CHECK(base64_encode(v[0]) == v[1]);
    CHECK(base64_decode(v[1], "test") == v[0]);
  }
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t n = 250; n <= 256; ++n) CHECK(base64_decode(base64_encode(all.substr(0, n)), "test") == all.substr(0, n));
  CHECK(base64_encode("\xff\xfe") == "//4=");
  CHECK_THROWS_WITH_AS(base64_decode("Zm9", "state x"), doctest::Contains("state x: base64 length 3"), qrl::Error);
  CHECK_THROWS_WITH_AS(base64_decode("Zm9v!A==", "state x"), doctest::Contains("invalid base64 character '!'"), qrl::Error);
  CHECK_THROWS_WITH_AS(base64_decode("Zg==Zm9v", "state x"), doctest::Contains("invalid base64 character '='"), qrl::Error);
  CHECK_THROWS_WITH_AS(base64_decode("Zm=v", "state x"), doctest::Contains("misplaced base64 padding"), qrl::Error);
}

TEST_CASE("qrl-written safetensors carry a CRC-32C per tensor: a flipped data byte is refused, files without one load") {
  TempDir dir;
  io::SafetensorsFile file;
  file.tensors["a"] = {{2, 3}, {1, 2, 3, 4, 5, 6}};
  file.tensors["b"] = {{4}, {-1, 0.5f, 7, 8}};
  file.metadata["game"] = "flappy";
  const std::string bytes = io::encode_safetensors(file);
  const auto parsed = io::parse_safetensors(bytes, "w");
  // The CRCs are checked and kept out of the metadata the caller sees, so a
  // file reads back as it was given.
  CHECK(parsed.metadata == file.metadata);
  CHECK(parsed.tensors.at("b").values == file.tensors.at("b").values);
  CHECK(bytes.find("\"crc32c.a\":\"" + io::hex_u32(io::crc32c(file.tensors["a"].values.data(), 24)) + "\"") !=
        std::string::npos);
  // Every byte of the data section, flipped, is caught by name.
  std::uint64_t header = 0;
  for (int i = 0; i < 8; ++i) header |= std::uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  int refused = 0;
  for (std::size_t at = 8 + header; at < bytes.size(); ++at) {
    std::string damaged = bytes;
    damaged[at] ^= 0x01;
    const std::string tensor = at - 8 - header < 24 ? "a" : "b";
    const std::string expected = "w: the data of tensor '" + tensor + "' fails its CRC-32C";
    CHECK_THROWS_WITH_AS(io::parse_safetensors(damaged, "w"), doctest::Contains(expected.c_str()), Error);
    ++refused;
  }
  CHECK(refused == 40);
  // A file from elsewhere (no CRCs) loads as before; a CRC naming a missing
  // tensor is damage.
  write_raw(dir.path / "plain.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
            std::string(4, '\0'));
  CHECK(io::load_safetensors(dir.path / "plain.safetensors").tensors.at("a").values == std::vector<float>{0});
  write_raw(dir.path / "orphan.safetensors",
            R"({"__metadata__":{"crc32c.z":"00000000"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
            std::string(4, '\0'));
  CHECK_THROWS_WITH_AS(io::load_safetensors(dir.path / "orphan.safetensors"),
                       doctest::Contains("holds a CRC-32C for tensor 'z', which the file does not have"), Error);
}

TEST_CASE("input files: directories, devices and FIFOs are refused at once, sizes capped before reading") {
  TempDir dir;
  const auto fifo = dir.path / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const auto started = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_AS(io::read_file(fifo, 1000, "config"),
                       doctest::Contains("is a FIFO (named pipe), not a regular file; give the path of a config"), Error);
  CHECK_THROWS_WITH_AS(io::read_file("/dev/zero", 1000, "config"), doctest::Contains("is a character device"), Error);
  CHECK_THROWS_WITH_AS(io::load_safetensors("/dev/urandom"), doctest::Contains("is a character device"), Error);
  CHECK_THROWS_WITH_AS(io::read_file(dir.path, 1000, "config"), doctest::Contains("is a directory"), Error);
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(1));
  std::ofstream(dir.path / "big") << std::string(2000, 'x');
  CHECK_THROWS_WITH_AS(io::read_file(dir.path / "big", 1000, "config"),
                       doctest::Contains("2000 bytes, more than the 1000 bytes a config may have"), Error);
  CHECK(io::read_file(dir.path / "big", 2000, "config").size() == 2000);
  CHECK_THROWS_WITH_AS(io::read_file(dir.path / "missing", 1000, "config"),
                       doctest::Contains("cannot open the config (No such file or directory)"), Error);
}

TEST_CASE("log files: a write the disk refuses is an error at once, not a silently shorter log") {
  // /dev/full answers every write with ENOSPC, as a full disk does.
  io::AppendFile log("/dev/full", false);
  CHECK_THROWS_WITH_AS(log.write("step,score\n"), doctest::Contains("cannot write /dev/full: No space left on device"),
                       Error);
  TempDir dir;
  {
    io::AppendFile a(dir.path / "x.csv", false);
    a.write("h\n");
  }
  {
    io::AppendFile b(dir.path / "x.csv", true);
    b.write("1\n");
  }
  CHECK(io::read_file(dir.path / "x.csv") == "h\n1\n");
  REQUIRE(io::free_bytes(dir.path).has_value());
  CHECK(*io::free_bytes(dir.path) > 0);
}

QRL_TEST_ON_EVERY_BACKEND(weights_roundtrip);
