// inference.hpp: the compressed networks of the demo, each run on shrink's kernels (int8, weight-only int4, sparse+codebook, N:M, XNOR).
#pragma once

#include <shrink/shrink.hpp>
#include <string>
#include <vector>

#include "hooks.hpp"
#include "mlp.hpp"

namespace demo {

namespace k = shrink::kernels;

inline std::string path_name() { return std::string(k::name(k::selected_isa())); }

/// ReLU in place unless the layer is the last one.
inline void relu_if(matrix& y, activation act) {
  if (act == activation::relu) y = y.cwiseMax(0.0f);
}

// ---- int8: per-channel s8 weights × dynamically quantised u8 activations, fp32 out ---------
struct int8_layer {
  k::packed_s8_weights packed;
  std::vector<float> w_scale, bias;
  activation act = activation::relu;
  std::size_t bytes = 0;

  int8_layer(const matrix& w, const vector& b, activation a) : act(a) {
    namespace q = shrink::quant;
    const auto qw = q::quantize(view(w), q::options{q::k_qint8_symmetric, q::granularity::per_channel(0)});
    const shrink::tensor_view<const std::int8_t, 2> codes(reinterpret_cast<const std::int8_t*>(qw.codes().data()),
                                                          {w.rows(), w.cols()});
    packed = k::pack_s8_weights(codes);
    w_scale.assign(qw.scales().begin(), qw.scales().end());
    bias.assign(b.data(), b.data() + b.size());
    bytes = static_cast<std::size_t>(w.size()) + 4 * (w_scale.size() + bias.size());
  }

  /// Activations are quantised per batch to quint8 (PyTorch's dynamic quantisation: min-max,
  /// affine), the GEMM accumulates exactly in int32, and the output stage dequantises with
  /// a_scale · w_scale[n], adds the bias and clamps at 0 for ReLU, all fused.
  [[nodiscard]] matrix run(const matrix& x) const {
    namespace q = shrink::quant;
    const auto qa = q::quantize(view(x), q::options{q::k_quint8_affine, q::granularity::per_tensor()});
    const float a_scale = qa.scales()[0];
    std::vector<float> scales(w_scale.size());
    for (std::size_t n = 0; n < scales.size(); ++n) scales[n] = a_scale * w_scale[n];
    k::dequantize_stage stage{scales, bias};
    if (act == activation::relu) stage.clamp_min = 0.0f;
    matrix y(x.rows(), static_cast<Eigen::Index>(bias.size()));
    std::vector<std::byte> ws(k::int8_gemm_workspace_bytes(x.rows(), x.cols()));
    k::int8_gemm(shrink::tensor_view<const std::uint8_t, 2>(qa.codes().data(), {x.rows(), x.cols()}),
                 qa.zero_points()[0], packed, stage, view(y), ws);
    if (act == activation::sign_ste) y = network::apply(activation::sign_ste, y);
    return y;
  }
};

struct int8_mlp {
  std::vector<int8_layer> layers;
  explicit int8_mlp(const network& n) {
    for (const auto& l : n.layers) layers.emplace_back(l.w, l.b, l.act);
  }
  [[nodiscard]] matrix run(const matrix& x) const {
    matrix a = x;
    for (const auto& l : layers) a = l.run(a);
    return a;
  }
  [[nodiscard]] std::size_t bytes() const {
    std::size_t b = 0;
    for (const auto& l : layers) b += l.bytes;
    return b;
  }
  [[nodiscard]] std::string kernel_name() const { return "int8_gemm u8s8 (" + path_name() + ")"; }
};

// ---- int4 per-group weights, fp32 activations (weight-only GEMM) ---------------------------
struct int4_mlp {
  std::vector<k::packed_wq_weights> packed;
  std::vector<shrink::quant::quantized> quantized;
  std::vector<vector> biases;
  std::vector<activation> acts;

