// test_spmv_plan.cpp: batch-1 SpMV plans (fp32 index16/index32/bitmap/delta8, int8 index32/bitmap/delta8/window16) on every ISA path against dense oracles, delta8 escapes, inf in pruned columns, threads, bad input.
#include <catch2/catch.hpp>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <shrink/kernels/spmm_csr.hpp>
#include <shrink/kernels/spmm_int8.hpp>
#include <shrink/sparse.hpp>
#include <support/isa.hpp>
#include <support/random.hpp>
#include <vector>

using namespace shrink;
namespace k = shrink::kernels;
namespace sp = shrink::sparse;

namespace {

// Row lengths that cross every kernel boundary: 0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 31, 32,
// 33 entries, then random rows of density `keep`. Columns are a random subset.
std::vector<std::uint8_t> test_mask(index_t rows, index_t cols, double keep, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution on(keep);
  std::vector<std::uint8_t> m(static_cast<std::size_t>(rows * cols), 0);
  const index_t lengths[] = {0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 31, 32, 33};
  for (index_t i = 0; i < rows; ++i) {
    std::uint8_t* r = m.data() + i * cols;
    if (i < 13 && lengths[i] <= cols) {
      std::vector<index_t> c(static_cast<std::size_t>(cols));
      for (index_t j = 0; j < cols; ++j) c[static_cast<std::size_t>(j)] = j;
      std::shuffle(c.begin(), c.end(), rng);
      for (index_t t = 0; t < lengths[i]; ++t) r[c[static_cast<std::size_t>(t)]] = 1;
    } else if (i == 13) {
      for (index_t j = 0; j < cols; ++j) r[j] = 1;  // a full row
    } else {
      for (index_t j = 0; j < cols; ++j) r[j] = on(rng) ? 1 : 0;
    }
  }
  return m;
}

// y = W·x in double from the dense masked matrix, with the bound (n + 1)·u·Σ|w·x| (n the
// entries in the row; any summation order, Higham, "Accuracy and Stability of Numerical
// Algorithms", 3.1), skipping pruned weights entirely (x may hold inf there).
void check_against_dense(const std::vector<float>& y, const std::vector<float>& w, const std::vector<std::uint8_t>& m,
                         const std::vector<float>& x, index_t rows, index_t cols) {
  for (index_t i = 0; i < rows; ++i) {
    double e = 0, mag = 0, n = 0;
    for (index_t j = 0; j < cols; ++j) {
      const auto t = static_cast<std::size_t>(i * cols + j);
      if (!m[t]) continue;
      const double p = double{w[t]} * double{x[static_cast<std::size_t>(j)]};
      e += p;
      mag += std::abs(p);
      n += 1;
    }
    INFO("row " << i << " got " << y[static_cast<std::size_t>(i)] << " expected " << e);
    REQUIRE(std::isfinite(y[static_cast<std::size_t>(i)]));
    REQUIRE(std::abs(double{y[static_cast<std::size_t>(i)]} - e) <= (n + 1) * std::ldexp(1.0, -24) * mag + 1e-30);
  }
}

const k::spmv_layout k_layouts[] = {k::spmv_layout::automatic, k::spmv_layout::index16, k::spmv_layout::index32,
                                    k::spmv_layout::bitmap, k::spmv_layout::delta8};

// Rows that probe the delta8 escape rule (a u8 step from the previous column, the first
// from column 0, so a step > 255 or a first column > 255 cannot be encoded), each with
// 0 to 40 entries so full 16-entry chunks and 8-entry tails occur on both sides of the gap.
// Returns the mask and, per row, whether it must escape (computed from the columns here,
// independently of the plan code).
std::vector<std::uint8_t> escape_mask(index_t rows, index_t cols, std::vector<int>& must_escape) {
  std::vector<std::uint8_t> m(static_cast<std::size_t>(rows * cols), 0);
  std::mt19937_64 rng(90);
  must_escape.assign(static_cast<std::size_t>(rows), 0);
  for (index_t i = 0; i < rows; ++i) {
    std::vector<index_t> c;
    const index_t kind = i % 8;
    const index_t before = static_cast<index_t>(rng() % 20), after = static_cast<index_t>(rng() % 21);
    index_t j = kind == 5 ? 255 : kind == 6 ? 256 : kind == 7 ? 300 : static_cast<index_t>(rng() % 4);  // first column
    if (kind == 4) {  // empty row
      must_escape[static_cast<std::size_t>(i)] = 0;
      continue;
    }
    for (index_t t = 0; t < before && j < cols; ++t, j += 1 + static_cast<index_t>(rng() % 6)) c.push_back(j);
    const index_t gap = kind == 0 ? 255 : kind == 1 ? 256 : kind == 2 ? 257 + static_cast<index_t>(rng() % 400) : 7;
    if (!c.empty()) j = c.back() + gap;
    for (index_t t = 0; t < after && j < cols; ++t, j += 1 + static_cast<index_t>(rng() % 9)) c.push_back(j);
    index_t prev = 0;
    for (index_t col : c) {
      m[static_cast<std::size_t>(i * cols + col)] = 1;
      if (col - prev > 255) must_escape[static_cast<std::size_t>(i)] = 1;
      prev = col;
    }
  }
  return m;
}

// The int8 oracle: Σ q·x over the kept entries of each row, straight from the dense arrays.
std::vector<std::int32_t> dense_int8_spmv(const std::vector<std::int8_t>& q, const std::vector<std::uint8_t>& m,
                                          const std::vector<std::int8_t>& x, index_t rows, index_t cols) {
  std::vector<std::int32_t> y(static_cast<std::size_t>(rows), 0);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j)
      if (m[static_cast<std::size_t>(i * cols + j)])
        y[static_cast<std::size_t>(i)] += int{q[static_cast<std::size_t>(i * cols + j)]} * int{x[static_cast<std::size_t>(j)]};
  return y;
}

}  // namespace

