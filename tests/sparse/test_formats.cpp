// test_formats.cpp: every sparse format converts from dense + mask and back exactly, reports closed-form bytes, and rejects bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <shrink/sparse.hpp>
#include <support/random.hpp>
#include <vector>

using namespace shrink;
namespace sp = shrink::sparse;

namespace {

struct dense_case {
  index_t rows, cols;
  std::vector<float> w;
  std::vector<std::uint8_t> mask;
  const_view<float, 2> wv() const { return {w.data(), shape<2>{rows, cols}}; }
  const_view<std::uint8_t, 2> mv() const { return {mask.data(), shape<2>{rows, cols}}; }
  index_t kept() const {
    index_t n = 0;
    for (auto m : mask) n += m;
    return n;
  }
};

dense_case random_case(index_t rows, index_t cols, double keep, std::uint64_t seed) {
  dense_case c{rows, cols, testing::normal_floats(static_cast<std::size_t>(rows * cols), seed), {}};
  std::mt19937_64 rng(seed + 7);
  std::bernoulli_distribution on(keep);
  c.mask.resize(c.w.size());
  for (auto& m : c.mask) m = on(rng) ? 1 : 0;
  for (index_t j = 0; j < cols; ++j) c.mask[static_cast<std::size_t>(cols + j)] = 0;  // an empty row
  return c;
}

template <class Dense>
void check_equals_masked(const Dense& got, const dense_case& c) {
  REQUIRE(got.extent(0) == c.rows);
  REQUIRE(got.extent(1) == c.cols);
  for (index_t i = 0; i < c.rows; ++i)
    for (index_t j = 0; j < c.cols; ++j) {
      const auto at = static_cast<std::size_t>(i * c.cols + j);
      REQUIRE(got(i, j) == (c.mask[at] ? c.w[at] : 0.0f));
    }
}

template <class Fn>
void check_error(Fn&& fn, errc code) {
  try {
    fn();
    FAIL("expected shrink::error");
  } catch (const shrink::error& e) {
    CHECK(e.code() == code);
  }
}

}  // namespace

TEST_CASE("csr_f32: dense plus mask round-trips exactly and bytes follow 4(rows+1) + 2nnz + 4nnz") {
  const auto c = random_case(37, 70, 0.3, 1);
  const auto a = sp::csr_f32::from_dense(c.wv(), c.mv());
  CHECK(a.nnz() == c.kept());
  CHECK(a.col_idx().bits() == 16);
  check_equals_masked(a.to_dense(), c);
  CHECK(a.bytes() == static_cast<std::size_t>(4 * (37 + 1) + 2 * c.kept() + 4 * c.kept()));
  CHECK(a.row_ptr()[2] == a.row_ptr()[1]);  // row 1 is empty
}

TEST_CASE("csr_f32: from_nonzeros keeps exactly the non-zero weights") {
  std::vector<float> w{0, 1.5f, 0, -2, 0, 0, 0, 3};
  const auto a = sp::csr_f32::from_nonzeros(const_view<float, 2>(w.data(), shape<2>{2, 4}));
  CHECK(a.nnz() == 3);
  CHECK(a.row_ptr()[1] == 2);
  CHECK(a.col_idx()[0] == 1);
  CHECK(a.col_idx()[1] == 3);
  CHECK(a.col_idx()[2] == 3);
  CHECK(a.values()[2] == 3.0f);
}

TEST_CASE("csr_f32: more than 65536 columns switches to 32-bit column indices") {
  std::vector<float> w(65537, 0.0f);
  w[65536] = 1.0f;
  w[3] = 2.0f;
  const auto a = sp::csr_f32::from_nonzeros(const_view<float, 2>(w.data(), shape<2>{1, 65537}));
  CHECK(a.col_idx().bits() == 32);
  CHECK(a.col_idx()[1] == 65536);
  CHECK(a.bytes() == static_cast<std::size_t>(4 * 2 + 4 * 2 + 4 * 2));
  std::vector<float> w2(65536, 0.0f);
  w2[65535] = 1.0f;
  const auto b = sp::csr_f32::from_nonzeros(const_view<float, 2>(w2.data(), shape<2>{1, 65536}));
  CHECK(b.col_idx().bits() == 16);
  CHECK(b.col_idx()[0] == 65535);
}

