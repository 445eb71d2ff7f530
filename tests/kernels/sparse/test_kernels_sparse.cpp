// test_kernels_sparse.cpp: SpMV, SpMM and sparse conv for CSR/N:M/BSR/codebook fp32 and CSR int8 on every ISA path, against dense oracles.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <shrink/kernels/sparse_conv.hpp>
#include <shrink/kernels/spmm_csr.hpp>
#include <shrink/kernels/spmm_int8.hpp>
#include <shrink/sparse.hpp>
#include <support/isa.hpp>
#include <support/random.hpp>
#include <tuple>
#include <vector>

using namespace shrink;
namespace k = shrink::kernels;
namespace sp = shrink::sparse;

namespace {

// W·X for a dense [rows, cols] matrix (zeros where pruned) and X [cols, batch], in double,
// with Σ|w·x| per output: the fp32 bound is n·u·Σ|w·x|, n the entries in the row (any
// summation order, Higham, "Accuracy and Stability of Numerical Algorithms", 3.1).
struct oracle {
  std::vector<double> exact, magnitude;
  std::vector<index_t> count;
};

oracle dense_product(const std::vector<float>& w, index_t rows, index_t cols, const std::vector<float>& x,
                     index_t batch) {
  oracle o{std::vector<double>(static_cast<std::size_t>(rows * batch)),
           std::vector<double>(static_cast<std::size_t>(rows * batch)), std::vector<index_t>(static_cast<std::size_t>(rows))};
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) {
      const double wij = w[static_cast<std::size_t>(i * cols + j)];
      if (wij == 0.0) continue;
      ++o.count[static_cast<std::size_t>(i)];
      for (index_t b = 0; b < batch; ++b) {
        const double p = wij * x[static_cast<std::size_t>(j * batch + b)];
        o.exact[static_cast<std::size_t>(i * batch + b)] += p;
        o.magnitude[static_cast<std::size_t>(i * batch + b)] += std::abs(p);
      }
    }
  return o;
}

void check_close(const std::vector<float>& y, const oracle& o, index_t batch) {
  for (std::size_t t = 0; t < y.size(); ++t) {
    const auto n = static_cast<double>(o.count[t / static_cast<std::size_t>(batch)]);
    const double bound = (n + 1) * std::ldexp(1.0, -24) * o.magnitude[t] + 1e-30;
    INFO("output " << t << " got " << y[t] << " expected " << o.exact[t]);
    REQUIRE(std::abs(static_cast<double>(y[t]) - o.exact[t]) <= bound);
  }
}

std::vector<std::uint8_t> random_mask(index_t rows, index_t cols, double keep, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution on(keep);
  std::vector<std::uint8_t> m(static_cast<std::size_t>(rows * cols));
  for (auto& v : m) v = on(rng) ? 1 : 0;
  for (index_t j = 0; j < cols; ++j) m[static_cast<std::size_t>(2 * cols + j)] = 0;  // an empty row
  for (index_t j = 0; j < cols; ++j) m[static_cast<std::size_t>(3 * cols + j)] = 1;  // a full row
  return m;
}

std::vector<float> masked(const std::vector<float>& w, const std::vector<std::uint8_t>& m) {
  std::vector<float> out(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) out[i] = m[i] ? w[i] : 0.0f;
  return out;
}

/// The exact int32 product of the masked int8 codes (rows × cols) with X (cols × batch).
std::vector<std::int32_t> masked_int8_product(const std::vector<std::int8_t>& q, const std::vector<std::uint8_t>& m,
                                              const std::vector<std::int8_t>& x, index_t rows, index_t cols,
                                              index_t batch) {
  std::vector<std::int32_t> out(static_cast<std::size_t>(rows * batch), 0);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j)
      if (m[static_cast<std::size_t>(i * cols + j)])
        for (index_t b = 0; b < batch; ++b)
          out[static_cast<std::size_t>(i * batch + b)] +=
              int{q[static_cast<std::size_t>(i * cols + j)]} * int{x[static_cast<std::size_t>(j * batch + b)]};
  return out;
}

