// sparse_plan.hpp: the explicit preprocessing steps: make_plan (any format to the row-program layout of SpMM) and make_spmv_plan (CSR fp32 to a batch-1 layout).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>


#include "../core/aligned_buffer.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/huge_pages.hpp"
#include "../core/parallel.hpp"
#include "../sparse/bsr.hpp"
#include "../sparse/bsr_int8.hpp"
#include "../sparse/csr.hpp"
#include "../sparse/nm.hpp"
#include "window16_layout.hpp"

namespace shrink::kernels {

/// A packed, kernel-ready sparse matrix: CSR shape with 32-bit column indices (what the
/// AVX2 gathers take) and one value of type V per entry: float (fp32), std::int8_t (int8,
/// with `row_scale`) or std::uint8_t (an index into `table`, the codebook). Every format
/// (CSR, N:M, BSR) is lowered to this shape once by make_plan(); the kernels then never
/// allocate and never check bounds again (make_plan validated them).
/// docs/sparse.md, "Plans", gives the layout and its byte cost.
template <class V>
struct sparse_plan {
  index_t rows = 0, cols = 0;
  aligned_buffer<std::uint32_t> row_ptr{1};
  aligned_buffer<std::uint32_t> col;
  aligned_buffer<V> values;
  aligned_buffer<float> table;        ///< codebook: 32 entries at least, zero-padded
  index_t table_size = 0;             ///< codebook: real number of centroids
  aligned_buffer<float> row_scale;    ///< int8: w = row_scale[i] * q
  /// Entries come in runs of `run` consecutive columns starting at a multiple of `run`
  /// (BSR 1xc / rxc plans: run = c; CSR: 1). SpMV loads x for a run of 4 in one go.
  index_t run = 1;
  /// Rows come in aligned groups of `row_group` with identical column lists (BSR r x c
  /// plans: r; CSR: 1). SpMV gathers x once for 4 rows of a group.
  index_t row_group = 1;
  /// Every row holds exactly `group_entries` entries in each aligned group of `group_cols`
  /// columns, stored group after group (N:M plans: M and N; 0 = no such regularity). The
  /// blocked SpMM then finds a column block's entries by arithmetic instead of a scan.
  index_t group_cols = 0, group_entries = 0;

