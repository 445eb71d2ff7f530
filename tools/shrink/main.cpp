// main.cpp: the shrink command-line tool: compress, decompress, inspect, bench and generate safetensors models (docs/tool.md).
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <shrink/compress.hpp>
#include <shrink/binary/bit_matrix.hpp>
#include <shrink/kernels/bit_pack.hpp>
#include <shrink/kernels/int8_gemm.hpp>
#include <shrink/kernels/int8_pack.hpp>
#include <shrink/kernels/lut_gemv.hpp>
#include <shrink/kernels/sparse_plan.hpp>
#include <shrink/kernels/spmm_csr.hpp>
#include <shrink/kernels/weight_only_gemv.hpp>
#include <shrink/kernels/xnor_gemm.hpp>
#include <shrink/sparse/csr.hpp>
#include <shrink/sparse/nm.hpp>

#include <Eigen/Dense>

namespace {

using namespace shrink;

// Exit codes (docs/tool.md).
constexpr int k_exit_ok = 0;
constexpr int k_exit_error = 1;
constexpr int k_exit_usage = 2;
constexpr int k_exit_io = 3;
constexpr int k_exit_format = 4;
constexpr int k_exit_unsupported = 5;
constexpr int k_exit_budget = 6;

int exit_code(errc c) {
  switch (c) {
    case errc::io: return k_exit_io;
    case errc::format:
    case errc::overflow: return k_exit_format;
    case errc::unsupported: return k_exit_unsupported;
    case errc::invalid_argument: return k_exit_usage;
    default: return k_exit_error;
  }
}

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

std::string human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct progress_bar {
  bool on = ::isatty(2) != 0;
  void operator()(std::size_t done, std::size_t total) const {
    if (!on || total == 0) return;
    const int width = 40;
    const int fill = static_cast<int>(width * done / total);
    std::fprintf(stderr, "\r[%s%s] %zu/%zu tensors", std::string(fill, '#').c_str(), std::string(width - fill, ' ').c_str(),
                 done, total);
    if (done == total) std::fprintf(stderr, "\n");
  }
};

void print_row(const std::vector<std::string>& cells, const std::vector<int>& widths) {
  for (std::size_t i = 0; i < cells.size(); ++i)
    std::printf(i == 0 ? "%-*s" : "  %*s", widths[i], cells[i].c_str());
  std::printf("\n");
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<int> w(rows.empty() ? 0 : rows[0].size(), 0);
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) w[i] = std::max<int>(w[i], static_cast<int>(r[i].size()));
  for (const auto& r : rows) print_row(r, w);
}