const std::vector<index_t> k_batches{1, 2, 7, 8, 16, 17, 33, 64, 100, 129, 256};

// Runs spmv (batch 1) and spmm for every batch on every path and checks the bound.
template <class V>
void check_plan(const k::sparse_plan<V>& plan, const std::vector<float>& dense_w) {
  const index_t rows = plan.rows, cols = plan.cols;
  for (index_t batch : k_batches) {
    const auto x = testing::normal_floats(static_cast<std::size_t>(cols * batch), 100 + static_cast<std::uint64_t>(batch));
    const auto o = dense_product(dense_w, rows, cols, x, batch);
    testing::for_each_isa([&](k::isa) {
      INFO("batch " << batch);
      std::vector<float> y(static_cast<std::size_t>(rows * batch), -1.0f);
      k::spmm(plan, const_view<float, 2>(x.data(), shape<2>{cols, batch}),
              tensor_view<float, 2>(y.data(), shape<2>{rows, batch}), context{1});
      check_close(y, o, batch);
      if (batch == 1) {
        std::vector<float> yv(static_cast<std::size_t>(rows), -1.0f);
        k::spmv(plan, std::span<const float>(x), std::span<float>(yv), context{1});
        check_close(yv, o, 1);
      }
    });
  }
}

}  // namespace

TEST_CASE("spmv/spmm csr f32: every path within n·u·Σ|w·x| of the exact product") {
  const index_t rows = 45, cols = 83;
  const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 1);
  const auto m = random_mask(rows, cols, 0.3, 2);
  const auto a = sp::csr_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{rows, cols}),
                                         const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
  check_plan(k::make_plan(a), masked(w, m));
}

TEST_CASE("spmv/spmm n:m f32: 2:4 and 4:8 plans match the dense product") {
  for (auto [n, mm] : {std::pair<index_t, index_t>{2, 4}, {4, 8}}) {
    INFO(n << ":" << mm);
    const index_t rows = 20, cols = 96;
    const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 3);
    std::vector<std::uint8_t> m(w.size(), 0);
    std::mt19937_64 rng(4);
    for (index_t i = 0; i < rows; ++i)
      for (index_t g = 0; g < cols / mm; ++g)
        for (index_t t = 0; t < n; ++t) m[static_cast<std::size_t>(i * cols + g * mm + static_cast<index_t>(rng() % static_cast<unsigned>(mm)))] = 1;
    const auto a = sp::nm_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{rows, cols}),
                                          const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}), n, mm);
    check_plan(k::make_plan(a), masked(w, m));
  }
}

// An N:M mask with exactly n distinct kept positions in every group of m (so the N:M plan
// and a CSR plan of the same matrix hold the same entries in the same order).
static std::vector<std::uint8_t> exact_nm_mask(index_t rows, index_t cols, index_t n, index_t mm, std::uint64_t seed) {
  std::vector<std::uint8_t> m(static_cast<std::size_t>(rows * cols), 0);
  std::mt19937_64 rng(seed);
  std::vector<index_t> pos(static_cast<std::size_t>(mm));
  for (index_t i = 0; i < rows; ++i)
    for (index_t g = 0; g < cols / mm; ++g) {
      for (index_t t = 0; t < mm; ++t) pos[static_cast<std::size_t>(t)] = t;
      std::shuffle(pos.begin(), pos.end(), rng);
      for (index_t t = 0; t < n; ++t) m[static_cast<std::size_t>(i * cols + g * mm + pos[static_cast<std::size_t>(t)])] = 1;
    }
  return m;
}

// Shapes that exercise the cache-blocked N:M SpMM (batch >= 32): more rows than one
// 64-row block and not a multiple of it, a last column block narrower than 64, and an M
// that does not divide 64 (1:3, where the blocks are found by scanning the columns).
TEST_CASE("spmm n:m f32 blocked: 2:4 4:8 1:3 over several row and column blocks match the dense product") {
  for (auto [n, mm, cols] : {std::tuple<index_t, index_t, index_t>{2, 4, 200}, {4, 8, 200}, {1, 3, 201}}) {
    INFO(n << ":" << mm);
    const index_t rows = 150;
    const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 21);
    const auto m = exact_nm_mask(rows, cols, n, mm, 22);
    const auto a = sp::nm_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{rows, cols}),
                                          const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}), n, mm);
    check_plan(k::make_plan(a), masked(w, m));
  }
}