TEST_CASE("csr_f32: from_raw accepts a well-formed matrix and rejects each malformation") {
  // [[1, 0, 2], [0, 0, 0], [0, 3, 0]]
  const std::vector<std::uint32_t> rp{0, 2, 2, 3}, ci{0, 2, 1};
  const std::vector<float> v{1, 2, 3};
  const auto a = sp::csr_f32::from_raw(3, 3, rp, ci, v);
  const auto d = a.to_dense();
  CHECK(d(0, 0) == 1.0f);
  CHECK(d(0, 2) == 2.0f);
  CHECK(d(2, 1) == 3.0f);
  CHECK(d(1, 1) == 0.0f);
  check_error([&] { sp::csr_f32::from_raw(3, 3, std::vector<std::uint32_t>{0, 2, 1, 3}, ci, v); }, errc::format);
  check_error([&] { sp::csr_f32::from_raw(3, 3, rp, std::vector<std::uint32_t>{0, 3, 1}, v); }, errc::out_of_range);
  check_error([&] { sp::csr_f32::from_raw(3, 3, rp, std::vector<std::uint32_t>{2, 0, 1}, v); }, errc::format);
  check_error([&] { sp::csr_f32::from_raw(3, 3, rp, std::vector<std::uint32_t>{1, 1, 1}, v); }, errc::format);
  check_error([&] { sp::csr_f32::from_raw(3, 3, std::vector<std::uint32_t>{0, 2, 2, 4}, ci, v); }, errc::format);
  check_error([&] { sp::csr_f32::from_raw(3, 3, rp, ci, std::vector<float>{1, 2}); }, errc::format);
  check_error([&] { sp::csr_f32::from_raw(3, 3, std::vector<std::uint32_t>{0, 2, 3}, ci, v); }, errc::shape_mismatch);
  check_error([&] { sp::csr_f32::from_raw(3, 3, std::vector<std::uint32_t>{1, 2, 2, 3}, ci, v); }, errc::format);
  check_error([&] { sp::csr_f32::from_raw(3, 3, rp, ci, std::vector<float>{1, NAN, 3}); }, errc::non_finite);
}

TEST_CASE("sparse formats: mask of the wrong shape, non-binary mask and NaN weights are errors") {
  auto c = random_case(8, 8, 0.5, 2);
  std::vector<std::uint8_t> small(56, 1);
  const const_view<std::uint8_t, 2> bad_shape(small.data(), shape<2>{7, 8});
  check_error([&] { sp::csr_f32::from_dense(c.wv(), bad_shape); }, errc::shape_mismatch);
  check_error([&] { sp::bsr_f32::from_dense(c.wv(), bad_shape, {4, 4}); }, errc::shape_mismatch);
  check_error([&] { sp::nm_f32::from_dense(c.wv(), bad_shape, 2, 4); }, errc::shape_mismatch);
  check_error([&] { sp::bitmask_f32::from_dense(c.wv(), bad_shape); }, errc::shape_mismatch);
  c.mask[5] = 2;
  check_error([&] { sp::csr_f32::from_dense(c.wv(), c.mv()); }, errc::invalid_argument);
  c.mask[5] = 1;
  c.w[5] = NAN;
  check_error([&] { sp::csr_f32::from_dense(c.wv(), c.mv()); }, errc::non_finite);
  check_error([&] { sp::csr_int8::from_dense(c.wv(), c.mv()); }, errc::non_finite);
  check_error([&] { sp::bitmask_f32::from_dense(c.wv(), c.mv()); }, errc::non_finite);
}

TEST_CASE("csr_int8: per-row symmetric scale max|w|/127 and round-half-even codes") {
  // Row 0: max |w| = 63.5 → scale 0.5; 1.25 / 0.5 = 2.5 rounds to 2 (even), -0.75/0.5 = -1.5 → -2.
  // Row 1: all kept weights are multiples of 2^-3 with max 127/8 → scale 1/8, exact.
  std::vector<float> w{63.5f, 1.25f, -0.75f, 0.0f, 127.0f / 8, -1.0f, 0.0f, 0.375f};
  std::vector<std::uint8_t> m{1, 1, 1, 0, 1, 1, 0, 1};
  const auto a = sp::csr_int8::from_dense(const_view<float, 2>(w.data(), shape<2>{2, 4}),
                                          const_view<std::uint8_t, 2>(m.data(), shape<2>{2, 4}));
  CHECK(a.row_scales()[0] == 0.5f);
  CHECK(a.row_scales()[1] == 0.125f);
  CHECK(a.values()[0] == 127);
  CHECK(a.values()[1] == 2);
  CHECK(a.values()[2] == -2);
  const auto d = a.to_dense();
  CHECK(d(0, 1) == 1.0f);
  CHECK(d(0, 2) == -1.0f);
  for (index_t j : {0, 1, 3}) CHECK(d(1, j) == w[static_cast<std::size_t>(4 + j)]);
  CHECK(a.bytes() == static_cast<std::size_t>(4 * 3 + 2 * 6 + 6 + 4 * 2));
}