  [[nodiscard]] index_t nnz() const noexcept { return static_cast<index_t>(values.size()); }
  [[nodiscard]] std::size_t bytes() const noexcept {
    return row_ptr.size_bytes() + col.size_bytes() + values.size_bytes() + table.size_bytes() +
           row_scale.size_bytes();
  }
};

using sparse_plan_f32 = sparse_plan<float>;
using sparse_plan_int8 = sparse_plan<std::int8_t>;
using sparse_plan_codebook = sparse_plan<std::uint8_t>;

namespace sparse_detail {

/// Gathers take signed 32-bit indices.
inline void check_columns(index_t cols) {
  SHRINK_REQUIRE(cols <= index_t{0x7FFFFFFF}, errc::overflow, "make_plan: ", cols,
                 " columns exceed the 2^31 - 1 that 32-bit gather indices address");
}

template <class V, class Csr>
sparse_plan<V> lower_csr(const Csr& a) {
  sparse_plan<V> p;
  check_columns(a.cols());
  p.rows = a.rows();
  p.cols = a.cols();
  p.row_ptr = aligned_buffer<std::uint32_t>(a.row_ptr());
  p.col = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(a.nnz()));
  for (index_t k = 0; k < a.nnz(); ++k) p.col[static_cast<std::size_t>(k)] = static_cast<std::uint32_t>(a.col_idx()[k]);
  p.values = aligned_buffer<V>(a.values());
  return p;
}

/// The SpMM row front end every x86 path shares: fn(col, val, n, i) for each row i in
/// [r0, r1) with its n entries. (fn runs outside the caller's target attribute: it only
/// calls the ISA-specific tile functions, it does not use intrinsics itself.)
template <class V, class Fn>
SHRINK_ALWAYS_INLINE void for_each_row(const sparse_plan<V>& p, index_t r0, index_t r1, Fn&& fn) {
  for (index_t i = r0; i < r1; ++i) {
    const index_t k0 = p.row_ptr[static_cast<std::size_t>(i)], n = p.row_ptr[static_cast<std::size_t>(i) + 1] - k0;
    fn(p.col.data() + k0, p.values.data() + k0, n, i);
  }
}

/// The SpMV front end every plan type shares: x has W.cols elements, y W.rows.
inline void check_spmv(index_t rows, index_t cols, std::size_t x, std::size_t y) {
  SHRINK_REQUIRE(x == static_cast<std::size_t>(cols) && y == static_cast<std::size_t>(rows), errc::shape_mismatch,
                 "spmv: W is ", rows, "x", cols, ", so x needs ", cols, " and y ", rows, " elements; got ", x, " and ",
                 y);
}

/// The SpMM front end: X [W.cols, batch], Y [W.rows, batch], rows contiguous. Returns
/// false when there is nothing to compute (batch 0 or no rows).
template <class X, class Y>
bool check_spmm(index_t rows, index_t cols, const X& x, const Y& y) {
  SHRINK_REQUIRE(x.extent(0) == cols && y.extent(0) == rows && x.extent(1) == y.extent(1), errc::shape_mismatch,
                 "spmm: W is ", rows, "x", cols, "; expected X [", cols, ", batch] and Y [", rows, ", batch], got X ",
                 x.shape(), " and Y ", y.shape());
  SHRINK_REQUIRE((x.extent(1) <= 1 || x.stride(1) == 1) && (y.extent(1) <= 1 || y.stride(1) == 1),
                 errc::invalid_argument, "spmm: X and Y rows must be contiguous (stride 1 along the batch axis)");
  return x.extent(1) != 0 && rows != 0;
}

/// Rows [r0, r1) for part `part` of `parts`, balanced by stored entries plus one per row
/// (a row costs its output store even when empty).
inline index_t balanced_row(std::span<const std::uint32_t> row_ptr, index_t rows, index_t part, index_t parts) {
  if (part >= parts) return rows;
  const double total = static_cast<double>(row_ptr[static_cast<std::size_t>(rows)]) + static_cast<double>(rows);
  const double target = total * static_cast<double>(part) / static_cast<double>(parts);
  index_t lo = 0, hi = rows;  // first row whose start cost >= target
  while (lo < hi) {
    const index_t mid = (lo + hi) / 2;
    if (static_cast<double>(row_ptr[static_cast<std::size_t>(mid)]) + static_cast<double>(mid) < target)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/// Runs fn(r0, r1) over row ranges balanced by non-zeros. Each row is computed by one call
/// in a fixed order, so results do not depend on the thread count. With one thread nothing
/// is allocated.
template <class V, class Fn>
void for_row_ranges(const context& ctx, const sparse_plan<V>& p, Fn&& fn) {
  const index_t parts = std::min<index_t>(ctx.resolved_threads(), std::max<index_t>(p.rows, 1));
  if (parts <= 1) {
    fn(index_t{0}, p.rows);
    return;
  }
  parallel_for(ctx, 0, parts, 1, [&](index_t b, index_t e) {
    for (index_t part = b; part < e; ++part) {
      const index_t r0 = balanced_row(p.row_ptr.span(), p.rows, part, parts);
      const index_t r1 = balanced_row(p.row_ptr.span(), p.rows, part + 1, parts);
      if (r0 < r1) fn(r0, r1);
    }
  });
}

/// The check every make_spmv_plan shares: the CSR row pointers (rows + 1 of them) end at
/// the nnz stored entries. (csr_* validates itself; this guards the plan's own arithmetic.)
inline void check_row_pointers(const char* who, std::span<const std::uint32_t> rp, index_t rows, index_t nnz) {
  SHRINK_REQUIRE(rp.size() == static_cast<std::size_t>(rows) + 1 && rp[static_cast<std::size_t>(rows)] ==
                     static_cast<std::uint32_t>(nnz),
                 errc::format, who, ": row pointers do not end at the ", nnz, " stored entries");
}

/// delta8: whether CSR entries [k0, k1) (strictly increasing columns) can be stored as u8
/// steps, the first from column 0: every step at most 255. Rows that cannot are escape rows.
template <class Column>
bool fits_delta8(const Column& column, index_t k0, index_t k1) {
  index_t prev = 0;
  for (index_t k = k0; k < k1; ++k) {
    if (column(k) - prev > 255) return false;
    prev = column(k);
  }
  return true;
}

/// delta8 u16-stream units of an fp32 row of n entries: 5 bytes each, padded to even.
constexpr std::size_t delta8_units(index_t n) noexcept { return (5 * static_cast<std::size_t>(n) + 1) / 2; }

/// Where step e of a delta8 chunk of t entries is stored: each full group of 8 steps
/// (8·⌊t/8⌋ of them) is interleaved as [s0 s4 s1 s5 s2 s6 s3 s7], so one u64 load masked
/// with 0x00FF00FF00FF00FF gives steps 0-3 as u16 fields and the same after an 8-bit shift
/// gives steps 4-7 (no byte spreading: pdep or shift/mask spreads made the kernel
/// 1.2-1.6x slower than this, benchmarks/results/sparse.md). The last t mod 8 steps are in order.
constexpr std::size_t delta8_slot(index_t e, index_t t) noexcept {
  const index_t grouped = t / 8 * 8;
  if (e >= grouped) return static_cast<std::size_t>(e);
  const index_t k = e % 8;
  return static_cast<std::size_t>(e - k + (k < 4 ? 2 * k : 2 * (k - 4) + 1));
}

/// The columns of one interleaved group of 8 steps (`eight`, a little-endian u64 load),
/// relative to the column before the group, as two u64 of 4 u16 fields: entries 0-3 in
/// `lo`, 4-7 in `hi` relative to the column of entry 3. One multiply by
/// 0x0001'0001'0001'0001 adds each field into every higher one (field f = d0 + ... + df, at
/// most 4·255: no carry crosses a field); field 3 is the 4 steps' total. The kernels add
/// the column before the group through the x pointer, so only that pointer is carried.
/// `ones` is k_delta8_ones hidden from the optimiser (delta8_ones()): with the constant in
/// view GCC replaces the one imul by 4 shifts, adds and copies, and the kernel got ~1.6x slower.
inline constexpr std::uint64_t k_delta8_ones = 0x0001000100010001ull;
SHRINK_ALWAYS_INLINE std::uint64_t delta8_ones() noexcept {
  std::uint64_t ones = k_delta8_ones;
#if defined(__GNUC__)
  __asm__("" : "+r"(ones));
#endif
  return ones;
}
SHRINK_ALWAYS_INLINE void delta8_columns(std::uint64_t eight, std::uint64_t ones, std::uint64_t& lo,
                                         std::uint64_t& hi) noexcept {
  constexpr std::uint64_t bytes = 0x00FF00FF00FF00FFull;
  lo = (eight & bytes) * ones;
  hi = ((eight >> 8) & bytes) * ones;
}

}  // namespace sparse_detail

/// Lowers CSR fp32: widens column indices to 32 bits.
inline sparse_plan_f32 make_plan(const sparse::csr_f32& a) { return sparse_detail::lower_csr<float>(a); }

/// Lowers CSR with codebook indices: keeps the 8-bit indices, copies the centroid table
/// zero-padded to 32 entries (the kernels' register tables read 8 or 16 at once).
inline sparse_plan_codebook make_plan(const sparse::csr_codebook& a) {
  auto p = sparse_detail::lower_csr<std::uint8_t>(a);
  p.table_size = static_cast<index_t>(a.centroids().size());
  p.table = aligned_buffer<float>(std::max<std::size_t>(a.centroids().size(), 32));
  std::copy(a.centroids().begin(), a.centroids().end(), p.table.begin());
  return p;
}

/// Lowers CSR int8: keeps the int8 values and row scales.
inline sparse_plan_int8 make_plan(const sparse::csr_int8& a) {
  // 127 * 128 * 131072 = 2^31 - 2^24: no int32 sum of a row can overflow below this width.
  SHRINK_REQUIRE(a.cols() <= 131072, errc::overflow, "make_plan(csr_int8): ", a.cols(),
                 " columns; exact int32 accumulation needs at most 131072");
  auto p = sparse_detail::lower_csr<std::int8_t>(a);
  p.row_scale = aligned_buffer<float>(a.row_scales());
  return p;
}

/// Lowers N:M: decodes the packed positions into column indices (the format keeps
/// ceil(log2 M) bits per value for storage; the kernel trades them for gather-ready indices).
inline sparse_plan_f32 make_plan(const sparse::nm_f32& a) {
  sparse_plan_f32 p;
  sparse_detail::check_columns(a.cols());
  p.rows = a.rows();
  p.cols = a.cols();
  const index_t kept = a.kept_per_row();
  p.row_ptr = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(a.rows()) + 1);
  sparse::detail::check_nnz("make_plan(nm_f32)", a.rows() * kept);
  for (index_t i = 0; i <= a.rows(); ++i) p.row_ptr[static_cast<std::size_t>(i)] = static_cast<std::uint32_t>(i * kept);
  p.col = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(a.rows() * kept));
  for (index_t i = 0; i < a.rows(); ++i)
    for (index_t k = 0; k < kept; ++k)
      p.col[static_cast<std::size_t>(i * kept + k)] = static_cast<std::uint32_t>(a.column(i, k));
  p.values = aligned_buffer<float>(a.values());
  p.group_cols = a.m();
  p.group_entries = a.n();
  return p;
}

