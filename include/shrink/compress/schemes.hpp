// schemes.hpp: the storage schemes of format version 1 (int8, int, codebook, nm, deep, xnor, lowrank): encode a float tensor into entries, decode entries back.
#pragma once

#include <algorithm>
#include <bit>
#include <map>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../core/aligned_buffer.hpp"
#include "../core/error.hpp"
#include "../io/dtype.hpp"
#include "../io/half.hpp"
#include "../binary/binarize.hpp"
#include "../codebook/indexed.hpp"
#include "../encode/huffman.hpp"
#include "../encode/relative_index.hpp"
#include "../lowrank/svd.hpp"
#include "../prune/structured.hpp"
#include "../prune/unstructured.hpp"
#include "../sparse/nm.hpp"
#include "format.hpp"

namespace shrink::compress {

/// One safetensors entry produced by encoding.
struct entry {
  std::string name;
  io::dtype type;
  std::vector<std::int64_t> shape;
  aligned_buffer<std::byte> bytes;
};

/// An encoded tensor: its record and the entries it owns.
struct encoded {
  record rec;
  std::vector<entry> entries;
  [[nodiscard]] std::uint64_t bytes() const {
    std::uint64_t n = 0;
    for (const auto& e : entries) n += e.bytes.size();
    return n;
  }
};

/// Options of the schemes (see docs/format.md and docs/tool.md).
struct scheme_options {
  std::string scheme = "int8";  ///< "float" (keep), "int8", "int", "codebook", "nm", "deep", "xnor", "lowrank"
  int bits = 8;                 ///< "int": 2..8
  std::int64_t group = 128;     ///< "int": elements per scale along a row
  int k = 16;                   ///< "codebook" / "deep": codebook entries (zero code included)
  int n = 2, m = 4;             ///< "nm": keep n of every m columns
  double sparsity = 0.9;        ///< "deep": fraction pruned by magnitude
  double energy = 0.9;          ///< "lowrank": kept spectral energy fraction in (0, 1]
};

namespace scheme_impl {

template <class T>
aligned_buffer<std::byte> to_bytes(std::span<const T> v) {
  return aligned_buffer<std::byte>(std::as_bytes(v));
}

inline std::vector<std::int64_t> as_2d(const std::vector<std::int64_t>& shape) {
  std::int64_t cols = 1;
  for (std::size_t i = 1; i < shape.size(); ++i) cols *= shape[i];
  return {shape.empty() ? 1 : shape[0], cols};
}

inline record make_record(const std::string& name, const char* scheme, const std::vector<std::int64_t>& shape,
                          io::dtype original) {
  record r;
  r.name = name;
  r.scheme = scheme;
  r.shape = shape;
  r.dtype = original;
  return r;
}

}  // namespace scheme_impl

/// int8, symmetric, per output channel (axis 0), min-max range, round half to even: the
/// exact arithmetic of PyTorch's PerChannelMinMaxObserver(qint8, per_channel_symmetric)
/// followed by quantize_per_channel (docs/format.md, "int8"):
///   amax_c  = max(-min(min_c, 0), max(max_c, 0))
///   scale_c = max(amax_c / 127.5f, FLT_EPSILON)          (127.5 = (127 - (-128)) / 2)
///   q       = clamp(nearbyint(x * (1.0f / scale_c)), -128, 127)
///   x'      = q * scale_c
/// The scales equal quant::quantize(k_qint8_symmetric, per_channel(0))'s, but the codes do not
/// always: quant divides (ONNX QuantizeLinear), PyTorch multiplies by the reciprocal, and
/// about 1 code in 10^4 differs (tests/io/test_schemes.cpp). PyTorch's rule is the contract
/// here, so this encoder stays.
inline encoded encode_int8(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                           io::dtype original) {
  const auto rc = scheme_impl::as_2d(shape);
  const auto rows = static_cast<std::size_t>(rc[0]), cols = static_cast<std::size_t>(rc[1]);
  SHRINK_REQUIRE(rows * cols == x.size(), errc::shape_mismatch, "encode_int8: '", name, "' has ", x.size(),
                 " values for ", rows, " x ", cols);
  aligned_buffer<std::int8_t> codes(rows * cols);
  aligned_buffer<float> scales(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* row = x.data() + r * cols;
    float lo = 0.0f, hi = 0.0f;
    for (std::size_t c = 0; c < cols; ++c) {
      SHRINK_REQUIRE(std::isfinite(row[c]), errc::non_finite, "encode_int8: '", name, "' holds a non-finite value at row ",
                     r, ", column ", c);
      lo = std::min(lo, row[c]);
      hi = std::max(hi, row[c]);
    }
    const float amax = std::max(-lo, hi);
    const float scale = std::max(amax / 127.5f, std::numeric_limits<float>::epsilon());
    const float inv = 1.0f / scale;
    scales[r] = scale;
    for (std::size_t c = 0; c < cols; ++c) {
      const float q = std::nearbyint(row[c] * inv);
      codes[r * cols + c] = static_cast<std::int8_t>(std::clamp(q, -128.0f, 127.0f));
    }
  }
  encoded e;
  e.rec = scheme_impl::make_record(name, "int8", shape, original);
  e.rec.entries = {{"codes", name + ".__q8.codes"}, {"scales", name + ".__q8.scales"}};
  e.entries.push_back({name + ".__q8.codes", io::dtype::i8, rc, scheme_impl::to_bytes<std::int8_t>(codes.span())});
  e.entries.push_back({name + ".__q8.scales", io::dtype::f32, {rc[0]}, scheme_impl::to_bytes<float>(scales.span())});
  return e;
}

/// b-bit symmetric, one scale per `group` consecutive elements of a row:
///   scale = amax_group / (2^(b-1) - 1), rounded to the stored scale dtype (F16 when every
///   scale is a finite normal F16 or zero, else F32); q = clamp(nearbyint(x / scale), -qmax, qmax);
///   codes are stored offset by 2^(b-1) as unsigned b-bit fields, packed LSB-first, each row
///   starting on a byte boundary.
inline encoded encode_int(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                          io::dtype original, int bits, std::int64_t group) {
  SHRINK_REQUIRE(bits >= 2 && bits <= 8, errc::invalid_argument, "encode_int: bits must be in [2, 8], got ", bits);
  SHRINK_REQUIRE(group >= 1, errc::invalid_argument, "encode_int: group must be >= 1, got ", group);
  const auto rc = scheme_impl::as_2d(shape);
  const auto rows = static_cast<std::size_t>(rc[0]), cols = static_cast<std::size_t>(rc[1]);
  SHRINK_REQUIRE(rows * cols == x.size(), errc::shape_mismatch, "encode_int: '", name, "' has ", x.size(),
                 " values for ", rows, " x ", cols);
  const auto g = static_cast<std::size_t>(group);
  const std::size_t groups = (cols + g - 1) / g;
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  std::vector<float> scales(rows * groups);
  bool fits_f16 = true;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < groups; ++k) {
      float amax = 0.0f;
      for (std::size_t c = k * g; c < std::min(cols, (k + 1) * g); ++c) {
        const float v = x[r * cols + c];
        SHRINK_REQUIRE(std::isfinite(v), errc::non_finite, "encode_int: '", name, "' holds a non-finite value at row ",
                       r, ", column ", c);
        amax = std::max(amax, std::fabs(v));
      }
      const float s = amax / qmax;
      scales[r * groups + k] = s;
      if (s != 0.0f && !(std::fabs(s) >= 6.103515625e-05f && std::fabs(s) <= 65504.0f)) fits_f16 = false;
    }
  const io::dtype scale_type = fits_f16 ? io::dtype::f16 : io::dtype::f32;
  std::vector<std::uint16_t> scales16;
  if (fits_f16) {
    scales16.resize(scales.size());
    io::convert_fp32_to_fp16(scales, scales16);
    io::convert_fp16_to_fp32(scales16, scales);  // quantize with the scale the reader will see
  }
  const std::size_t row_bytes = (cols * static_cast<std::size_t>(bits) + 7) / 8;
  aligned_buffer<std::uint8_t> codes(rows * row_bytes);
  const auto offset = static_cast<std::uint32_t>(1u << (bits - 1));
  for (std::size_t r = 0; r < rows; ++r) {
    std::uint8_t* out = codes.data() + r * row_bytes;
    std::size_t bit = 0;
    for (std::size_t c = 0; c < cols; ++c) {
      const float s = scales[r * groups + c / g];
      const float q = s == 0.0f ? 0.0f : std::clamp(std::nearbyint(x[r * cols + c] / s), -qmax, qmax);
      const std::uint32_t u = static_cast<std::uint32_t>(static_cast<std::int32_t>(q) + static_cast<std::int32_t>(offset));
      for (int b = 0; b < bits; ++b, ++bit)
        if ((u >> b) & 1u) out[bit / 8] = static_cast<std::uint8_t>(out[bit / 8] | (1u << (bit % 8)));
    }
  }
  encoded e;
  const std::string tag = ".__q" + std::to_string(bits) + "g" + std::to_string(group);
  e.rec = scheme_impl::make_record(name, "int", shape, original);
  e.rec.bits = bits;
  e.rec.axis = 1;
  e.rec.group = group;
  e.rec.scale_dtype = scale_type;
  e.rec.entries = {{"codes", name + tag + ".codes"}, {"scales", name + tag + ".scales"}};
  e.entries.push_back({name + tag + ".codes", io::dtype::u8, {static_cast<std::int64_t>(codes.size())},
                       scheme_impl::to_bytes<std::uint8_t>(codes.span())});
  if (fits_f16)
    e.entries.push_back({name + tag + ".scales", io::dtype::f16, {static_cast<std::int64_t>(scales.size())},
                         scheme_impl::to_bytes<std::uint16_t>(scales16)});
  else
    e.entries.push_back({name + tag + ".scales", io::dtype::f32, {static_cast<std::int64_t>(scales.size())},
                         scheme_impl::to_bytes<float>(scales)});
  return e;
}