  int4_mlp(const network& n, shrink::index_t group) {
    namespace q = shrink::quant;
    for (const auto& l : n.layers) {
      auto qw = q::quantize(view(l.w), q::options{q::k_int4_symmetric, q::granularity::per_group(group)});
      packed.push_back(k::pack_s4_weights(std::as_const(qw).codes(), l.w.rows(), l.w.cols(), std::as_const(qw).scales(), group));
      quantized.push_back(std::move(qw));
      biases.push_back(l.b);
      acts.push_back(l.act);
    }
  }
  [[nodiscard]] matrix dequantized(std::size_t i) const {
    const auto v = quantized[i].dequantize();
    return Eigen::Map<const matrix>(v.data(), quantized[i].rows(), quantized[i].cols());
  }
  [[nodiscard]] matrix run(const matrix& x) const {
    matrix a = x;
    for (std::size_t i = 0; i < packed.size(); ++i) {
      matrix y(a.rows(), packed[i].rows);
      k::weight_only_gemm(view(a), packed[i], view(y));
      y.rowwise() += biases[i].transpose();
      relu_if(y, acts[i]);
      a = std::move(y);
    }
    return a;
  }
  [[nodiscard]] std::size_t bytes() const {
    std::size_t b = 0;
    for (std::size_t i = 0; i < packed.size(); ++i)
      b += quantized[i].codes().size() + quantized[i].scales().size() * 4 + static_cast<std::size_t>(biases[i].size()) * 4;
    return b;
  }
  [[nodiscard]] std::string kernel_name() const { return "weight_only_gemm int4 g32 (" + path_name() + ")"; }
  [[nodiscard]] static std::string note() {
    return "weight-only kernel is built for batch-1 decoding; at batch 10,000 fp32 GEMM is faster";
  }
};

// ---- sparse layers run with X stored [features, batch] (each non-zero broadcasts over the batch) --
// The test set goes through in chunks of 256 images: the SpMM kernels are built for X with
// 1 to 256 columns, where a row of X stays in cache while every non-zero of W reuses it.
template <class Plan>
matrix sparse_forward(const std::vector<Plan>& plans, const std::vector<vector>& biases,
                      const std::vector<activation>& acts, const matrix& x) {
  constexpr Eigen::Index k_chunk = 256;
  matrix out(x.rows(), plans.back().rows);
  matrix a, y;
  for (Eigen::Index c0 = 0; c0 < x.rows(); c0 += k_chunk) {
    const Eigen::Index n = std::min(k_chunk, x.rows() - c0);
    a = x.middleRows(c0, n).transpose();  // [features, chunk]
    for (std::size_t i = 0; i < plans.size(); ++i) {
      y.resize(plans[i].rows, n);
      k::spmm(plans[i], view(std::as_const(a)), view(y));
      y.colwise() += biases[i];
      relu_if(y, acts[i]);
      std::swap(a, y);
    }
    out.middleRows(c0, n) = a.transpose();
  }
  return out;
}

/// Deep Compression's stored form: per layer, the flattened codebook indices of the non-zeros
/// with relative (gap) positions, both Huffman-coded (encode::), plus the codebook and the bias.
struct sparse_codebook_mlp {
  std::vector<k::sparse_plan_codebook> plans;
  std::vector<vector> biases;
  std::vector<activation> acts;
  std::size_t stored_bytes = 0;
  std::string gap_bits;