namespace sparse_detail {

/// Lowers BSR (fp32 or int8 values): each block row becomes r rows whose entries are the
/// blocks' rows, columns consecutive inside a block (so SpMM reads c consecutive rows of X
/// per block); run = c and row_group = r tell the SpMV kernels so.
template <class V>
sparse_plan<V> lower_bsr(const sparse::bsr_base<V>& a, const char* who) {
  sparse_plan<V> p;
  check_columns(a.cols());
  sparse::detail::check_nnz(who, a.blocks() * a.block().rows * a.block().cols);
  p.rows = a.rows();
  p.cols = a.cols();
  const index_t r = a.block().rows, c = a.block().cols;
  p.row_ptr = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(a.rows()) + 1);
  p.col = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(a.blocks() * r * c));
  p.values = aligned_buffer<V>(static_cast<std::size_t>(a.blocks() * r * c));
  p.run = c;
  p.row_group = r;
  std::size_t k = 0;
  for (index_t br = 0; br < a.rows() / r; ++br) {
    const index_t b0 = a.row_ptr()[static_cast<std::size_t>(br)], b1 = a.row_ptr()[static_cast<std::size_t>(br) + 1];
    for (index_t y = 0; y < r; ++y) {
      for (index_t b = b0; b < b1; ++b)
        for (index_t x = 0; x < c; ++x, ++k) {
          p.col[k] = static_cast<std::uint32_t>(a.block_col()[b] * c + x);
          p.values[k] = a.values()[static_cast<std::size_t>(b * r * c + y * c + x)];
        }
      p.row_ptr[static_cast<std::size_t>(br * r + y) + 1] = static_cast<std::uint32_t>(k);
    }
  }
  return p;
}

}  // namespace sparse_detail