/// Expands a validated record (see `validate`) from its entries' raw bytes to floats in
/// row-major order of the original shape.
inline aligned_buffer<float> decode(const record& r, std::span<const std::byte> codes, std::span<const std::byte> scales) {
  const record_sizes s = sizes_of(r);
  SHRINK_REQUIRE(codes.size() == s.code_bytes && scales.size() == s.scales * io::size_of(r.scale_dtype), errc::format,
                 "decode: entries of '", r.name, "' have the wrong size");
  const auto rows = static_cast<std::size_t>(r.rows()), cols = static_cast<std::size_t>(r.cols());
  aligned_buffer<float> sc(static_cast<std::size_t>(s.scales));
  io::to_float(r.scale_dtype, scales.data(), sc.size(), sc.data());
  for (float v : sc)
    SHRINK_REQUIRE(std::isfinite(v), errc::format, "decode: '", r.name, "' has a non-finite scale");
  aligned_buffer<float> out(rows * cols);
  if (r.scheme == "int8") {
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t c = 0; c < cols; ++c) {
        const auto q = static_cast<std::int8_t>(codes[i * cols + c]);
        out[i * cols + c] = static_cast<float>(q) * sc[i];
      }
    return out;
  }
  const auto g = static_cast<std::size_t>(r.group);
  const std::size_t groups = (cols + g - 1) / g;
  const std::size_t row_bytes = (cols * static_cast<std::size_t>(r.bits) + 7) / 8;
  const auto offset = static_cast<std::int32_t>(1 << (r.bits - 1));
  for (std::size_t i = 0; i < rows; ++i) {
    const auto* in = reinterpret_cast<const std::uint8_t*>(codes.data()) + i * row_bytes;
    std::size_t bit = 0;
    for (std::size_t c = 0; c < cols; ++c) {
      std::uint32_t u = 0;
      for (int b = 0; b < r.bits; ++b, ++bit) u |= static_cast<std::uint32_t>((in[bit / 8] >> (bit % 8)) & 1u) << b;
      out[i * cols + c] = static_cast<float>(static_cast<std::int32_t>(u) - offset) * sc[i * groups + c / g];
    }
  }
  return out;
}

