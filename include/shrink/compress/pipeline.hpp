// pipeline.hpp: whole-file compress / decompress / inspect over safetensors, streaming with bounded memory and tensors processed in parallel.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../core/aligned_buffer.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../io/safetensors.hpp"
#include "allocator.hpp"
#include "format.hpp"
#include "recipe.hpp"
#include "schemes.hpp"

namespace shrink::compress {

struct compress_options {
  compress::recipe recipe;
  int threads = 0;                          ///< 0 = all cores
  std::optional<double> target_bits;        ///< average bits per weight over all tensors
  std::optional<double> target_size;        ///< total payload bytes
  std::uint64_t memory_budget = 512u << 20;  ///< bytes of float working sets in flight at once
  std::function<void(std::size_t done, std::size_t total)> progress;  ///< called from the writing thread
};

struct tensor_report {
  std::string name;
  std::vector<std::int64_t> shape;
  io::dtype dtype = io::dtype::f32;
  std::string scheme;  ///< "float", "int8", "int4-g32", ...
  std::uint64_t bytes_before = 0, bytes_after = 0;
  double sse = 0;      ///< sum of squared errors against the input
  std::string note;    ///< why the recipe's scheme was not used (kept in float), if so
};

struct compress_report {
  std::vector<tensor_report> tensors;
  std::uint64_t bytes_before = 0, bytes_after = 0;
  std::optional<allocation> alloc;
  double seconds = 0;
};

/// A short label for options, as shown in reports: "int8", "int4-g32", "codebook16", "2:4",
/// "deep-compression", "xnor", "lowrank:energy=0.9", "float".
inline std::string label(const scheme_options& o) {
  if (o.scheme == "int") return "int" + std::to_string(o.bits) + "-g" + std::to_string(o.group);
  if (o.scheme == "codebook") return "codebook" + std::to_string(o.k);
  if (o.scheme == "nm") return std::to_string(o.n) + ":" + std::to_string(o.m);
  if (o.scheme == "deep") {
    if (o.k == 32 && o.sparsity == 0.9) return "deep-compression";  // the preset's own settings
    char buf[64];
    std::snprintf(buf, sizeof buf, "deep-compression:sparsity=%g,k=%d", o.sparsity, o.k);
    return buf;
  }
  if (o.scheme == "lowrank") {
    char buf[48];
    std::snprintf(buf, sizeof buf, "lowrank:energy=%g", o.energy);
    return buf;
  }
  return o.scheme;
}
inline std::string label(const record& r) {
  if (r.scheme == "int") return "int" + std::to_string(r.bits) + "-g" + std::to_string(r.group);
  if (r.scheme == "codebook") return "codebook" + std::to_string(r.k);
  if (r.scheme == "nm") return std::to_string(r.n) + ":" + std::to_string(r.m);
  if (r.scheme == "deep") return "deep-compression";
  if (r.scheme == "lowrank") return "lowrank:rank=" + std::to_string(r.rank);
  return r.scheme;
}

namespace pipeline_impl {

/// Runs fn(i) for i in [0, n) in waves of at most `threads` items whose summed `cost` stays
/// within `budget` (at least one item per wave), then `sink(i)` for each item of the wave in
/// order on the calling thread. Memory in flight is bounded by the budget; output order and
/// content do not depend on the thread count.
template <class Work, class Sink>
void waves(std::size_t n, int threads, std::uint64_t budget, const std::function<std::uint64_t(std::size_t)>& cost,
           Work&& work, Sink&& sink) {
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = i;
    std::uint64_t used = 0;
    while (j < n && j - i < static_cast<std::size_t>(threads) && (j == i || used + cost(j) <= budget)) used += cost(j++);
    context ctx{static_cast<int>(j - i)};
    parallel_for(ctx, static_cast<index_t>(i), static_cast<index_t>(j), 1, [&](index_t b, index_t e) {
      for (index_t k = b; k < e; ++k) work(static_cast<std::size_t>(k));
    });
    for (std::size_t k = i; k < j; ++k) sink(k);
    i = j;
  }
}

inline double sse(std::span<const float> a, std::span<const float> b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  return s;
}

inline double sse_of(const encoded& e, std::span<const float> x) {
  const auto d = decode(e);
  return sse(x, d.span());
}

/// Candidate options of the mixed-precision search for one tensor, those that can store it.
/// Recipes that prune also search the sparsity: "deep" tries sparsities 0.5 ... 0.95 with the
/// recipe's codebook size and with 16 entries; "nm" tries 4:8, 2:4, 1:4, 2:8 and 1:8. Every
/// base also offers float (keep) and int8; the others offer int4, int3 and int2 (groups from
/// the base recipe when it is "int", else 128).
inline std::vector<scheme_options> candidates(const scheme_options& base, const std::vector<std::int64_t>& shape) {
  std::vector<scheme_options> c{{"float", 16, 0}, {"int8", 8, 0}};
  if (base.scheme == "deep") {
    std::vector<int> ks{base.k};
    if (base.k != 16) ks.push_back(16);
    for (int k : ks)
      for (double s : {0.5, 0.7, 0.8, 0.9, 0.95}) {
        scheme_options o;
        o.scheme = "deep";
        o.k = k;
        o.sparsity = s;
        c.push_back(o);
      }
  } else if (base.scheme == "nm") {
    for (auto [n, m] : {std::pair{4, 8}, std::pair{2, 4}, std::pair{1, 4}, std::pair{2, 8}, std::pair{1, 8}}) {
      scheme_options o;
      o.scheme = "nm";
      o.n = n;
      o.m = m;
      c.push_back(o);
    }
  } else {
    const std::int64_t g = base.scheme == "int" ? base.group : 128;
    for (int b : {4, 3, 2}) c.push_back({"int", b, g});
  }
  std::erase_if(c, [&](const scheme_options& o) { return !cannot_store(o, shape).empty(); });
  return c;
}

}  // namespace pipeline_impl

