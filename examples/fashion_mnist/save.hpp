// save.hpp: writes the demo's trained models as safetensors and compresses them into shrink's file format (what `shrink inspect` reads).
#pragma once

#include <cstdio>
#include <filesystem>
#include <shrink/shrink.hpp>
#include <string>
#include <vector>

#include "mlp.hpp"

namespace demo {

/// fc1.weight, fc1.bias, ... (PyTorch's nn.Linear names and [out, in] layout), fp32.
inline void save_fp32(const network& n, const std::filesystem::path& path) {
  shrink::io::safetensors_writer w(path);
  w.add_metadata("model", "LeNet-300-100 trained by examples/fashion_mnist");
  for (std::size_t i = 0; i < n.layers.size(); ++i) {
    matrix eff;
    n.layers[i].hook->forward(n.layers[i].w, eff);
    const std::string name = "fc" + std::to_string(i + 1);
    w.add(name + ".weight", shrink::io::dtype::f32, {eff.rows(), eff.cols()},
          std::span<const float>(eff.data(), static_cast<std::size_t>(eff.size())));
    w.add(name + ".bias", shrink::io::dtype::f32, {n.layers[i].b.size()},
          std::span<const float>(n.layers[i].b.data(), static_cast<std::size_t>(n.layers[i].b.size())));
  }
  w.finish();
}

/// Saves `n` as fp32 and as `recipe` in shrink's compressed format; prints what it wrote.
/// A recipe this build's tool does not offer is reported and skipped.
inline void save_compressed(const network& n, const std::filesystem::path& dir, const std::string& stem,
                            const std::string& recipe) {
  const auto fp32 = dir / (stem + "_fp32.safetensors");
  std::string tag = recipe;
  for (char& c : tag)
    if (c == ':' || c == '=') c = '-';  // "2:4" -> "2-4": no colons in file names
  const auto out = dir / (stem + "_" + tag + ".safetensors");
  try {
    save_fp32(n, fp32);
    shrink::compress::compress_options opt;
    opt.recipe = shrink::compress::load_recipe(recipe);
    const auto report = shrink::compress::compress_file(fp32, out, opt);
    std::printf("  saved %s (%llu -> %llu bytes)\n", out.filename().c_str(),
                static_cast<unsigned long long>(report.bytes_before), static_cast<unsigned long long>(report.bytes_after));
  } catch (const shrink::error& e) {
    std::printf("  not saved as %s: %s\n", recipe.c_str(), e.what());
  }
}

}  // namespace demo