TEST_CASE("spmv plan: every layout on every path within (n+1)·u·Σ|w·x| of the dense product") {
  // widths: below one bitmap word, not a multiple of 64, exactly 128, and wide rows.
  for (index_t cols : {5, 63, 83, 128, 200, 700}) {
    for (double keep : {0.05, 0.4, 0.9}) {
      const index_t rows = 40;
      const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 30 + static_cast<std::uint64_t>(cols));
      const auto m = test_mask(rows, cols, keep, 31 + static_cast<std::uint64_t>(cols));
      const auto a = sp::csr_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{rows, cols}),
                                             const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
      auto x = testing::normal_floats(static_cast<std::size_t>(cols), 32);
      // inf and NaN in pruned columns of every row must not reach y: find a column no row keeps
      for (index_t j = 0; j < cols; ++j) {
        bool used = false;
        for (index_t i = 0; i < rows && !used; ++i) used = m[static_cast<std::size_t>(i * cols + j)] != 0;
        if (!used) x[static_cast<std::size_t>(j)] = (j % 2) ? std::numeric_limits<float>::infinity()
                                                           : std::numeric_limits<float>::quiet_NaN();
      }
      for (auto layout : k_layouts) {
        const auto plan = k::make_spmv_plan(a, layout);
        CHECK(plan.nnz() == a.nnz());
        testing::for_each_isa([&](k::isa) {
          INFO("cols " << cols << " keep " << keep << " layout " << static_cast<int>(layout));
          std::vector<float> y(static_cast<std::size_t>(rows), -1.0f);
          k::spmv(plan, std::span<const float>(x), std::span<float>(y), context{1});
          check_against_dense(y, w, m, x, rows, cols);
        });
      }
    }
  }
}

TEST_CASE("spmv plan: automatic picks bitmap from 25 % density, index16 below, and reports its bytes") {
  const index_t rows = 64, cols = 256;
  const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 40);
  for (double keep : {0.1, 0.5}) {
    const auto m = test_mask(rows, cols, keep, 41);
    const auto a = sp::csr_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{rows, cols}),
                                           const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
    const auto plan = k::make_spmv_plan(a);
    const bool dense_enough = static_cast<double>(a.nnz()) >= 0.25 * rows * cols;
    CHECK(plan.layout == (dense_enough ? k::spmv_layout::bitmap : k::spmv_layout::index16));
    const auto nnz = static_cast<std::size_t>(a.nnz());
    // closed forms: index16 = 6 B per entry + u32 row offsets; bitmap = 4 B per entry + 8 B of
    // padding + one bit per column + u32 row offsets
    const std::size_t expected = dense_enough ? 4 * (nnz + 8) + 8 * rows * (cols / 64) + 4 * (rows + 1)
                                              : 6 * nnz + 4 * (rows + 1);
    CHECK(plan.bytes() == expected);
  }
}