TEST_CASE("csr_int8: from_quantized round-trips codes and scales exactly") {
  std::vector<std::int8_t> q{-128, 0, 5, 127, 0, -1};
  std::vector<std::uint8_t> m{1, 0, 1, 1, 0, 1};
  std::vector<float> s{0.25f, 2.0f};
  const auto a = sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{2, 3}), s,
                                              const_view<std::uint8_t, 2>(m.data(), shape<2>{2, 3}));
  const auto d = a.to_dense();
  CHECK(d(0, 0) == -32.0f);
  CHECK(d(0, 2) == 1.25f);
  CHECK(d(1, 0) == 254.0f);
  CHECK(d(1, 2) == -2.0f);
  check_error([&] {
    sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{2, 3}), std::vector<float>{1.0f},
                                 const_view<std::uint8_t, 2>(m.data(), shape<2>{2, 3}));
  }, errc::shape_mismatch);
  check_error([&] {
    sp::csr_int8::from_quantized(const_view<std::int8_t, 2>(q.data(), shape<2>{2, 3}), std::vector<float>{1.0f, 0.0f},
                                 const_view<std::uint8_t, 2>(m.data(), shape<2>{2, 3}));
  }, errc::invalid_argument);
}

TEST_CASE("csr_codebook: values are centroid indices, dense is centroid[index] under the mask") {
  const index_t rows = 9, cols = 20;
  std::mt19937_64 rng(3);
  std::vector<std::uint8_t> idx(rows * cols), m(rows * cols);
  for (auto& i : idx) i = static_cast<std::uint8_t>(rng() % 16);
  for (auto& v : m) v = static_cast<std::uint8_t>(rng() % 3 == 0);
  const auto cent = testing::normal_floats(16, 4);
  const auto a = sp::csr_codebook::from_indices(const_view<std::uint8_t, 2>(idx.data(), shape<2>{rows, cols}), cent,
                                                const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
  const auto d = a.to_dense();
  index_t kept = 0;
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) {
      const auto at = static_cast<std::size_t>(i * cols + j);
      kept += m[at];
      CHECK(d(i, j) == (m[at] ? cent[idx[at]] : 0.0f));
    }
  CHECK(a.bytes() == static_cast<std::size_t>(4 * (rows + 1) + 3 * kept + 4 * 16));
  idx[0] = 16;
  m[0] = 1;
  check_error([&] {
    sp::csr_codebook::from_indices(const_view<std::uint8_t, 2>(idx.data(), shape<2>{rows, cols}), cent,
                                   const_view<std::uint8_t, 2>(m.data(), shape<2>{rows, cols}));
  }, errc::out_of_range);
  check_error([&] {
    sp::csr_codebook::from_raw(1, 2, std::vector<std::uint32_t>{0, 1}, std::vector<std::uint32_t>{1},
                               std::vector<std::uint8_t>{3}, std::vector<float>{1, 2});
  }, errc::out_of_range);
  check_error([&] {
    sp::csr_codebook::from_raw(1, 2, std::vector<std::uint32_t>{0, 1}, std::vector<std::uint32_t>{1},
                               std::vector<std::uint8_t>{0}, std::vector<float>(257, 1.0f));
  }, errc::invalid_argument);
}

