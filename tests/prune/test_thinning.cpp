// test_thinning.cpp: thinned Linear->Linear and Conv->BN->Conv pairs compute what the masked pairs compute; sparsity and MAC metrics.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <shrink/metrics/sparsity.hpp>
#include <shrink/prune.hpp>
#include <shrink/sparse.hpp>
#include <support/random.hpp>
#include <vector>

namespace p = shrink::prune;
namespace m = shrink::metrics;
using shrink::index_t;

namespace {
// Tiny independent references: y = W x + b; conv with stride 1, zero padding `pad`, NCHW (N=1).
std::vector<float> linear(const std::vector<float>& w, index_t out, index_t in, const std::vector<float>& b,
                          const std::vector<float>& x) {
  std::vector<float> y(static_cast<std::size_t>(out));
  for (index_t o = 0; o < out; ++o) {
    double s = b.empty() ? 0.0 : b[static_cast<std::size_t>(o)];
    for (index_t i = 0; i < in; ++i) s += double(w[static_cast<std::size_t>(o * in + i)]) * x[static_cast<std::size_t>(i)];
    y[static_cast<std::size_t>(o)] = static_cast<float>(s);
  }
  return y;
}

std::vector<float> conv(const std::vector<float>& w, index_t out, index_t in, index_t k, const std::vector<float>& b,
                        const std::vector<float>& x, index_t h, index_t wd, index_t pad) {
  const index_t oh = h + 2 * pad - k + 1, ow = wd + 2 * pad - k + 1;
  std::vector<float> y(static_cast<std::size_t>(out * oh * ow));
  for (index_t o = 0; o < out; ++o)
    for (index_t r = 0; r < oh; ++r)
      for (index_t c = 0; c < ow; ++c) {
        double s = b.empty() ? 0.0 : b[static_cast<std::size_t>(o)];
        for (index_t i = 0; i < in; ++i)
          for (index_t ky = 0; ky < k; ++ky)
            for (index_t kx = 0; kx < k; ++kx) {
              const index_t yy = r + ky - pad, xx = c + kx - pad;
              if (yy < 0 || yy >= h || xx < 0 || xx >= wd) continue;
              s += double(w[static_cast<std::size_t>(((o * in + i) * k + ky) * k + kx)]) *
                   x[static_cast<std::size_t>((i * h + yy) * wd + xx)];
            }
        y[static_cast<std::size_t>((o * oh + r) * ow + c)] = static_cast<float>(s);
      }
  return y;
}

// BatchNorm (inference) then ReLU over `channels` planes of `plane` values; channels with
// keep[c] == 0 output zero (the masked pair's definition of a removed channel).
void bn_relu(std::vector<float>& x, const p::batch_norm& bn, index_t plane, const std::vector<int>* keep) {
  for (std::size_t c = 0; c < bn.gamma.size(); ++c)
    for (index_t i = 0; i < plane; ++i) {
      float& v = x[c * static_cast<std::size_t>(plane) + static_cast<std::size_t>(i)];
      v = bn.gamma[c] * (v - bn.mean[c]) / std::sqrt(bn.var[c] + bn.eps) + bn.beta[c];
      v = std::max(v, 0.0f);
      if (keep != nullptr && (*keep)[c] == 0) v = 0.0f;
    }
}

p::batch_norm random_bn(std::size_t c, unsigned seed) {
  p::batch_norm bn{shrink::testing::uniform_floats(c, seed, 0.5f, 1.5f), shrink::testing::uniform_floats(c, seed + 1),
                   shrink::testing::uniform_floats(c, seed + 2), shrink::testing::uniform_floats(c, seed + 3, 0.5f, 2.0f),
                   1e-5f};
  return bn;
}

void check_close(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).margin(1e-5).epsilon(1e-5));
}
}  // namespace