TEST_CASE("spmv plan: results are bit-identical for any thread count") {
  const index_t rows = 257, cols = 190;
  const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 50);
  auto m = test_mask(rows, cols, 0.2, 51);
  for (index_t j = 0; j < cols; ++j) m[static_cast<std::size_t>(100 * cols + j)] = 1;
  const auto a = sp::csr_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{rows, cols}),
                                         const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
  const auto x = testing::normal_floats(static_cast<std::size_t>(cols), 52);
  for (auto layout : k_layouts) {
    const auto plan = k::make_spmv_plan(a, layout);
    testing::for_each_isa([&](k::isa) {
      std::vector<float> y1(static_cast<std::size_t>(rows));
      k::spmv(plan, std::span<const float>(x), std::span<float>(y1), context{1});
      for (int t : {2, 3, 7}) {
        std::vector<float> yt(y1.size());
        k::spmv(plan, std::span<const float>(x), std::span<float>(yt), context{t});
        CHECK(yt == y1);
      }
    });
  }
}

TEST_CASE("spmv plan: malformed CSR never reaches a plan, bad shapes and layouts are errors") {
  const std::vector<float> v{1, 2, 3};
  // row pointers not monotonic, column out of range, unsorted columns, nnz mismatch
  CHECK_THROWS_AS(sp::csr_f32::from_raw(2, 4, std::vector<std::uint32_t>{0, 2, 1}, std::vector<std::uint32_t>{0, 1, 2}, v),
                  shrink::error);
  CHECK_THROWS_AS(sp::csr_f32::from_raw(2, 4, std::vector<std::uint32_t>{0, 1, 3}, std::vector<std::uint32_t>{0, 1, 4}, v),
                  shrink::error);
  CHECK_THROWS_AS(sp::csr_f32::from_raw(2, 4, std::vector<std::uint32_t>{0, 1, 3}, std::vector<std::uint32_t>{0, 3, 1}, v),
                  shrink::error);
  CHECK_THROWS_AS(sp::csr_f32::from_raw(2, 4, std::vector<std::uint32_t>{0, 1, 4}, std::vector<std::uint32_t>{0, 1, 2}, v),
                  shrink::error);
  const auto a = sp::csr_f32::from_raw(2, 4, std::vector<std::uint32_t>{0, 1, 3}, std::vector<std::uint32_t>{0, 1, 3}, v);
  const auto plan = k::make_spmv_plan(a);
  std::vector<float> x(4), y(2), big(5);
  CHECK_THROWS_AS(k::spmv(plan, std::span<const float>(big), std::span<float>(y)), shrink::error);
  CHECK_THROWS_AS(k::spmv(plan, std::span<const float>(x), std::span<float>(big)), shrink::error);
  // 16-bit columns cannot address 70000 columns
  const auto wide = sp::csr_f32::from_raw(1, 70000, std::vector<std::uint32_t>{0, 1}, std::vector<std::uint32_t>{69999},
                                          std::vector<float>{2.0f});
  CHECK_THROWS_AS(k::make_spmv_plan(wide, k::spmv_layout::index16), shrink::error);
  const auto wplan = k::make_spmv_plan(wide);
  CHECK(wplan.layout == k::spmv_layout::index32);
  std::vector<float> wx(70000, 0.0f), wy(1);
  wx[69999] = 3.0f;
  k::spmv(wplan, std::span<const float>(wx), std::span<float>(wy));
  CHECK(wy[0] == 6.0f);
}