TEST_CASE("bsr_f32: every block shape round-trips and stores exactly the blocks touched by the mask") {
  for (auto blk : {sp::block_shape{1, 4}, sp::block_shape{4, 1}, sp::block_shape{8, 1}, sp::block_shape{16, 1},
                   sp::block_shape{4, 4}, sp::block_shape{2, 3}}) {
    INFO("block " << blk.rows << "x" << blk.cols);
    const auto c = random_case(48, 36, 0.04, 5 + static_cast<std::uint64_t>(blk.rows * 10 + blk.cols));
    const auto a = sp::bsr_f32::from_dense(c.wv(), c.mv(), blk);
    check_equals_masked(a.to_dense(), c);
    index_t touched = 0;
    for (index_t br = 0; br < 48 / blk.rows; ++br)
      for (index_t bc = 0; bc < 36 / blk.cols; ++bc) {
        bool any = false;
        for (index_t y = 0; y < blk.rows; ++y)
          for (index_t x = 0; x < blk.cols; ++x)
            any = any || c.mask[static_cast<std::size_t>((br * blk.rows + y) * 36 + bc * blk.cols + x)];
        touched += any;
      }
    CHECK(a.blocks() == touched);
    CHECK(a.bytes() ==
          static_cast<std::size_t>(4 * (48 / blk.rows + 1) + 2 * touched + 4 * blk.rows * blk.cols * touched));
  }
}

TEST_CASE("bsr_f32: blocks that do not divide the shape are a clear error") {
  const auto c = random_case(10, 12, 0.5, 6);
  check_error([&] { sp::bsr_f32::from_dense(c.wv(), c.mv(), {4, 4}); }, errc::shape_mismatch);
  check_error([&] { sp::bsr_f32::from_dense(c.wv(), c.mv(), {1, 5}); }, errc::shape_mismatch);
  check_error([&] { sp::bsr_f32::from_nonzeros(c.wv(), {0, 4}); }, errc::invalid_argument);
  CHECK_THROWS_WITH(sp::bsr_f32::from_dense(c.wv(), c.mv(), {4, 4}), Catch::Contains("does not divide"));
}

TEST_CASE("bsr_int8: closed-form codes, one scale per row, ties to even") {
  // 2x8, 1x4 blocks. Row 0 peak 127/16, so its scale is exactly 1/16 and w·16 are the codes
  // before rounding: 2.5 → 2, 3.5 → 4, −1.5 → −2, 127 → 127. Row 1 keeps one weight in
  // the second block only.
  const float u = 1.0f / 16.0f;
  std::vector<float> w{127 * u, 2.5f * u, 9.0f, -1.5f * u, 0.0f, 0.0f, 3.5f * u, 0.0f,
                       0.0f,    0.0f,     0.0f, 0.0f,       0.0f, -4.0f, 0.0f,     0.0f};
  std::vector<std::uint8_t> m{1, 1, 0, 1, 0, 0, 1, 0,  // 9.0 is masked out: not the peak, stored as 0
                              0, 0, 0, 0, 0, 1, 0, 0};
  const auto a = sp::bsr_int8::from_dense(const_view<float, 2>(w.data(), shape<2>{2, 8}),
                                          const_view<std::uint8_t, 2>(m.data(), shape<2>{2, 8}), {1, 4});
  REQUIRE(a.blocks() == 3);
  CHECK(std::vector<std::uint32_t>(a.row_ptr().begin(), a.row_ptr().end()) == std::vector<std::uint32_t>{0, 2, 3});
  CHECK(a.block_col()[0] == 0);
  CHECK(a.block_col()[1] == 1);
  CHECK(a.block_col()[2] == 1);
  CHECK(std::vector<std::int8_t>(a.values().begin(), a.values().end()) ==
        std::vector<std::int8_t>{127, 2, 0, -2, 0, 0, 4, 0, 0, -127, 0, 0});
  CHECK(a.row_scales()[0] == u);
  CHECK(a.row_scales()[1] == 4.0f / 127.0f);
  const auto d = a.to_dense();
  CHECK(d(0, 1) == 2 * u);
  CHECK(d(0, 2) == 0.0f);
  CHECK(d(1, 5) == -127 * (4.0f / 127.0f));
  CHECK(a.bytes() == static_cast<std::size_t>(4 * 3 + 2 * 3 + 12 + 4 * 2));
}