/// Lowers BSR fp32 (sparse_detail::lower_bsr).
inline sparse_plan_f32 make_plan(const sparse::bsr_f32& a) {
  return sparse_detail::lower_bsr<float>(a, "make_plan(bsr_f32)");
}

/// Lowers BSR int8: as bsr_f32, keeping the int8 codes and row scales; the int8 kernels
/// then give exact int32 sums, as for csr_int8.
inline sparse_plan_int8 make_plan(const sparse::bsr_int8& a) {
  SHRINK_REQUIRE(a.cols() <= 131072, errc::overflow, "make_plan(bsr_int8): ", a.cols(),
                 " columns; exact int32 accumulation needs at most 131072");
  auto p = sparse_detail::lower_bsr<std::int8_t>(a, "make_plan(bsr_int8)");
  p.row_scale = aligned_buffer<float>(a.row_scales());
  return p;
}

/// How a batch-1 plan (make_spmv_plan) stores a CSR fp32 matrix. docs/sparse.md, "SpMV plans".
enum class spmv_layout : std::uint8_t {
  automatic,  ///< make_spmv_plan picks by density (see make_spmv_plan); index32 past 65,536 columns
  index16,    ///< per row, chunks of 16 entries: 16 x u16 columns then 16 x fp32 values (6 B per entry)
  index32,    ///< separate u32 column and fp32 value arrays (8 B per entry), for any width
  bitmap,     ///< per row, one bit per column (u64 words) and the kept values packed (4 B + cols/8 B per row)
  /// per row, chunks of 16 entries: 16 x u8 column steps (the first from column 0; groups
  /// of 8 interleaved, sparse_detail::delta8_slot) then 16 values (fp32: 5 B per entry;
  /// int8: 2 B). A row with a step > 255 is an escape row, kept exactly in the index16
  /// (fp32) / u32-column (int8) form. cols <= 65,536.
  delta8,
  /// int8 only: columns in windows of 16, rows in blocks of 64 / S; a 128-byte pass holds S
  /// (local column, value) slots per row of the block for one window, x fetched by pshufb;
  /// entries past a row's slots may go to a per-block residual list
  /// (sparse_detail::make_window16, docs/sparse.md).
  window16,
};