TEST_CASE("spmv int8 plan: index32, bitmap, delta8 and window16 are bit-exact int32 on every path, extremes included") {
  const k::spmv_layout layouts[] = {k::spmv_layout::automatic, k::spmv_layout::index32, k::spmv_layout::bitmap,
                                    k::spmv_layout::delta8, k::spmv_layout::window16};
  for (index_t cols : {5, 17, 40, 63, 83, 130, 700}) {
    for (double keep : {0.05, 0.4, 0.9}) {
      const index_t rows = 30;
      auto q = testing::full_range<std::int8_t>(static_cast<std::size_t>(rows * cols), 60 + static_cast<std::uint64_t>(cols));
      const auto m = test_mask(rows, cols, keep, 61 + static_cast<std::uint64_t>(cols));
      for (index_t j = 0; j < cols; ++j) q[static_cast<std::size_t>(13 * cols + j)] = -128;  // the full row: extremes
      auto x = testing::full_range<std::int8_t>(static_cast<std::size_t>(cols), 62);
      x[0] = -128;
      x[static_cast<std::size_t>(cols - 1)] = -128;
      const std::vector<float> scales(static_cast<std::size_t>(rows), 0.25f);
      const auto a = sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{rows, cols}), scales,
                                                  const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
      const auto expected = dense_int8_spmv(q, m, x, rows, cols);
      for (auto layout : layouts) {
        const auto plan = k::make_spmv_plan(a, layout);
        CHECK(plan.nnz() == a.nnz());
        testing::for_each_isa([&](k::isa) {
          INFO("cols " << cols << " keep " << keep << " layout " << static_cast<int>(layout));
          std::vector<std::int32_t> y(static_cast<std::size_t>(rows), 7);
          k::spmv(plan, std::span<const std::int8_t>(x), std::span<std::int32_t>(y), context{1});
          REQUIRE(y == expected);
          std::vector<std::int32_t> y3(y.size(), 7);
          k::spmv(plan, std::span<const std::int8_t>(x), std::span<std::int32_t>(y3), context{3});
          REQUIRE(y3 == expected);
        });
      }
    }
  }
}

// window16 without -128 in the values takes the kernels' vpmaddubsw sign trick (|q| <= 127);
// the test above (a row of -128) takes the int16 path. Rows that are not a multiple of the
// block, columns that end inside a window, each slot width, 1-3 threads.
TEST_CASE("spmv int8 plan: window16 is bit-exact for every slot width, with and without -128, on every path") {
  for (index_t rows : {1, 7, 9, 33}) {
    for (index_t cols : {5, 16, 17, 40, 130, 515}) {
      for (double keep : {0.03, 0.2, 0.45, 0.9}) {
        const auto seed = static_cast<std::uint64_t>(rows * 1000 + cols) + static_cast<std::uint64_t>(keep * 100);
        auto q = testing::full_range<std::int8_t>(static_cast<std::size_t>(rows * cols), seed);
        for (auto& v : q) v = std::max<std::int8_t>(v, -127);
        std::mt19937_64 rng(seed);
        std::bernoulli_distribution on(keep);
        std::vector<std::uint8_t> m(q.size());
        for (auto& b : m) b = on(rng) ? 1 : 0;
        auto x = testing::full_range<std::int8_t>(static_cast<std::size_t>(cols), seed + 1);
        x[static_cast<std::size_t>(cols - 1)] = -128;
        const std::vector<float> scales(static_cast<std::size_t>(rows), 0.5f);
        const auto a = sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{rows, cols}), scales,
                                                    const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
        const auto plan = k::make_spmv_plan(a, k::spmv_layout::window16);
        REQUIRE(plan.layout == k::spmv_layout::window16);
        CHECK_FALSE(plan.win.full_range);
        const auto expected = dense_int8_spmv(q, m, x, rows, cols);
        testing::for_each_isa([&](k::isa) {
          INFO("rows " << rows << " cols " << cols << " keep " << keep << " slots " << plan.win.slots);
          for (int t : {1, 2, 3}) {
            std::vector<std::int32_t> y(static_cast<std::size_t>(rows), 7);
            k::spmv(plan, std::span<const std::int8_t>(x), std::span<std::int32_t>(y), context{t});
            REQUIRE(y == expected);
          }
        });
      }
    }
  }
}

