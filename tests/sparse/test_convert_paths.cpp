// test_convert_paths.cpp: every ISA path of the dense -> CSR / BSR / N:M conversions gives the reference's bytes and the reference's errors.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <shrink/sparse.hpp>
#include <string>
#include <support/isa.hpp>
#include <support/random.hpp>
#include <vector>

using namespace shrink;
namespace sp = shrink::sparse;

namespace {

// A matrix whose rows cycle through the awkward patterns: all masked out, all kept, random
// at ~10 % and ~60 %; the weights hold exact zeros and negative zeros so from_nonzeros
// differs from the mask.
struct awkward {
  index_t rows, cols;
  std::vector<float> w;
  std::vector<std::uint8_t> mask;
  awkward(index_t r, index_t c, std::uint64_t seed) : rows(r), cols(c) {
    w = testing::normal_floats(static_cast<std::size_t>(r * c), seed);
    mask.resize(w.size());
    std::mt19937_64 rng(seed + 1);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (index_t i = 0; i < r; ++i)
      for (index_t j = 0; j < c; ++j) {
        const auto at = static_cast<std::size_t>(i * c + j);
        const double keep = i % 4 == 0 ? 0.0 : i % 4 == 1 ? 1.0 : i % 4 == 2 ? 0.1 : 0.6;
        mask[at] = u(rng) < keep ? 1 : 0;
        const double z = u(rng);
        if (z < 0.2) w[at] = 0.0f;
        else if (z < 0.25) w[at] = -0.0f;
      }
  }
  const_view<float, 2> wv() const { return {w.data(), shape<2>{rows, cols}}; }
  const_view<std::uint8_t, 2> mv() const { return {mask.data(), shape<2>{rows, cols}}; }
};

template <class T>
bool same_bytes(std::span<const T> a, std::span<const T> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

template <class Csr>
void check_same_csr(const Csr& got, const Csr& want) {
  REQUIRE(got.rows() == want.rows());
  REQUIRE(got.cols() == want.cols());
  CHECK(same_bytes(got.row_ptr(), want.row_ptr()));
  CHECK(got.col_idx().narrow() == want.col_idx().narrow());
  CHECK(same_bytes(got.col_idx().u16(), want.col_idx().u16()));
  CHECK(same_bytes(got.col_idx().u32(), want.col_idx().u32()));
  CHECK(same_bytes(got.values(), want.values()));
  CHECK(got.bytes() == want.bytes());
}

void check_same(const sp::bsr_f32& got, const sp::bsr_f32& want) {
  REQUIRE(got.blocks() == want.blocks());
  CHECK(same_bytes(got.row_ptr(), want.row_ptr()));
  CHECK(same_bytes(got.block_col().u16(), want.block_col().u16()));
  CHECK(same_bytes(got.block_col().u32(), want.block_col().u32()));
  CHECK(same_bytes(got.values(), want.values()));
  CHECK(got.bytes() == want.bytes());
}

void check_same(const sp::nm_f32& got, const sp::nm_f32& want) {
  REQUIRE(got.kept_per_row() == want.kept_per_row());
  CHECK(got.metadata_words_per_row() == want.metadata_words_per_row());
  CHECK(same_bytes(got.values(), want.values()));
  CHECK(same_bytes(got.metadata(), want.metadata()));
  CHECK(got.bytes() == want.bytes());
}

// The conversion must raise the reference's error: same code, same message (so the same
// reported position).
template <class Fast, class Reference>
void check_same_error(Fast&& fast, Reference&& reference) {
  std::string want;
  errc want_code = errc::invalid_argument;
  try {
    reference();
    FAIL("the reference accepted a bad input");
  } catch (const shrink::error& e) {
    want = e.what();
    want_code = e.code();
  }
  try {
    fast();
    FAIL("expected shrink::error: " << want);
  } catch (const shrink::error& e) {
    CHECK(e.code() == want_code);
    CHECK(std::string(e.what()) == want);
  }
}

// On a fast path, bad input is detected there and handed to the reference (which raises).
void check_fell_back(std::uint64_t before) {
  if (kernels::selected_path(sp::convert_impl::k_impls) != kernels::isa::reference)
    CHECK(sp::convert_impl::fallbacks().load() > before);
}

// Valid input must stay on the path under test: no conversion may hand back to the reference.
struct no_fallback {
  std::uint64_t before = sp::convert_impl::fallbacks().load();
  ~no_fallback() { CHECK(sp::convert_impl::fallbacks().load() == before); }
};

// Lowers the non-temporal-store threshold to 0 for its lifetime, so small test matrices take
// the streaming stores that large ones use.
struct streaming_everything {
  std::size_t before = sp::convert_impl::stream_min_bytes().exchange(0);
  ~streaming_everything() { sp::convert_impl::stream_min_bytes().store(before); }
};

const std::vector<std::pair<index_t, index_t>> k_shapes{{1, 1},  {3, 7},   {5, 8},  {4, 13},
                                                        {8, 33}, {16, 64}, {9, 100}, {12, 257}};

}  // namespace

TEST_CASE("convert paths: CSR fp32 from mask and from non-zeros match the reference on awkward shapes") {
  for (auto [r, c] : k_shapes) {
    const awkward a(r, c, static_cast<std::uint64_t>(r * 1000 + c));
    const auto want_m = sp::csr_f32::from_dense_reference(a.wv(), a.mv());
    const auto want_nz = sp::csr_f32::from_nonzeros_reference(a.wv());
    testing::for_each_isa([&](kernels::isa path) {
      INFO(r << " x " << c);
      const no_fallback stays;
      // the conversions run the path under test (reference, generic, avx2), not a fallback
      if (path == kernels::isa::reference || path == kernels::isa::generic || path == kernels::isa::avx2)
        CHECK(kernels::selected_path(sp::convert_impl::k_impls) == path);
      check_same_csr(sp::csr_f32::from_dense(a.wv(), a.mv()), want_m);
      check_same_csr(sp::csr_f32::from_nonzeros(a.wv()), want_nz);
    });
  }
}

TEST_CASE("convert paths: bitmask plus packed values matches the reference on awkward shapes") {
  for (auto [r, c] : k_shapes) {
    const awkward a(r, c, static_cast<std::uint64_t>(r * 5 + c));
    const auto want = sp::bitmask_f32::from_dense_reference(a.wv(), a.mv());
    testing::for_each_isa([&](kernels::isa) {
      INFO(r << " x " << c);
      const no_fallback stays;
      const auto got = sp::bitmask_f32::from_dense(a.wv(), a.mv());
      CHECK(same_bytes(got.bits(), want.bits()));
      CHECK(same_bytes(got.values(), want.values()));
      CHECK(same_bytes(got.row_offset(), want.row_offset()));
      CHECK(got.bytes() == want.bytes());
    });
  }
}

TEST_CASE("convert paths: CSR int8, from_quantized and codebook match the reference on awkward shapes") {
  for (auto [r, c] : k_shapes) {
    const awkward a(r, c, static_cast<std::uint64_t>(r * 77 + c));
    std::vector<std::int8_t> q(a.w.size());
    std::vector<std::uint8_t> idx(a.w.size());
    for (std::size_t k = 0; k < q.size(); ++k) {
      q[k] = static_cast<std::int8_t>(static_cast<int>(k * 37 % 255) - 127);
      idx[k] = static_cast<std::uint8_t>(k * 11 % 16);
    }
    const std::vector<float> scales(static_cast<std::size_t>(r), 0.5f);
    std::vector<float> centroids(16);
    for (int k = 0; k < 16; ++k) centroids[static_cast<std::size_t>(k)] = 0.25f * static_cast<float>(k) - 1.0f;
    const const_view<std::int8_t, 2> qv{q.data(), shape<2>{r, c}};
    const const_view<std::uint8_t, 2> iv{idx.data(), shape<2>{r, c}};
    const auto want_i8 = sp::csr_int8::from_dense_reference(a.wv(), a.mv());
    testing::for_each_isa([&](kernels::isa path) {
      INFO(r << " x " << c);
      const no_fallback stays;
      const auto got = sp::csr_int8::from_dense(a.wv(), a.mv());
      check_same_csr(got, want_i8);
      CHECK(same_bytes(got.row_scales(), want_i8.row_scales()));
      const auto gq = sp::csr_int8::from_quantized(qv, scales, a.mv());
      const auto gc = sp::csr_codebook::from_indices(iv, centroids, a.mv());
      kernels::scoped_isa ref(kernels::isa::reference);
      (void)path;
      check_same_csr(gq, sp::csr_int8::from_quantized(qv, scales, a.mv()));
      check_same_csr(gc, sp::csr_codebook::from_indices(iv, centroids, a.mv()));
    });
  }
}

TEST_CASE("convert paths: BSR every block shape matches the reference from mask and from non-zeros") {
  const std::vector<sp::block_shape> blocks{{1, 4}, {4, 4}, {8, 1},  {16, 1}, {24, 1}, {32, 1}, {40, 1},
                                            {4, 1}, {1, 1}, {2, 3}, {4, 8},  {1, 72}, {3, 4}};
  for (auto blk : blocks) {
    // r x 1 blocks also on 283 columns: several 128-column windows, a ragged last one
    for (index_t scale : {1, 3, 5, 40}) {
      if (scale == 40 && blk.cols != 1) continue;
      const index_t r = blk.rows * (scale + 1), c = blk.cols * (scale * 7 + 3);
      const awkward a(r, c, static_cast<std::uint64_t>(r * 31 + c));
      const auto want_m = sp::bsr_f32::from_dense_reference(a.wv(), a.mv(), blk);
      const auto want_nz = sp::bsr_f32::from_nonzeros_reference(a.wv(), blk);
      testing::for_each_isa([&](kernels::isa) {
        INFO(blk.rows << "x" << blk.cols << " blocks on " << r << " x " << c);
        const no_fallback stays;
        check_same(sp::bsr_f32::from_dense(a.wv(), a.mv(), blk), want_m);
        check_same(sp::bsr_f32::from_nonzeros(a.wv(), blk), want_nz);
        const streaming_everything nt;
        check_same(sp::bsr_f32::from_dense(a.wv(), a.mv(), blk), want_m);
        check_same(sp::bsr_f32::from_nonzeros(a.wv(), blk), want_nz);
      });
    }
  }
}

TEST_CASE("convert paths: N:M for every N < M in 2, 4, 8 (and M = 3, 16 via the reference) matches the reference") {
  const std::vector<std::pair<index_t, index_t>> nms{{1, 2}, {2, 4}, {1, 4}, {3, 4}, {4, 8}, {1, 8}, {7, 8}, {2, 3}, {5, 16}};
  for (auto [n, m] : nms)
    for (index_t groups : {1, 3, 4, 9, 33}) {
      const index_t rows = 6, cols = groups * m;
      awkward a(rows, cols, static_cast<std::uint64_t>(n * 100 + m * 10 + groups));
      // A valid N:M mask: each group keeps between 0 and N entries (short groups get padded).
      std::mt19937_64 rng(static_cast<std::uint64_t>(groups));
      for (index_t i = 0; i < rows; ++i)
        for (index_t g = 0; g < groups; ++g) {
          std::vector<int> pos(static_cast<std::size_t>(m));
          for (index_t p = 0; p < m; ++p) pos[static_cast<std::size_t>(p)] = static_cast<int>(p);
          std::shuffle(pos.begin(), pos.end(), rng);
          const index_t keep = i == 0 ? 0 : i == 1 ? n : static_cast<index_t>(rng() % static_cast<std::uint64_t>(n + 1));
          for (index_t p = 0; p < m; ++p)
            a.mask[static_cast<std::size_t>(i * cols + g * m + pos[static_cast<std::size_t>(p)])] = p < keep ? 1 : 0;
        }
      const auto want = sp::nm_f32::from_dense_reference(a.wv(), a.mv(), n, m);
      testing::for_each_isa([&](kernels::isa) {
        INFO(n << ":" << m << " on " << rows << " x " << cols);
        const no_fallback stays;
        check_same(sp::nm_f32::from_dense(a.wv(), a.mv(), n, m), want);
        const streaming_everything nt;
        check_same(sp::nm_f32::from_dense(a.wv(), a.mv(), n, m), want);
      });
    }
}

TEST_CASE("convert paths: NaN, Inf, bad mask bytes, over-full groups and bad indices raise the reference's error") {
  const index_t r = 6, c = 24;
  for (index_t at : {index_t{0}, index_t{5}, index_t{31}, index_t{7 * 4 + 3}, r * c - 1}) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      awkward a(r, c, static_cast<std::uint64_t>(at + 5));
      a.w[static_cast<std::size_t>(at)] = bad;
      a.mask[static_cast<std::size_t>(at)] = 1;
      if (at + 2 < r * c) a.w[static_cast<std::size_t>(at + 2)] = bad;  // a second one: the first is reported
      INFO("bad value at " << at);
      testing::for_each_isa([&](kernels::isa) {
        const std::uint64_t before = sp::convert_impl::fallbacks().load();
        check_same_error([&] { (void)sp::csr_f32::from_dense(a.wv(), a.mv()); },
                         [&] { (void)sp::csr_f32::from_dense_reference(a.wv(), a.mv()); });
        check_same_error([&] { (void)sp::csr_f32::from_nonzeros(a.wv()); },
                         [&] { (void)sp::csr_f32::from_nonzeros_reference(a.wv()); });
        check_same_error([&] { (void)sp::csr_int8::from_dense(a.wv(), a.mv()); },
                         [&] { (void)sp::csr_int8::from_dense_reference(a.wv(), a.mv()); });
        check_same_error([&] { (void)sp::bitmask_f32::from_dense(a.wv(), a.mv()); },
                         [&] { (void)sp::bitmask_f32::from_dense_reference(a.wv(), a.mv()); });
        for (sp::block_shape blk : {sp::block_shape{1, 4}, sp::block_shape{2, 4}, sp::block_shape{3, 1},
                                    sp::block_shape{2, 8}}) {
          check_same_error([&] { (void)sp::bsr_f32::from_dense(a.wv(), a.mv(), blk); },
                           [&] { (void)sp::bsr_f32::from_dense_reference(a.wv(), a.mv(), blk); });
          check_same_error([&] { (void)sp::bsr_f32::from_nonzeros(a.wv(), blk); },
                           [&] { (void)sp::bsr_f32::from_nonzeros_reference(a.wv(), blk); });
        }
        std::vector<std::uint8_t> nm_mask(a.mask.size(), 0);
        nm_mask[static_cast<std::size_t>(at)] = 1;
        const const_view<std::uint8_t, 2> nmv{nm_mask.data(), shape<2>{r, c}};
        check_same_error([&] { (void)sp::nm_f32::from_dense(a.wv(), nmv, 2, 4); },
                         [&] { (void)sp::nm_f32::from_dense_reference(a.wv(), nmv, 2, 4); });
        check_fell_back(before);
      });
    }
  }
  SECTION("a mask byte of 2, anywhere, even where the weight is NaN later") {
    awkward a(r, c, 99);
    a.mask[37] = 2;
    a.w[50] = std::numeric_limits<float>::quiet_NaN();
    a.mask[50] = 1;
    std::vector<std::uint8_t> idx(a.w.size(), 1);
    std::vector<std::int8_t> q(a.w.size(), 3);
    const std::vector<float> centroids{0.0f, 1.0f}, scales(static_cast<std::size_t>(r), 1.0f);
    const const_view<std::uint8_t, 2> iv{idx.data(), shape<2>{r, c}};
    const const_view<std::int8_t, 2> qv{q.data(), shape<2>{r, c}};
    testing::for_each_isa([&](kernels::isa) {
      check_same_error([&] { (void)sp::csr_f32::from_dense(a.wv(), a.mv()); },
                       [&] { (void)sp::csr_f32::from_dense_reference(a.wv(), a.mv()); });
      check_same_error([&] { (void)sp::csr_int8::from_dense(a.wv(), a.mv()); },
                       [&] { (void)sp::csr_int8::from_dense_reference(a.wv(), a.mv()); });
      check_same_error([&] { (void)sp::bitmask_f32::from_dense(a.wv(), a.mv()); },
                       [&] { (void)sp::bitmask_f32::from_dense_reference(a.wv(), a.mv()); });
      check_same_error([&] { (void)sp::bsr_f32::from_dense(a.wv(), a.mv(), {2, 4}); },
                       [&] { (void)sp::bsr_f32::from_dense_reference(a.wv(), a.mv(), {2, 4}); });
      check_same_error([&] { (void)sp::nm_f32::from_dense(a.wv(), a.mv(), 2, 4); },
                       [&] { (void)sp::nm_f32::from_dense_reference(a.wv(), a.mv(), 2, 4); });
      check_same_error(
          [&] { (void)sp::csr_codebook::from_indices(iv, centroids, a.mv()); },
          [&] {
            kernels::scoped_isa ref(kernels::isa::reference);
            (void)sp::csr_codebook::from_indices(iv, centroids, a.mv());
          });
      check_same_error(
          [&] { (void)sp::csr_int8::from_quantized(qv, scales, a.mv()); },
          [&] {
            kernels::scoped_isa ref(kernels::isa::reference);
            (void)sp::csr_int8::from_quantized(qv, scales, a.mv());
          });
    });
  }
  SECTION("an over-full N:M group after a NaN in an earlier group, and a codebook index out of range") {
    awkward a(r, c, 7);
    std::vector<std::uint8_t> nm_mask(a.mask.size(), 0);
    nm_mask[9] = 1;
    a.w[9] = std::numeric_limits<float>::infinity();
    nm_mask[r * c - 4] = nm_mask[r * c - 3] = nm_mask[r * c - 1] = 1;
    const const_view<std::uint8_t, 2> nmv{nm_mask.data(), shape<2>{r, c}};
    std::vector<std::uint8_t> idx(a.w.size(), 1);
    idx[40] = 2;  // outside a 2-entry codebook where the mask keeps it
    a.mask[40] = 1;
    const std::vector<float> centroids{0.0f, 1.0f};
    const const_view<std::uint8_t, 2> iv{idx.data(), shape<2>{r, c}};
    testing::for_each_isa([&](kernels::isa) {
      check_same_error([&] { (void)sp::nm_f32::from_dense(a.wv(), nmv, 2, 4); },
                       [&] { (void)sp::nm_f32::from_dense_reference(a.wv(), nmv, 2, 4); });
      a.w[9] = 1.0f;
      check_same_error([&] { (void)sp::nm_f32::from_dense(a.wv(), nmv, 2, 4); },
                       [&] { (void)sp::nm_f32::from_dense_reference(a.wv(), nmv, 2, 4); });
      a.w[9] = std::numeric_limits<float>::infinity();
      check_same_error(
          [&] { (void)sp::csr_codebook::from_indices(iv, centroids, a.mv()); },
          [&] {
            kernels::scoped_isa ref(kernels::isa::reference);
            (void)sp::csr_codebook::from_indices(iv, centroids, a.mv());
          });
    });
  }
}