/// A CSR fp32 matrix re-laid out for y = W·x alone (batch 1), where the cost is one
/// random x access per entry: the u16 layout moves 6 bytes per entry in one sequential
/// stream and needs no gather instruction; the bitmap layout replaces the x accesses by
/// contiguous x loads (dense columns, masked) and moves 4 bytes per entry + 1 bit per column.
/// The delta8 layout moves 5 bytes per entry (u8 column steps); rows it cannot encode go
/// to the index16 form inside the same stream, flagged in `escape`.
/// Built only by make_spmv_plan() from a validated CSR (sorted, unique, in-range columns).
struct spmv_plan_f32 {
  index_t rows = 0, cols = 0, entries = 0;
  spmv_layout layout = spmv_layout::index32;
  /// index16/delta8: offset of row i in `stream` (u16 units); index32/bitmap: first entry of row i.
  aligned_buffer<std::uint32_t> row_ptr{1};
  /// index16: [16 cols][16 values as 32 u16] per chunk; tail: [t cols][t values].
  /// delta8: bytes [16 u8 steps][16 fp32 values] per chunk, tail [t steps][t values] (steps
  /// in groups of 8 interleaved, sparse_detail::delta8_slot), the row padded with one zero
  /// byte to whole u16 units; escape rows as in index16.
  aligned_buffer<std::uint16_t> stream;
  aligned_buffer<std::uint8_t> escape;   ///< delta8: 1 when row i is stored index16 (a step > 255), else 0
  aligned_buffer<std::uint32_t> col;     ///< index32
  aligned_buffer<float> values;          ///< index32, bitmap (+8 zeros: the bitmap kernel loads 8 from any entry)
  aligned_buffer<std::uint64_t> bits;    ///< bitmap: rows x words, bit j%64 of word j/64 = column j kept
  index_t words = 0;                     ///< bitmap: ceil(cols / 64)

  [[nodiscard]] index_t nnz() const noexcept { return entries; }
  [[nodiscard]] std::size_t bytes() const noexcept {
    return row_ptr.size_bytes() + stream.size_bytes() + escape.size_bytes() + col.size_bytes() +
           values.size_bytes() + bits.size_bytes();
  }
};

