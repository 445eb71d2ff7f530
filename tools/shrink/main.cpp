// main.cpp: the shrink command-line tool: compress, decompress, inspect, bench and generate safetensors models (docs/tool.md).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <shrink/compress.hpp>
#include <shrink/kernels/dot.hpp>

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

int run_bench(const std::string& file, bool json) {
  const io::safetensors_reader reader(file);
  const auto recs = compress::read_records(reader.header());
  SHRINK_REQUIRE(!recs.empty(), errc::invalid_argument, "bench: '", file, "' has no compressed tensors");
  nlohmann::ordered_json j;
  std::vector<std::vector<std::string>> rows{{"tensor", "scheme", "rows x cols", "batch", "fp32 us", "compressed us", "speedup"}};
  for (const auto& r : recs) {
    const auto rows_n = static_cast<std::size_t>(r.rows()), cols = static_cast<std::size_t>(r.cols());
    const auto w = compress::read_expanded(reader, recs, r.name);
    const auto codes = reader.bytes(reader.at(r.entries.at("codes")));
    aligned_buffer<float> scales(static_cast<std::size_t>(compress::sizes_of(r).scales));
    io::to_float(r.scale_dtype, reader.bytes(reader.at(r.entries.at("scales"))).data(), scales.size(), scales.data());
    for (std::size_t batch : {std::size_t{1}, std::size_t{16}}) {
      std::vector<float> x(cols * batch, 0.5f), y(rows_n * batch), row(cols);
      const double dense = time_it([&] {
        for (std::size_t b = 0; b < batch; ++b)
          for (std::size_t i = 0; i < rows_n; ++i)
            y[b * rows_n + i] = kernels::dot(std::span<const float>(w.data() + i * cols, cols),
                                             std::span<const float>(x.data() + b * cols, cols));
      });
      // The compressed path: expand one row at a time from the stored codes and reuse it
      // across the batch (no packed int kernel is wired up for this scheme yet).
      const double packed = time_it([&] {
        for (std::size_t i = 0; i < rows_n; ++i) {
          if (r.scheme == "int8") {
            const auto* q = reinterpret_cast<const std::int8_t*>(codes.data()) + i * cols;
            for (std::size_t c = 0; c < cols; ++c) row[c] = static_cast<float>(q[c]) * scales[i];
          } else {
            const auto g = static_cast<std::size_t>(r.group), groups = (cols + g - 1) / g;
            const auto* in = reinterpret_cast<const std::uint8_t*>(codes.data()) + i * ((cols * r.bits + 7) / 8);
            const int off = 1 << (r.bits - 1);
            std::size_t bit = 0;
            for (std::size_t c = 0; c < cols; ++c) {
              unsigned u = 0;
              for (int k = 0; k < r.bits; ++k, ++bit) u |= ((in[bit / 8] >> (bit % 8)) & 1u) << k;
              row[c] = static_cast<float>(static_cast<int>(u) - off) * scales[i * groups + c / g];
            }
          }
          for (std::size_t b = 0; b < batch; ++b)
            y[b * rows_n + i] = kernels::dot(std::span<const float>(row), std::span<const float>(x.data() + b * cols, cols));
        }
      });
      rows.push_back({r.name, compress::label(r), std::to_string(rows_n) + "x" + std::to_string(cols), std::to_string(batch),
                      fmt(dense * 1e6, "%.1f"), fmt(packed * 1e6, "%.1f"), fmt(dense / packed, "%.2fx")});
      j["tensors"].push_back({{"name", r.name}, {"scheme", compress::label(r)}, {"rows", rows_n}, {"cols", cols},
                              {"batch", batch}, {"fp32_seconds", dense}, {"compressed_seconds", packed},
                              {"kernel", "dequantize-row + fp32 dot"}});
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

  auto* bench = app.add_subcommand("bench", "time each compressed tensor's matrix-vector product at batch 1 and 16");
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