TEST_CASE("thin: Linear -> BN -> ReLU -> Linear thinned pair equals the masked pair") {
  const index_t in = 5, hid = 6, out = 3;
  auto w1 = shrink::testing::normal_floats(hid * in, 11);
  auto b1 = shrink::testing::normal_floats(hid, 12);
  const auto w2 = shrink::testing::normal_floats(out * hid, 13);
  const auto b2 = shrink::testing::normal_floats(out, 14);
  const auto bn = random_bn(hid, 20);
  const shrink::tensor_view<const float, 2> w1v(w1.data(), shrink::shape<2>{hid, in});
  const auto sel = p::channels(w1v, p::channel_axis::output, p::norm::l2, p::by_sparsity(0.5));
  REQUIRE(sel.kept.size() == 3);
  std::vector<int> keep(hid, 0);
  for (index_t k : sel.kept) keep[static_cast<std::size_t>(k)] = 1;

  const shrink::tensor_view<const float, 2> w2v(w2.data(), shrink::shape<2>{out, hid});
  const auto t = p::thin(w1v, std::span<const float>(b1), &bn, w2v, sel.kept);
  CHECK(t.weight.extent(0) == 3);
  CHECK(t.weight.extent(1) == in);
  CHECK(t.next_weight.extent(0) == out);
  CHECK(t.next_weight.extent(1) == 3);
  CHECK(t.bias.size() == 3);
  REQUIRE(t.norm.has_value());
  CHECK(t.norm->var[1] == bn.var[static_cast<std::size_t>(sel.kept[1])]);

  // masked pair: the removed channels' weights and bias zeroed (apply) and their output zero
  std::vector<float> w1m = w1;
  p::apply(sel.mask, shrink::tensor_view<float, 2>(w1m.data(), shrink::shape<2>{hid, in}));
  for (index_t c = 0; c < hid; ++c)
    if (!keep[static_cast<std::size_t>(c)]) b1[static_cast<std::size_t>(c)] = 0.0f;
  for (unsigned trial = 0; trial < 4; ++trial) {
    const auto x = shrink::testing::normal_floats(static_cast<std::size_t>(in), 100 + trial);
    auto h = linear(w1m, hid, in, b1, x);
    bn_relu(h, bn, 1, &keep);
    const auto y_masked = linear(w2, out, hid, b2, h);
    auto ht = linear({t.weight.data(), t.weight.data() + t.weight.size()}, 3, in, t.bias, x);
    bn_relu(ht, *t.norm, 1, nullptr);
    const auto y_thin = linear({t.next_weight.data(), t.next_weight.data() + t.next_weight.size()}, out, 3, b2, ht);
    check_close(y_thin, y_masked);
  }
}

TEST_CASE("thin: Conv -> BN -> ReLU -> Conv thinned pair equals the masked pair") {
  const index_t cin = 3, c1 = 8, c2 = 5, k = 3, h = 6, wd = 7;
  const auto w1 = shrink::testing::normal_floats(c1 * cin * k * k, 31);
  const auto b1 = shrink::testing::normal_floats(c1, 32);
  const auto w2 = shrink::testing::normal_floats(c2 * c1 * k * k, 33);
  const auto b2 = shrink::testing::normal_floats(c2, 34);
  const auto bn = random_bn(c1, 40);
  const shrink::tensor_view<const float, 4> w1v(w1.data(), shrink::shape<4>{c1, cin, k, k});
  const shrink::tensor_view<const float, 4> w2v(w2.data(), shrink::shape<4>{c2, c1, k, k});
  const auto sel = p::channels(w1v, p::channel_axis::output, p::norm::l1, p::by_sparsity(0.375));  // 3 of 8
  REQUIRE(sel.kept.size() == 5);
  std::vector<int> keep(c1, 0);
  for (index_t c : sel.kept) keep[static_cast<std::size_t>(c)] = 1;
  const auto t = p::thin(w1v, std::span<const float>(b1), &bn, w2v, sel.kept);
  CHECK(t.next_weight.extent(1) == 5);
  // Input slice c of the thinned next conv is the original slice kept[c].
  for (index_t o = 0; o < c2; ++o)
    for (index_t c = 0; c < 5; ++c)
      CHECK(t.next_weight(o, c, 2, 1) == w2v(o, sel.kept[static_cast<std::size_t>(c)], 2, 1));

  std::vector<float> w1m = w1, b1m = b1;
  p::apply(sel.mask, shrink::tensor_view<float, 4>(w1m.data(), shrink::shape<4>{c1, cin, k, k}));
  for (index_t c = 0; c < c1; ++c)
    if (!keep[static_cast<std::size_t>(c)]) b1m[static_cast<std::size_t>(c)] = 0.0f;
  const auto x = shrink::testing::normal_floats(static_cast<std::size_t>(cin * h * wd), 77);
  auto a = conv(w1m, c1, cin, k, b1m, x, h, wd, 1);
  bn_relu(a, bn, h * wd, &keep);
  const auto y_masked = conv(w2, c2, c1, k, b2, a, h, wd, 1);
  auto at = conv({t.weight.data(), t.weight.data() + t.weight.size()}, 5, cin, k, t.bias, x, h, wd, 1);
  bn_relu(at, *t.norm, h * wd, nullptr);
  const auto y_thin = conv({t.next_weight.data(), t.next_weight.data() + t.next_weight.size()}, c2, 5, k, b2, at, h,
                           wd, 1);
  check_close(y_thin, y_masked);
}