// The blocked kernel runs each output's FMAs in the row-at-a-time order (entry order from
// 0), so an N:M plan and a CSR plan of the same matrix give the same bits on every path.
TEST_CASE("spmm n:m f32 blocked: same bits as the csr plan of the same matrix and for any thread count") {
  const index_t rows = 131, cols = 136;
  const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 23);
  const auto m = exact_nm_mask(rows, cols, 2, 4, 24);
  const const_view<float, 2> wv(w.data(), shape<2>{rows, cols});
  const const_view<std::uint8_t, 2> mv(m.data(), shape<2>{rows, cols});
  const auto nm_plan = k::make_plan(sp::nm_f32::from_dense(wv, mv, 2, 4));
  const auto csr_plan = k::make_plan(sp::csr_f32::from_dense(wv, mv));
  REQUIRE(nm_plan.group_cols == 4);
  REQUIRE(nm_plan.group_entries == 2);
  REQUIRE(csr_plan.group_cols == 0);
  for (index_t batch : {32, 64, 72, 100, 160}) {
    const auto x = testing::normal_floats(static_cast<std::size_t>(cols * batch), 25 + static_cast<std::uint64_t>(batch));
    const const_view<float, 2> xv(x.data(), shape<2>{cols, batch});
    testing::for_each_isa([&](k::isa) {
      INFO("batch " << batch);
      std::vector<float> y_nm(static_cast<std::size_t>(rows * batch), -1.0f), y_csr(y_nm.size(), -2.0f);
      k::spmm(nm_plan, xv, tensor_view<float, 2>(y_nm.data(), shape<2>{rows, batch}), context{1});
      k::spmm(csr_plan, xv, tensor_view<float, 2>(y_csr.data(), shape<2>{rows, batch}), context{1});
      CHECK(y_nm == y_csr);
      for (int t : {2, 3}) {
        std::vector<float> yt(y_nm.size(), -3.0f);
        k::spmm(nm_plan, xv, tensor_view<float, 2>(yt.data(), shape<2>{rows, batch}), context{t});
        CHECK(yt == y_nm);
      }
    });
  }
}

TEST_CASE("spmv/spmm bsr f32: blocks 1x4 4x1 8x1 16x1 4x4 match the dense product") {
  for (auto blk : {sp::block_shape{1, 4}, sp::block_shape{4, 1}, sp::block_shape{8, 1}, sp::block_shape{16, 1},
                   sp::block_shape{4, 4}}) {
    INFO("block " << blk.rows << "x" << blk.cols);
    const index_t rows = 32, cols = 40;
    const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 5);
    const auto m = random_mask(rows, cols, 0.05, 6);
    const auto a = sp::bsr_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{rows, cols}),
                                           const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}), blk);
    // the oracle is the block-expanded matrix: W inside touched blocks where masked in.
    check_plan(k::make_plan(a), masked(w, m));
  }
}

