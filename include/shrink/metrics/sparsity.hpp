// sparsity.hpp: sparsity of tensors and masks (per tensor and global) and the MACs that pruning saves in linear and conv layers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "../core/error.hpp"
#include "ops.hpp"  // detail::checked_product

namespace shrink::metrics {

/// Fraction of exact zeros in `values` (0 for an empty span). -0.0 counts as zero.
inline double sparsity(std::span<const float> values) noexcept {
  if (values.empty()) return 0.0;
  std::size_t zeros = 0;
  for (float v : values) zeros += v == 0.0f;
  return static_cast<double>(zeros) / static_cast<double>(values.size());
}

/// Fraction of pruned entries (zero bytes) of a keep mask (0 for an empty mask).
inline double sparsity(std::span<const std::uint8_t> keep_mask) noexcept {
  if (keep_mask.empty()) return 0.0;
  std::size_t zeros = 0;
  for (std::uint8_t b : keep_mask) zeros += b == 0;
  return static_cast<double>(zeros) / static_cast<double>(keep_mask.size());
}

/// Sparsity over several tensors together: total zeros / total elements (each tensor weighs by
/// its size, as torch's global sparsity reports do), not the mean of per-tensor sparsities.
inline double global_sparsity(std::span<const std::span<const float>> tensors) noexcept {
  std::size_t zeros = 0, total = 0;
  for (auto t : tensors) {
    for (float v : t) zeros += v == 0.0f;
    total += t.size();
  }
  return total == 0 ? 0.0 : static_cast<double>(zeros) / static_cast<double>(total);
}

/// Multiply-adds of a layer dense and after pruning (a sparse kernel skips pruned weights; a
/// thinned layer is a smaller dense layer).
struct mac_count {
  std::uint64_t dense = 0;
  std::uint64_t remaining = 0;

  [[nodiscard]] std::uint64_t saved() const noexcept { return dense - remaining; }
  [[nodiscard]] double fraction_saved() const noexcept {
    return dense == 0 ? 0.0 : static_cast<double>(saved()) / static_cast<double>(dense);
  }
  mac_count& operator+=(const mac_count& o) noexcept {
    dense += o.dense;
    remaining += o.remaining;
    return *this;
  }
};


/// Linear y = W·x, W of out × in with `nonzeros` kept weights: out·in MACs dense, one MAC per
/// kept weight after pruning, per input vector (× batch).
inline mac_count linear_macs(std::int64_t out, std::int64_t in, std::int64_t nonzeros, std::int64_t batch = 1) {
  const char* who = "metrics::linear_macs";
  SHRINK_REQUIRE(nonzeros >= 0 && static_cast<std::uint64_t>(nonzeros) <= detail::checked_product({out, in}, who),
                 errc::invalid_argument, who, ": nonzeros must be in [0, out·in], got ", nonzeros);
  return {detail::checked_product({out, in, batch}, who), detail::checked_product({nonzeros, batch}, who)};
}

/// Conv with kernel [out, in, kh, kw] (groups = 1) and `nonzeros` kept weights, producing an
/// out_h × out_w map: each kept weight costs one MAC per output pixel.
inline mac_count conv_macs(std::int64_t out, std::int64_t in, std::int64_t kh, std::int64_t kw, std::int64_t out_h,
                           std::int64_t out_w, std::int64_t nonzeros, std::int64_t batch = 1) {
  const char* who = "metrics::conv_macs";
  SHRINK_REQUIRE(nonzeros >= 0 && static_cast<std::uint64_t>(nonzeros) <= detail::checked_product({out, in, kh, kw}, who),
                 errc::invalid_argument, who, ": nonzeros must be in [0, out·in·kh·kw], got ", nonzeros);
  return {detail::checked_product({out, in, kh, kw, out_h, out_w, batch}, who),
          detail::checked_product({nonzeros, out_h, out_w, batch}, who)};
}

/// A conv thinned to kept_out of `out` filters and kept_in of `in` input channels (structured
/// pruning): the smaller dense conv's MACs.
inline mac_count thinned_conv_macs(std::int64_t out, std::int64_t in, std::int64_t kh, std::int64_t kw,
                                   std::int64_t out_h, std::int64_t out_w, std::int64_t kept_out, std::int64_t kept_in,
                                   std::int64_t batch = 1) {
  const char* who = "metrics::thinned_conv_macs";
  SHRINK_REQUIRE(kept_out >= 0 && kept_out <= out && kept_in >= 0 && kept_in <= in, errc::invalid_argument, who,
                 ": kept channels must be within the layer, got ", kept_out, " of ", out, " and ", kept_in, " of ",
                 in);
  return {detail::checked_product({out, in, kh, kw, out_h, out_w, batch}, who),
          detail::checked_product({kept_out, kept_in, kh, kw, out_h, out_w, batch}, who)};
}

}  // namespace shrink::metrics
