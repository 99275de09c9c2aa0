#pragma once
// A checkpoint's files: the directory layout, atomic writing and the
// manifest that proves a save finished, and the hostile-input readers of
// what a checkpoint holds. Knows nothing of the parts it stores (agent,
// replay memory, trainer): those are in checkpoint_parts.hpp and
// checkpoint_replay.hpp, composed by checkpoint.hpp.
//
// A checkpoint is written into "<name>.tmp-<pid>", every file fsynced, the
// manifest (COMPLETE: bytes and CRC-32C of every file) last, then the
// directory is renamed into place and its parent fsynced (save_checkpoint).
// Loading checks the manifest (presence, sizes, CRCs) before reading
// anything (verify_checkpoint), so a truncated, bit-flipped or unfinished
// checkpoint is an error, never used.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <qrl/core/error.hpp>
#include <qrl/io/crc32c.hpp>
#include <qrl/io/file.hpp>
#include <qrl/io/state_json.hpp>

namespace qrl::rl {

struct CheckpointOptions {
  int keep_last = 3;                          // complete step_* checkpoints kept; 0 = all
  std::uint64_t chunk_bytes = 256ull << 20;   // largest array file
  // Called after each file is durably written (tests use it to die mid-save).
  std::function<void(const std::filesystem::path&)> after_file;
};

// Version 2: one trainer for N envs (per-env tallies, seed streams, frame
// stacks and env states), the update schedule, n-step replay.
inline constexpr int checkpoint_format_version = 2;

inline std::string checkpoint_name(std::int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%012lld", static_cast<long long>(step));
  return buf;
}

namespace detail {

// Step of a "step_<digits>" directory name, or -1.
inline std::int64_t checkpoint_step(const std::string& name) {
  if (name.size() != 17 || name.rfind("step_", 0) != 0) return -1;
  if (name.find_first_not_of("0123456789", 5) != std::string::npos) return -1;
  return std::stoll(name.substr(5));
}

class CheckpointWriter {
 public:
  CheckpointWriter(std::filesystem::path dir, const CheckpointOptions& options) : dir_(std::move(dir)), options_(options) {}

  void file(const std::string& name, std::string_view bytes) {
    io::FileWriter out(dir_ / name);
    out.write(bytes);
    finish(name, out);
  }

  // A raw array split into files of at most chunk_bytes.
  nlohmann::json array(const std::string& name, const void* data, std::uint64_t bytes, const char* dtype) {
    const auto* p = static_cast<const char*>(data);
    return array(name, bytes, dtype, [p](std::uint64_t offset, std::uint64_t n, char* out) {
      std::memcpy(out, p + offset, n);
    });
  }
  // The same for an array that is not in host memory in one piece:
  // fill(offset, n, out) puts its bytes [offset, offset + n) into out, one
  // chunk at a time, so saving needs one chunk of host memory beside it.
  template <class Fill>
  nlohmann::json array(const std::string& name, std::uint64_t bytes, const char* dtype, Fill&& fill) {
    nlohmann::json chunks = nlohmann::json::array();
    std::vector<char> buffer;
    std::uint64_t done = 0;
    int index = 0;
    do {
      const std::uint64_t n = std::min(options_.chunk_bytes, bytes - done);
      buffer.resize(static_cast<std::size_t>(n));
      fill(done, n, buffer.data());
      char suffix[16];
      std::snprintf(suffix, sizeof suffix, ".%05d.bin", index++);
      const std::string rel = "arrays/" + name + suffix;
      io::FileWriter out(dir_ / rel);
      out.write(buffer.data(), n);
      finish(rel, out);
      chunks.push_back(rel);
      done += n;
    } while (done < bytes);
    return {{"dtype", dtype}, {"bytes", bytes}, {"chunks", chunks}};
  }

  void complete() {
    io::fsync_directory(dir_ / "arrays");
    nlohmann::json manifest{{"format", "qrl-checkpoint"}, {"format_version", checkpoint_format_version},
                            {"files", manifest_}};
    io::FileWriter out(dir_ / "COMPLETE");
    out.write(manifest.dump(1));
    out.commit();
    io::fsync_directory(dir_);
    if (options_.after_file) options_.after_file(dir_ / "COMPLETE");
  }