// Closed form: 16 rows x 32 columns; row 0 holds columns 0-4 (values 1-5), row r (1-15)
// column r (value -5), and row 15 also column 31 (value 7). Modelled time (1.9 ns a pass,
// 2.4 with S = 2, 0.9 a residual entry; a window spills when its excess is at most 2
// entries per saved pass): S = 4 (one block of 16 rows) would need ⌈5/4⌉ = 2 passes in
// window 0, but its one excess entry spills: 1 pass + 1 residual, + 1 pass for window 1 =
// 4.7 ns. S = 2 (one block): window 0 needs 3 passes (excess 3 > 2·2 is false: it spills
// 3) = 2 passes + 3 residual = 7.5; S = 8 (two blocks): 3 passes = 5.7; S = 16: 5 = 9.5.
TEST_CASE("spmv int8 plan: window16 picks the cheapest slot width, spills overflow and lays out passes as documented") {
  const index_t rows = 16, cols = 32;
  std::vector<std::int8_t> q(static_cast<std::size_t>(rows * cols), 0);
  std::vector<std::uint8_t> m(q.size(), 0);
  const auto put = [&](index_t i, index_t j, int v) {
    m[static_cast<std::size_t>(i * cols + j)] = 1;
    q[static_cast<std::size_t>(i * cols + j)] = static_cast<std::int8_t>(v);
  };
  for (index_t j = 0; j < 5; ++j) put(0, j, static_cast<int>(j) + 1);
  for (index_t r = 1; r < rows; ++r) put(r, r, -5);
  put(15, 31, 7);
  const std::vector<float> scales(static_cast<std::size_t>(rows), 1.0f);
  const auto a = sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{rows, cols}), scales,
                                              const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
  const auto plan = k::make_spmv_plan(a, k::spmv_layout::window16);
  REQUIRE(plan.win.slots == 4);
  REQUIRE(plan.win.block_ptr.size() == 2);
  CHECK(plan.win.block_ptr[1] == 2);
  REQUIRE(plan.win.window.size() == 2);
  CHECK(plan.win.window[0] == 0);  // each pass records its window's first column
  CHECK(plan.win.window[1] == 16);
  const std::uint8_t* p0 = plan.win.passes.data();  // 64 local columns, then 64 values
  for (index_t j = 0; j < 4; ++j) {
    CHECK(p0[j] == j);
    CHECK(static_cast<std::int8_t>(p0[64 + j]) == j + 1);
  }
  for (index_t r = 1; r < rows; ++r) {
    CHECK(p0[4 * r] == r);
    CHECK(static_cast<std::int8_t>(p0[64 + 4 * r]) == -5);
    CHECK(p0[64 + 4 * r + 1] == 0);  // unused slots: value 0
  }
  const std::uint8_t* p1 = p0 + 128;  // row 15 owns slots 60-63
  CHECK(p1[60] == 15);
  CHECK(static_cast<std::int8_t>(p1[64 + 60]) == 7);
  for (index_t slot = 0; slot < 60; ++slot) CHECK(p1[64 + slot] == 0);
  // row 0's fifth entry is the one residual entry
  REQUIRE(plan.win.res_col.size() == 1);
  REQUIRE(plan.win.res_ptr.size() == 2);  // one list per row block
  CHECK(plan.win.res_ptr[0] == 0);
  CHECK(plan.win.res_ptr[1] == 1);
  CHECK(plan.win.res_row[0] == 0);
  CHECK(plan.win.res_col[0] == 4);
  CHECK(plan.win.res_val[0] == 5);
  CHECK(plan.bytes() >= 2 * 128);
  // closed form: row pointers 17·4 + row scales 16·4 + block pointers 2·4 + windows 2·4 +
  // passes 2·128 + residual pointers 2·4 + one residual entry (4 + 1 + 1)
  CHECK(plan.bytes() == 17 * 4 + 16 * 4 + 2 * 4 + 2 * 4 + 2 * 128 + 2 * 4 + 6);
  std::vector<std::int8_t> x(static_cast<std::size_t>(cols));
  for (index_t j = 0; j < cols; ++j) x[static_cast<std::size_t>(j)] = static_cast<std::int8_t>(3 * j - 50);
  std::vector<std::int32_t> expected(static_cast<std::size_t>(rows));
  for (int j = 0; j < 5; ++j) expected[0] += (j + 1) * (3 * j - 50);
  for (int r = 1; r < 16; ++r) expected[static_cast<std::size_t>(r)] = -5 * (3 * r - 50);
  expected[15] += 7 * (3 * 31 - 50);
  testing::for_each_isa([&](k::isa) {
    std::vector<std::int32_t> y(static_cast<std::size_t>(rows));
    k::spmv(plan, std::span<const std::int8_t>(x), std::span<std::int32_t>(y));
    CHECK(y == expected);
  });
}