/// Deep Compression's gap width: 8-bit gaps (one byte symbol each, then Huffman-coded, so
/// the width only bounds how often a filler is needed: a gap over 255 zeros).
inline constexpr int k_deep_gap_bits = 8;

namespace scheme_impl {
inline tensor_view<const float, 2> view_2d(std::span<const float> x, const std::vector<std::int64_t>& rc) {
  return tensor_view<const float, 2>(x.data(), shape<2>{rc[0], rc[1]});
}
inline void check_count(const char* who, const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& rc) {
  SHRINK_REQUIRE(static_cast<std::size_t>(rc[0] * rc[1]) == x.size(), errc::shape_mismatch, who, ": '", name, "' has ",
                 x.size(), " values for ", rc[0], " x ", rc[1]);
}
inline aligned_buffer<std::byte> bytes_of(std::span<const std::uint8_t> v) { return to_bytes<std::uint8_t>(v); }
}  // namespace scheme_impl

/// Why a scheme cannot store a tensor of this shape (empty when it can). The pipeline then
/// keeps the tensor in float and reports the reason.
inline std::string cannot_store(const scheme_options& o, const std::vector<std::int64_t>& shape) {
  if (o.scheme == "float" || o.scheme == "int8" || o.scheme == "int") return {};
  if (shape.size() < 2) return o.scheme + " needs a tensor of rank >= 2";
  const auto rc = scheme_impl::as_2d(shape);
  if (rc[0] * rc[1] == 0) return "empty tensor";
  if (o.scheme == "nm" && rc[1] % o.m != 0)
    return std::to_string(o.n) + ":" + std::to_string(o.m) + " needs the columns (" + std::to_string(rc[1]) +
           ") divisible by " + std::to_string(o.m);
  if (o.scheme == "deep" && prune::prune_count(o.sparsity, rc[0] * rc[1]) == 0)
    return "too small to prune at sparsity " + std::to_string(o.sparsity);
  return {};
}