 private:
  void finish(const std::string& name, io::FileWriter& out) {
    out.commit();
    manifest_[name] = {{"bytes", out.bytes()}, {"crc32c", io::hex_u64(out.crc())}};
    if (options_.after_file) options_.after_file(dir_ / name);
  }

  std::filesystem::path dir_;
  const CheckpointOptions& options_;
  nlohmann::json manifest_ = nlohmann::json::object();
};

inline bool process_alive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

// A JSON section that must be there: an error naming the file and the key
// (not nlohmann's "key not found").
inline const nlohmann::json& section(const nlohmann::json& j, const char* key, const std::string& where) {
  require(j.is_object() && j.contains(key), where, ": missing '", key,
          "' — not a checkpoint this qrl writes; resume from another checkpoint");
  return j[key];
}

// Reads a raw array chunk by chunk into sink(offset, bytes, n); see
// read_array below for what is checked.
template <class Sink>
void read_array_chunks(const std::filesystem::path& dir, const nlohmann::json& arrays, const std::string& name,
                       std::uint64_t expected, Sink&& sink) {
  namespace fs = std::filesystem;
  const std::string where = (dir / "state.json").string();
  require(arrays.is_object() && arrays.contains(name), where, ": no array '", name, "'");
  const auto& a = arrays[name];
  const auto bytes = io::json_get<std::uint64_t>(a, "bytes", where);
  require(bytes == expected, where, ": array '", name, "' holds ", bytes, " bytes, expected ", expected,
          " for this configuration");
  require(a.contains("chunks") && a["chunks"].is_array(), where, ": array '", name, "' lists no chunks");
  std::uint64_t done = 0;
  for (const auto& chunk : a["chunks"]) {
    require(chunk.is_string(), where, ": a chunk of '", name, "' is not a file name");
    const std::string rel = chunk.get<std::string>();
    require(!rel.empty() && rel[0] != '/' && rel.find("..") == std::string::npos, where, ": chunk '", rel,
            "' of '", name, "' leaves the checkpoint directory");
    const fs::path path = dir / rel;
    std::error_code ec;
    require(fs::is_regular_file(path, ec), path.string(), ": a chunk of '", name,
            "' must be a regular file of the checkpoint (missing, or a device or directory)");
    const auto size = fs::file_size(path, ec);
    require(!ec && done + size <= bytes, path.string(), ": chunks of '", name, "' exceed its ", bytes, " bytes");
    const auto data = io::read_file(path);
    require(data.size() == size, path.string(), ": changed size while being read");
    sink(done, data.data(), static_cast<std::uint64_t>(data.size()));
    done += data.size();
  }
  require(done == bytes, where, ": chunks of '", name, "' hold ", done, " bytes, expected ", bytes);
}

// Reads a raw array whose size this run's configuration fixes. Its chunks
// must be regular files inside the checkpoint that add up to exactly that
// size: a chunk that is a device (/dev/zero) or larger than stated is an
// error before anything is allocated for it.
inline void read_array(const std::filesystem::path& dir, const nlohmann::json& arrays, const std::string& name,
                       void* dst, std::uint64_t expected) {
  auto* p = static_cast<char*>(dst);
  read_array_chunks(dir, arrays, name, expected,
                    [p](std::uint64_t offset, const char* data, std::uint64_t n) { std::memcpy(p + offset, data, n); });
}

}  // namespace detail

// Removes "<name>.tmp-<pid>" / ".old-<pid>" directories left by saves whose
// process is gone. Returns how many were removed.
inline int remove_stale_checkpoint_temporaries(const std::filesystem::path& checkpoints_dir) {
  namespace fs = std::filesystem;
  int removed = 0;
  std::error_code ec;
  if (!fs::is_directory(checkpoints_dir, ec)) return 0;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir)) {
    const auto name = entry.path().filename().string();
    for (const char* marker : {".tmp-", ".old-"}) {
      const auto at = name.find(marker);
      if (at == std::string::npos) continue;
      const long pid = std::atol(name.c_str() + at + 5);
      if (pid != ::getpid() && detail::process_alive(pid)) continue;  // another live process is saving
      fs::remove_all(entry.path(), ec);
      ++removed;
    }
  }
  return removed;
}