/// Lowers CSR fp32 to a batch-1 plan. `layout` = automatic picks bitmap when at least 25 %
/// of the weights are kept (the bitmap kernel's cost is per column, the index kernels' per
/// entry; they cross near 25 % on Zen 4 at 4096 columns, benchmarks/results/sparse.md), else index16,
/// or index32 when the matrix is wider than 16-bit columns address. It never picks delta8:
/// 5 B per entry instead of 6, but the kernels are bound by work per entry, not bytes, and
/// delta8's step decoding made it 6-30 % slower at s50-s95 (benchmarks/results/sparse.md, run 8).
inline spmv_plan_f32 make_spmv_plan(const sparse::csr_f32& a, spmv_layout layout = spmv_layout::automatic) {
  const char* who = "make_spmv_plan";
  const index_t rows = a.rows(), cols = a.cols(), nnz = a.nnz();
  const bool narrow = cols <= index_t{65536};
  if (layout == spmv_layout::automatic) {
    const double total = static_cast<double>(rows) * static_cast<double>(cols);
    layout = (total > 0 && static_cast<double>(nnz) >= 0.25 * total) ? spmv_layout::bitmap
             : narrow                                               ? spmv_layout::index16
                                                                    : spmv_layout::index32;
  }
  SHRINK_REQUIRE(layout != spmv_layout::window16, errc::unsupported, who,
                 ": window16 is an int8 layout (its pshufb lookup holds 16 one-byte x values); use automatic, "
                 "index16, index32, bitmap or delta8");
  SHRINK_REQUIRE((layout != spmv_layout::index16 && layout != spmv_layout::delta8) || narrow, errc::invalid_argument,
                 who, ": index16 and delta8 address 65536 columns, the matrix has ", cols);
  const auto rp = a.row_ptr();
  sparse_detail::check_row_pointers(who, rp, rows, nnz);
  spmv_plan_f32 p;
  p.rows = rows;
  p.cols = cols;
  p.entries = nnz;
  p.layout = layout;
  p.row_ptr = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(rows) + 1);
  const auto column = [&](index_t k) { return a.col_idx()[k]; };
  const auto vals = a.values();
  if (layout == spmv_layout::index16 || layout == spmv_layout::delta8) {
    const bool delta = layout == spmv_layout::delta8;
    const auto row_begin = [&](index_t i) { return static_cast<index_t>(rp[static_cast<std::size_t>(i)]); };
    if (delta) {  // which rows escape (a step > 255), and the stream size in u16 units
      p.escape = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(rows));
    }
    std::size_t units = 0;
    for (index_t i = 0; i < rows; ++i) {
      const index_t k0 = row_begin(i), k1 = row_begin(i + 1);
      const bool esc = delta && !sparse_detail::fits_delta8(column, k0, k1);
      if (delta) p.escape[static_cast<std::size_t>(i)] = esc ? 1 : 0;
      units += (delta && !esc) ? sparse_detail::delta8_units(k1 - k0) : 3 * static_cast<std::size_t>(k1 - k0);
    }
    // the row offsets are u32
    SHRINK_REQUIRE(units <= std::size_t{0xFFFFFFFF}, errc::overflow, who, ": ", nnz, " entries overflow u32 offsets");
    p.stream = aligned_buffer<std::uint16_t>(units, uninitialized);
    prefer_huge_pages(p.stream.data(), p.stream.size_bytes());
    std::size_t at = 0;
    for (index_t i = 0; i < rows; ++i) {
      p.row_ptr[static_cast<std::size_t>(i)] = static_cast<std::uint32_t>(at);
      index_t k = row_begin(i);
      const index_t k0 = k, k1 = row_begin(i + 1);
      if (delta && p.escape[static_cast<std::size_t>(i)] == 0) {
        // bytes [t steps][t values] per chunk of t <= 16; memcpy: values sit at odd offsets
        auto* b = reinterpret_cast<unsigned char*>(p.stream.data() + at);
        index_t prev = 0;
        for (; k < k1; k += std::min<index_t>(16, k1 - k)) {
          const index_t t = std::min<index_t>(16, k1 - k);
          for (index_t e = 0; e < t; ++e) {
            b[sparse_detail::delta8_slot(e, t)] = static_cast<unsigned char>(column(k + e) - prev);
            prev = column(k + e);
          }
          std::memcpy(b + t, vals.data() + k, static_cast<std::size_t>(t) * sizeof(float));
          b += 5 * t;
        }
        if ((k1 - k0) % 2 != 0) *b = 0;  // the pad byte: same input, same bytes
        at += sparse_detail::delta8_units(k1 - k0);
        continue;
      }
      while (k < k1) {
        const index_t t = std::min<index_t>(16, k1 - k);
        for (index_t e = 0; e < t; ++e) p.stream[at + static_cast<std::size_t>(e)] = static_cast<std::uint16_t>(column(k + e));
        std::memcpy(p.stream.data() + at + static_cast<std::size_t>(t), vals.data() + k,
                    static_cast<std::size_t>(t) * sizeof(float));
        at += static_cast<std::size_t>(3 * t);
        k += t;
      }
    }
    p.row_ptr[static_cast<std::size_t>(rows)] = static_cast<std::uint32_t>(at);
    return p;
  }
  std::copy(rp.begin(), rp.end(), p.row_ptr.begin());
  p.values = aligned_buffer<float>(static_cast<std::size_t>(nnz) + 8, uninitialized);
  prefer_huge_pages(p.values.data(), p.values.size_bytes());
  std::copy(vals.begin(), vals.end(), p.values.begin());
  std::fill(p.values.begin() + nnz, p.values.end(), 0.0f);  // the bitmap kernel's padding
  if (layout == spmv_layout::index32) {
    sparse_detail::check_columns(cols);
    p.col = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(nnz));
    for (index_t k = 0; k < nnz; ++k) p.col[static_cast<std::size_t>(k)] = static_cast<std::uint32_t>(column(k));
    return p;
  }
  // bitmap: columns are strictly increasing within a row (csr invariant), so the packed
  // values are already in bit order.
  p.words = (cols + 63) / 64;
  p.bits = aligned_buffer<std::uint64_t>(static_cast<std::size_t>(rows * p.words), uninitialized);
  prefer_huge_pages(p.bits.data(), p.bits.size_bytes());
  std::fill(p.bits.begin(), p.bits.end(), std::uint64_t{0});
  for (index_t i = 0; i < rows; ++i)
    for (index_t k = rp[static_cast<std::size_t>(i)]; k < static_cast<index_t>(rp[static_cast<std::size_t>(i) + 1]); ++k) {
      const index_t j = column(k);
      p.bits[static_cast<std::size_t>(i * p.words + j / 64)] |= std::uint64_t{1} << (j % 64);
    }
  return p;
}

