// test_kmeans.cpp: 1-D k-means (hand-known optima, DP = brute force, monotone Lloyd), indexed packing, centroid fine-tuning.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "shrink/codebook.hpp"
#include "support/random.hpp"
#include <support/errors.hpp>

using shrink::testing::code_of;

using namespace shrink;
using namespace shrink::codebook;

namespace {

// Independent brute force: every labelling of n points with k labels; cost with cluster means.
double brute_force_sse(const std::vector<float>& x, int k) {
  const std::size_t n = x.size();
  std::size_t total = 1;
  for (std::size_t i = 0; i < n; ++i) total *= static_cast<std::size_t>(k);
  double best = std::numeric_limits<double>::infinity();
  std::array<int, 16> label{};  // n <= 16
  for (std::size_t code = 0; code < total; ++code) {
    std::size_t c = code;
    for (std::size_t i = 0; i < n; ++i, c /= static_cast<std::size_t>(k)) label[i] = static_cast<int>(c % static_cast<std::size_t>(k));
    std::vector<double> sum(static_cast<std::size_t>(k), 0), cnt(static_cast<std::size_t>(k), 0);
    for (std::size_t i = 0; i < n; ++i) {
      sum[static_cast<std::size_t>(label[i])] += x[i];
      cnt[static_cast<std::size_t>(label[i])] += 1;
    }
    double sse = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const auto l = static_cast<std::size_t>(label[i]);
      const double d = x[i] - sum[l] / cnt[l];
      sse += d * d;
    }
    best = std::min(best, sse);
  }
  return best;
}

const init k_inits[] = {init::linear, init::density, init::random, init::kmeans_pp};

}  // namespace

TEST_CASE("radix sort orders floats like std::sort, negatives and signed zero included") {
  auto v = testing::normal_floats(5000, 3);
  v.push_back(-0.0f);
  v.push_back(0.0f);
  v.push_back(-1e30f);
  v.push_back(1e-40f);
  auto expect = v;
  std::sort(expect.begin(), expect.end());
  const auto got = codebook::detail::radix_sort(v, "test");
  REQUIRE(got.size() == expect.size());
  for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == expect[i]);
}

TEST_CASE("two well separated groups give their means with every init and method") {
  // {1,2,3} and {10,11,12}: the optimum is {2, 11} with SSE (1+0+1)*2 = 4, by hand.
  const std::vector<float> x = {12, 1, 11, 3, 2, 10};
  for (auto m : {method::lloyd, method::optimal, method::automatic})
    for (auto i : k_inits) {
      kmeans_options o;
      o.k = 2;
      o.algorithm = m;
      o.initialisation = i;
      const auto r = kmeans_1d(x, o);
      REQUIRE(r.centroids.size() == 2);
      CHECK(r.centroids[0] == 2.0f);
      CHECK(r.centroids[1] == 11.0f);
      CHECK(r.sse == Approx(4.0));
    }
}

TEST_CASE("three clusters known by hand") {
  // {-5,-4} {0.5,1.5} {7,8,9}: centroids -4.5, 1, 8; SSE 0.5 + 0.5 + 2 = 3.
  const std::vector<float> x = {9, -5, 0.5f, 8, -4, 1.5f, 7};
  kmeans_options o;
  o.k = 3;
  o.algorithm = method::optimal;
  const auto r = kmeans_1d(x, o);
  REQUIRE(r.optimal);
  CHECK(r.centroids == std::vector<float>{-4.5f, 1.0f, 8.0f});
  CHECK(r.sse == Approx(3.0));
}

TEST_CASE("dynamic programming equals brute force over all partitions") {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    auto x = testing::uniform_floats(7, seed, -3.0f, 3.0f);
    if (seed == 6) x = {1, 1, 1, 2, 2, 7, 7};  // duplicates
    for (int k = 2; k <= 3; ++k) {
      kmeans_options o;
      o.k = k;
      o.algorithm = method::optimal;
      const auto r = kmeans_1d(x, o);
      INFO("seed " << seed << " k " << k);
      CHECK(r.sse == Approx(brute_force_sse(x, k)).margin(1e-9));
    }
  }
}

TEST_CASE("Lloyd objective never increases and the DP is at least as good") {
  const auto x = testing::normal_floats(20000, 11);
  kmeans_options dp;
  dp.k = 8;
  dp.algorithm = method::optimal;
  const double best = kmeans_1d(x, dp).sse;
  for (auto i : k_inits) {
    kmeans_options o;
    o.k = 8;
    o.algorithm = method::lloyd;
    o.initialisation = i;
    o.iterations = 30;
    o.track_objective = true;
    o.seed = 5;
    const auto r = kmeans_1d(x, o);
    REQUIRE(!r.objective.empty());
    for (std::size_t t = 1; t < r.objective.size(); ++t) CHECK(r.objective[t] <= r.objective[t - 1] * (1 + 1e-12));
    CHECK(best <= r.sse * (1 + 1e-9));
    // Lloyd from any start gets within a few percent of the optimum on a unimodal density.
    CHECK(r.sse <= best * 1.05);
  }
}