/// codebook: per-tensor k-means codebook (codebook::cluster, zero code kept when zeros
/// occur), indices packed at `bits` = bits_for(k used) bits LSB-first, each row from a byte.
inline encoded encode_codebook(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                               io::dtype original, int k) {
  const auto rc = scheme_impl::as_2d(shape);
  scheme_impl::check_count("encode_codebook", name, x, rc);
  codebook::cluster_options co;
  co.k = k;
  const codebook::indexed q = codebook::cluster(scheme_impl::view_2d(x, rc), co, context{1});
  encoded e;
  e.rec = scheme_impl::make_record(name, "codebook", shape, original);
  e.rec.k = q.k();
  e.rec.bits = q.bits();
  const std::string tag = name + ".__cb" + std::to_string(k);
  e.rec.entries = {{"codebook", tag + ".codebook"}, {"indices", tag + ".indices"}};
  e.entries.push_back({tag + ".codebook", io::dtype::f32, {q.k()}, scheme_impl::to_bytes<float>(q.centroids())});
  e.entries.push_back({tag + ".indices", io::dtype::u8, {static_cast<std::int64_t>(q.packed_indices().size())},
                       scheme_impl::bytes_of(q.packed_indices())});
  return e;
}

/// nm: prune::n_m (keep the n largest |w| of every m columns) stored as sparse::nm_f32:
/// kept values F32, positions ceil(log2 m) bits each in 16-bit little-endian words per row.
inline encoded encode_nm(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                         io::dtype original, int n, int m) {
  const auto rc = scheme_impl::as_2d(shape);
  scheme_impl::check_count("encode_nm", name, x, rc);
  const auto w = scheme_impl::view_2d(x, rc);
  const prune::mask keep = prune::n_m(w, n, m);
  const sparse::nm_f32 s = sparse::nm_f32::from_dense(w, keep.matrix(), n, m);
  encoded e;
  e.rec = scheme_impl::make_record(name, "nm", shape, original);
  e.rec.n = n;
  e.rec.m = m;
  const std::string tag = name + ".__nm" + std::to_string(n) + "_" + std::to_string(m);
  e.rec.entries = {{"values", tag + ".values"}, {"positions", tag + ".positions"}};
  e.entries.push_back({tag + ".values", io::dtype::f32, {rc[0], s.kept_per_row()}, scheme_impl::to_bytes<float>(s.values())});
  // uint16 words -> little-endian bytes.
  aligned_buffer<std::byte> pos(s.metadata().size() * 2);
  for (std::size_t i = 0; i < s.metadata().size(); ++i) {
    pos[2 * i] = static_cast<std::byte>(s.metadata()[i] & 0xFF);
    pos[2 * i + 1] = static_cast<std::byte>(s.metadata()[i] >> 8);
  }
  e.entries.push_back({tag + ".positions", io::dtype::u8, {static_cast<std::int64_t>(pos.size())}, std::move(pos)});
  return e;
}