TEST_CASE("thin: bad kept indices and mismatched layers are errors") {
  const std::vector<float> w(12, 1.0f), w2(8, 1.0f);
  const shrink::tensor_view<const float, 2> a(w.data(), shrink::shape<2>{4, 3}), b(w2.data(), shrink::shape<2>{2, 4});
  const std::vector<index_t> out_of_range{0, 4}, unsorted{2, 1}, ok{1, 3};
  const std::vector<float> bias3(3, 0.0f);
  CHECK_THROWS_AS(p::thin(a, {}, nullptr, b, out_of_range), shrink::error);
  CHECK_THROWS_AS(p::thin(a, {}, nullptr, b, unsorted), shrink::error);
  CHECK_THROWS_AS(p::thin(a, bias3, nullptr, b, ok), shrink::error);
  CHECK_THROWS_AS(p::thin(a, {}, nullptr, a, ok), shrink::error);  // next takes 3 inputs, not 4
  p::batch_norm bad{{1, 1, 1, 1}, {0, 0, 0, 0}, {0, 0, 0}, {1, 1, 1, 1}};
  CHECK_THROWS_AS(p::thin(a, {}, &bad, b, ok), shrink::error);
  const auto t = p::thin(a, {}, nullptr, b, ok);
  CHECK(t.bias.empty());
  CHECK_FALSE(t.norm.has_value());
}

TEST_CASE("metrics: sparsity per tensor and global") {
  const std::vector<float> a{0, 1, 0, -0.0f}, b{1, 2, 3, 4, 5, 0};
  CHECK(m::sparsity(std::span<const float>(a)) == 0.75);
  CHECK(m::sparsity(std::span<const float>(b)) == Approx(1.0 / 6.0));
  const std::vector<std::span<const float>> both{a, b};
  CHECK(m::global_sparsity(both) == Approx(4.0 / 10.0));  // size-weighted, not (0.75 + 1/6) / 2
  const std::vector<std::uint8_t> keep{1, 0, 0, 1, 0};
  CHECK(m::sparsity(std::span<const std::uint8_t>(keep)) == Approx(0.6));
  CHECK(m::sparsity(std::span<const float>()) == 0.0);
}

TEST_CASE("metrics: MACs saved by pruning linear and conv layers") {
  const auto l = m::linear_macs(4, 8, 8, 2);  // 4x8 weights, 8 kept, batch 2
  CHECK(l.dense == 64);
  CHECK(l.remaining == 16);
  CHECK(l.saved() == 48);
  CHECK(l.fraction_saved() == 0.75);
  const auto c = m::conv_macs(8, 4, 3, 3, 10, 10, 100);  // 288 weights, 100 kept, 10x10 output
  CHECK(c.dense == 8u * 4 * 9 * 100);
  CHECK(c.remaining == 100u * 100);
  const auto t = m::thinned_conv_macs(8, 4, 3, 3, 10, 10, 4, 2);
  CHECK(t.remaining == 4u * 2 * 9 * 100);
  CHECK(t.fraction_saved() == 0.75);
  CHECK_THROWS_AS(m::linear_macs(4, 8, 33), shrink::error);
  CHECK_THROWS_AS(m::thinned_conv_macs(8, 4, 3, 3, 10, 10, 9, 2), shrink::error);
  CHECK_THROWS_AS(m::conv_macs(-1, 4, 3, 3, 10, 10, 0), shrink::error);
}

TEST_CASE("mask feeds the sparse formats: CSR from a magnitude mask expands to weights times mask") {
  const auto w = shrink::testing::normal_floats(32 * 40, 61);
  const shrink::tensor_view<const float, 2> wv(w.data(), shrink::shape<2>{32, 40});
  const p::mask msk = p::magnitude(wv, p::by_sparsity(0.75));
  const auto csr = shrink::sparse::csr_f32::from_dense(wv, msk.matrix());
  CHECK(csr.nnz() == msk.kept());
  const auto dense = csr.to_dense();
  for (index_t i = 0; i < 32 * 40; ++i)
    CHECK(dense.data()[i] == (msk[i] ? w[static_cast<std::size_t>(i)] : 0.0f));
}