TEST_CASE("spmv/spmm bsr int8: blocks 1x4 4x1 8x1 16x1 4x4 give the exact int32 product on every path") {
  for (auto blk : {sp::block_shape{1, 4}, sp::block_shape{4, 1}, sp::block_shape{8, 1}, sp::block_shape{16, 1},
                   sp::block_shape{4, 4}}) {
    const index_t rows = 32, cols = 160;  // rows of up to 160 entries: several 32-entry steps per row
    auto q = testing::full_range<std::int8_t>(static_cast<std::size_t>(rows * cols), 31);
    auto m = random_mask(rows, cols, 0.1, 32);
    for (index_t j = 0; j < cols; ++j) m[static_cast<std::size_t>(5 * cols + j)] = 1;  // a full row (block row)
    std::vector<float> scales(static_cast<std::size_t>(rows), 0.25f);
    const auto a = sp::bsr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{rows, cols}), scales,
                                                const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}), blk);
    const auto plan = k::make_plan(a);
    CHECK(plan.run == blk.cols);
    CHECK(plan.row_group == blk.rows);
    CHECK(plan.row_scale[0] == 0.25f);
    for (index_t batch : {index_t{1}, index_t{7}, index_t{64}, index_t{100}})
      for (const bool x_min : {false, true}) {
        auto x = testing::full_range<std::int8_t>(static_cast<std::size_t>(cols * batch), 33 + static_cast<std::uint64_t>(batch));
        for (auto& v : x)
          if (v == -128 && !x_min) v = -127;
        if (x_min) x[0] = -128;
        // Oracle: the masked codes (the zeros a kept block stores add nothing).
        const auto expected = masked_int8_product(q, m, x, rows, cols, batch);
        testing::for_each_isa([&](k::isa) {
          INFO("block " << blk.rows << "x" << blk.cols << " batch " << batch << " x has -128 " << x_min);
          for (int threads : {1, 3}) {
            std::vector<std::int32_t> y(expected.size(), 7);
            k::spmm(plan, const_view<std::int8_t, 2>(x.data(), shape<2>{cols, batch}),
                    tensor_view<std::int32_t, 2>(y.data(), shape<2>{rows, batch}), context{threads});
            REQUIRE(y == expected);
            if (batch == 1) {  // runs of 4 columns (c = 4): one 32-bit x load per run
              std::vector<std::int32_t> yv(expected.size(), 7);
              k::spmv(plan, std::span<const std::int8_t>(x), std::span<std::int32_t>(yv), context{threads});
              REQUIRE(yv == expected);
              for (const auto layout : {k::spmv_layout::automatic, k::spmv_layout::index32, k::spmv_layout::bitmap,
                                        k::spmv_layout::delta8, k::spmv_layout::window16}) {
                std::vector<std::int32_t> yp(expected.size(), 7);
                k::spmv(k::make_spmv_plan(a, layout), std::span<const std::int8_t>(x), std::span<std::int32_t>(yp),
                        context{threads});
                REQUIRE(yp == expected);
              }
            }
          }
        });
      }
  }
}

TEST_CASE("spmv/spmm csr codebook: 8, 16 and 40 centroids decode through the table") {
  for (std::size_t kc : {3u, 8u, 16u, 40u}) {
    INFO(kc << " centroids");
    const index_t rows = 26, cols = 70;
    std::mt19937_64 rng(kc);
    std::vector<std::uint8_t> idx(static_cast<std::size_t>(rows * cols));
    for (auto& i : idx) i = static_cast<std::uint8_t>(rng() % kc);
    const auto cent = testing::normal_floats(kc, 7 + kc);
    const auto m = random_mask(rows, cols, 0.35, 8);
    const auto a = sp::csr_codebook::from_indices(const_view<std::uint8_t, 2>(idx.data(), shape<2>{rows, cols}), cent,
                                                  const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
    std::vector<float> dense(idx.size());
    for (std::size_t t = 0; t < idx.size(); ++t) dense[t] = m[t] ? cent[idx[t]] : 0.0f;
    check_plan(k::make_plan(a), dense);
  }
}

TEST_CASE("spmv/spmm csr int8: bit-exact int32 on every path, extremes and last columns included") {
  // X with −128 takes the int16-widening tiles; X without it (the AVX2 quad tiles, which
  // negate x by the weight's sign) must give the same exact sums, −128 weights included.
  for (const bool x_has_min : {true, false})
    for (index_t cols : {5, 67, 130}) {
      const index_t rows = 19;
      auto q = testing::full_range<std::int8_t>(static_cast<std::size_t>(rows * cols), 9 + static_cast<std::uint64_t>(cols));
      auto m = random_mask(rows, cols, 0.5, 10);
      for (index_t j = 0; j < cols; ++j) q[static_cast<std::size_t>(4 * cols + j)] = -128;  // row 4: extreme weights
      for (index_t j = 0; j < cols; ++j) m[static_cast<std::size_t>(4 * cols + j)] = 1;
      for (index_t j = 0; j < cols; ++j) m[static_cast<std::size_t>(7 * cols + j)] = 0;  // row 7: empty
      for (index_t j = 0; j < std::min<index_t>(cols, 3); ++j) m[static_cast<std::size_t>(9 * cols + j)] = 1;
      for (index_t j = 3; j < cols; ++j) m[static_cast<std::size_t>(9 * cols + j)] = 0;  // row 9: one short quad
      std::vector<float> scales(static_cast<std::size_t>(rows), 0.5f);
      const auto a = sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{rows, cols}), scales,
                                                  const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
      const auto plan = k::make_plan(a);
      for (index_t batch : k_batches) {
        auto x = testing::full_range<std::int8_t>(static_cast<std::size_t>(cols * batch), 11 + static_cast<std::uint64_t>(batch));
        for (index_t b = 0; b < batch; ++b) x[static_cast<std::size_t>(b)] = -127;  // X row 0 extreme
        for (auto& v : x)
          if (v == -128) v = -127;
        // The only −128, if any: the last element, so the scan must reach the end.
        if (x_has_min) x.back() = -128;
        const auto expected = masked_int8_product(q, m, x, rows, cols, batch);
        testing::for_each_isa([&](k::isa) {
          INFO("cols " << cols << " batch " << batch << " x has -128 " << x_has_min);
          std::vector<std::int32_t> y(expected.size(), 7);
          k::spmm(plan, const_view<std::int8_t, 2>(x.data(), shape<2>{cols, batch}),
                  tensor_view<std::int32_t, 2>(y.data(), shape<2>{rows, batch}), context{1});
          CHECK(y == expected);
          if (batch == 1) {
            std::vector<std::int32_t> yv(static_cast<std::size_t>(rows), 7);
            k::spmv(plan, std::span<const std::int8_t>(x), std::span<std::int32_t>(yv), context{1});
            CHECK(yv == expected);
          }
        });
      }
    }
}

