// observers.hpp: calibration observers (min-max, moving-average min-max, percentile, MSE-optimal and KL/entropy histogram search).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "../core/tensor_view.hpp"
#include "quantize.hpp"
#include "scheme.hpp"

namespace shrink::quant {

/// A calibrated range [min, max] for one parameter set.
struct range {
  float min = 0.0f;
  float max = 0.0f;
};

/// What every observer provides: it sees batches (rows = channels, or one flat batch for a
/// per-tensor observer) and reports one range per parameter set.
template <class O>
concept observer = requires(O o, const O co, std::span<const float> flat, tensor_view<const float, 2> rows) {
  o.observe(flat);
  o.observe(rows);
  { co.ranges() } -> std::convertible_to<std::vector<range>>;
  { co.channels() } -> std::convertible_to<index_t>;
};

/// (scale, zero point) for each range of an observer, PyTorch-exact (compute_params).
template <observer O>
std::vector<params> compute_params(const O& obs, const scheme& s) {
  std::vector<params> out;
  for (const range& r : obs.ranges()) out.push_back(compute_params(r.min, r.max, s));
  return out;
}

namespace detail {

/// Calls visit(channel, values, range) for each row of a batch (rows are channels; a
/// per-tensor observer, channels == 1, sees every row as channel 0), checking shape and
/// finiteness; `range` is the row's min/max from the selected ISA path.
template <class Visit>
void for_each_channel(const char* who, index_t channels, tensor_view<const float, 2> x, Visit&& visit) {
  SHRINK_REQUIRE(!x.empty(), errc::empty_input, who, ": the batch is empty; expected at least one value");
  SHRINK_REQUIRE(channels == 1 || x.extent(0) == channels, errc::shape_mismatch, who, ": batch has ", x.extent(0),
                 " rows but the observer watches ", channels, " channels (rows are channels)");
  const row_ops& ops = *kernels::select(k_row_ops);
  if (channels == 1 && x.is_contiguous()) {  // a per-tensor observer sees the batch as one run
    const run_range rr = ops.range(x.data(), x.size());
    SHRINK_REQUIRE(rr.bad < 0, errc::non_finite, who, ": values must be finite; element ", rr.bad, " of the batch is ",
                   x.data()[rr.bad < 0 ? 0 : rr.bad]);
    visit(0, std::span<const float>(x.data(), static_cast<std::size_t>(x.size())), rr);
    return;
  }
  std::vector<float> copy;
  for (index_t r = 0; r < x.extent(0); ++r) {
    const float* row = x.data() + r * x.stride(0);
    if (x.stride(1) != 1 && x.extent(1) > 1) {  // strided: gather the row first
      copy.resize(static_cast<std::size_t>(x.extent(1)));
      for (index_t c = 0; c < x.extent(1); ++c) copy[static_cast<std::size_t>(c)] = x(r, c);
      row = copy.data();
    }
    const run_range rr = ops.range(row, x.extent(1));
    SHRINK_REQUIRE(rr.bad < 0, errc::non_finite, who, ": values must be finite; element ", r * x.extent(1) + rr.bad,
                   " of the batch is ", row[rr.bad < 0 ? 0 : rr.bad]);
    visit(channels == 1 ? 0 : r, std::span<const float>(row, static_cast<std::size_t>(x.extent(1))), rr);
  }
}

inline tensor_view<const float, 2> as_rows(std::span<const float> x) {
  return tensor_view<const float, 2>(x.data(), shape<2>{index_t{1}, static_cast<index_t>(x.size())});
}

inline void check_channels(index_t channels, const char* who) {
  SHRINK_REQUIRE(channels >= 1, errc::invalid_argument, who, ": channels must be >= 1, got ", channels);
}

}  // namespace detail

/// Running min and max (PyTorch MinMaxObserver; PerChannelMinMaxObserver with channels > 1).
class min_max_observer {
 public:
  explicit min_max_observer(index_t channels = 1) : min_(static_cast<std::size_t>(channels), 0.0f), max_(min_) {
    detail::check_channels(channels, "min_max_observer");
  }
  void observe(std::span<const float> x) { observe(detail::as_rows(x)); }
  void observe(tensor_view<const float, 2> x) {
    std::vector<float> bmin(min_.size(), std::numeric_limits<float>::infinity()), bmax(min_.size(), -std::numeric_limits<float>::infinity());
    detail::for_each_channel("min_max_observer", channels(), x, [&](index_t ch, std::span<const float>, const detail::run_range& r) {
      bmin[static_cast<std::size_t>(ch)] = std::min(bmin[static_cast<std::size_t>(ch)], r.min);
      bmax[static_cast<std::size_t>(ch)] = std::max(bmax[static_cast<std::size_t>(ch)], r.max);
    });
    for (std::size_t c = 0; c < min_.size(); ++c) update(c, bmin[c], bmax[c]);
    batches_++;
  }
  [[nodiscard]] std::vector<range> ranges() const {
    SHRINK_REQUIRE(batches_ > 0, errc::empty_input, "min_max_observer: no batch observed yet");
    std::vector<range> out;
    for (std::size_t c = 0; c < min_.size(); ++c) out.push_back({min_[c], max_[c]});
    return out;
  }
  [[nodiscard]] index_t channels() const noexcept { return static_cast<index_t>(min_.size()); }