  explicit sparse_codebook_mlp(const network& n) {
    for (const auto& l : n.layers) {
      const auto& hook = dynamic_cast<const codebook_hook&>(*l.hook);
      const auto& q = hook.trainer.result();
      const auto codes = q.indices();
      const std::vector<float> book(q.centroids().begin(), q.centroids().end());
      std::vector<std::uint8_t> keep(codes.size());
      std::vector<std::uint64_t> positions;
      std::vector<std::uint8_t> values;
      for (std::size_t i = 0; i < codes.size(); ++i) {
        keep[i] = book[codes[i]] != 0.0f;
        if (keep[i]) positions.push_back(i), values.push_back(codes[i]);
      }
      const shrink::tensor_view<const std::uint8_t, 2> cv(codes.data(), {q.rows(), q.cols()}), mv(keep.data(), {q.rows(), q.cols()});
      plans.push_back(k::make_plan(shrink::sparse::csr_codebook::from_indices(cv, book, mv)));
      biases.push_back(l.b);
      acts.push_back(l.act);
      // The smallest of 3..8-bit gaps once both streams are Huffman-coded.
      std::size_t best = ~std::size_t{0};
      int best_bits = 0;
      for (int bits = 3; bits <= 8; ++bits) {
        const auto s = shrink::encode::encode_relative<std::uint8_t>(positions, values, bits);
        const std::size_t b = shrink::encode::huffman_encode(s.gaps).size() + shrink::encode::huffman_encode(s.values).size();
        if (b < best) best = b, best_bits = bits;
      }
      stored_bytes += best + book.size() * 4 + static_cast<std::size_t>(l.b.size()) * 4;
      gap_bits += (gap_bits.empty() ? "" : "/") + std::to_string(best_bits);
    }
  }
  [[nodiscard]] matrix run(const matrix& x) const { return sparse_forward(plans, biases, acts, x); }
  [[nodiscard]] std::size_t bytes() const { return stored_bytes; }
  [[nodiscard]] std::string kernel_name() const { return "spmm csr+codebook (" + path_name() + ")"; }
  [[nodiscard]] std::string note() const { return "Huffman-coded indices and gaps (gap bits " + gap_bits + ")"; }
};

struct nm_mlp {
  std::vector<k::sparse_plan_f32> plans;
  std::vector<vector> biases;
  std::vector<activation> acts;
  std::size_t stored_bytes = 0;
  explicit nm_mlp(const network& n) {
    for (const auto& l : n.layers) {
      const auto& hook = dynamic_cast<const mask_hook&>(*l.hook);
      const auto nm = shrink::sparse::nm_f32::from_dense(view(l.w), hook.keep.matrix(), 2, 4);
      stored_bytes += nm.bytes() + static_cast<std::size_t>(l.b.size()) * 4;
      plans.push_back(k::make_plan(nm));
      biases.push_back(l.b);
      acts.push_back(l.act);
    }
  }
  [[nodiscard]] matrix run(const matrix& x) const { return sparse_forward(plans, biases, acts, x); }
  [[nodiscard]] std::size_t bytes() const { return stored_bytes; }
  [[nodiscard]] std::string kernel_name() const { return "spmm N:M 2:4 (" + path_name() + ")"; }
};

// ---- XNOR: int8 first layer, binary hidden layer (XNOR-popcount), int8 last layer ------------
struct xnor_mlp {
  int8_layer first, last;
  shrink::binary::bit_matrix hidden;
  vector hidden_bias;

  explicit xnor_mlp(const network& n)
      : first(n.layers[0].w, n.layers[0].b, activation::sign_ste),
        last(n.layers[2].w, n.layers[2].b, activation::none),
        hidden(shrink::binary::binarize(view(n.layers[1].w))),
        hidden_bias(n.layers[1].b) {}

  [[nodiscard]] matrix run(const matrix& x) const {
    const matrix s = first.run(x);  // ±1 after the sign activation
    shrink::binary::bit_matrix bits(s.rows(), s.cols());
    k::pack_signs(view(s), bits, shrink::binary::scaling::none);
    matrix h(s.rows(), hidden.rows());
    k::xnor_gemm(hidden, bits, view(h), k::xnor_output{{hidden_bias.data(), static_cast<std::size_t>(hidden_bias.size())}, true});
    return last.run(network::apply(activation::sign_ste, h));
  }
  [[nodiscard]] std::size_t bytes() const {
    return first.bytes + last.bytes + hidden.words().size_bytes() + hidden.scales().size_bytes() +
           static_cast<std::size_t>(hidden_bias.size()) * 4;
  }
  [[nodiscard]] std::string kernel_name() const { return "int8_gemm + xnor_gemm (" + path_name() + ")"; }
};

}  // namespace demo