TEST_CASE("spmm csr int8: strided X and Y, and X = -128 everywhere against -128 weights") {
  // Column block 64-127 of a 130-column X and Y (leading dimensions 130), through the view
  // strides; then the worst case for the sign trick: every product (−128)·(−128).
  const index_t rows = 9, cols = 40, ld = 130;
  auto q = testing::full_range<std::int8_t>(static_cast<std::size_t>(rows * cols), 21);
  for (auto& v : q)
    if (v == 0) v = 1;
  std::vector<float> scales(static_cast<std::size_t>(rows), 1.0f);
  const std::vector<std::uint8_t> all(static_cast<std::size_t>(rows * cols), 1);
  const const_view<std::uint8_t, 2> all_v(all.data(), shape<2>{rows, cols});
  const auto plan =
      k::make_plan(sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{rows, cols}), scales, all_v));
  auto x = testing::full_range<std::int8_t>(static_cast<std::size_t>(cols * ld), 22);
  for (auto& v : x)
    if (v == -128) v = 127;
  std::vector<std::int32_t> expected(static_cast<std::size_t>(rows * 64));
  for (index_t i = 0; i < rows; ++i)
    for (index_t b = 0; b < 64; ++b) {
      std::int32_t s = 0;
      for (index_t j = 0; j < cols; ++j)
        s += int{q[static_cast<std::size_t>(i * cols + j)]} * int{x[static_cast<std::size_t>(j * ld + 64 + b)]};
      expected[static_cast<std::size_t>(i * 64 + b)] = s;
    }
  testing::for_each_isa([&](k::isa) {
    std::vector<std::int32_t> y(static_cast<std::size_t>(rows * ld), 7);
    k::spmm(plan, const_view<std::int8_t, 2>(x.data() + 64, shape<2>{cols, 64}, {ld, 1}),
            tensor_view<std::int32_t, 2>(y.data() + 64, shape<2>{rows, 64}, {ld, 1}), context{1});
    for (index_t i = 0; i < rows; ++i)
      for (index_t b = 0; b < 64; ++b)
        REQUIRE(y[static_cast<std::size_t>(i * ld + 64 + b)] == expected[static_cast<std::size_t>(i * 64 + b)]);
    CHECK(y[0] == 7);  // outside the view: untouched
  });
  std::vector<std::int8_t> wmin(static_cast<std::size_t>(rows * cols), -128), xmin(static_cast<std::size_t>(cols * 64), -128);
  const auto pmin = k::make_plan(sp::csr_int8::from_quantized(
      const_view<std::int8_t, 2>(wmin.data(), shape<2>{rows, cols}), scales, all_v));
  testing::for_each_isa([&](k::isa) {
    std::vector<std::int32_t> y(static_cast<std::size_t>(rows * 64), 7);
    k::spmm(pmin, const_view<std::int8_t, 2>(xmin.data(), shape<2>{cols, 64}),
            tensor_view<std::int32_t, 2>(y.data(), shape<2>{rows, 64}), context{1});
    for (const std::int32_t v : y) REQUIRE(v == cols * 16384);
  });
}