 protected:
  virtual void update(std::size_t c, float bmin, float bmax) {
    min_[c] = batches_ == 0 ? bmin : std::min(min_[c], bmin);
    max_[c] = batches_ == 0 ? bmax : std::max(max_[c], bmax);
  }
  std::vector<float> min_, max_;
  std::int64_t batches_ = 0;

 public:
  virtual ~min_max_observer() = default;
  min_max_observer(const min_max_observer&) = default;
  min_max_observer& operator=(const min_max_observer&) = default;
};

/// PyTorch MovingAverageMinMaxObserver: the first batch sets the range, later batches move it
/// by min += c * (batch_min - min) (same for max), c = averaging_constant (0.01 by default).
class moving_average_min_max_observer : public min_max_observer {
 public:
  explicit moving_average_min_max_observer(float averaging_constant = 0.01f, index_t channels = 1)
      : min_max_observer(channels), c_(averaging_constant) {
    SHRINK_REQUIRE(averaging_constant > 0.0f && averaging_constant <= 1.0f, errc::invalid_argument,
                   "moving_average_min_max_observer: averaging constant must be in (0, 1], got ", averaging_constant);
  }

 protected:
  void update(std::size_t c, float bmin, float bmax) override {
    if (batches_ == 0) {
      min_[c] = bmin;
      max_[c] = bmax;
    } else {
      min_[c] = min_[c] + c_ * (bmin - min_[c]);
      max_[c] = max_[c] + c_ * (bmax - max_[c]);
    }
  }

 private:
  float c_;
};

/// Histogram of |x| per channel, collected as NVIDIA's pytorch-quantization
/// HistogramCalibrator does (which reproduces TensorRT's calibrators): the first batch
/// spans [0, max|x|] with `bins` bins; a later batch with a larger max|x| extends the
/// histogram with more bins of the same width. Search methods return amax (the clip value).
class abs_histogram {
 public:
  /// Upper bound on the bins later batches may add (the histogram's memory and the O(bins²) searches).
  static constexpr std::size_t k_max_bins = std::size_t{1} << 16;

  explicit abs_histogram(int bins = 2048) : bins_(bins) {
    SHRINK_REQUIRE(bins >= 2, errc::invalid_argument, "abs_histogram: bins must be >= 2, got ", bins);
  }

  void add(std::span<const float> values) {
    float amax = 0.0f;
    for (float v : values) amax = std::max(amax, std::abs(v));
    if (counts_.empty()) {
      if (amax == 0.0f) {  // nothing to size bins with yet: remember the zeros
        pending_zeros_ += static_cast<double>(values.size());
        return;
      }
      width_ = static_cast<double>(amax) / bins_;
      counts_.assign(static_cast<std::size_t>(bins_), 0.0);
      counts_[0] += pending_zeros_;
    } else if (amax > width_ * static_cast<double>(counts_.size())) {
      const double needed = std::ceil(amax / width_);
      SHRINK_REQUIRE(needed <= static_cast<double>(k_max_bins), errc::out_of_range, "abs_histogram: a batch with max |x| = ", amax,
                     " needs ", needed, " bins of width ", width_, " (limit ", k_max_bins,
                     "); the first batch fixed the bin width, so calibrate with a representative first batch");
      counts_.resize(static_cast<std::size_t>(needed), 0.0);
    }
    const auto last = counts_.size() - 1;
    for (float v : values) {
      const auto b = static_cast<std::size_t>(static_cast<double>(std::abs(v)) / width_);
      counts_[std::min(b, last)] += 1.0;
    }
  }

  [[nodiscard]] bool empty() const noexcept { return counts_.empty(); }
  [[nodiscard]] const std::vector<double>& counts() const noexcept { return counts_; }
  [[nodiscard]] double width() const noexcept { return width_; }