// Complete-looking step_* checkpoints (named ones, e.g. debug_*, excluded),
// oldest first.
inline std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& checkpoints_dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::int64_t, fs::path>> found;
  std::error_code ec;
  if (fs::is_directory(checkpoints_dir, ec))
    for (const auto& entry : fs::directory_iterator(checkpoints_dir)) {
      const auto step = detail::checkpoint_step(entry.path().filename().string());
      if (step >= 0 && entry.is_directory()) found.emplace_back(step, entry.path());
    }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

// The newest step_* checkpoint, whether or not it is valid: a damaged newest
// checkpoint must be reported, not skipped in favour of an older one.
inline std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& checkpoints_dir) {
  auto all = list_checkpoints(checkpoints_dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

// Checks a checkpoint's manifest against its files (existence, size,
// CRC-32C) and returns its parsed state.json. Every failure names the file.
inline nlohmann::json verify_checkpoint(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  const std::string where = dir.string();
  const std::string advice = " — the checkpoint is damaged; resume from an older one (--resume " +
                             (dir.parent_path() / "step_...").string() + ") or delete this one";
  require(fs::is_directory(dir), where, ": no such checkpoint directory");
  const auto marker = dir / "COMPLETE";
  require(fs::exists(marker), where, ": no COMPLETE marker, so the save that wrote it never finished", advice);
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(io::read_file(marker));
  } catch (const nlohmann::json::exception& e) {
    fail(marker.string(), ": not valid JSON (", e.what(), ")", advice);
  }
  require(manifest.is_object() && manifest.value("format", "") == "qrl-checkpoint" && manifest.contains("files") &&
              manifest["files"].is_object(),
          marker.string(), ": not a qrl checkpoint manifest", advice);
  require(manifest.value("format_version", 0) == checkpoint_format_version, marker.string(),
          ": checkpoint format version ", manifest.value("format_version", 0), ", this qrl reads version ",
          checkpoint_format_version, " (version 1 predates the one trainer for N envs): continue that run with the "
          "qrl that wrote it, or start a new run");
  for (auto& [name, entry] : manifest["files"].items()) {
    require(name.find("..") == std::string::npos && !name.empty() && name[0] != '/', marker.string(),
            ": file name '", name, "' leaves the checkpoint directory");
    const auto path = dir / name;
    require(fs::is_regular_file(path), path.string(), ": missing", advice);
    const auto bytes = io::json_get<std::uint64_t>(entry, "bytes", marker.string());
    const auto size = fs::file_size(path);
    require(size == bytes, path.string(), ": ", size, " bytes, the manifest says ", bytes, " (truncated?)", advice);
    const auto crc = io::parse_hex_u64(entry.at("crc32c"), marker.string().c_str());
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    require(fd >= 0, path.string(), ": cannot open for reading");
    std::vector<char> buf(1 << 20);
    std::uint32_t c = 0;
    for (;;) {
      const auto n = ::read(fd, buf.data(), buf.size());
      if (n <= 0) break;
      c = io::crc32c_extend(c, buf.data(), static_cast<std::size_t>(n));
    }
    ::close(fd);
    require(c == crc, path.string(), ": CRC-32C ", io::hex_u64(c), " does not match the manifest's ",
            io::hex_u64(crc), " (corrupted on disk)", advice);
  }
  require(manifest["files"].contains("state.json"), marker.string(), ": the manifest lists no state.json", advice);
  try {
    return nlohmann::json::parse(io::read_file(dir / "state.json"));
  } catch (const nlohmann::json::exception& e) {
    fail((dir / "state.json").string(), ": not valid JSON (", e.what(), ")");
  }
}

}  // namespace qrl::rl