TEST_CASE("lazily sorted Lloyd gives the same centroids as Lloyd on the fully sorted data") {
  // track_objective forces the full sort; without it Lloyd sorts only boundary buckets.
  const auto x = testing::normal_floats(100000, 17, 0.0f, 0.1f);
  for (auto i : {init::linear, init::density, init::random})
    for (int k : {4, 16, 64}) {
      kmeans_options o;
      o.k = k;
      o.algorithm = method::lloyd;
      o.initialisation = i;
      o.seed = 3;
      const auto lazy = kmeans_1d(x, o);
      o.track_objective = true;
      const auto full = kmeans_1d(x, o);
      CHECK(lazy.centroids == full.centroids);
      CHECK(lazy.iterations == full.iterations);
      CHECK(lazy.sse == Approx(full.sse).epsilon(1e-9));
    }
}

TEST_CASE("linear init spans min to max and density init follows the quantiles") {
  std::vector<float> x(101);
  for (int i = 0; i <= 100; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(i);
  kmeans_options o;
  o.k = 5;
  o.algorithm = method::lloyd;
  o.iterations = 0;
  const auto lin = kmeans_1d(x, o);
  CHECK(lin.centroids == std::vector<float>{0, 25, 50, 75, 100});
  o.initialisation = init::density;
  const auto den = kmeans_1d(x, o);  // (j + 1/2) * 101 / 5 -> indices 10, 30, 50, 70, 90
  CHECK(den.centroids == std::vector<float>{10, 30, 50, 70, 90});
}

TEST_CASE("seeded inits are deterministic") {
  const auto x = testing::normal_floats(5000, 2);
  for (auto i : {init::random, init::kmeans_pp}) {
    kmeans_options o;
    o.k = 16;
    o.algorithm = method::lloyd;
    o.initialisation = i;
    o.seed = 42;
    CHECK(kmeans_1d(x, o).centroids == kmeans_1d(x, o).centroids);
  }
}

TEST_CASE("k above the number of distinct values gives those values exactly") {
  const std::vector<float> x = {5, 1, 2, 1, 2, 5, 5};
  kmeans_options o;
  o.k = 8;
  const auto r = kmeans_1d(x, o);
  CHECK(r.centroids == std::vector<float>{1, 2, 5});
  CHECK(r.sse == 0.0);
}

TEST_CASE("kmeans_1d rejects k below 2, empty input and non-finite values") {
  kmeans_options o;
  o.k = 1;
  const std::vector<float> x = {1, 2, 3};
  CHECK(code_of([&] { (void)kmeans_1d(x, o); }) == errc::invalid_argument);
  o.k = 2;
  CHECK(code_of([&] { (void)kmeans_1d(std::span<const float>{}, o); }) == errc::empty_input);
  const std::vector<float> nan = {1, std::numeric_limits<float>::quiet_NaN(), 3};
  CHECK(code_of([&] { (void)kmeans_1d(nan, o); }) == errc::non_finite);
  const std::vector<float> inf = {1, std::numeric_limits<float>::infinity()};
  CHECK(code_of([&] { (void)kmeans_1d(inf, o); }) == errc::non_finite);
}

TEST_CASE("nearest sends midpoint ties to the lower centroid") {
  const std::vector<float> c = {0, 2, 10};
  CHECK(nearest(c, 1.0f) == 0);
  CHECK(nearest(c, 1.01f) == 1);
  CHECK(nearest(c, 6.0f) == 1);
  CHECK(nearest(c, -50.0f) == 0);
  CHECK(nearest(c, 50.0f) == 2);
}

TEST_CASE("pruned zeros keep the reserved exact zero code and do not pull centroids") {
  // Non-zeros {1, 1.2} and {-3, -3.4}; with k = 3 the zero takes code 0 and the two
  // non-zero centroids are the group means 1.1 and -3.2 (zeros would drag them otherwise).
  const std::vector<float> w = {0, 1, 1.2f, 0, -3, -3.4f, 0, 0};
  cluster_options o;
  o.k = 3;
  const auto q = cluster(tensor_view<const float, 2>(w.data(), shape<2>{2, 4}), o);
  REQUIRE(q.k() == 3);
  REQUIRE(q.bits() == 2);
  const auto c = q.centroids();
  CHECK(c[0] == 0.0f);
  CHECK(c[1] == Approx(-3.2f));
  CHECK(c[2] == Approx(1.1f));
  const auto idx = q.indices();
  CHECK(idx == std::vector<std::uint8_t>{0, 2, 2, 0, 1, 1, 0, 0});
  const auto e = q.expand();
  for (std::size_t i = 0; i < w.size(); ++i)
    if (w[i] == 0.0f) CHECK(std::signbit(e.span()[i]) == false);
  CHECK(e.span()[0] == 0.0f);
  CHECK(e.span()[7] == 0.0f);
}

TEST_CASE("Deep Compression byte arithmetic: 16 weights, 4 centroids, 512 -> 160 bits") {
  // Han et al. 2016, figure 3: 16 32-bit weights cost 16*32 = 512 bits; with 4 shared
  // weights 16*2 + 4*32 = 160 bits, a 3.2x compression.
  const std::vector<float> w = {2.09f, -0.98f, 1.48f, 0.09f, 0.05f, -0.14f, -1.08f, 2.12f,
                                -0.91f, 1.92f, 0.11f, -1.03f, 1.87f, 1.53f, 1.49f, -0.11f};
  cluster_options o;
  o.k = 4;
  const auto q = cluster(tensor_view<const float, 2>(w.data(), shape<2>{4, 4}), o);
  CHECK(q.bits() == 2);
  CHECK(q.bytes() * 8 == 160);
  CHECK(q.bits_per_weight() == Approx(10.0));
  CHECK(512.0 / (q.bytes() * 8.0) == Approx(3.2));
  // The paper's clusters: {2.09, 2.12, 1.92, 1.87}, {1.48, 1.53, 1.49}, {0.09, 0.05, -0.14,
  // 0.11, -0.11}, {-0.98, -1.08, -0.91, -1.03}; centroids are their means.
  const auto c = q.centroids();
  CHECK(c[0] == Approx(-1.0f));
  CHECK(c[1] == Approx(0.0f).margin(1e-6));
  CHECK(c[2] == Approx(1.5f));
  CHECK(c[3] == Approx(2.0f));
}

TEST_CASE("indexed byte counts for per-tensor and per-row codebooks") {
  const auto w = testing::normal_floats(64 * 100, 9);
  const tensor_view<const float, 2> v(w.data(), shape<2>{64, 100});
  cluster_options o;
  o.k = 16;
  const auto t = cluster(v, o);
  CHECK(t.row_bytes() == 50);
  CHECK(t.bytes() == 64 * 50 + 16 * 4);
  o.per = granularity::per_row;
  const auto r = cluster(v, o, context{2});
  CHECK(r.codebooks() == 64);
  CHECK(r.bytes() == 64 * 50 + 64 * 16 * 4);
  // every expanded weight is exactly an entry of its row's codebook, and the nearest one
  const auto e = r.expand();
  for (index_t i = 0; i < 64; ++i) {
    const auto book = r.codebook_of_row(i);
    for (index_t j = 0; j < 100; ++j) {
      const float x = w[static_cast<std::size_t>(i * 100 + j)], y = e(i, j);
      CHECK(std::find(book.begin(), book.end(), y) != book.end());
      for (float c : book) CHECK(std::abs(x - y) <= std::abs(x - c));
    }
  }
  // same result for any thread count
  const auto r1 = cluster(v, o, context{1});
  CHECK(std::equal(r1.packed_indices().begin(), r1.packed_indices().end(), r.packed_indices().begin()));
}

TEST_CASE("indexed packs indices LSB first, rows byte aligned, and expands exactly") {
  const std::vector<float> book = {-0.5f, 0.25f, 3.0f, 1e-3f};
  const std::vector<std::uint8_t> idx = {0, 1, 2, 3, 3, 2, 1, 0, 2, 2};  // 2 rows x 5
  const indexed q(2, 5, 4, granularity::per_tensor, book, idx);
  REQUIRE(q.row_bytes() == 2);
  const auto p = q.packed_indices();
  CHECK(p[0] == 0xE4);  // 3<<6 | 2<<4 | 1<<2 | 0
  CHECK(p[1] == 0x03);
  CHECK(p[2] == 0x86);  // row 1 = {2, 1, 0, 2, 2}: 2<<6 | 0<<4 | 1<<2 | 2
  CHECK(p[3] == 0x02);
  const auto e = q.expand();
  for (std::size_t i = 0; i < idx.size(); ++i) CHECK(e.span()[i] == book[idx[i]]);
  const auto back = indexed::from_packed(2, 5, 4, granularity::per_tensor, book, p);
  CHECK(back.indices() == idx);
}

TEST_CASE("indexed and cluster reject bad input") {
  const std::vector<float> book = {0, 1, 2};
  const std::vector<std::uint8_t> packed = {0x03};  // index 3 with k = 3
  CHECK(code_of([&] { (void)indexed::from_packed(1, 1, 3, granularity::per_tensor, book, packed); }) == errc::format);
  CHECK(code_of([&] { (void)indexed(1, 2, 3, granularity::per_tensor, book, std::vector<std::uint8_t>{0}); }) ==
        errc::shape_mismatch);
  const std::vector<float> w = {1, 2, std::numeric_limits<float>::quiet_NaN(), 4};
  const tensor_view<const float, 2> v(w.data(), shape<2>{2, 2});
  cluster_options o;
  CHECK(code_of([&] { (void)cluster(v, o); }) == errc::non_finite);
  o.k = 1;
  CHECK(code_of([&] { (void)cluster(v, o); }) == errc::invalid_argument);
  o.k = 257;
  CHECK(code_of([&] { (void)cluster(v, o); }) == errc::invalid_argument);
  o.k = 4;
  CHECK(code_of([&] { (void)cluster(tensor_view<const float, 2>(nullptr, shape<2>{0, 3}), o); }) ==
        errc::empty_input);
}

TEST_CASE("all-zero tensor and few distinct values shrink the codebook") {
  const std::vector<float> zeros(6, 0.0f);
  cluster_options o;
  o.k = 16;
  const auto z = cluster(tensor_view<const float, 2>(zeros.data(), shape<2>{2, 3}), o);
  CHECK(z.k() == 1);
  CHECK(z.centroids()[0] == 0.0f);
  const std::vector<float> few = {0, 2, 2, 0, -1, 2};
  const auto f = cluster(tensor_view<const float, 2>(few.data(), shape<2>{2, 3}), o);
  CHECK(f.k() == 3);
  CHECK(f.bits() == 2);
  const auto e = f.expand();
  for (std::size_t i = 0; i < few.size(); ++i) CHECK(e.span()[i] == few[i]);
}

TEST_CASE("centroid trainer sums the gradients of shared weights and keeps zeros frozen") {
  // Codebook {0, 1, 5}: weights [[1, 1], [5, 0]]; dL/dW = [[0.5, 0.25], [1, 7]].
  // Han et al. eq. 3: dL/dC1 = 0.5 + 0.25, dL/dC2 = 1; the zero code gets nothing.
  const std::vector<float> w = {1, 1, 5, 0};
  cluster_options o;
  o.k = 3;
  centroid_trainer t(cluster(tensor_view<const float, 2>(w.data(), shape<2>{2, 2}), o));
  REQUIRE(std::vector<float>(t.centroids().begin(), t.centroids().end()) == std::vector<float>{0, 1, 5});
  const std::vector<float> g = {0.5f, 0.25f, 1.0f, 7.0f};
  const tensor_view<const float, 2> gv(g.data(), shape<2>{2, 2});
  CHECK(t.gradient(gv) == std::vector<float>{0.0f, 0.75f, 1.0f});
  t.step(gv, 0.1f);
  CHECK(t.centroids()[0] == 0.0f);
  CHECK(t.centroids()[1] == Approx(0.925f));
  CHECK(t.centroids()[2] == Approx(4.9f));
  const auto e = t.expand();
  CHECK(e(0, 0) == Approx(0.925f));
  CHECK(e(0, 1) == Approx(0.925f));
  CHECK(e(1, 0) == Approx(4.9f));
  CHECK(e(1, 1) == 0.0f);
  // gradient shape errors
  const std::vector<float> bad(3, 0.0f);
  CHECK(code_of([&] { (void)t.gradient(tensor_view<const float, 2>(bad.data(), shape<2>{1, 3})); }) ==
        errc::shape_mismatch);
}

TEST_CASE("centroid fine-tuning reduces a quadratic loss towards its target") {
  // L = 1/2 ||W - T||^2 with T the original weights: dL/dW = W - T; a few steps of trained
  // quantization move each centroid to the mean of its weights' targets, lowering L.
  const auto target = testing::normal_floats(32 * 32, 4);
  const tensor_view<const float, 2> tv(target.data(), shape<2>{32, 32});
  cluster_options o;
  o.k = 4;
  o.kmeans.algorithm = method::lloyd;
  o.kmeans.iterations = 1;  // deliberately under-trained
  centroid_trainer t(cluster(tv, o));
  auto loss = [&] {
    const auto e = t.expand();
    double l = 0;
    for (std::size_t i = 0; i < target.size(); ++i) l += 0.5 * std::pow(e.span()[i] - target[i], 2);
    return l;
  };
  double before = loss();
  for (int step = 0; step < 20; ++step) {
    auto e = t.expand();
    std::vector<float> g(target.size());
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = e.span()[i] - target[i];
    t.step(tensor_view<const float, 2>(g.data(), shape<2>{32, 32}), 1.0f / 1024);
    const double after = loss();
    CHECK(after <= before + 1e-9);
    before = after;
  }
}