TEST_CASE("spmv/spmm: results are bit-identical for any thread count") {
  const index_t rows = 301, cols = 64;
  const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 12);
  auto m = random_mask(rows, cols, 0.2, 13);
  for (index_t j = 0; j < cols; ++j) m[static_cast<std::size_t>(100 * cols + j)] = 1;  // one heavy region
  const auto plan = k::make_plan(sp::csr_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{rows, cols}),
                                                         const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols})));
  for (index_t batch : {1, 24}) {
    const auto x = testing::normal_floats(static_cast<std::size_t>(cols * batch), 14);
    std::vector<float> y1(static_cast<std::size_t>(rows * batch));
    k::spmm(plan, const_view<float, 2>(x.data(), shape<2>{cols, batch}),
            tensor_view<float, 2>(y1.data(), shape<2>{rows, batch}), context{1});
    for (int t : {2, 3, 7}) {
      std::vector<float> yt(y1.size());
      k::spmm(plan, const_view<float, 2>(x.data(), shape<2>{cols, batch}),
              tensor_view<float, 2>(yt.data(), shape<2>{rows, batch}), context{t});
      CHECK(yt == y1);
    }
  }
}

TEST_CASE("spmv bsr 8x1: row groups split across threads give the same bits as one thread") {
  const index_t rows = 200, cols = 72;
  const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 18);
  const auto m = random_mask(rows, cols, 0.1, 19);
  const auto a = sp::bsr_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{rows, cols}),
                                         const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}), {8, 1});
  const auto dense = a.to_dense();
  const std::vector<float> dense_w(dense.span().begin(), dense.span().end());
  const auto plan = k::make_plan(a);
  const auto x = testing::normal_floats(static_cast<std::size_t>(cols), 20);
  const auto o = dense_product(dense_w, rows, cols, x, 1);
  testing::for_each_isa([&](k::isa) {
    std::vector<float> y1(static_cast<std::size_t>(rows));
    k::spmv(plan, std::span<const float>(x), std::span<float>(y1), context{1});
    check_close(y1, o, 1);
    for (int t : {2, 3, 5, 7}) {
      std::vector<float> yt(y1.size());
      k::spmv(plan, std::span<const float>(x), std::span<float>(yt), context{t});
      CHECK(yt == y1);
    }
  });
}