TEST_CASE("convert paths: more than 65536 columns (32-bit indices) and a strided view match the reference") {
  const awkward a(4, 70003, 5);
  const auto want = sp::csr_f32::from_dense_reference(a.wv(), a.mv());
  REQUIRE_FALSE(want.col_idx().narrow());
  testing::for_each_isa([&](kernels::isa) {
    const no_fallback stays;
    check_same_csr(sp::csr_f32::from_dense(a.wv(), a.mv()), want);
  });
  // Every other column of a 6 x 40 matrix: the fast paths need unit column stride and hand
  // this one to the reference; the result is still the reference's.
  const awkward b(6, 40, 6);
  const const_view<float, 2> ws{b.w.data(), shape<2>{6, 20}, {40, 2}};
  const const_view<std::uint8_t, 2> ms{b.mask.data(), shape<2>{6, 20}, {40, 2}};
  const auto want_s = sp::csr_f32::from_dense_reference(ws, ms);
  testing::for_each_isa([&](kernels::isa) { check_same_csr(sp::csr_f32::from_dense(ws, ms), want_s); });
  // Row stride larger than the width: rows are contiguous, the fast path reads them in place.
  const const_view<float, 2> wr{b.w.data(), shape<2>{6, 24}, {40, 1}};
  const const_view<std::uint8_t, 2> mr{b.mask.data(), shape<2>{6, 24}, {40, 1}};
  const auto want_r = sp::bsr_f32::from_dense_reference(wr, mr, {2, 4});
  testing::for_each_isa([&](kernels::isa) {
    const no_fallback stays;
    check_same_csr(sp::csr_f32::from_dense(wr, mr), sp::csr_f32::from_dense_reference(wr, mr));
    check_same(sp::bsr_f32::from_dense(wr, mr, {2, 4}), want_r);
  });
}