  /// Left edge of the first bin where the CDF reaches `percentile` (in (0, 100]).
  [[nodiscard]] float percentile_amax(double percentile) const {
    if (counts_.empty()) return 0.0f;
    double total = 0.0;
    for (double c : counts_) total += c;
    const double target = percentile / 100.0 * total;  // counts are whole numbers: compare cumulative counts
    double cumulative = 0.0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      cumulative += counts_[i];
      if (cumulative >= target) return static_cast<float>(static_cast<double>(i) * width_);
    }
    return static_cast<float>(static_cast<double>(counts_.size()) * width_);
  }

  /// Clip value minimising Σ count_b (c_b - fq(c_b))² over bin centres c_b, where fq quantizes
  /// symmetrically to `levels` positive steps with amax = the candidate bin centre,
  /// candidates from `start_bin` (pytorch-quantization _compute_amax_mse).
  [[nodiscard]] float mse_amax(int levels, int start_bin = 128) const {
    if (counts_.empty()) return 0.0f;
    const std::size_t n = counts_.size();
    double best = std::numeric_limits<double>::infinity();
    double best_amax = static_cast<double>(n) * width_;
    for (std::size_t i = std::min<std::size_t>(static_cast<std::size_t>(start_bin), n - 1); i < n; ++i) {
      const double amax = (static_cast<double>(i) + 0.5) * width_;
      const double step = amax / levels;
      double err = 0.0;
      for (std::size_t b = 0; b < n; ++b) {
        if (counts_[b] == 0.0) continue;
        const double c = (static_cast<double>(b) + 0.5) * width_;
        const double q = std::min(std::nearbyint(c / step), static_cast<double>(levels)) * step;
        err += counts_[b] * (c - q) * (c - q);
      }
      if (err < best) {
        best = err;
        best_amax = amax;
      }
    }
    return static_cast<float>(best_amax);
  }

  /// TensorRT's entropy calibration (pytorch-quantization _compute_amax_entropy): for each
  /// candidate i >= start_bin, P = the first i bins with the outliers added to bin i-1, Q =
  /// those bins merged into `levels` bins and expanded back over their non-empty bins;
  /// amax = i * width for the i minimising KL(P || Q) (the last minimum wins).
  [[nodiscard]] float entropy_amax(int levels = 128, int start_bin = 128) const {
    if (counts_.empty()) return 0.0f;
    std::vector<double> bins = counts_;
    const std::size_t n = bins.size();
    if (n > 1) bins[0] = bins[1];  // as TensorRT: the spike of exact zeros would dominate P
    const auto q_levels = static_cast<std::size_t>(levels);
    std::vector<double> q_sum(q_levels), q_cnt(q_levels), p, q;
    double best = std::numeric_limits<double>::infinity();
    std::size_t best_i = n;
    std::vector<double> tail(n + 1, 0.0);  // tail[i] = Σ bins[i:]
    for (std::size_t i = n; i-- > 0;) tail[i] = tail[i + 1] + bins[i];
    for (std::size_t i = std::min<std::size_t>(static_cast<std::size_t>(start_bin), n); i <= n; ++i) {
      if (i == 0) continue;
      std::fill(q_sum.begin(), q_sum.end(), 0.0);
      std::fill(q_cnt.begin(), q_cnt.end(), 0.0);
      for (std::size_t j = 0; j < i; ++j) {
        if (bins[j] == 0.0) continue;
        const std::size_t k = j * q_levels / i;
        q_sum[k] += bins[j];
        q_cnt[k] += 1.0;
      }
      p.assign(bins.begin(), bins.begin() + static_cast<std::ptrdiff_t>(i));
      p[i - 1] += tail[i];
      q.assign(i, 0.0);
      for (std::size_t j = 0; j < i; ++j)
        if (bins[j] != 0.0) q[j] = q_sum[j * q_levels / i] / q_cnt[j * q_levels / i];
      double ps = 0.0, qs = 0.0;
      for (std::size_t j = 0; j < i; ++j) {
        ps += p[j];
        qs += q[j];
      }
      double kl = 0.0;
      for (std::size_t j = 0; j < i && ps > 0.0 && qs > 0.0; ++j) {
        if (p[j] == 0.0) continue;
        if (q[j] == 0.0) {
          kl = std::numeric_limits<double>::infinity();
          break;
        }
        const double pj = p[j] / ps, qj = q[j] / qs;
        kl += pj * std::log(pj / qj);
      }
      if (kl <= best) {
        best = kl;
        best_i = i;
      }
    }
    return static_cast<float>(static_cast<double>(best_i) * width_);
  }

