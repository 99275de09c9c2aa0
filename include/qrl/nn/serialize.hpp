#pragma once
#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include <qrl/io/safetensors.hpp>
#include <qrl/nn/sequential.hpp>
#include <qrl/version.hpp>

namespace qrl::nn {

// Saves a network's parameters under their PyTorch nn.Sequential names
// ("0.weight", "0.bias", ...): torch.nn.Sequential(...).load_state_dict(
// safetensors.torch.load_file(path)) takes the file as it is.
template <Backend B>
void save_weights(Context<B>& ctx, Sequential<B>& net, const std::filesystem::path& path,
                  std::map<std::string, std::string> metadata = {}) {
  io::SafetensorsFile file;
  metadata["format"] = "pt";
  metadata["qrl_version"] = version;
  file.metadata = std::move(metadata);
  for (auto& p : net.parameters()) {
    io::StoredTensor t;
    for (int i = 0; i < p.value->shape().rank(); ++i) t.shape.push_back(p.value->shape()[i]);
    t.values = to_host(ctx, *p.value);
    file.tensors[p.name] = std::move(t);
  }
  io::save_safetensors(path, file);
}

// What to do about a mismatch: the file itself does not record which
// architecture it was saved from, the run that wrote it does.
inline constexpr const char* kSameNetworkHint =
    "load it with the network options it was trained with (the training run's config.toml lists them)";

// Loads weights saved for the same architecture; any missing, extra or
// differently shaped tensor is an error naming it.
template <Backend B>
std::map<std::string, std::string> load_weights(Context<B>& ctx, Sequential<B>& net, const std::filesystem::path& path) {
  auto file = io::load_safetensors(path);
  auto params = net.parameters();
  for (auto& p : params) {
    auto it = file.tensors.find(p.name);
    require(it != file.tensors.end(), path.string(), ": no tensor '", p.name,
            "' — the file was saved for a different network; ", kSameNetworkHint);
    require_shape(static_cast<int>(it->second.shape.size()) == p.value->shape().rank(), path.string(), ": tensor '",
                  p.name, "' has rank ", it->second.shape.size(), ", the network expects ", p.value->shape().str());
    bool same = true;
    for (int i = 0; i < p.value->shape().rank(); ++i) same = same && it->second.shape[i] == p.value->shape()[i];
    require_shape(same, path.string(), ": tensor '", p.name, "' does not have the network's shape ",
                  p.value->shape().str(), " (was it trained for another game or frame size?); ", kSameNetworkHint);
    for (float v : it->second.values)
      require(std::isfinite(v), path.string(), ": tensor '", p.name, "' contains NaN or infinity");
    upload<B, float>(ctx, it->second.values, *p.value);
  }
  require(file.tensors.size() == params.size(), path.string(), ": holds ", file.tensors.size(),
          " tensors but the network has ", params.size(), " parameters — saved for a different network; ",
          kSameNetworkHint);
  return file.metadata;
}

}  // namespace qrl::nn