TEST_CASE("bsr_int8: the codes of csr_int8 in every block shape, closed-form bytes") {
  for (auto blk : {sp::block_shape{1, 1}, sp::block_shape{1, 4}, sp::block_shape{4, 1}, sp::block_shape{8, 1},
                   sp::block_shape{16, 1}, sp::block_shape{4, 4}, sp::block_shape{2, 3}}) {
    INFO("block " << blk.rows << "x" << blk.cols);
    const auto c = random_case(48, 36, 0.06, 15 + static_cast<std::uint64_t>(blk.rows * 10 + blk.cols));
    const auto a = sp::bsr_int8::from_dense(c.wv(), c.mv(), blk);
    // Per kept weight, the code and scale csr_int8 gives the same row (its own conversion
    // code); entries outside the mask are 0.
    const auto csr = sp::csr_int8::from_dense(c.wv(), c.mv());
    const auto ref = csr.to_dense();
    const auto got = a.to_dense();
    for (index_t i = 0; i < c.rows; ++i) {
      CHECK(a.row_scales()[static_cast<std::size_t>(i)] == csr.row_scales()[static_cast<std::size_t>(i)]);
      for (index_t j = 0; j < c.cols; ++j) REQUIRE(got(i, j) == ref(i, j));
    }
    const auto f = sp::bsr_f32::from_dense(c.wv(), c.mv(), blk);  // the same blocks
    REQUIRE(a.blocks() == f.blocks());
    for (index_t b = 0; b < a.blocks(); ++b) REQUIRE(a.block_col()[b] == f.block_col()[b]);
    CHECK(a.bytes() == static_cast<std::size_t>(4 * (48 / blk.rows + 1) + 2 * a.blocks() +
                                                blk.rows * blk.cols * a.blocks() + 4 * 48));
  }
}

TEST_CASE("bsr_int8: from_quantized keeps any code, -128 included, and rejects bad input") {
  std::vector<std::int8_t> q{-128, 5, 0, 0, 0, 0, 7, 127};
  std::vector<std::uint8_t> m{1, 1, 0, 0, 0, 0, 0, 1};
  std::vector<float> s{0.5f, 2.0f};
  const const_view<std::int8_t, 2> qv(q.data(), shape<2>{2, 4});
  const const_view<std::uint8_t, 2> mv(m.data(), shape<2>{2, 4});
  const auto a = sp::bsr_int8::from_quantized(qv, s, mv, {2, 2});
  REQUIRE(a.blocks() == 2);
  // Block (0, 0) holds rows 0-1, columns 0-1: −128, 5 | 0, 0; block (0, 1): 0, 0 | 7 masked out → 0, 127.
  CHECK(std::vector<std::int8_t>(a.values().begin(), a.values().end()) ==
        std::vector<std::int8_t>{-128, 5, 0, 0, 0, 0, 0, 127});
  CHECK(a.to_dense()(0, 0) == -64.0f);
  CHECK(a.to_dense()(1, 3) == 254.0f);
  check_error([&] { sp::bsr_int8::from_quantized(qv, s, mv, {2, 3}); }, errc::shape_mismatch);
  check_error([&] { sp::bsr_int8::from_quantized(qv, s, mv, {0, 2}); }, errc::invalid_argument);
  check_error([&] { sp::bsr_int8::from_quantized(qv, std::vector<float>{1.0f}, mv, {1, 4}); }, errc::shape_mismatch);
  check_error([&] { sp::bsr_int8::from_quantized(qv, std::vector<float>{1.0f, 0.0f}, mv, {1, 4}); },
              errc::invalid_argument);
  check_error([&] { sp::bsr_int8::from_quantized(qv, std::vector<float>{NAN, 1.0f}, mv, {1, 4}); },
              errc::invalid_argument);
  const const_view<std::uint8_t, 2> mv_wide(m.data(), shape<2>{1, 8});
  check_error([&] { sp::bsr_int8::from_quantized(qv, s, mv_wide, {1, 4}); }, errc::shape_mismatch);
  std::vector<std::uint8_t> m2 = m;
  m2[5] = 2;
  check_error([&] { sp::bsr_int8::from_quantized(qv, s, const_view<std::uint8_t, 2>(m2.data(), shape<2>{2, 4}), {1, 4}); },
              errc::invalid_argument);
  // from_dense: a kept NaN is an error, a masked-out one is not.
  std::vector<float> w{1, NAN, 2, 3, 4, 5, 6, 7};
  std::vector<std::uint8_t> keep{1, 1, 0, 0, 0, 0, 0, 0}, skip{1, 0, 0, 0, 0, 0, 0, 0};
  const const_view<float, 2> wv(w.data(), shape<2>{2, 4});
  check_error([&] { sp::bsr_int8::from_dense(wv, const_view<std::uint8_t, 2>(keep.data(), shape<2>{2, 4}), {1, 4}); },
              errc::non_finite);
  CHECK(sp::bsr_int8::from_dense(wv, const_view<std::uint8_t, 2>(skip.data(), shape<2>{2, 4}), {1, 4}).blocks() == 1);
  check_error([&] { sp::bsr_int8::from_dense(wv, const_view<std::uint8_t, 2>(skip.data(), shape<2>{2, 4}), {3, 1}); },
              errc::shape_mismatch);
}