/// deep: Han et al. 2016: magnitude pruning to `sparsity`, a per-tensor codebook of k entries
/// whose entry 0 is the zero code, then the non-zero codes and their relative gaps
/// (encode_relative, 8-bit gaps, fillers carry code 0) each Huffman-coded.
inline encoded encode_deep(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                           io::dtype original, double sparsity, int k) {
  const auto rc = scheme_impl::as_2d(shape);
  scheme_impl::check_count("encode_deep", name, x, rc);
  const auto w = scheme_impl::view_2d(x, rc);
  const prune::mask keep = prune::magnitude(w, prune::by_sparsity(sparsity));
  std::vector<float> pruned(x.begin(), x.end());
  for (std::size_t i = 0; i < pruned.size(); ++i)
    if (keep.data()[i] == 0) pruned[i] = 0.0f;
  codebook::cluster_options co;
  co.k = k;
  const codebook::indexed q = codebook::cluster(scheme_impl::view_2d(pruned, rc), co, context{1});
  SHRINK_REQUIRE(q.centroids()[0] == 0.0f, errc::invalid_argument, "encode_deep: '", name,
                 "' has no pruned weight to give the zero code");
  const std::vector<std::uint8_t> idx = q.indices();
  std::vector<std::uint64_t> pos;
  std::vector<std::uint8_t> codes;
  for (std::size_t i = 0; i < idx.size(); ++i)
    if (idx[i] != 0) {
      pos.push_back(i);
      codes.push_back(idx[i]);
    }
  const auto rel = encode::encode_relative<std::uint8_t>(pos, codes, k_deep_gap_bits, std::uint8_t{0});
  const auto hi = encode::huffman_encode(rel.values);
  const auto hg = encode::huffman_encode(rel.gaps);
  encoded e;
  e.rec = scheme_impl::make_record(name, "deep", shape, original);
  e.rec.k = q.k();
  e.rec.gap_bits = k_deep_gap_bits;
  const std::string tag = name + ".__deep";
  e.rec.entries = {{"codebook", tag + ".codebook"}, {"indices", tag + ".indices"}, {"gaps", tag + ".gaps"}};
  e.entries.push_back({tag + ".codebook", io::dtype::f32, {q.k()}, scheme_impl::to_bytes<float>(q.centroids())});
  e.entries.push_back({tag + ".indices", io::dtype::u8, {static_cast<std::int64_t>(hi.size())}, scheme_impl::bytes_of(hi)});
  e.entries.push_back({tag + ".gaps", io::dtype::u8, {static_cast<std::int64_t>(hg.size())}, scheme_impl::bytes_of(hg)});
  return e;
}