// Closed form for S = 2: 32 rows, each with one entry in each of windows 0-9 (column
// 16w + r % 16), and row 0 four more in window 0 (5 there). S = 2 (one block of 32):
// 10 passes, window 0 spills row 0's 3 entries past its 2 slots (3 ≤ 2 per saved pass ·
// 2 saved): 10·2.4 + 3·0.9 = 26.7 ns; S = 4 (two blocks of 16): 20 passes + 1 residual =
// 38.9. Values -127..127 take the even/odd fold; with a -128 the int16 path folds pairs of
// slots instead.
TEST_CASE("spmv int8 plan: window16 with two slots per row keeps even and odd rows apart on every path") {
  const index_t rows = 32, cols = 160;
  for (const bool with_min : {false, true}) {
    std::vector<std::int8_t> q(static_cast<std::size_t>(rows * cols), 0);
    std::vector<std::uint8_t> m(q.size(), 0);
    std::mt19937_64 rng(7);
    const auto put = [&](index_t i, index_t j) {
      m[static_cast<std::size_t>(i * cols + j)] = 1;
      q[static_cast<std::size_t>(i * cols + j)] = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
    };
    for (index_t r = 0; r < rows; ++r)
      for (index_t w = 0; w < 10; ++w) put(r, 16 * w + r % 16);
    for (index_t j = 1; j < 5; ++j) put(0, j);
    if (with_min) q[static_cast<std::size_t>(5 * cols + 16 + 5)] = -128;  // row 5, window 1
    const std::vector<float> scales(static_cast<std::size_t>(rows), 1.0f);
    const auto a = sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{rows, cols}), scales,
                                                const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
    const auto plan = k::make_spmv_plan(a);
    REQUIRE(plan.layout == k::spmv_layout::window16);
    REQUIRE(plan.win.slots == 2);
    CHECK(plan.win.full_range == with_min);
    CHECK(plan.win.window.size() == 10);
    CHECK(plan.win.res_col.size() == 3);
    auto x = testing::full_range<std::int8_t>(static_cast<std::size_t>(cols), 8);
    x[5] = -128;
    const auto expected = dense_int8_spmv(q, m, x, rows, cols);
    testing::for_each_isa([&](k::isa) {
      INFO("with -128: " << with_min);
      for (int t : {1, 2}) {
        std::vector<std::int32_t> y(static_cast<std::size_t>(rows), 7);
        k::spmv(plan, std::span<const std::int8_t>(x), std::span<std::int32_t>(y), context{t});
        REQUIRE(y == expected);
      }
    });
  }
}

TEST_CASE("spmv int8 plan: index16, too many columns and bad shapes are errors") {
  std::vector<float> w{1, 0, 2, 0, 3, 0};
  const std::vector<std::uint8_t> m{1, 0, 1, 0, 1, 0};
  const auto a = sp::csr_int8::from_dense(const_view<float, 2>(w.data(), shape<2>{2, 3}),
                                          const_view<std::uint8_t, 2>(m.data(), shape<2>{2, 3}));
  CHECK_THROWS_AS(k::make_spmv_plan(a, k::spmv_layout::index16), shrink::error);
  const auto plan = k::make_spmv_plan(a);
  CHECK(plan.layout == k::spmv_layout::index32);  // one window16 pass would carry 3 entries
  std::vector<std::int8_t> x(3), big(4);
  std::vector<std::int32_t> y(2), ybig(3);
  CHECK_THROWS_AS(k::spmv(plan, std::span<const std::int8_t>(big), std::span<std::int32_t>(y)), shrink::error);
  CHECK_THROWS_AS(k::spmv(plan, std::span<const std::int8_t>(x), std::span<std::int32_t>(ybig)), shrink::error);
  const auto wide = sp::csr_int8::from_raw(1, 131073, std::vector<std::uint32_t>{0, 1}, std::vector<std::uint32_t>{5},
                                           std::vector<std::int8_t>{1}, std::vector<float>{1.0f});
  CHECK_THROWS_AS(k::make_spmv_plan(wide), shrink::error);
}