TEST_CASE("nm_f32: 2:4 metadata is 2 bits per kept value in NVIDIA's nibble order") {
  // Row: [a 0 b 0 | 0 c 0 d | e f 0 0 | 0 0 g h]: positions (0,2) (1,3) (0,1) (2,3).
  std::vector<float> w{1, 0, 2, 0, 0, 3, 0, 4, 5, 6, 0, 0, 0, 0, 7, 8};
  std::vector<std::uint8_t> m(16);
  for (std::size_t i = 0; i < 16; ++i) m[i] = w[i] != 0.0f;
  const auto a = sp::nm_f32::from_dense(const_view<float, 2>(w.data(), shape<2>{1, 16}),
                                        const_view<std::uint8_t, 2>(m.data(), shape<2>{1, 16}), 2, 4);
  CHECK(a.position_bits() == 2);
  REQUIRE(a.metadata().size() == 1);
  // nibble g = first | second << 2; group 0 in the low nibble.
  const unsigned expected = (0u | 2u << 2) | (1u | 3u << 2) << 4 | (0u | 1u << 2) << 8 | (2u | 3u << 2) << 12;
  CHECK(a.metadata()[0] == expected);
  CHECK(a.values()[3] == 4.0f);
  CHECK(a.bytes() == static_cast<std::size_t>(4 * 8 + 2));
  const auto d = a.to_dense();
  for (index_t j = 0; j < 16; ++j) CHECK(d(0, j) == w[static_cast<std::size_t>(j)]);
}

TEST_CASE("nm_f32: any N < M round-trips, pads short groups and sizes metadata at ceil(log2 M) bits") {
  for (auto [n, m] : {std::pair<index_t, index_t>{2, 4}, {4, 8}, {1, 4}, {3, 5}, {1, 2}, {5, 16}}) {
    INFO(n << ":" << m);
    const index_t rows = 6, cols = m * 7;
    auto c = random_case(rows, cols, 0.0, 9);
    std::mt19937_64 rng(static_cast<std::uint64_t>(n * 100 + m));
    for (index_t i = 0; i < rows; ++i)
      for (index_t g = 0; g < cols / m; ++g)
        for (index_t t = 0; t < n; ++t)  // up to n random positions (duplicates make short groups)
          c.mask[static_cast<std::size_t>(i * cols + g * m + static_cast<index_t>(rng() % static_cast<unsigned>(m)))] = 1;
    const auto a = sp::nm_f32::from_dense(c.wv(), c.mv(), n, m);
    check_equals_masked(a.to_dense(), c);
    const int bits = static_cast<int>(std::ceil(std::log2(static_cast<double>(m))));
    CHECK(a.position_bits() == bits);
    const index_t kept = cols / m * n;
    CHECK(a.bytes() == static_cast<std::size_t>(4 * rows * kept + 2 * rows * ((kept * bits + 15) / 16)));
  }
}

TEST_CASE("nm_f32: N >= M, M not dividing the columns and overfull groups are errors") {
  auto c = random_case(2, 8, 0.0, 10);
  check_error([&] { sp::nm_f32::from_dense(c.wv(), c.mv(), 4, 4); }, errc::invalid_argument);
  check_error([&] { sp::nm_f32::from_dense(c.wv(), c.mv(), 2, 3); }, errc::shape_mismatch);
  c.mask[0] = c.mask[1] = c.mask[2] = 1;
  check_error([&] { sp::nm_f32::from_dense(c.wv(), c.mv(), 2, 4); }, errc::invalid_argument);
}

TEST_CASE("bitmask_f32: round-trips and costs one bit per weight plus the kept values") {
  const auto c = random_case(13, 130, 0.4, 11);
  const auto a = sp::bitmask_f32::from_dense(c.wv(), c.mv());
  check_equals_masked(a.to_dense(), c);
  CHECK(a.nnz() == c.kept());
  CHECK(a.bytes() == static_cast<std::size_t>(8 * 13 * 3 + 4 * 14 + 4 * c.kept()));
}