TEST_CASE("sparse_conv2d: im2col + SpMM equals a direct convolution with zero padding and stride") {
  const k::conv2d_shape s{3, 9, 11, 3, 3, 2, 1};
  const index_t cout = 10, ho = s.out_h(), wo = s.out_w();
  CHECK(ho == 5);  // (9 + 2 - 3) / 2 + 1
  CHECK(wo == 6);  // (11 + 2 - 3) / 2 + 1
  const auto w = testing::normal_floats(static_cast<std::size_t>(cout * s.patch()), 15);
  const auto m = random_mask(cout, s.patch(), 0.3, 16);
  const auto wm = masked(w, m);
  const auto plan = k::make_plan(sp::csr_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{cout, s.patch()}),
                                                         const_view<std::uint8_t, 2>(m.data(), shape<2>{cout, s.patch()})));
  const auto in = testing::normal_floats(static_cast<std::size_t>(3 * 9 * 11), 17);
  std::vector<float> ws(static_cast<std::size_t>(k::sparse_conv2d_workspace(s)));
  testing::for_each_isa([&](k::isa) {
    std::vector<float> out(static_cast<std::size_t>(cout * ho * wo));
    k::sparse_conv2d(plan, s, const_view<float, 2>(in.data(), shape<2>{3, 99}), ws,
                     tensor_view<float, 2>(out.data(), shape<2>{cout, ho * wo}), context{1});
    for (index_t co = 0; co < cout; ++co)
      for (index_t oy = 0; oy < ho; ++oy)
        for (index_t ox = 0; ox < wo; ++ox) {
          double e = 0, mag = 0;
          for (index_t ci = 0; ci < 3; ++ci)
            for (index_t ky = 0; ky < 3; ++ky)
              for (index_t kx = 0; kx < 3; ++kx) {
                const index_t iy = oy * 2 + ky - 1, ix = ox * 2 + kx - 1;
                if (iy < 0 || iy >= 9 || ix < 0 || ix >= 11) continue;
                const double p = double{wm[static_cast<std::size_t>(co * 27 + ci * 9 + ky * 3 + kx)]} *
                                 in[static_cast<std::size_t>(ci * 99 + iy * 11 + ix)];
                e += p;
                mag += std::abs(p);
              }
          REQUIRE(std::abs(out[static_cast<std::size_t>(co * ho * wo + oy * wo + ox)] - e) <=
                  28 * std::ldexp(1.0, -24) * mag + 1e-30);
        }
  });
}

TEST_CASE("sparse kernels: mismatched shapes, strided batches and small workspaces are errors") {
  std::vector<float> w{1, 0, 2, 0, 3, 0};
  const auto plan = k::make_plan(sp::csr_f32::from_nonzeros(const_view<float, 2>(w.data(), shape<2>{2, 3})));
  std::vector<float> x(3), y(2), big(8);
  CHECK_THROWS_AS(k::spmv(plan, std::span<const float>(big), std::span<float>(y)), shrink::error);
  CHECK_THROWS_AS(k::spmv(plan, std::span<const float>(x), std::span<float>(big)), shrink::error);
  std::vector<float> X(12), Y(8);
  CHECK_THROWS_AS(k::spmm(plan, const_view<float, 2>(X.data(), shape<2>{3, 4}),
                          tensor_view<float, 2>(Y.data(), shape<2>{2, 3})),
                  shrink::error);
  CHECK_THROWS_AS(k::spmm(plan, const_view<float, 2>(X.data(), shape<2>{4, 3}),
                          tensor_view<float, 2>(Y.data(), shape<2>{2, 3})),
                  shrink::error);
  // a column-strided X (every other element) is rejected
  CHECK_THROWS_AS(k::spmm(plan, const_view<float, 2>(X.data(), shape<2>{3, 2}, {4, 2}),
                          tensor_view<float, 2>(Y.data(), shape<2>{2, 2})),
                  shrink::error);
  std::vector<std::int8_t> xi(4);
  std::vector<std::int32_t> yi(2);
  const auto plan8 = k::make_plan(sp::csr_int8::from_dense(
      const_view<float, 2>(w.data(), shape<2>{2, 3}),
      const_view<std::uint8_t, 2>(std::vector<std::uint8_t>{1, 0, 1, 0, 1, 0}.data(), shape<2>{2, 3})));
  CHECK_THROWS_AS(k::spmv(plan8, std::span<const std::int8_t>(xi), std::span<std::int32_t>(yi)), shrink::error);
  const k::conv2d_shape s{1, 2, 3, 1, 1, 1, 0};
  std::vector<float> in(6), out(12), ws(2);
  CHECK_THROWS_AS(k::sparse_conv2d(plan, s, const_view<float, 2>(in.data(), shape<2>{1, 6}), ws,
                                   tensor_view<float, 2>(out.data(), shape<2>{2, 6})),
                  shrink::error);  // weights have 3 columns, patch is 1
  const k::conv2d_shape big_kernel{3, 2, 2, 5, 5, 1, 0};
  CHECK_THROWS_AS(big_kernel.check("test"), shrink::error);
}