TEST_CASE("spmv plan: delta8 escapes exactly at steps > 255 and gives index16's bits on every path") {
  const index_t rows = 96, cols = 1100;
  std::vector<int> must_escape;
  const auto m = escape_mask(rows, cols, must_escape);
  const auto w = testing::normal_floats(static_cast<std::size_t>(rows * cols), 91);
  const auto a = sp::csr_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{rows, cols}),
                                         const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
  auto x = testing::normal_floats(static_cast<std::size_t>(cols), 92);
  index_t unused = 0;
  for (index_t j = 0; j < cols; ++j) {  // inf (and NaN) where no row has a weight, e.g. inside the gaps
    bool used = false;
    for (index_t i = 0; i < rows && !used; ++i) used = m[static_cast<std::size_t>(i * cols + j)] != 0;
    if (!used) {
      x[static_cast<std::size_t>(j)] = (j % 3) ? std::numeric_limits<float>::infinity()
                                               : std::numeric_limits<float>::quiet_NaN();
      ++unused;
    }
  }
  REQUIRE(unused > 0);
  const auto d8 = k::make_spmv_plan(a, k::spmv_layout::delta8);
  const auto i16 = k::make_spmv_plan(a, k::spmv_layout::index16);
  REQUIRE(d8.layout == k::spmv_layout::delta8);
  CHECK(d8.nnz() == a.nnz());
  index_t escapes = 0, kept = 0;
  std::size_t expected_bytes = 4 * static_cast<std::size_t>(rows + 1) + static_cast<std::size_t>(rows);
  for (index_t i = 0; i < rows; ++i) {
    INFO("row " << i);
    CHECK(int{d8.escape[static_cast<std::size_t>(i)]} == must_escape[static_cast<std::size_t>(i)]);
    escapes += must_escape[static_cast<std::size_t>(i)];
    kept += must_escape[static_cast<std::size_t>(i)] ? 0 : 1;
    // closed form: a delta8 row is 5 B per entry padded to whole u16 units, an escape row 6 B per entry
    const auto n = static_cast<std::size_t>(a.row_ptr()[static_cast<std::size_t>(i) + 1] - a.row_ptr()[static_cast<std::size_t>(i)]);
    expected_bytes += must_escape[static_cast<std::size_t>(i)] ? 6 * n : 2 * ((5 * n + 1) / 2);
  }
  CHECK(escapes > 20);  // kinds 1, 2, 6, 7 of escape_mask (when the row reaches the gap)
  CHECK(kept > 20);
  CHECK(d8.bytes() == expected_bytes);
  testing::for_each_isa([&](k::isa) {
    std::vector<float> y8(static_cast<std::size_t>(rows), -1.0f), y16(static_cast<std::size_t>(rows), -2.0f);
    k::spmv(d8, std::span<const float>(x), std::span<float>(y8), context{1});
    k::spmv(i16, std::span<const float>(x), std::span<float>(y16), context{1});
    check_against_dense(y8, w, m, x, rows, cols);
    for (index_t i = 0; i < rows; ++i) {
      INFO("row " << i);
      CHECK(std::bit_cast<std::uint32_t>(y8[static_cast<std::size_t>(i)]) ==
            std::bit_cast<std::uint32_t>(y16[static_cast<std::size_t>(i)]));
    }
    for (int t : {2, 5}) {
      std::vector<float> yt(y8.size());
      k::spmv(d8, std::span<const float>(x), std::span<float>(yt), context{t});
      CHECK(yt == y8);
    }
  });
}

TEST_CASE("spmv int8 plan: delta8 escapes exactly at steps > 255 and stays bit-exact on every path") {
  const index_t rows = 96, cols = 1100;
  std::vector<int> must_escape;
  const auto m = escape_mask(rows, cols, must_escape);
  auto q = testing::full_range<std::int8_t>(static_cast<std::size_t>(rows * cols), 93);
  q[0] = -128;
  auto x = testing::full_range<std::int8_t>(static_cast<std::size_t>(cols), 94);
  x[255] = -128;
  const std::vector<float> scales(static_cast<std::size_t>(rows), 0.5f);
  const auto a = sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{rows, cols}), scales,
                                              const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
  const auto expected = dense_int8_spmv(q, m, x, rows, cols);
  const auto plan = k::make_spmv_plan(a, k::spmv_layout::delta8);
  REQUIRE(plan.layout == k::spmv_layout::delta8);
  std::size_t expected_bytes = 4 * static_cast<std::size_t>(rows + 1) + 4 * static_cast<std::size_t>(rows) +
                               static_cast<std::size_t>(rows);  // row offsets, row scales, escape flags
  for (index_t i = 0; i < rows; ++i) {
    CHECK(int{plan.escape[static_cast<std::size_t>(i)]} == must_escape[static_cast<std::size_t>(i)]);
    const auto n = static_cast<std::size_t>(a.row_ptr()[static_cast<std::size_t>(i) + 1] - a.row_ptr()[static_cast<std::size_t>(i)]);
    expected_bytes += must_escape[static_cast<std::size_t>(i)] ? 5 * n : 2 * n;  // u32 + s8, or u8 + s8
  }
  CHECK(plan.bytes() == expected_bytes);
  testing::for_each_isa([&](k::isa) {
    for (int t : {1, 3}) {
      std::vector<std::int32_t> y(static_cast<std::size_t>(rows), 7);
      k::spmv(plan, std::span<const std::int8_t>(x), std::span<std::int32_t>(y), context{t});
      REQUIRE(y == expected);
    }
  });
}