/// Compresses safetensors `in` to `out` with options' recipe (and budget, if any). Tensors are
/// read through mmap, converted and encoded in parallel waves bounded by memory_budget, and
/// streamed to the output; pages of processed tensors are released.
inline compress_report compress_file(const std::filesystem::path& in, const std::filesystem::path& out,
                                     const compress_options& opt) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const io::safetensors_reader reader(in);
  SHRINK_REQUIRE(read_records(reader.header()).empty(), errc::invalid_argument, "compress: '", in.string(),
                 "' is already compressed; decompress it first");
  const auto& ts = reader.tensors();
  const std::size_t n = ts.size();
  const int threads = context{opt.threads}.resolved_threads();

  // Per-tensor options from the recipe.
  std::size_t first = n, last = n;
  for (std::size_t i = 0; i < n; ++i)
    if (ts[i].shape.size() >= 2 && io::is_floating(ts[i].type)) {
      if (first == n) first = i;
      last = i;
    }
  std::vector<scheme_options> chosen(n);
  for (std::size_t i = 0; i < n; ++i) {
    chosen[i] = resolve(opt.recipe, ts[i].name, ts[i].shape.size(), i == first, i == last);
    if (!io::is_floating(ts[i].type) || ts[i].count() == 0) chosen[i].scheme = "float";
  }
  std::vector<std::string> notes(n);
  for (std::size_t i = 0; i < n; ++i) {
    notes[i] = cannot_store(chosen[i], ts[i].shape);
    if (!notes[i].empty()) chosen[i].scheme = "float";
  }
  auto cost = [&](std::size_t i) -> std::uint64_t { return ts[i].count() * 8 + ts[i].nbytes(); };

  compress_report report;
  // Mixed precision: measure every candidate's bytes and error per compressible tensor, then allocate.
  if (opt.target_bits || opt.target_size) {
    SHRINK_REQUIRE(!(opt.target_bits && opt.target_size), errc::invalid_argument,
                   "compress: give --target-bits or --target-size, not both");
    std::uint64_t weights = 0;
    for (const auto& t : ts) weights += t.count();
    const double budget = opt.target_size ? *opt.target_size : *opt.target_bits * static_cast<double>(weights) / 8.0;
    SHRINK_REQUIRE(budget > 0, errc::invalid_argument, "compress: the target must be positive");
    std::vector<tensor_costs> costs(n);
    std::vector<std::vector<scheme_options>> cands(n);
    pipeline_impl::waves(n, threads, opt.memory_budget, cost,
          [&](std::size_t i) {
            costs[i].name = ts[i].name;
            if (chosen[i].scheme == "float") {
              costs[i].options = {{static_cast<double>(ts[i].nbytes()), 0.0}};
              return;
            }
            const auto x = reader.read_float(ts[i]);
            cands[i] = pipeline_impl::candidates(opt.recipe.base, ts[i].shape);
            for (const auto& c : cands[i]) {
              if (c.scheme == "float") {
                costs[i].options.push_back({static_cast<double>(ts[i].nbytes()), 0.0});
                continue;
              }
              const encoded e = encode(ts[i].name, x.span(), ts[i].shape, ts[i].type, c);
              costs[i].options.push_back({static_cast<double>(e.bytes()), pipeline_impl::sse_of(e, x.span())});
            }
            reader.release(ts[i]);
          },
          [](std::size_t) {});
    const allocation a = allocate_greedy(costs, budget);
    for (std::size_t i = 0; i < n; ++i)
      if (chosen[i].scheme != "float") chosen[i] = cands[i][a.choice[i]];
    report.alloc = a;
  }

  io::safetensors_writer writer(out);
  std::map<std::string, std::string> meta = reader.metadata();
  meta[std::string(k_format_key)] = std::string(k_format_version);
  std::vector<std::optional<encoded>> results(n);
  report.tensors.resize(n);
  std::size_t done = 0;
  pipeline_impl::waves(n, threads, opt.memory_budget, cost,
        [&](std::size_t i) {
          auto& r = report.tensors[i];
          r.name = ts[i].name;
          r.shape = ts[i].shape;
          r.dtype = ts[i].type;
          r.bytes_before = ts[i].nbytes();
          r.scheme = label(chosen[i]);
          r.note = notes[i];
          if (chosen[i].scheme != "float") {
            const auto x = reader.read_float(ts[i]);
            results[i] = encode(ts[i].name, x.span(), ts[i].shape, ts[i].type, chosen[i]);
            r.sse = pipeline_impl::sse_of(*results[i], x.span());
            r.bytes_after = results[i]->bytes();
            reader.release(ts[i]);
          } else {
            r.bytes_after = ts[i].nbytes();
          }
        },
        [&](std::size_t i) {
          if (results[i]) {
            for (const auto& e : results[i]->entries) writer.add(e.name, e.type, e.shape, e.bytes.span());
            meta[std::string(k_record_prefix) + ts[i].name] = to_json(results[i]->rec);
            results[i].reset();
          } else {
            writer.add(ts[i].name, ts[i].type, ts[i].shape, reader.bytes(ts[i]));
            reader.release(ts[i]);
          }
          if (opt.progress) opt.progress(++done, n);
        });
  writer.set_metadata(std::move(meta));
  writer.finish();
  for (const auto& r : report.tensors) {
    report.bytes_before += r.bytes_before;
    report.bytes_after += r.bytes_after;
  }
  report.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return report;
}

