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

// A stored tensor must have exactly the shape of the tensor it is loaded into;
// a rank mismatch is a shape mismatch too. The error names both shapes.
inline void require_stored_shape(const io::StoredTensor& stored, const Shape& expected, const std::string& where,
                                 const std::string& name, const std::string& advice) {
  bool same = static_cast<int>(stored.shape.size()) == expected.rank();
  for (int i = 0; same && i < expected.rank(); ++i) same = stored.shape[i] == expected[i];
  if (same) return;
  std::string stored_str = "[";
  for (std::size_t i = 0; i < stored.shape.size(); ++i) stored_str += (i ? ", " : "") + std::to_string(stored.shape[i]);
  stored_str += "]";
  require_shape(false, where, ": tensor '", name, "' has shape ", stored_str, ", the network expects ",
                expected.str(), advice);
}

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
    require_stored_shape(it->second, p.value->shape(), path.string(), p.name,
                         std::string(" (was it trained for another game or frame size?); ") + kSameNetworkHint);
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
