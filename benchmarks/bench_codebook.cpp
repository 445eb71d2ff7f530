// bench_codebook.cpp: 1-D k-means and PQ training against Faiss, Huffman decode speed, and index-stream sizes (Huffman vs zstd).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "shrink/codebook.hpp"
#include "shrink/encode.hpp"
#include "support/bench.hpp"

#if defined(SHRINK_HAVE_FAISS)
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/impl/ProductQuantizer.h>
#include <omp.h>
#endif

// zstd is optional and not linked by the benchmark build: load it at run time when present.
#if __has_include(<zstd.h>) && __has_include(<dlfcn.h>)
#include <dlfcn.h>
#include <zstd.h>
#define SHRINK_BENCH_ZSTD 1
#endif

namespace {

using namespace shrink;

const std::vector<float>& weights_4m() {
  static const std::vector<float> w = [] {
    std::mt19937_64 rng(1);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(std::size_t{1} << 22);
    for (auto& x : v) x = d(rng);
    return v;
  }();
  return w;
}

const std::vector<float>& pq_data() {
  static const std::vector<float> w = [] {
    std::mt19937_64 rng(2);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(65536 * 64);
    for (auto& x : v) x = d(rng);
    return v;
  }();
  return w;
}

// Mean squared error of the data against sorted centroids (nearest-centroid assignment).
double kmeans_mse(const std::vector<float>& x, std::vector<float> c) {
  std::sort(c.begin(), c.end());
  double s = 0;
  for (float v : x) {
    const double d = static_cast<double>(v) - c[codebook::nearest(c, v)];
    s += d * d;
  }
  return s / static_cast<double>(x.size());
}

// Best of the initialisations on this data (each costs a sort): linear for large k, density
// for small k; see benchmarks/results/codebook.md.
void kmeans1d_shrink(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const auto& x = weights_4m();
  codebook::kmeans_options o;
  o.k = k;
  o.algorithm = codebook::method::lloyd;
  o.iterations = 20;
  o.initialisation = k <= 16 ? codebook::init::density : codebook::init::linear;
  codebook::kmeans_result r;
  for (auto _ : state) {
    r = codebook::kmeans_1d(x, o);
    benchmark::DoNotOptimize(r.centroids.data());
  }
  state.counters["MSE"] = kmeans_mse(x, r.centroids);
  state.counters["iterations"] = r.iterations;
}

#if defined(SHRINK_HAVE_FAISS)
void kmeans1d_faiss(benchmark::State& state) {
  omp_set_num_threads(1);
  const int k = static_cast<int>(state.range(0));
  const auto& x = weights_4m();
  std::vector<float> c;
  for (auto _ : state) {
    faiss::ClusteringParameters p;
    p.niter = 20;
    p.max_points_per_centroid = 1 << 30;  // cluster all 4M points, as shrink does
    faiss::Clustering clus(1, static_cast<std::size_t>(k), p);
    faiss::IndexFlatL2 index(1);
    clus.train(static_cast<faiss::Index::idx_t>(x.size()), x.data(), index);
    c = clus.centroids;
  }
  state.counters["MSE"] = kmeans_mse(x, c);
}
#endif

double pq_mse(const std::vector<float>& x, const std::vector<float>& y) {
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += std::pow(static_cast<double>(x[i]) - y[i], 2);
  return s / static_cast<double>(x.size());
}

void pq_train_shrink(benchmark::State& state) {
  const auto& x = pq_data();
  const tensor_view<const float, 2> v(x.data(), shape<2>{65536, 64});
  codebook::pq_options o;
  o.sub_dim = 8;
  o.k = 256;
  o.iterations = 25;
  codebook::pq_codebook pq;
  for (auto _ : state) {
    pq = codebook::train_pq(v, o, context{1});
    benchmark::DoNotOptimize(pq.centroids.data());
  }
  const auto y = codebook::decode_pq(pq, codebook::encode_pq(pq, v, context{1}));
  state.counters["MSE"] = pq_mse(x, std::vector<float>(y.span().begin(), y.span().end()));
}

#if defined(SHRINK_HAVE_FAISS)
void pq_train_faiss(benchmark::State& state) {
  omp_set_num_threads(1);
  const auto& x = pq_data();
  faiss::ProductQuantizer pq(64, 8, 8);
  for (auto _ : state) {
    pq = faiss::ProductQuantizer(64, 8, 8);
    pq.cp.niter = 25;
    pq.train(65536, x.data());
  }
  std::vector<std::uint8_t> codes(65536 * pq.code_size);
  pq.compute_codes(x.data(), codes.data(), 65536);
  std::vector<float> y(x.size());
  pq.decode(codes.data(), y.data(), 65536);
  state.counters["MSE"] = pq_mse(x, y);
}
#endif

#if defined(SHRINK_BENCH_ZSTD)
// Compressed size of `bytes` with zstd at `level`, or 0 when libzstd cannot be loaded.
std::size_t zstd_size(const std::vector<std::uint8_t>& bytes, int level) {
  static void* lib = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return 0;
  static auto bound = reinterpret_cast<decltype(&ZSTD_compressBound)>(dlsym(lib, "ZSTD_compressBound"));
  static auto compress = reinterpret_cast<decltype(&ZSTD_compress)>(dlsym(lib, "ZSTD_compress"));
  static auto is_error = reinterpret_cast<decltype(&ZSTD_isError)>(dlsym(lib, "ZSTD_isError"));
  if (!bound || !compress || !is_error) return 0;
  std::vector<std::uint8_t> out(bound(bytes.size()));
  const std::size_t n = compress(out.data(), out.size(), bytes.data(), bytes.size(), level);
  return is_error(n) ? 0 : n;
}
#else
std::size_t zstd_size(const std::vector<std::uint8_t>&, int) { return 0; }
#endif

// Codebook indices of the 4M weights at k = 16 (4 bits fixed width).
const std::vector<std::uint8_t>& indices_k16() {
  static const std::vector<std::uint8_t> idx = [] {
    const auto& x = weights_4m();
    codebook::cluster_options o;
    o.k = 16;
    o.kmeans.algorithm = codebook::method::lloyd;
    o.kmeans.initialisation = codebook::init::density;
    return codebook::cluster(tensor_view<const float, 2>(x.data(), shape<2>{1, static_cast<index_t>(x.size())}), o)
        .indices();
  }();
  return idx;
}

// Relative gaps (5 bits) of the 4M weights pruned to 10% by magnitude (|w| > 1.645).
const encode::relative_stream<float>& gaps_4m() {
  static const encode::relative_stream<float> s = [] {
    auto x = weights_4m();
    for (auto& v : x)
      if (std::abs(v) <= 1.645f) v = 0.0f;
    return encode::encode_relative(x, 5);
  }();
  return s;
}

void report_sizes(benchmark::State& state, const std::vector<std::uint8_t>& symbols, int fixed_bits,
                  double per, const std::vector<std::uint8_t>& stream) {
  state.counters["fixed_bits_per"] = fixed_bits * static_cast<double>(symbols.size()) / per;
  state.counters["huffman_bits_per"] = 8.0 * static_cast<double>(stream.size()) / per;
  std::vector<std::uint8_t> packed(packed_bytes(symbols.size(), fixed_bits));
  pack_bits(symbols, fixed_bits, packed);
  state.counters["zstd19_packed_bits_per"] = 8.0 * static_cast<double>(zstd_size(packed, 19)) / per;
  state.counters["zstd19_bytes_bits_per"] = 8.0 * static_cast<double>(zstd_size(symbols, 19)) / per;
}

void huffman_decode_indices(benchmark::State& state) {
  const auto& idx = indices_k16();
  const auto stream = encode::huffman_encode(idx);
  const encode::huffman_decoder d(stream);
  std::vector<std::uint8_t> out(idx.size());
  for (auto _ : state) {
    d.decode(out);
    benchmark::DoNotOptimize(out.data());
  }
  if (out != idx) state.SkipWithError("round trip failed");
  state.counters["Msym/s"] = benchmark::Counter(static_cast<double>(idx.size()) * static_cast<double>(state.iterations()) / 1e6,
                                                benchmark::Counter::kIsRate);
  report_sizes(state, idx, 4, static_cast<double>(idx.size()), stream);  // bits per weight
}

void huffman_decode_gaps(benchmark::State& state) {
  const auto& s = gaps_4m();
  const auto stream = encode::huffman_encode(s.gaps);
  const encode::huffman_decoder d(stream);
  std::vector<std::uint8_t> out(s.gaps.size());
  for (auto _ : state) {
    d.decode(out);
    benchmark::DoNotOptimize(out.data());
  }
  if (out != s.gaps) state.SkipWithError("round trip failed");
  state.counters["Msym/s"] = benchmark::Counter(static_cast<double>(out.size()) * static_cast<double>(state.iterations()) / 1e6,
                                                benchmark::Counter::kIsRate);
  // index bits per stored non-zero (fillers included in the stream)
  report_sizes(state, s.gaps, 5, static_cast<double>(s.gaps.size() - s.fillers), stream);
  state.counters["fillers"] = static_cast<double>(s.fillers);
}

void huffman_encode_indices(benchmark::State& state) {
  const auto& idx = indices_k16();
  for (auto _ : state) {
    auto stream = encode::huffman_encode(idx);
    benchmark::DoNotOptimize(stream.data());
  }
  state.counters["Msym/s"] = benchmark::Counter(static_cast<double>(idx.size()) * static_cast<double>(state.iterations()) / 1e6,
                                                benchmark::Counter::kIsRate);
}

void cluster_indexed(benchmark::State& state) {
  const auto& x = weights_4m();
  codebook::cluster_options o;
  o.k = 16;
  o.kmeans.algorithm = codebook::method::lloyd;
  for (auto _ : state) {
    auto q = codebook::cluster(tensor_view<const float, 2>(x.data(), shape<2>{2048, 2048}), o, context{1});
    benchmark::DoNotOptimize(q.packed_indices().data());
    state.counters["bits_per_weight"] = q.bits_per_weight();
  }
}

const int registered = [] {
  for (int k : {16, 256}) {
    const std::string shape = "4M_k" + std::to_string(k);
    benchmark::RegisterBenchmark(bench::name("kmeans1d", "shrink", shape).c_str(), kmeans1d_shrink)
        ->Arg(k)
        ->Unit(benchmark::kMillisecond);
#if defined(SHRINK_HAVE_FAISS)
    benchmark::RegisterBenchmark(bench::name("kmeans1d", "faiss", shape).c_str(), kmeans1d_faiss)
        ->Arg(k)
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
#endif
  }
  benchmark::RegisterBenchmark(bench::name("pq_train", "shrink", "65536x64_m8k256").c_str(), pq_train_shrink)
      ->Unit(benchmark::kMillisecond);
#if defined(SHRINK_HAVE_FAISS)
  benchmark::RegisterBenchmark(bench::name("pq_train", "faiss", "65536x64_m8k256").c_str(), pq_train_faiss)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
#endif
  benchmark::RegisterBenchmark(bench::name("huffman_decode", "shrink", "4M_k16_indices").c_str(), huffman_decode_indices)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(bench::name("huffman_decode", "shrink", "4M_p10_gaps5").c_str(), huffman_decode_gaps)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(bench::name("huffman_encode", "shrink", "4M_k16_indices").c_str(), huffman_encode_indices)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(bench::name("cluster", "shrink", "2048x2048_k16").c_str(), cluster_indexed)
      ->Unit(benchmark::kMillisecond);
  return 0;
}();

}  // namespace