/// One tensor of a (possibly compressed) file, expanded to float.
struct expanded_tensor {
  std::string name;
  std::vector<std::int64_t> shape;
  io::dtype dtype;       ///< original dtype
  std::string scheme;    ///< "float" for plain entries
  std::uint64_t bytes;   ///< stored bytes (all entries of a record)
};

/// Lists the logical tensors of a file in data order: records expand to their original name;
/// entries owned by a record are not listed on their own.
inline std::vector<expanded_tensor> list_tensors(const io::safetensors_reader& reader, const std::vector<record>& recs) {
  std::map<std::string, const record*> owner;
  for (const auto& r : recs)
    for (const auto& [role, entry] : r.entries) owner[entry] = &r;
  std::vector<expanded_tensor> out;
  std::set<std::string> seen;
  for (const auto& t : reader.tensors()) {
    const auto it = owner.find(t.name);
    if (it == owner.end()) {
      out.push_back({t.name, t.shape, t.type, "float", t.nbytes()});
      continue;
    }
    const record& r = *it->second;
    if (!seen.insert(r.name).second) continue;
    std::uint64_t bytes = 0;
    for (const auto& [role, entry] : r.entries) bytes += reader.at(entry).nbytes();
    out.push_back({r.name, r.shape, r.dtype, label(r), bytes});
  }
  return out;
}

/// The floats of logical tensor `name` (decoded if compressed).
inline aligned_buffer<float> read_expanded(const io::safetensors_reader& reader, const std::vector<record>& recs,
                                           const std::string& name) {
  for (const auto& r : recs)
    if (r.name == name) {
      entry_bytes b;
      for (const auto& [role, entry] : r.entries) b[role] = reader.bytes(reader.at(entry));
      return decode(r, b);
    }
  return reader.read_float(reader.at(name));
}

/// Expands a compressed file back to a plain safetensors file: original names, shapes and
/// dtypes; plain entries are copied unchanged; the user's metadata is kept, shrink's removed.
inline void decompress_file(const std::filesystem::path& in, const std::filesystem::path& out, int threads = 0) {
  const io::safetensors_reader reader(in);
  const auto recs = read_records(reader.header());
  const auto list = list_tensors(reader, recs);
  io::safetensors_writer writer(out);
  std::map<std::string, std::string> meta;
  for (const auto& [k, v] : reader.metadata())
    if (k != k_format_key && k.rfind(k_record_prefix, 0) != 0) meta[k] = v;
  writer.set_metadata(std::move(meta));
  std::vector<aligned_buffer<std::byte>> out_bytes(list.size());
  auto cost = [&](std::size_t i) -> std::uint64_t {
    return list[i].scheme == "float" ? 0 : io::checked_count(list[i].shape, "decompress") * (4 + io::size_of(list[i].dtype));
  };
  pipeline_impl::waves(list.size(), context{threads}.resolved_threads(), 512u << 20, cost,
                       [&](std::size_t i) {
                         const auto& t = list[i];
                         if (t.scheme == "float") return;
                         const auto x = read_expanded(reader, recs, t.name);
                         out_bytes[i] = aligned_buffer<std::byte>(x.size() * io::size_of(t.dtype));
                         io::from_float(t.dtype, x.data(), x.size(), out_bytes[i].data());
                       },
                       [&](std::size_t i) {
                         const auto& t = list[i];
                         if (t.scheme == "float") {
                           const auto& e = reader.at(t.name);
                           writer.add(t.name, t.dtype, t.shape, reader.bytes(e));
                           reader.release(e);
                         } else {
                           writer.add(t.name, t.dtype, t.shape, out_bytes[i].span());
                           out_bytes[i] = {};
                         }
                       });
  writer.finish();
}

}  // namespace shrink::compress