/// A CSR int8 matrix re-laid out for y = W·x alone (batch 1, int8 x, exact int32 y):
/// `bitmap` (one bit per column + packed int8 values: 1 B per kept weight + cols/8 B per
/// row, read 16 columns per step with one pshufb), `index32` (u32 columns + int8
/// values, x bytes inserted into lanes), `delta8` (2 B per entry: u8 column steps and
/// int8 values in one byte stream; escape rows as [n x u32 column][n x int8 value]) or
/// `window16` (`win`: 16-column windows whose x bytes one pshufb looks up, in 128-byte
/// passes per row block, plus a residual list; window16_layout.hpp).
/// automatic: see make_spmv_plan(csr_int8).
struct spmv_plan_int8 {
  index_t rows = 0, cols = 0, entries = 0;
  spmv_layout layout = spmv_layout::index32;
  aligned_buffer<std::uint32_t> row_ptr{1};  ///< first entry of row i; delta8: byte offset of row i in `stream`
  aligned_buffer<std::uint32_t> col;         ///< index32
  aligned_buffer<std::int8_t> values;        ///< index32/bitmap, + 16 zero bytes (the bitmap kernel reads up to 15 past an entry)
  aligned_buffer<std::uint64_t> bits;        ///< bitmap: rows x words
  index_t words = 0;
  aligned_buffer<float> row_scale;           ///< w = row_scale[i] * q, as in csr_int8
  /// delta8: per chunk of 16 entries [16 u8 steps][16 int8 values], tail [t steps][t values]
  /// (steps interleaved as in spmv_plan_f32); escape rows [n x u32 column (little-endian)][n x int8 value].
  aligned_buffer<std::uint8_t> stream;
  aligned_buffer<std::uint8_t> escape;       ///< delta8: 1 when row i is an escape row (a step > 255)
  sparse_detail::window16_parts win;         ///< window16: passes, their windows, block pointers, residual

  [[nodiscard]] index_t nnz() const noexcept { return entries; }
  [[nodiscard]] std::size_t bytes() const noexcept {
    return row_ptr.size_bytes() + col.size_bytes() + values.size_bytes() + bits.size_bytes() + row_scale.size_bytes() +
           stream.size_bytes() + escape.size_bytes() + win.bytes();
  }
};