 private:
  int bins_;
  double width_ = 0.0;
  double pending_zeros_ = 0.0;
  std::vector<double> counts_;
};

/// Common part of the histogram observers: per-channel |x| histograms plus the seen min/max.
/// The range reported is [max(min, -amax), min(max, amax)]: symmetric clipping at amax,
/// never wider than the data (so all-positive data keeps min >= 0).
class histogram_observer_base {
 public:
  histogram_observer_base(index_t channels, int bins, const char* who)
      : who_(who), hist_(static_cast<std::size_t>(channels), abs_histogram(bins)), mm_(channels) {
    detail::check_channels(channels, who);
  }
  virtual ~histogram_observer_base() = default;
  void observe(std::span<const float> x) { observe(detail::as_rows(x)); }
  void observe(tensor_view<const float, 2> x) {
    mm_.observe(x);  // checks shape and finiteness first
    detail::for_each_channel(who_, channels(), x, [&](index_t ch, std::span<const float> v, const detail::run_range&) {
      hist_[static_cast<std::size_t>(ch)].add(v);
    });
  }
  [[nodiscard]] std::vector<range> ranges() const {
    const auto seen = mm_.ranges();
    std::vector<range> out;
    for (std::size_t c = 0; c < hist_.size(); ++c) {
      const float amax = amax_of(hist_[c]);
      out.push_back({std::max(seen[c].min, -amax), std::min(seen[c].max, amax)});
    }
    return out;
  }
  [[nodiscard]] index_t channels() const noexcept { return static_cast<index_t>(hist_.size()); }
  [[nodiscard]] const abs_histogram& histogram(index_t channel = 0) const { return hist_.at(static_cast<std::size_t>(channel)); }

 protected:
  [[nodiscard]] virtual float amax_of(const abs_histogram& h) const = 0;

 private:
  const char* who_;
  std::vector<abs_histogram> hist_;
  min_max_observer mm_;
};

/// Clips at the `percentile` (e.g. 99.99) of |x| (histogram resolution: one bin).
class percentile_observer : public histogram_observer_base {
 public:
  explicit percentile_observer(double percentile = 99.99, index_t channels = 1, int bins = 2048)
      : histogram_observer_base(channels, bins, "percentile_observer"), percentile_(percentile) {
    SHRINK_REQUIRE(percentile > 0.0 && percentile <= 100.0, errc::invalid_argument,
                   "percentile_observer: percentile must be in (0, 100], got ", percentile);
  }

 protected:
  [[nodiscard]] float amax_of(const abs_histogram& h) const override { return h.percentile_amax(percentile_); }

 private:
  double percentile_;
};

/// Clips where the histogram-weighted squared error of `bits`-bit symmetric quantization is least.
class mse_observer : public histogram_observer_base {
 public:
  explicit mse_observer(int bits = 8, index_t channels = 1, int bins = 2048, int start_bin = 128)
      : histogram_observer_base(channels, bins, "mse_observer"), bits_(bits), start_(start_bin) {
    SHRINK_REQUIRE(bits >= 2 && bits <= 8, errc::invalid_argument, "mse_observer: bits must be in [2, 8], got ", bits);
  }

 protected:
  [[nodiscard]] float amax_of(const abs_histogram& h) const override { return h.mse_amax((1 << (bits_ - 1)) - 1, start_); }

 private:
  int bits_, start_;
};

/// TensorRT entropy (KL divergence) calibration: 2048 bins, candidates from bin 128, P
/// merged into 2^(bits-1) levels (128 for int8).
class entropy_observer : public histogram_observer_base {
 public:
  explicit entropy_observer(int bits = 8, index_t channels = 1, int bins = 2048, int start_bin = 128)
      : histogram_observer_base(channels, bins, "entropy_observer"), bits_(bits), start_(start_bin) {
    SHRINK_REQUIRE(bits >= 2 && bits <= 8, errc::invalid_argument, "entropy_observer: bits must be in [2, 8], got ", bits);
  }

 protected:
  [[nodiscard]] float amax_of(const abs_histogram& h) const override { return h.entropy_amax(1 << (bits_ - 1), start_); }

 private:
  int bits_, start_;
};

static_assert(observer<min_max_observer> && observer<moving_average_min_max_observer> && observer<percentile_observer> &&
              observer<mse_observer> && observer<entropy_observer>);

}  // namespace shrink::quant