std::string fmt(double v, const char* f = "%.4g") {
  char buf[48];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// ---- compress
int run_compress(const std::string& in, const std::string& out, const std::string& recipe_spec,
                 std::optional<double> target_bits, std::optional<double> target_size, int threads, bool json) {
  compress::compress_options opt;
  opt.recipe = compress::load_recipe(recipe_spec);
  opt.threads = threads;
  opt.target_bits = target_bits;
  opt.target_size = target_size;
  progress_bar bar;
  opt.progress = [&](std::size_t d, std::size_t t) { bar(d, t); };
  const auto rep = compress::compress_file(in, out, opt);
  const double ratio = rep.bytes_after ? static_cast<double>(rep.bytes_before) / static_cast<double>(rep.bytes_after) : 0;
  std::uint64_t weights = 0;
  for (const auto& t : rep.tensors) weights += io::checked_count(t.shape, "compress");
  if (json) {
    nlohmann::ordered_json j;
    j["input"] = in;
    j["output"] = out;
    j["recipe"] = recipe_spec;
    j["bytes_before"] = rep.bytes_before;
    j["bytes_after"] = rep.bytes_after;
    j["ratio"] = ratio;
    j["bits_per_weight"] = weights ? 8.0 * static_cast<double>(rep.bytes_after) / static_cast<double>(weights) : 0.0;
    j["seconds"] = rep.seconds;
    if (rep.alloc) j["budget_met"] = rep.alloc->met;
    for (const auto& t : rep.tensors)
      j["tensors"].push_back({{"name", t.name}, {"shape", t.shape}, {"dtype", std::string(io::name(t.dtype))},
                              {"scheme", t.scheme}, {"bytes_before", t.bytes_before}, {"bytes_after", t.bytes_after},
                              {"mse", t.sse / std::max<double>(1.0, static_cast<double>(io::checked_count(t.shape, "")))},
                              {"note", t.note}});
    std::cout << j.dump(2) << "\n";
  } else {
    std::vector<std::vector<std::string>> rows{{"tensor", "shape", "scheme", "before", "after", "mse", "note"}};
    for (const auto& t : rep.tensors)
      rows.push_back({t.name, shape_text(t.shape), t.scheme, human(static_cast<double>(t.bytes_before)),
                      human(static_cast<double>(t.bytes_after)),
                      fmt(t.sse / std::max<double>(1.0, static_cast<double>(io::checked_count(t.shape, "")))),
                      t.note.empty() ? "" : "kept in float: " + t.note});
    print_table(rows);
    std::printf("\ntotal: %s -> %s (%.2fx, %.3f bits/weight) in %.2f s\n", human(static_cast<double>(rep.bytes_before)).c_str(),
                human(static_cast<double>(rep.bytes_after)).c_str(), ratio,
                weights ? 8.0 * static_cast<double>(rep.bytes_after) / static_cast<double>(weights) : 0.0, rep.seconds);
    if (rep.alloc)
      std::printf("mixed precision: %s budget, total squared error %.6g\n", rep.alloc->met ? "met" : "NOT met",
                  rep.alloc->error);
  }
  if (rep.alloc && !rep.alloc->met) {
    std::fprintf(stderr, "shrink: the target cannot be met even at the lowest precision (output written at it)\n");
    return k_exit_budget;
  }
  return k_exit_ok;
}

// ---- inspect
int run_inspect(const std::string& file, const std::string& against, bool json) {
  const io::safetensors_reader reader(file);
  const auto recs = compress::read_records(reader.header());
  const auto list = compress::list_tensors(reader, recs);
  std::optional<io::safetensors_reader> orig;
  if (!against.empty()) orig.emplace(against);
  nlohmann::ordered_json j;
  std::vector<std::vector<std::string>> rows{{"tensor", "shape", "dtype", "scheme", "bytes", "bits/w", "sparsity"}};
  if (orig) {
    rows[0].push_back("mse");
    rows[0].push_back("sqnr dB");
  }
  std::uint64_t total_bytes = 0, total_weights = 0, total_zero = 0;
  double total_sse = 0, total_signal = 0;
  for (const auto& t : list) {
    const auto x = compress::read_expanded(reader, recs, t.name);
    std::uint64_t zeros = 0;
    for (float v : x) zeros += v == 0.0f;
    const double bpw = x.size() ? 8.0 * static_cast<double>(t.bytes) / static_cast<double>(x.size()) : 0;
    const double sparsity = x.size() ? static_cast<double>(zeros) / static_cast<double>(x.size()) : 0;
    total_bytes += t.bytes;
    total_weights += x.size();
    total_zero += zeros;
    std::vector<std::string> row{t.name, shape_text(t.shape), std::string(io::name(t.dtype)), t.scheme,
                                 std::to_string(t.bytes), fmt(bpw, "%.3f"), fmt(sparsity, "%.3f")};
    nlohmann::ordered_json jt{{"name", t.name}, {"shape", t.shape}, {"dtype", std::string(io::name(t.dtype))},
                              {"scheme", t.scheme}, {"bytes", t.bytes}, {"bits_per_weight", bpw}, {"sparsity", sparsity}};
    if (orig) {
      const auto* o = orig->find(t.name);
      SHRINK_REQUIRE(o != nullptr && o->count() == x.size(), errc::shape_mismatch, "inspect --against: '", t.name,
                     "' is missing from the original or has another size");
      const auto y = orig->read_float(*o);
      double sse = 0, sig = 0;
      for (std::size_t i = 0; i < x.size(); ++i) {
        const double d = static_cast<double>(x[i]) - y[i];
        sse += d * d;
        sig += static_cast<double>(y[i]) * y[i];
      }
      total_sse += sse;
      total_signal += sig;
      const double mse = x.size() ? sse / static_cast<double>(x.size()) : 0;
      const double sqnr = sse == 0 ? INFINITY : 10 * std::log10(sig / sse);
      row.push_back(fmt(mse));
      row.push_back(fmt(sqnr, "%.2f"));
      jt["mse"] = mse;
      jt["sqnr_db"] = std::isfinite(sqnr) ? nlohmann::ordered_json(sqnr) : nlohmann::ordered_json(nullptr);
    }
    rows.push_back(std::move(row));
    j["tensors"].push_back(std::move(jt));
  }
  const double bpw = total_weights ? 8.0 * static_cast<double>(total_bytes) / static_cast<double>(total_weights) : 0;
  const double sp = total_weights ? static_cast<double>(total_zero) / static_cast<double>(total_weights) : 0;
  std::vector<std::string> tot{"TOTAL", "", "", "", std::to_string(total_bytes), fmt(bpw, "%.3f"), fmt(sp, "%.3f")};
  j["total"] = {{"bytes", total_bytes}, {"weights", total_weights}, {"bits_per_weight", bpw}, {"sparsity", sp}};
  if (orig) {
    const double mse = total_weights ? total_sse / static_cast<double>(total_weights) : 0;
    const double sqnr = total_sse == 0 ? INFINITY : 10 * std::log10(total_signal / total_sse);
    tot.push_back(fmt(mse));
    tot.push_back(fmt(sqnr, "%.2f"));
    j["total"]["mse"] = mse;
    j["total"]["sqnr_db"] = std::isfinite(sqnr) ? nlohmann::ordered_json(sqnr) : nlohmann::ordered_json(nullptr);
  }
  rows.push_back(std::move(tot));
  if (json)
    std::cout << j.dump(2) << "\n";
  else
    print_table(rows);
  return k_exit_ok;
}

// ---- bench: y = W x per compressed tensor (2-D view), batch 1 and 16.
template <class Fn>
double time_it(Fn&& fn) {
  using clock = std::chrono::steady_clock;
  fn();  // warm up
  int reps = 0;
  const auto t0 = clock::now();
  double elapsed = 0;
  do {
    fn();
    ++reps;
    elapsed = std::chrono::duration<double>(clock::now() - t0).count();
  } while (elapsed < 0.05 && reps < 1000);
  return elapsed / reps;
}

/// One compressed tensor prepared for its kernel: `run(x, y, batch)` computes Y[batch, rows]
/// = X[batch, cols] · Wᵀ (the same product as the dense reference), from the packed layout.
struct bench_kernel {
  std::string name;  ///< which kernel
  std::function<void(const float* x, float* y, std::size_t batch)> run;
};

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Builds the scheme's kernel from the stored entries (packing is done here, once, outside
/// the timing, as an engine would at load time).
bench_kernel make_bench_kernel(const io::safetensors_reader& reader, const std::vector<compress::record>& recs,
                               const compress::record& r, const aligned_buffer<float>& dense) {
  const auto rows = static_cast<index_t>(r.rows()), cols = static_cast<index_t>(r.cols());
  auto bytes = [&](const char* role) { return reader.bytes(reader.at(r.entries.at(role))); };
  const context one{1};
  if (r.scheme == "int8") {
    // Activations quantized per batch row to u8 (zero point 128, scale max|x| / 127), then
    // s8 x u8 -> s32 GEMM, then one multiply per output by (activation scale · weight scale).
    const auto codes = bytes("codes");
    auto packed = std::make_shared<kernels::packed_s8_weights>(kernels::pack_s8_weights(
        tensor_view<const std::int8_t, 2>(reinterpret_cast<const std::int8_t*>(codes.data()), shape<2>{rows, cols})));
    auto scales = std::make_shared<std::vector<float>>(static_cast<std::size_t>(rows));
    std::memcpy(scales->data(), bytes("scales").data(), scales->size() * 4);
    auto qx = std::make_shared<std::vector<std::uint8_t>>();
    auto acc = std::make_shared<std::vector<std::int32_t>>();
    auto ws = std::make_shared<aligned_buffer<std::byte>>(kernels::int8_gemm_workspace_bytes(16, cols));
    return {"kernels::int8_gemm (u8 activations)", [=](const float* x, float* y, std::size_t batch) {
              qx->resize(batch * static_cast<std::size_t>(cols));
              acc->resize(batch * static_cast<std::size_t>(rows));
              std::vector<float> xs(batch);
              for (std::size_t b = 0; b < batch; ++b) {
                float amax = 0;
                for (index_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(x[b * cols + c]));
                const float s = amax > 0 ? amax / 127.0f : 1.0f;
                xs[b] = s;
                for (index_t c = 0; c < cols; ++c)
                  (*qx)[b * cols + c] = static_cast<std::uint8_t>(std::nearbyint(x[b * cols + c] / s) + 128.0f);
              }
              const auto m = static_cast<index_t>(batch);
              kernels::int8_gemm(tensor_view<const std::uint8_t, 2>(qx->data(), shape<2>{m, cols}), 128, *packed,
                                 tensor_view<std::int32_t, 2>(acc->data(), shape<2>{m, rows}), ws->span(), one);
              for (std::size_t b = 0; b < batch; ++b)
                for (index_t i = 0; i < rows; ++i)
                  y[b * rows + i] = static_cast<float>((*acc)[b * rows + i]) * xs[b] * (*scales)[i];
            }};
  }
  if (r.scheme == "int" && (r.group == 32 || r.group == 64 || r.group == 128)) {
    // Weight-only: int4 for 2..4-bit codes, int8 for 5..8 (codes re-centred to two's complement).
    const auto codes = reinterpret_cast<const std::uint8_t*>(bytes("codes").data());
    const std::size_t row_bytes = (static_cast<std::size_t>(cols) * r.bits + 7) / 8;
    const int off = 1 << (r.bits - 1);
    std::vector<std::int8_t> q(static_cast<std::size_t>(rows * cols));
    for (index_t i = 0; i < rows; ++i) {
      std::size_t bit = static_cast<std::size_t>(i) * row_bytes * 8;
      for (index_t c = 0; c < cols; ++c) {
        unsigned u = 0;
        for (int k = 0; k < r.bits; ++k, ++bit) u |= ((codes[bit / 8] >> (bit % 8)) & 1u) << k;
        q[static_cast<std::size_t>(i * cols + c)] = static_cast<std::int8_t>(static_cast<int>(u) - off);
      }
    }
    const auto sb = bytes("scales");
    const std::size_t ns = static_cast<std::size_t>(compress::sizes_of(r).scales);
    std::shared_ptr<kernels::packed_wq_weights> packed;
    auto pack = [&](auto scales) {
      if (r.bits <= 4) {
        std::vector<std::uint8_t> nib((q.size() + 1) / 2, 0);
        for (std::size_t i = 0; i < q.size(); ++i)
          nib[i / 2] = static_cast<std::uint8_t>(nib[i / 2] | ((static_cast<unsigned>(q[i]) & 0xFu) << (4 * (i % 2))));
        return kernels::pack_s4_weights(std::span<const std::uint8_t>(nib), rows, cols, scales, r.group);
      }
      return kernels::pack_s8_weight_only(tensor_view<const std::int8_t, 2>(q.data(), shape<2>{rows, cols}), scales, r.group);
    };
    if (r.scale_dtype == io::dtype::f16) {
      std::vector<std::uint16_t> s16(ns);
      std::memcpy(s16.data(), sb.data(), ns * 2);
      packed = std::make_shared<kernels::packed_wq_weights>(pack(std::span<const std::uint16_t>(s16)));
    } else {
      std::vector<float> s32(ns);
      std::memcpy(s32.data(), sb.data(), ns * 4);
      packed = std::make_shared<kernels::packed_wq_weights>(pack(std::span<const float>(s32)));
    }
    return {r.bits <= 4 ? "kernels::weight_only_gemm (int4)" : "kernels::weight_only_gemm (int8)",
            [=](const float* x, float* y, std::size_t batch) {
              const auto m = static_cast<index_t>(batch);
              kernels::weight_only_gemm(tensor_view<const float, 2>(x, shape<2>{m, cols}), *packed,
                                        tensor_view<float, 2>(y, shape<2>{m, rows}), one);
            }};
  }
  if (r.scheme == "codebook") {
    // The file's rows start on byte boundaries; the kernel wants one continuous bit stream.
    const auto idx = reinterpret_cast<const std::uint8_t*>(bytes("indices").data());
    const std::size_t row_bytes = (static_cast<std::size_t>(cols) * r.bits + 7) / 8;
    std::vector<std::uint8_t> flat(static_cast<std::size_t>(rows * cols));
    for (index_t i = 0; i < rows; ++i)
      unpack_bits(std::span<const std::uint8_t>(idx + i * row_bytes, row_bytes), r.bits,
                  std::span<std::uint8_t>(flat).subspan(static_cast<std::size_t>(i * cols), static_cast<std::size_t>(cols)));
    std::vector<std::uint8_t> stream(packed_bytes(flat.size(), r.bits));
    pack_bits(std::span<const std::uint8_t>(flat), r.bits, std::span<std::uint8_t>(stream));
    std::vector<float> book(std::size_t{1} << r.bits, 0.0f);
    std::memcpy(book.data(), bytes("codebook").data(), static_cast<std::size_t>(r.k) * 4);
    auto packed = std::make_shared<kernels::packed_codebook_weights>(
        kernels::pack_codebook_weights(stream, r.bits, rows, cols, book));
    return {"kernels::codebook_gemv (LUT), once per batch row", [=](const float* x, float* y, std::size_t batch) {
              for (std::size_t b = 0; b < batch; ++b)
                kernels::codebook_gemv(std::span<const float>(x + b * cols, static_cast<std::size_t>(cols)), *packed,
                                       std::span<float>(y + b * rows, static_cast<std::size_t>(rows)), one);
            }};
  }
  if (r.scheme == "nm" || r.scheme == "deep") {
    // spmm wants X as [cols, batch] and gives Y as [rows, batch]: transposes are part of the cost.
    std::shared_ptr<std::function<void(const float*, float*, index_t)>> apply;
    const tensor_view<const float, 2> w(dense.data(), shape<2>{rows, cols});
    std::vector<std::uint8_t> mask(dense.size());
    for (std::size_t i = 0; i < dense.size(); ++i) mask[i] = dense[i] != 0.0f;
    const tensor_view<const std::uint8_t, 2> mv(mask.data(), shape<2>{rows, cols});
    std::string name;
    if (r.scheme == "nm") {
      auto plan = std::make_shared<kernels::sparse_plan_f32>(
          kernels::make_plan(sparse::nm_f32::from_dense(w, mv, r.n, r.m)));
      apply = std::make_shared<std::function<void(const float*, float*, index_t)>>(
          [=](const float* xt, float* yt, index_t m) {
            kernels::spmm(*plan, const_view<float, 2>(xt, shape<2>{cols, m}), tensor_view<float, 2>(yt, shape<2>{rows, m}), one);
          });
      name = "kernels::spmm (nm_f32 plan)";
    } else {
      // Codebook-valued CSR: each kept weight is its 5-bit code, expanded through the codebook.
      const auto* book = reinterpret_cast<const float*>(bytes("codebook").data());
      std::vector<float> centroids(book, book + r.k);
      std::vector<std::uint8_t> codes(dense.size(), 0);
      for (std::size_t i = 0; i < dense.size(); ++i)
        if (dense[i] != 0.0f)
          codes[i] = static_cast<std::uint8_t>(std::find(centroids.begin(), centroids.end(), dense[i]) - centroids.begin());
      auto plan = std::make_shared<kernels::sparse_plan_codebook>(kernels::make_plan(sparse::csr_codebook::from_indices(
          tensor_view<const std::uint8_t, 2>(codes.data(), shape<2>{rows, cols}), centroids, mv)));
      apply = std::make_shared<std::function<void(const float*, float*, index_t)>>(
          [=](const float* xt, float* yt, index_t m) {
            kernels::spmm(*plan, const_view<float, 2>(xt, shape<2>{cols, m}), tensor_view<float, 2>(yt, shape<2>{rows, m}), one);
          });
      name = "kernels::spmm (csr_codebook plan)";
    }
    auto xt = std::make_shared<std::vector<float>>(), yt = std::make_shared<std::vector<float>>();
    return {name, [=](const float* x, float* y, std::size_t batch) {
              const auto m = static_cast<index_t>(batch);
              if (batch == 1) {
                (*apply)(x, y, 1);
                return;
              }
              xt->resize(batch * cols);
              yt->resize(batch * rows);
              for (std::size_t b = 0; b < batch; ++b)
                for (index_t c = 0; c < cols; ++c) (*xt)[c * batch + b] = x[b * cols + c];
              (*apply)(xt->data(), yt->data(), m);
              for (index_t i = 0; i < rows; ++i)
                for (std::size_t b = 0; b < batch; ++b) y[b * rows + i] = (*yt)[i * batch + b];
            }};
  }
  if (r.scheme == "xnor") {
    const auto sb = bytes("signs");
    std::vector<std::uint64_t> words(sb.size() / 8);
    std::memcpy(words.data(), sb.data(), sb.size());
    std::vector<float> alpha(static_cast<std::size_t>(rows));
    std::memcpy(alpha.data(), bytes("alpha").data(), alpha.size() * 4);
    auto w = std::make_shared<binary::bit_matrix>(binary::bit_matrix::from_words(rows, cols, words, alpha));
    return {"kernels::pack_signs + kernels::xnor_gemm", [=](const float* x, float* y, std::size_t batch) {
              const auto m = static_cast<index_t>(batch);
              const auto xb = kernels::pack_signs(tensor_view<const float, 2>(x, shape<2>{m, cols}), binary::scaling::mean_abs, one);
              kernels::xnor_gemm(*w, xb, tensor_view<float, 2>(y, shape<2>{m, rows}), {}, one);
            }};
  }
  if (r.scheme == "lowrank") {
    const auto rk = static_cast<index_t>(r.rank);
    auto a = std::make_shared<row_matrix>(rows, rk), b = std::make_shared<row_matrix>(rk, cols);
    std::memcpy(a->data(), bytes("a").data(), static_cast<std::size_t>(rows * rk) * 4);
    std::memcpy(b->data(), bytes("b").data(), static_cast<std::size_t>(rk * cols) * 4);
    auto t = std::make_shared<row_matrix>();
    return {"two Eigen GEMMs (X·Bᵀ)·Aᵀ", [=](const float* x, float* y, std::size_t batch) {
              const auto m = static_cast<Eigen::Index>(batch);
              Eigen::Map<const row_matrix> xm(x, m, cols);
              Eigen::Map<row_matrix> ym(y, m, rows);
              t->noalias() = xm * b->transpose();
              ym.noalias() = *t * a->transpose();
            }};
  }
  // int with a group the weight-only kernel does not take: expand and multiply.
  (void)recs;
  auto wd = std::make_shared<row_matrix>(Eigen::Map<const row_matrix>(dense.data(), rows, cols));
  return {"none for this group size: dense fp32 of the expansion", [=](const float* x, float* y, std::size_t batch) {
            const auto m = static_cast<Eigen::Index>(batch);
            Eigen::Map<row_matrix>(y, m, rows).noalias() = Eigen::Map<const row_matrix>(x, m, cols) * wd->transpose();
          }};
}

int run_bench(const std::string& file, bool json) {
  const io::safetensors_reader reader(file);
  const auto recs = compress::read_records(reader.header());
  SHRINK_REQUIRE(!recs.empty(), errc::invalid_argument, "bench: '", file, "' has no compressed tensors");
  nlohmann::ordered_json j;
  std::vector<std::vector<std::string>> rows{
      {"tensor", "scheme", "rows x cols", "batch", "fp32 us", "compressed us", "speedup", "max rel err", "kernel"}};
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (const auto& r : recs) {
    const auto n = static_cast<std::size_t>(r.rows()), cols = static_cast<std::size_t>(r.cols());
    const auto w = compress::read_expanded(reader, recs, r.name);
    const bench_kernel k = make_bench_kernel(reader, recs, r, w);
    const Eigen::Map<const row_matrix> wm(w.data(), static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(cols));
    for (std::size_t batch : {std::size_t{1}, std::size_t{16}}) {
      std::vector<float> x(cols * batch), y(n * batch), yd(n * batch);
      for (float& v : x) v = dist(rng);
      const auto m = static_cast<Eigen::Index>(batch);
      const double dense = time_it([&] {
        Eigen::Map<row_matrix>(yd.data(), m, static_cast<Eigen::Index>(n)).noalias() =
            Eigen::Map<const row_matrix>(x.data(), m, static_cast<Eigen::Index>(cols)) * wm.transpose();
      });
      const double packed = time_it([&] { k.run(x.data(), y.data(), batch); });
      // Agreement with the dense product of the expanded weights (int8 and xnor also
      // quantize or binarize the activations, so theirs is an approximation).
      double err = 0, ref = 0;
      for (std::size_t i = 0; i < y.size(); ++i) {
        err = std::max(err, static_cast<double>(std::fabs(y[i] - yd[i])));
        ref = std::max(ref, static_cast<double>(std::fabs(yd[i])));
      }
      const double rel = ref > 0 ? err / ref : err;
      rows.push_back({r.name, compress::label(r), std::to_string(n) + "x" + std::to_string(cols), std::to_string(batch),
                      fmt(dense * 1e6, "%.1f"), fmt(packed * 1e6, "%.1f"), fmt(dense / packed, "%.2fx"), fmt(rel, "%.2g"),
                      k.name});
      j["tensors"].push_back({{"name", r.name}, {"scheme", compress::label(r)}, {"rows", n}, {"cols", cols},
                              {"batch", batch}, {"fp32_seconds", dense}, {"compressed_seconds", packed},
                              {"max_relative_error", rel}, {"kernel", k.name}});
    }
  }
  if (json)
    std::cout << j.dump(2) << "\n";
  else
    print_table(rows);
  return k_exit_ok;
}

// ---- generate: a synthetic model (normal weights, 1-D biases) for tests and benchmarks.
int run_generate(const std::string& out, int tensors, std::int64_t rows, std::int64_t cols, const std::string& dtype_name,
                 std::uint64_t seed) {
  const io::dtype t = io::parse_dtype(dtype_name, "generate");
  SHRINK_REQUIRE(io::is_floating(t), errc::invalid_argument, "generate: --dtype must be F32, F16, BF16 or F64");
  SHRINK_REQUIRE(tensors >= 1 && rows >= 1 && cols >= 1, errc::invalid_argument, "generate: sizes must be >= 1");
  io::safetensors_writer w(out);
  w.add_metadata("generator", "shrink generate");
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  const auto n = static_cast<std::size_t>(rows * cols);
  std::vector<float> x(n);
  aligned_buffer<std::byte> bytes(n * io::size_of(t));
  for (int i = 0; i < tensors; ++i) {
    for (float& v : x) v = dist(rng);
    io::from_float(t, x.data(), n, bytes.data());
    w.add("layers." + std::to_string(i) + ".weight", t, {rows, cols}, bytes.span());
    io::from_float(t, x.data(), static_cast<std::size_t>(rows), bytes.data());
    w.add("layers." + std::to_string(i) + ".bias", t, {rows}, bytes.span().first(static_cast<std::size_t>(rows) * io::size_of(t)));
  }
  w.finish();
  return k_exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  io::install_signal_cleanup();  // SIGINT / SIGTERM remove the temporary output
#if defined(__GLIBC__)
  // A fixed mmap threshold: every buffer of 1 MiB or more is its own mapping, returned to the
  // system when freed. glibc's default raises the threshold after each large free, so the
  // per-tensor buffers then come from per-thread arenas that never shrink: compressing a
  // 4 GiB bf16 file peaked at 2.3 GiB resident instead of ~250 MiB (benchmarks/results/io.md).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  CLI::App app{"shrink: compress neural-network weights in safetensors files (docs/tool.md)", "shrink"};
  app.require_subcommand(1);
  int threads = 0;
  bool json = false;
  app.add_option("--threads", threads, "worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  app.add_flag("--json", json, "print results as JSON on stdout");

  std::string in, out, recipe = "int8", against;
  std::optional<double> target_bits, target_size;
  auto* compress = app.add_subcommand("compress", "compress a safetensors model with a recipe");
  compress->add_option("IN", in, "input .safetensors")->required();
  compress->add_option("OUT", out, "output .safetensors (written atomically)")->required();
  compress->add_option("--recipe,-r", recipe,
                       "preset (int8, int4-g32, int4-g128, int<b>-g<G>, codebook4, 2:4, deep-compression, xnor, "
                       "lowrank:energy=E, float) or a JSON recipe file (*.json)");
  compress->add_option("--target-bits", target_bits, "mixed precision: average bits per weight")->check(CLI::PositiveNumber);
  compress->add_option("--target-size", target_size, "mixed precision: total bytes")->check(CLI::PositiveNumber);
  compress->add_option("--threads", threads, "worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  compress->add_flag("--json", json, "print the summary as JSON");

  auto* decompress = app.add_subcommand("decompress", "expand a compressed model to float tensors");
  decompress->add_option("IN", in, "compressed .safetensors")->required();
  decompress->add_option("OUT", out, "output .safetensors")->required();
  decompress->add_option("--threads", threads, "worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);

  auto* inspect = app.add_subcommand("inspect", "list tensors: shape, dtype, scheme, bytes, bits/weight, sparsity, error");
  inspect->add_option("FILE", in, ".safetensors (compressed or not)")->required();
  inspect->add_option("--against", against, "original .safetensors: adds MSE and SQNR");
  inspect->add_flag("--json", json, "print as JSON");

  auto* bench = app.add_subcommand("bench", "time each compressed tensor's kernel against dense fp32 at batch 1 and 16");
  bench->add_option("FILE", in, "compressed .safetensors")->required();
  bench->add_flag("--json", json, "print as JSON");

  int gen_tensors = 4;
  std::int64_t gen_rows = 64, gen_cols = 64;
  std::string gen_dtype = "F32";
  std::uint64_t gen_seed = 1;
  auto* generate = app.add_subcommand("generate", "write a synthetic model (normal weights) for tests and benchmarks");
  generate->add_option("OUT", out, "output .safetensors")->required();
  generate->add_option("--tensors", gen_tensors, "number of weight matrices (each with a 1-D bias)");
  generate->add_option("--rows", gen_rows, "rows per matrix");
  generate->add_option("--cols", gen_cols, "columns per matrix");
  generate->add_option("--dtype", gen_dtype, "F32, F16, BF16 or F64");
  generate->add_option("--seed", gen_seed, "random seed");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? k_exit_ok : k_exit_usage;
  }
  try {
    if (*compress) return run_compress(in, out, recipe, target_bits, target_size, threads, json);
    if (*decompress) {
      compress::decompress_file(in, out, threads);
      return k_exit_ok;
    }
    if (*inspect) return run_inspect(in, against, json);
    if (*bench) return run_bench(in, json);
    if (*generate) return run_generate(out, gen_tensors, gen_rows, gen_cols, gen_dtype, gen_seed);
  } catch (const shrink::error& e) {
    std::fprintf(stderr, "shrink: error [%s]: %s\n", std::string(to_string(e.code())).c_str(), e.what());
    return exit_code(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shrink: error: %s\n", e.what());
    return k_exit_error;
  }
  return k_exit_error;
}