TEST_CASE("spmv plans: delta8 rejects matrices wider than 65536 columns") {
  const auto wide = sp::csr_f32::from_raw(1, 70000, std::vector<std::uint32_t>{0, 1}, std::vector<std::uint32_t>{69999},
                                          std::vector<float>{2.0f});
  CHECK_THROWS_AS(k::make_spmv_plan(wide, k::spmv_layout::delta8), shrink::error);
  const auto wide8 = sp::csr_int8::from_raw(1, 70000, std::vector<std::uint32_t>{0, 1}, std::vector<std::uint32_t>{5},
                                            std::vector<std::int8_t>{1}, std::vector<float>{1.0f});
  CHECK_THROWS_AS(k::make_spmv_plan(wide8, k::spmv_layout::delta8), shrink::error);
  CHECK(k::make_spmv_plan(wide8, k::spmv_layout::index32).layout == k::spmv_layout::index32);
  // window16 has no column limit of its own (u16 window numbers cover the int8 limit of 131072)
  const auto w16 = k::make_spmv_plan(wide8, k::spmv_layout::window16);
  std::vector<std::int8_t> x(70000, 0);
  x[5] = -7;
  std::vector<std::int32_t> y(1);
  k::spmv(w16, std::span<const std::int8_t>(x), std::span<std::int32_t>(y));
  CHECK(y[0] == -7);
  // window16 is int8-only: an fp32 plan refuses it
  CHECK_THROWS_AS(k::make_spmv_plan(wide, k::spmv_layout::window16), shrink::error);
}

// automatic: window16 when its passes average >= 6 entries, else index32. Closed forms:
// dense 16 x 256 (64 passes of 64 entries for every S: 4 blocks of 4 rows x 16 windows
// at S = 16, 16 windows x 4 passes at S = 4; the tie keeps S = 4), a diagonal (row i at column i: one window per block of 16 rows, 16 entries
// per pass) and a "staircase" (row i at column 16 i: 16 passes of 1 entry each).
TEST_CASE("spmv int8 plan: automatic picks window16 when passes carry >= 6 entries, index32 otherwise") {
  const index_t rows = 16, cols = 256;
  const auto build = [&](auto keep) {
    std::vector<std::int8_t> q(static_cast<std::size_t>(rows * cols), 3);
    std::vector<std::uint8_t> m(q.size(), 0);
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j) m[static_cast<std::size_t>(i * cols + j)] = keep(i, j) ? 1 : 0;
    const std::vector<float> scales(static_cast<std::size_t>(rows), 1.0f);
    return sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{rows, cols}), scales,
                                        const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
  };
  const auto dense = k::make_spmv_plan(build([](index_t, index_t) { return true; }));
  CHECK(dense.layout == k::spmv_layout::window16);
  CHECK(dense.win.slots == 4);
  CHECK(dense.win.window.size() == 64);
  const auto diagonal = k::make_spmv_plan(build([](index_t i, index_t j) { return i == j; }));
  CHECK(diagonal.layout == k::spmv_layout::window16);
  CHECK(diagonal.win.window.size() == 1);
  const auto stairs = k::make_spmv_plan(build([](index_t i, index_t j) { return j == 16 * i; }));
  CHECK(stairs.layout == k::spmv_layout::index32);
  CHECK(k::make_spmv_plan(build([](index_t i, index_t j) { return j == 16 * i; }), k::spmv_layout::window16)
            .win.window.size() == 16);
}