/// xnor: binary::binarize (bit 1 = negative, α = mean |w| of the row): 64-bit words per row
/// stored as little-endian bytes, and α as F32.
inline encoded encode_xnor(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                           io::dtype original) {
  const auto rc = scheme_impl::as_2d(shape);
  scheme_impl::check_count("encode_xnor", name, x, rc);
  const binary::bit_matrix b = binary::binarize(scheme_impl::view_2d(x, rc));
  encoded e;
  e.rec = scheme_impl::make_record(name, "xnor", shape, original);
  const std::string tag = name + ".__xnor";
  e.rec.entries = {{"signs", tag + ".signs"}, {"alpha", tag + ".alpha"}};
  aligned_buffer<std::byte> signs(b.words().size() * 8);
  for (std::size_t i = 0; i < b.words().size(); ++i)
    for (int j = 0; j < 8; ++j) signs[i * 8 + static_cast<std::size_t>(j)] = static_cast<std::byte>((b.words()[i] >> (8 * j)) & 0xFF);
  e.entries.push_back({tag + ".signs", io::dtype::u8, {static_cast<std::int64_t>(signs.size())}, std::move(signs)});
  e.entries.push_back({tag + ".alpha", io::dtype::f32, {rc[0]}, scheme_impl::to_bytes<float>(b.scales())});
  return e;
}

/// lowrank: lowrank::factorize with kept_energy: W ≈ A·B, A rows×r and B r×cols, both F32.
inline encoded encode_lowrank(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                              io::dtype original, double energy) {
  const auto rc = scheme_impl::as_2d(shape);
  scheme_impl::check_count("encode_lowrank", name, x, rc);
  const lowrank::factorized f = lowrank::factorize(scheme_impl::view_2d(x, rc), lowrank::kept_energy{energy});
  encoded e;
  e.rec = scheme_impl::make_record(name, "lowrank", shape, original);
  e.rec.rank = f.rank();
  const std::string tag = name + ".__lr";
  e.rec.entries = {{"a", tag + ".a"}, {"b", tag + ".b"}};
  e.entries.push_back({tag + ".a", io::dtype::f32, {rc[0], f.rank()}, scheme_impl::to_bytes<float>(f.a.span())});
  e.entries.push_back({tag + ".b", io::dtype::f32, {f.rank(), rc[1]}, scheme_impl::to_bytes<float>(f.b.span())});
  return e;
}

/// Encodes with the options' scheme. Callers check `cannot_store` first.
inline encoded encode(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                      io::dtype original, const scheme_options& o) {
  if (o.scheme == "int8") return encode_int8(name, x, shape, original);
  if (o.scheme == "int") return encode_int(name, x, shape, original, o.bits, o.group);
  const std::string why = cannot_store(o, shape);
  SHRINK_REQUIRE(why.empty(), errc::invalid_argument, "encode: '", name, "': ", why);
  if (o.scheme == "codebook") return encode_codebook(name, x, shape, original, o.k);
  if (o.scheme == "nm") return encode_nm(name, x, shape, original, o.n, o.m);
  if (o.scheme == "deep") return encode_deep(name, x, shape, original, o.sparsity, o.k);
  if (o.scheme == "xnor") return encode_xnor(name, x, shape, original);
  if (o.scheme == "lowrank") return encode_lowrank(name, x, shape, original, o.energy);
  detail::raise(errc::invalid_argument, "encode: unknown scheme '", o.scheme,
                "'; expected int8, int, codebook, nm, deep, xnor or lowrank");
}

/// The raw bytes of a record's entries, by role.
using entry_bytes = std::map<std::string, std::span<const std::byte>>;