/// Lowers CSR int8 to a batch-1 plan (layouts: automatic, index32, bitmap, delta8, window16;
/// index16 is fp32-only and rejected). K is limited as in make_plan(csr_int8) so int32 sums
/// are exact. automatic: window16 when its modelled time beats index32's, else index32.
inline spmv_plan_int8 make_spmv_plan(const sparse::csr_int8& a, spmv_layout layout = spmv_layout::automatic) {
  const char* who = "make_spmv_plan(csr_int8)";
  SHRINK_REQUIRE(a.cols() <= 131072, errc::overflow, who, ": ", a.cols(),
                 " columns; exact int32 accumulation needs at most 131072");
  SHRINK_REQUIRE(layout != spmv_layout::index16, errc::unsupported, who, ": index16 is an fp32 layout; use ",
                 "automatic, index32, bitmap, delta8 or window16");
  const index_t rows = a.rows(), cols = a.cols(), nnz = a.nnz();
  const bool narrow = cols <= index_t{65536};
  const auto rp = a.row_ptr();
  sparse_detail::check_row_pointers(who, rp, rows, nnz);
  const auto column = [&](index_t k) { return static_cast<index_t>(a.col_idx()[k]); };
  if (layout == spmv_layout::automatic) {
    // window16 when its modelled time (1.9 ns per pass, 2.4 with S = 2, 0.9 per residual
    // entry) is below index32's (≈ 0.32 ns per entry): they cross near 98-99 % sparsity at
    // 4096², and at 50-95 % window16 was 1.9-5x faster than the best other layout
    // (benchmarks/results/sparse.md, runs 9 and 10). Otherwise index32.
    const auto w16 = sparse_detail::window16_best(rp, column, rows, cols);
    layout = nnz > 0 && w16.cost_ns() < sparse_detail::k_index32_ns_per_entry * static_cast<double>(nnz)
                 ? spmv_layout::window16
                 : spmv_layout::index32;
  }
  SHRINK_REQUIRE(layout != spmv_layout::delta8 || narrow, errc::invalid_argument, who,
                 ": delta8 addresses 65536 columns, the matrix has ", cols);
  spmv_plan_int8 p;
  p.rows = rows;
  p.cols = cols;
  p.entries = nnz;
  p.layout = layout;
  p.row_ptr = aligned_buffer<std::uint32_t>(rp);
  p.row_scale = aligned_buffer<float>(a.row_scales());
  if (layout == spmv_layout::window16) {
    p.win = sparse_detail::make_window16(who, rp, column, a.values(), rows, cols);
    return p;
  }
  if (layout == spmv_layout::delta8) {
    const auto row_begin = [&](index_t i) { return static_cast<index_t>(rp[static_cast<std::size_t>(i)]); };
    p.escape = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(rows));
    std::size_t size = 0;
    for (index_t i = 0; i < rows; ++i) {
      const index_t n = row_begin(i + 1) - row_begin(i);
      const bool esc = !sparse_detail::fits_delta8(column, row_begin(i), row_begin(i + 1));
      p.escape[static_cast<std::size_t>(i)] = esc ? 1 : 0;
      size += static_cast<std::size_t>(esc ? 5 * n : 2 * n);
    }
    SHRINK_REQUIRE(size <= std::size_t{0xFFFFFFFF}, errc::overflow, who, ": ", nnz, " entries overflow u32 offsets");
    p.stream = aligned_buffer<std::uint8_t>(size, uninitialized);
    prefer_huge_pages(p.stream.data(), p.stream.size_bytes());
    const auto vals = a.values();
    std::size_t at = 0;
    for (index_t i = 0; i < rows; ++i) {
      p.row_ptr[static_cast<std::size_t>(i)] = static_cast<std::uint32_t>(at);
      const index_t k0 = row_begin(i), k1 = row_begin(i + 1), n = k1 - k0;
      std::uint8_t* b = p.stream.data() + at;
      if (p.escape[static_cast<std::size_t>(i)] != 0) {
        for (index_t e = 0; e < n; ++e) {
          const auto c = static_cast<std::uint32_t>(column(k0 + e));
          const unsigned char le[4] = {static_cast<unsigned char>(c), static_cast<unsigned char>(c >> 8),
                                       static_cast<unsigned char>(c >> 16), static_cast<unsigned char>(c >> 24)};
          std::memcpy(b + 4 * e, le, 4);
        }
        std::memcpy(b + 4 * n, vals.data() + k0, static_cast<std::size_t>(n));
        at += static_cast<std::size_t>(5 * n);
        continue;
      }
      index_t prev = 0;
      for (index_t k = k0; k < k1; k += std::min<index_t>(16, k1 - k)) {
        const index_t t = std::min<index_t>(16, k1 - k);
        for (index_t e = 0; e < t; ++e) {
          b[sparse_detail::delta8_slot(e, t)] = static_cast<std::uint8_t>(column(k + e) - prev);
          prev = column(k + e);
        }
        std::memcpy(b + t, vals.data() + k, static_cast<std::size_t>(t));
        b += 2 * t;
      }
      at += static_cast<std::size_t>(2 * n);
    }
    p.row_ptr[static_cast<std::size_t>(rows)] = static_cast<std::uint32_t>(at);
    return p;
  }
  p.values = aligned_buffer<std::int8_t>(static_cast<std::size_t>(nnz) + 16, uninitialized);
  prefer_huge_pages(p.values.data(), p.values.size_bytes());
  std::copy(a.values().begin(), a.values().end(), p.values.begin());
  std::fill(p.values.begin() + nnz, p.values.end(), std::int8_t{0});
  if (layout == spmv_layout::index32) {
    p.col = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(nnz));
    for (index_t k = 0; k < nnz; ++k) p.col[static_cast<std::size_t>(k)] = static_cast<std::uint32_t>(a.col_idx()[k]);
    return p;
  }
  p.words = (cols + 63) / 64;
  p.bits = aligned_buffer<std::uint64_t>(static_cast<std::size_t>(rows * p.words));
  for (index_t i = 0; i < rows; ++i)
    for (index_t k = rp[static_cast<std::size_t>(i)]; k < static_cast<index_t>(rp[static_cast<std::size_t>(i) + 1]); ++k) {
      const index_t j = a.col_idx()[k];
      p.bits[static_cast<std::size_t>(i * p.words + j / 64)] |= std::uint64_t{1} << (j % 64);
    }
  return p;
}

/// Lowers BSR int8 to a batch-1 plan: make_plan's rows (the zeros a kept block stores stay
/// entries, so the sums are unchanged) through make_spmv_plan(csr_int8), window16 included.
inline spmv_plan_int8 make_spmv_plan(const sparse::bsr_int8& a, spmv_layout layout = spmv_layout::automatic) {
  const auto rows = make_plan(a);
  return make_spmv_plan(sparse::csr_int8::from_raw(rows.rows, rows.cols, rows.row_ptr.span(), rows.col.span(),
                                                   rows.values.span(), a.row_scales()),
                        layout);
}

}  // namespace shrink::kernels