namespace scheme_impl {
inline std::span<const std::byte> role(const record& r, const entry_bytes& b, const char* name, std::uint64_t want) {
  const auto it = b.find(name);
  SHRINK_REQUIRE(it != b.end(), errc::format, "decode: '", r.name, "' lacks its ", name, " entry");
  SHRINK_REQUIRE(want == 0 || it->second.size() == want, errc::format, "decode: the ", name, " entry of '", r.name,
                 "' has ", it->second.size(), " bytes, expected ", want);
  return it->second;
}
inline std::vector<float> floats(std::span<const std::byte> b) {
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}
inline void check_finite_all(const record& r, const std::vector<float>& v, const char* what) {
  for (float x : v) SHRINK_REQUIRE(std::isfinite(x), errc::format, "decode: '", r.name, "' has a non-finite ", what);
}
inline std::uint8_t u8(std::span<const std::byte> b, std::size_t i) { return static_cast<std::uint8_t>(b[i]); }
}  // namespace scheme_impl

/// Expands a record (parsed by parse_record) from its entries' raw bytes to floats in
/// row-major order of the original shape, exactly as docs/format.md specifies. Any
/// inconsistency in the bytes is errc::format.
inline aligned_buffer<float> decode(const record& r, const entry_bytes& b) {
  using namespace scheme_impl;
  const auto specs = entry_specs(r);
  std::map<std::string, std::uint64_t> want;
  for (const auto& s : specs) want[s.role] = s.bytes;
  const auto rows = static_cast<std::size_t>(r.rows()), cols = static_cast<std::size_t>(r.cols());
  aligned_buffer<float> out(rows * cols);
  if (r.scheme == "int8" || r.scheme == "int") return decode(r, role(r, b, "codes", want["codes"]), role(r, b, "scales", want["scales"]));
  if (r.scheme == "codebook") {
    const auto book = floats(role(r, b, "codebook", want["codebook"]));
    check_finite_all(r, book, "codebook entry");
    const auto idx = role(r, b, "indices", want["indices"]);
    const std::size_t row_bytes = (cols * static_cast<std::size_t>(r.bits) + 7) / 8;
    for (std::size_t i = 0; i < rows; ++i) {
      std::size_t bit = i * row_bytes * 8;
      for (std::size_t c = 0; c < cols; ++c) {
        unsigned u = 0;
        for (int k = 0; k < r.bits; ++k, ++bit) u |= ((u8(idx, bit / 8) >> (bit % 8)) & 1u) << k;
        SHRINK_REQUIRE(u < static_cast<unsigned>(r.k), errc::format, "decode: '", r.name, "' index ", u, " at (", i, ", ",
                       c, ") is outside its codebook of ", r.k);
        out[i * cols + c] = book[u];
      }
    }
    return out;
  }
  if (r.scheme == "nm") {
    const auto vals = floats(role(r, b, "values", want["values"]));
    check_finite_all(r, vals, "kept value");
    const auto pos = role(r, b, "positions", want["positions"]);
    const auto n = static_cast<std::size_t>(r.n), m = static_cast<std::size_t>(r.m);
    const std::size_t kept = cols / m * n;
    const int pbits = std::bit_width(static_cast<unsigned>(r.m - 1));
    const std::size_t row_bytes = (kept * static_cast<std::size_t>(pbits) + 15) / 16 * 2;
    std::fill(out.begin(), out.end(), 0.0f);
    for (std::size_t i = 0; i < rows; ++i) {
      std::size_t bit = i * row_bytes * 8;
      for (std::size_t g = 0; g < cols / m; ++g) {
        std::size_t next = 0;  // positions increase strictly inside a group
        for (std::size_t s = 0; s < n; ++s) {
          unsigned p = 0;
          for (int k = 0; k < pbits; ++k, ++bit) p |= ((u8(pos, bit / 8) >> (bit % 8)) & 1u) << k;
          SHRINK_REQUIRE(p >= next && p < m, errc::format, "decode: '", r.name, "' position ", p, " of kept value ", s,
                         " in group ", g, " of row ", i, " is not increasing within [0, ", m, ")");
          next = p + 1;
          out[i * cols + g * m + p] = vals[i * kept + g * n + s];
        }
      }
    }
    return out;
  }
  if (r.scheme == "deep") {
    const auto book = floats(role(r, b, "codebook", want["codebook"]));
    check_finite_all(r, book, "codebook entry");
    SHRINK_REQUIRE(book[0] == 0.0f, errc::format, "decode: '", r.name, "' codebook entry 0 must be 0.0 (the zero code)");
    auto as_u8 = [](std::span<const std::byte> s) {
      return std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
    };
    const auto hi = as_u8(role(r, b, "indices", 0)), hg = as_u8(role(r, b, "gaps", 0));
    const encode::huffman_decoder di(hi), dg(hg);
    SHRINK_REQUIRE(di.size() == dg.size() && di.size() <= rows * cols, errc::format, "decode: '", r.name, "' has ",
                   di.size(), " codes and ", dg.size(), " gaps; expected equal counts of at most ", rows * cols);
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(di.size())), gaps(static_cast<std::size_t>(dg.size()));
    di.decode(codes);
    dg.decode(gaps);
    const auto positions = encode::relative_positions(gaps, r.gap_bits);
    std::fill(out.begin(), out.end(), 0.0f);
    for (std::size_t e = 0; e < codes.size(); ++e) {
      SHRINK_REQUIRE(codes[e] < r.k && positions[e] < rows * cols, errc::format, "decode: '", r.name, "' entry ", e,
                     " (code ", int(codes[e]), ", position ", positions[e], ") is outside the codebook or the tensor");
      out[static_cast<std::size_t>(positions[e])] = book[codes[e]];
    }
    return out;
  }
  if (r.scheme == "xnor") {
    const auto signs = role(r, b, "signs", want["signs"]);
    const auto alpha = floats(role(r, b, "alpha", want["alpha"]));
    check_finite_all(r, alpha, "alpha");
    const std::size_t row_bytes = (cols + 63) / 64 * 8;
    for (std::size_t i = 0; i < rows; ++i) {
      for (std::size_t c = 0; c < cols; ++c) {
        const bool neg = (u8(signs, i * row_bytes + c / 8) >> (c % 8)) & 1u;
        out[i * cols + c] = neg ? -alpha[i] : alpha[i];
      }
      for (std::size_t c = cols; c < row_bytes * 8; ++c)
        SHRINK_REQUIRE(((u8(signs, i * row_bytes + c / 8) >> (c % 8)) & 1u) == 0, errc::format, "decode: '", r.name,
                       "' has a set padding bit in row ", i);
    }
    return out;
  }
  // lowrank: out[i][j] = float(sum over t ascending of double(a[i][t]) * double(b[t][j])).
  const auto a = floats(role(r, b, "a", want["a"]));
  const auto bb = floats(role(r, b, "b", want["b"]));
  check_finite_all(r, a, "factor value");
  check_finite_all(r, bb, "factor value");
  const auto rk = static_cast<std::size_t>(r.rank);
  std::vector<double> acc(cols);
  for (std::size_t i = 0; i < rows; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (std::size_t t = 0; t < rk; ++t) {
      const double av = a[i * rk + t];
      for (std::size_t j = 0; j < cols; ++j) acc[j] += av * static_cast<double>(bb[t * cols + j]);
    }
    for (std::size_t j = 0; j < cols; ++j) out[i * cols + j] = static_cast<float>(acc[j]);
  }
  return out;
}

/// Decodes an encoded tensor held in memory.
inline aligned_buffer<float> decode(const encoded& e) {
  entry_bytes b;
  for (const auto& [role, name] : e.rec.entries)
    for (const auto& en : e.entries)
      if (en.name == name) b[role] = en.bytes.span();
  return decode(e.rec, b);
}

}  // namespace shrink::compress
