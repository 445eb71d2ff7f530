// test_masks.cpp: unstructured, global, Taylor, channel, N:M and block masks, schedules and bad input, against hand-built expectations.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <numeric>
#include <shrink/prune.hpp>
#include <string>
#include <support/isa.hpp>
#include <support/random.hpp>
#include <vector>

namespace p = shrink::prune;
using shrink::index_t;

namespace {
std::vector<int> bytes(const p::mask& m) {
  std::vector<int> out;
  for (index_t i = 0; i < m.size(); ++i) out.push_back(m[i]);
  return out;
}
shrink::tensor_view<const float, 1> v1(const std::vector<float>& v) { return {v.data(), shrink::shape<1>{v.size()}}; }
shrink::tensor_view<const float, 2> v2(const std::vector<float>& v, index_t r, index_t c) {
  return {v.data(), shrink::shape<2>{r, c}};
}

// Brute-force oracle: rank all elements by (|x|, index) with a full sort and prune the first k.
std::vector<int> oracle_prune(const std::vector<float>& x, index_t k) {
  std::vector<index_t> order(x.size());
  std::iota(order.begin(), order.end(), index_t{0});
  std::sort(order.begin(), order.end(), [&](index_t a, index_t b) {
    const float fa = std::fabs(x[static_cast<std::size_t>(a)]), fb = std::fabs(x[static_cast<std::size_t>(b)]);
    return fa < fb || (fa == fb && a < b);
  });
  std::vector<int> keep(x.size(), 1);
  for (index_t i = 0; i < k; ++i) keep[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = 0;
  return keep;
}

template <class F>
std::string error_text(F&& f, shrink::errc expected) {
  try {
    f();
  } catch (const shrink::error& e) {
    CHECK(e.code() == expected);
    return e.what();
  }
  FAIL("expected a shrink::error");
  return {};
}
}  // namespace

TEST_CASE("prune_count rounds half to even like PyTorch _compute_nparams_toprune") {
  CHECK(p::prune_count(0.5, 5) == 2);   // round(2.5) = 2
  CHECK(p::prune_count(0.5, 7) == 4);   // round(3.5) = 4
  CHECK(p::prune_count(0.25, 10) == 2); // round(2.5) = 2
  CHECK(p::prune_count(0.9, 10) == 9);
  CHECK(p::prune_count(0.0, 10) == 0);
  CHECK(p::prune_count(1.0, 10) == 10);
  CHECK(p::prune_count(0.5, 0) == 0);
}

TEST_CASE("magnitude: a hand-built vector prunes its smallest magnitudes") {
  const std::vector<float> w{0.5f, -3.0f, 0.1f, 2.0f, -0.2f, 1.0f};
  CHECK(bytes(p::magnitude(v1(w), p::by_sparsity(0.5))) == std::vector<int>{0, 1, 0, 1, 0, 1});
  CHECK(bytes(p::magnitude(v1(w), p::by_sparsity(0.0))) == std::vector<int>{1, 1, 1, 1, 1, 1});
  CHECK(bytes(p::magnitude(v1(w), p::by_sparsity(1.0))) == std::vector<int>{0, 0, 0, 0, 0, 0});
  // threshold: kept iff |w| > t
  CHECK(bytes(p::magnitude(v1(w), p::by_threshold(0.5))) == std::vector<int>{0, 1, 0, 1, 0, 1});
  CHECK(bytes(p::magnitude(v1(w), p::by_threshold(0.0))) == std::vector<int>{1, 1, 1, 1, 1, 1});
  const std::vector<float> z{0.0f, -0.0f, 1.0f};
  CHECK(bytes(p::magnitude(v1(z), p::by_threshold(0.0))) == std::vector<int>{0, 0, 1});
}

TEST_CASE("magnitude: ties prune the lower index first, all-zero tensors lose their first k") {
  const std::vector<float> w{1.0f, -1.0f, 1.0f, 1.0f};
  CHECK(bytes(p::magnitude(v1(w), p::by_sparsity(0.5))) == std::vector<int>{0, 0, 1, 1});
  const std::vector<float> zeros(10, 0.0f);
  const p::mask m = p::magnitude(v1(zeros), p::by_sparsity(0.3));
  CHECK(bytes(m) == std::vector<int>{0, 0, 0, 1, 1, 1, 1, 1, 1, 1});
  CHECK(m.sparsity() == Approx(0.3));
  const std::vector<float> empty;
  CHECK(p::magnitude(v1(empty), p::by_sparsity(0.5)).size() == 0);
}

TEST_CASE("magnitude: large tensors match a full-sort oracle exactly on every path") {
  shrink::testing::for_each_isa([](shrink::kernels::isa) {
    for (int variant = 0; variant < 3; ++variant) {
      const std::size_t n = variant == 2 ? 40001 : 200003;
      std::vector<float> w = shrink::testing::normal_floats(n, 42 + static_cast<unsigned>(variant));
      if (variant == 1)  // only 7 distinct magnitudes: huge ties straddle the cut
        for (float& x : w) x = std::round(x * 2.0f) / 2.0f;
      for (double s : {0.0, 0.1, 0.5, 0.9, 0.999, 1.0}) {
        INFO("variant " << variant << " sparsity " << s);
        const index_t k = p::prune_count(s, static_cast<index_t>(n));
        const p::mask m = p::magnitude(v2(w, 1, static_cast<index_t>(n)), p::by_sparsity(s));
        CHECK(m.pruned() == k);
        CHECK(bytes(m) == oracle_prune(w, k));
      }
    }
  });
}

TEST_CASE("magnitude: millions of weights with wide ties select by radix histograms and match the oracle") {
  // 2^20 + 5 weights in steps of 1/8: a tie class near the cut holds ~5 % of them, so the
  // bracket's candidates exceed 2^15 and the cut key comes from the radix histogram passes
  // (the sample, 65,536 keys, goes through them too), not nth_element.
  const std::size_t n = (std::size_t{1} << 20) + 5;
  std::vector<float> w = shrink::testing::normal_floats(n, 77);
  for (float& x : w) x = std::round(x * 8.0f) / 8.0f;
  for (double s : {0.5, 0.9}) {
    const index_t k = p::prune_count(s, static_cast<index_t>(n));
    const auto expect = oracle_prune(w, k);
    shrink::testing::for_each_isa([&](shrink::kernels::isa) {
      INFO("sparsity " << s);
      const p::mask m = p::magnitude(v1(w), p::by_sparsity(s));
      CHECK(m.pruned() == k);
      const auto got = bytes(m);
      const auto first_diff = std::mismatch(got.begin(), got.end(), expect.begin()).first - got.begin();
      CHECK(first_diff == static_cast<std::ptrdiff_t>(n));  // n: no element differs
    });
  }
}

TEST_CASE("rank_select: radix and nth_element paths pick the rank-th smallest key") {
  for (const std::size_t n : {std::size_t{1000}, std::size_t{1} << 15, (std::size_t{1} << 17) + 3}) {
    std::vector<std::uint32_t> keys(n);
    std::uint32_t state = 12345;
    for (std::size_t i = 0; i < n; ++i) {
      state = state * 1664525u + 1013904223u;
      // Few distinct high halves and many repeats, so buckets and ties are both exercised.
      keys[i] = (i % 3 == 0) ? 0x3c000000u + (state >> 28) : (0x3c000000u | (state >> 20 & 0x3ffffu));
    }
    std::vector<std::uint32_t> sorted(keys);
    std::sort(sorted.begin(), sorted.end());
    for (const std::size_t rank : {std::size_t{0}, n / 3, n / 2, n - 1}) {
      INFO("n " << n << " rank " << rank);
      CHECK(p::detail::rank_select(static_cast<index_t>(n), static_cast<index_t>(rank),
                                   [&](index_t i) { return keys[static_cast<std::size_t>(i)]; }) == sorted[rank]);
    }
  }
}

TEST_CASE("magnitude: the into-mask overload reuses or reshapes the caller's mask") {
  const std::vector<float> w{0.5f, -3.0f, 0.1f, 2.0f, -0.2f, 1.0f};
  p::mask m;
  p::magnitude(v2(w, 2, 3), p::by_sparsity(0.5), m);
  CHECK(bytes(m) == std::vector<int>{0, 1, 0, 1, 0, 1});
  CHECK(m.dims() == std::vector<index_t>{2, 3});
  const std::uint8_t* storage = m.data();
  p::magnitude(v2(w, 2, 3), p::by_threshold(1.5), m);
  CHECK(m.data() == storage);
  CHECK(bytes(m) == std::vector<int>{0, 1, 0, 1, 0, 0});
}

TEST_CASE("magnitude: strided views are read in row-major order") {
  const std::vector<float> storage{4, 9, 1, 9, 3, 9, 2, 9};  // a 4x1 column every other element
  const shrink::tensor_view<const float, 2> col(storage.data(), shrink::shape<2>{4, 1}, {2, 1});
  CHECK(bytes(p::magnitude(col, p::by_sparsity(0.5))) == std::vector<int>{1, 0, 1, 0});
}

TEST_CASE("global_magnitude: torch global_unstructured L1 semantics written out") {
  // torch.nn.utils.prune.global_unstructured([(a,'weight'),(b,'weight')], L1Unstructured, amount=0.5):
  // total 7, k = round(3.5) = 4, one ranking of the concatenation [a.flatten(), b.flatten()]:
  // 0.05 (b[2]) < 0.1 (a[0]) < 0.2 (b[0]) < 0.3 (a[2]) are pruned.
  const std::vector<float> a{0.1f, 0.9f, -0.3f, 0.4f}, b{-0.2f, 0.8f, 0.05f};
  const std::vector<p::layer_ref> layers{v2(a, 2, 2), v1(b)};
  const auto masks = p::global_magnitude(layers, p::by_sparsity(0.5));
  REQUIRE(masks.size() == 2);
  CHECK(bytes(masks[0]) == std::vector<int>{0, 1, 0, 1});
  CHECK(bytes(masks[1]) == std::vector<int>{0, 1, 0});
  CHECK(masks[0].dims() == std::vector<index_t>{2, 2});
  // Ties across tensors: the earlier tensor's element is pruned first.
  const std::vector<float> c{1, 2}, d{1, 2};
  const std::vector<p::layer_ref> tied{v1(c), v1(d)};
  const auto t = p::global_magnitude(tied, p::by_sparsity(0.25));  // k = 1
  CHECK(bytes(t[0]) == std::vector<int>{0, 1});
  CHECK(bytes(t[1]) == std::vector<int>{1, 1});
}

TEST_CASE("global_magnitude: many tensors match the oracle on the concatenation") {
  const auto a = shrink::testing::normal_floats(50000, 1), b = shrink::testing::normal_floats(3, 2),
             c = shrink::testing::uniform_floats(70001, 3);
  std::vector<float> all(a);
  all.insert(all.end(), b.begin(), b.end());
  all.insert(all.end(), c.begin(), c.end());
  const std::vector<p::layer_ref> layers{v1(a), v1(b), v1(c)};
  const index_t k = p::prune_count(0.8, static_cast<index_t>(all.size()));
  const auto masks = p::global_magnitude(layers, p::by_sparsity(0.8));
  std::vector<int> got;
  for (const auto& m : masks) {
    auto part = bytes(m);
    got.insert(got.end(), part.begin(), part.end());
  }
  CHECK(got == oracle_prune(all, k));
}

TEST_CASE("taylor: scores |w*g| with ties by index, gradient shape checked") {
  const std::vector<float> w{1, 2, 3, 4}, g{4, 1, 0.1f, -0.5f};  // scores 4, 2, 0.3, 2
  CHECK(bytes(p::taylor(v1(w), v1(g), p::by_sparsity(0.5))) == std::vector<int>{1, 0, 0, 1});
  CHECK(bytes(p::taylor(v1(w), v1(g), p::by_threshold(1.0))) == std::vector<int>{1, 1, 0, 1});
  const std::vector<float> g3{1, 2, 3};
  error_text([&] { (void)p::taylor(v1(w), v1(g3), p::by_sparsity(0.5)); }, shrink::errc::shape_mismatch);
  const std::vector<float> winf{1, std::numeric_limits<float>::infinity(), 3, 4}, gz{1, 0, 1, 1};
  CHECK(error_text([&] { (void)p::taylor(v1(winf), v1(gz), p::by_sparsity(0.5)); }, shrink::errc::non_finite)
            .find("index 1") != std::string::npos);
}

TEST_CASE("reprune: previously pruned weights stay pruned, sparsity never decreases") {
  const std::vector<float> w{5, 4, 3, 2, 1, 0.5f};
  p::mask prev({6}, 1);
  prev[0] = 0;  // the largest weight was pruned in an earlier round
  CHECK(bytes(p::reprune(v1(w), prev, p::by_sparsity(0.5))) == std::vector<int>{0, 1, 1, 1, 0, 0});
  CHECK(bytes(p::reprune(v1(w), prev, p::by_sparsity(0.1))) == std::vector<int>{0, 1, 1, 1, 1, 1});
  CHECK(bytes(p::reprune(v1(w), prev, p::by_threshold(2.5))) == std::vector<int>{0, 1, 1, 0, 0, 0});
  // Han et al. loop: rounds of increasing sparsity, each round's mask contains the next.
  const auto big = shrink::testing::normal_floats(1000, 9);
  p::iterative_schedule sched{0.9, 3, p::iterative_schedule::kind::linear};
  p::mask m({1000}, 1);
  for (int r = 1; r <= 3; ++r) {
    const p::mask next = p::reprune(v1(big), m, p::by_sparsity(sched.sparsity(r)));
    for (index_t i = 0; i < 1000; ++i)
      if (m[i] == 0) REQUIRE(next[i] == 0);
    CHECK(next.pruned() == p::prune_count(sched.sparsity(r), 1000));
    m = next;
  }
  p::mask wrong({5}, 1);
  error_text([&] { (void)p::reprune(v1(w), wrong, p::by_sparsity(0.5)); }, shrink::errc::shape_mismatch);
}

TEST_CASE("apply: zeroes pruned weights and gradients, checks the shape") {
  std::vector<float> w{1, 2, 3, 4, 5, 6}, g{.1f, .2f, .3f, .4f, .5f, .6f};
  const p::mask m = p::magnitude(v2(w, 2, 3), p::by_sparsity(0.5));  // prunes 1, 2, 3
  p::apply(m, shrink::tensor_view<float, 2>(w.data(), shrink::shape<2>{2, 3}));
  p::apply(m, std::span<float>(g));
  CHECK(w == std::vector<float>{0, 0, 0, 4, 5, 6});
  CHECK(g == std::vector<float>{0, 0, 0, .4f, .5f, .6f});
  error_text([&] { p::apply(m, shrink::tensor_view<float, 2>(w.data(), shrink::shape<2>{3, 2})); },
             shrink::errc::shape_mismatch);
  error_text([&] { p::apply(m, std::span<float>(w.data(), 5)); }, shrink::errc::shape_mismatch);
}

TEST_CASE("channels: L1 and L2 output-channel norms pick different rows") {
  // Row 0 = [1,1,1,1]: L1 4, L2 2. Row 1 = [2.5,0,0,0]: L1 2.5, L2 2.5.
  const std::vector<float> w{1, 1, 1, 1, 2.5f, 0, 0, 0};
  const auto l1 = p::channels(v2(w, 2, 4), p::channel_axis::output, p::norm::l1, p::by_sparsity(0.5));
  const auto l2 = p::channels(v2(w, 2, 4), p::channel_axis::output, p::norm::l2, p::by_sparsity(0.5));
  CHECK(l1.kept == std::vector<index_t>{0});
  CHECK(l2.kept == std::vector<index_t>{1});
  CHECK(bytes(l1.mask) == std::vector<int>{1, 1, 1, 1, 0, 0, 0, 0});
  const auto th = p::channels(v2(w, 2, 4), p::channel_axis::output, p::norm::l1, p::by_threshold(3.0));
  CHECK(th.kept == std::vector<index_t>{0});
}

TEST_CASE("channels: input channels of a conv weight are the [:, c, :, :] slices") {
  // [out 2, in 3, kh 1, kw 2]; in-channel c has entries w[o, c, 0, x].
  // |.| sums per in-channel: c0: 1+1+1+1 = 4, c1: 0.1*4 = 0.4, c2: 2+0+0+2 = 4 (tie with c0).
  const std::vector<float> w{1, 1, .1f, .1f, 2, 0, 1, -1, .1f, -.1f, 0, 2};
  const shrink::tensor_view<const float, 4> conv(w.data(), shrink::shape<4>{2, 3, 1, 2});
  const auto s = p::channels(conv, p::channel_axis::input, p::norm::l1, p::by_sparsity(0.67));  // round(2.01) = 2
  CHECK(s.kept == std::vector<index_t>{2});  // c1 lowest, then the c0/c2 tie prunes c0
  CHECK(bytes(s.mask) == std::vector<int>{0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1});
  const auto o = p::channels(conv, p::channel_axis::output, p::norm::l2, p::by_sparsity(0.5));
  // out 0: 1+1+.01+.01+4 = 6.02, out 1: 1+1+.01+.01+4 = 6.02 -> tie, prune out 0
  CHECK(o.kept == std::vector<index_t>{1});
}

TEST_CASE("n_m: 2:4 and 4:8 keep the N largest of each M consecutive inputs") {
  shrink::testing::for_each_isa([](shrink::kernels::isa) {
  const std::vector<float> w{1, -5, 3, 2, 0, 0, 0, 7};
  CHECK(bytes(p::n_m(v2(w, 1, 8), 2, 4)) == std::vector<int>{0, 1, 1, 0, 0, 0, 1, 1});  // zeros: later index kept
  CHECK(bytes(p::n_m(v2(w, 1, 8), 4, 8)) == std::vector<int>{0, 1, 1, 1, 0, 0, 0, 1});
  CHECK(bytes(p::n_m(v2(w, 2, 4), 1, 4)) == std::vector<int>{0, 1, 0, 0, 0, 0, 0, 1});
  // conv [out 1, in 4, kh 1, kw 2]: groups along in-channels at a fixed kernel position x.
  const std::vector<float> c{9, 1, 8, 2, 1, 3, 0, 4};  // x=0 column: 9,8,1,0 ; x=1 column: 1,2,3,4
  const shrink::tensor_view<const float, 4> conv(c.data(), shrink::shape<4>{1, 4, 1, 2});
  CHECK(bytes(p::n_m(conv, 2, 4)) == std::vector<int>{1, 0, 1, 0, 0, 1, 0, 1});
  // 40 groups so the AVX2 path's 8-group steps and the scalar tail both run: group g is
  // [g, -(g+1), 0.5, 0.5] for g >= 1 -> keeps -(g+1) and g; group 0 [0, -1, .5, .5] keeps -1, the later .5
  std::vector<float> big;
  for (int g = 0; g < 40; ++g) big.insert(big.end(), {float(g), -float(g + 1), 0.5f, 0.5f});
  const auto mb = p::n_m(v2(big, 2, 80), 2, 4);
  for (int g = 0; g < 40; ++g) {
    const std::vector<int> expect = g == 0 ? std::vector<int>{0, 1, 0, 1} : std::vector<int>{1, 1, 0, 0};
    for (int j = 0; j < 4; ++j) CHECK(mb[4 * g + j] == expect[static_cast<std::size_t>(j)]);
  }
  });
}

TEST_CASE("n_m: random matrices keep exactly N per group, each kept >= each pruned") {
  auto w = shrink::testing::normal_floats(64 * 48, 5);
  for (std::size_t i = 0; i < w.size(); i += 7) w[i] = w[i + 1 < w.size() ? i + 1 : i];  // some ties
  shrink::testing::for_each_isa([&](shrink::kernels::isa) {
  for (auto [n, m] : {std::pair{2, 4}, {1, 4}, {3, 4}, {4, 8}, {1, 3}, {3, 16}, {5, 6}}) {
    const p::mask mask = p::n_m(v2(w, 64, 48), n, m);
    for (index_t g = 0; g < 64 * 48; g += m) {
      int kept = 0;
      float min_kept = 1e30f, max_pruned = -1;
      for (index_t j = g; j < g + m; ++j) {
        const float a = std::fabs(w[static_cast<std::size_t>(j)]);
        if (mask[j]) {
          ++kept;
          min_kept = std::min(min_kept, a);
        } else {
          max_pruned = std::max(max_pruned, a);
        }
      }
      REQUIRE(kept == n);
      REQUIRE(min_kept >= max_pruned);
      // tie rule: an equal pair across the cut has the kept one at the higher index
      for (index_t a = g; a < g + m; ++a)
        for (index_t b = g; b < g + m; ++b)
          if (mask[a] && !mask[b] && std::fabs(w[static_cast<std::size_t>(a)]) == std::fabs(w[static_cast<std::size_t>(b)]))
            REQUIRE(a > b);
    }
  }
  });
}

TEST_CASE("block: blocks ranked by norm, whole blocks pruned") {
  // 4x8 with two 4x4 blocks: left block all 1 (L2 4, L1 16), right block one 5 (L2 5, L1 5).
  std::vector<float> w(32, 0.0f);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) w[static_cast<std::size_t>(i * 8 + j)] = 1.0f;
  w[2 * 8 + 5] = 5.0f;
  const auto l2 = p::block(v2(w, 4, 8), {4, 4, p::norm::l2, false}, p::by_sparsity(0.5));
  const auto l1 = p::block(v2(w, 4, 8), {4, 4, p::norm::l1, false}, p::by_sparsity(0.5));
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j) {
      CHECK(l2[i * 8 + j] == (j >= 4 ? 1 : 0));
      CHECK(l1[i * 8 + j] == (j < 4 ? 1 : 0));
    }
  // 1x4 blocks: 8 blocks; the 4 left halves have norm 2, row 2's right half norm 5, the other
  // 3 right halves 0. Pruning 4 takes the 3 zero blocks and, of the tied norm-2 blocks, the
  // lowest index (row 0's left half).
  const auto r14 = p::block(v2(w, 4, 8), {1, 4, p::norm::l2, false}, p::by_sparsity(0.5));
  CHECK(r14.kept() == 16);
  CHECK(r14[2 * 8 + 5] == 1);
  CHECK(r14[0] == 0);
  CHECK(r14[1 * 8 + 0] == 1);
  CHECK(r14[0 * 8 + 4] == 0);
  // 4x1 blocks: 8 column blocks; columns 0..3 norm 2, column 5 norm 5, columns 4, 6, 7 zero:
  // prune the 3 zero columns and column 0 (lowest index of the norm-2 tie).
  const auto r41 = p::block(v2(w, 4, 8), {4, 1, p::norm::l2, false}, p::by_sparsity(0.5));
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j) CHECK(r41[i * 8 + j] == ((j >= 1 && j < 4) || j == 5 ? 1 : 0));
  // threshold on the block norm
  const auto th = p::block(v2(w, 4, 8), {4, 4, p::norm::l2, false}, p::by_threshold(4.5));
  CHECK(th.kept() == 16);
  CHECK(th[5] == 1);
}

TEST_CASE("block: partial edge blocks only when allowed") {
  const std::vector<float> w{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 9, 9, 9, 9};  // 5x3
  error_text([&] { (void)p::block(v2(w, 5, 3), {4, 4, p::norm::l2, false}, p::by_sparsity(0.5)); },
             shrink::errc::shape_mismatch);
  // allowed: blocks (rows 0..3) norm sqrt(10*1+2*81)... two blocks, 16x..: block 0 = rows 0..3, block 1 = row 4
  // block 0 holds 1,1,1,1,1,1,1,1,1,1,9,9 -> L2 sqrt(172); block 1 holds 9,9,9 -> L2 sqrt(243): block 0 pruned.
  const auto m = p::block(v2(w, 5, 3), {4, 4, p::norm::l2, true}, p::by_sparsity(0.5));
  CHECK(bytes(m) == std::vector<int>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1});
}

TEST_CASE("gradual_schedule: Zhu and Gupta cubic ramp evaluated by hand") {
  const p::gradual_schedule s{0.0, 0.8, 10, 4, 5};  // ramp from step 10 to 30
  CHECK(s.sparsity_at(0) == 0.0);
  CHECK(s.sparsity_at(10) == 0.0);
  CHECK(s.sparsity_at(15) == Approx(0.8 - 0.8 * 0.421875));  // (1 - 5/20)^3 = 27/64
  CHECK(s.sparsity_at(20) == Approx(0.8 - 0.8 * 0.125));     // (1/2)^3
  CHECK(s.sparsity_at(25) == Approx(0.8 - 0.8 / 64.0));      // (1/4)^3
  CHECK(s.sparsity_at(30) == 0.8);
  CHECK(s.sparsity_at(1000) == 0.8);
  CHECK(s.prune_step(15));
  CHECK_FALSE(s.prune_step(16));
  CHECK_FALSE(s.prune_step(35));
  CHECK_FALSE(s.prune_step(5));
  const p::gradual_schedule from_half{0.5, 0.9, 0, 2, 1};
  CHECK(from_half.sparsity_at(1) == Approx(0.9 - 0.4 * 0.125));
  error_text([] { (void)p::gradual_schedule{0.0, 1.5, 0, 2, 1}.sparsity_at(1); }, shrink::errc::invalid_argument);
  error_text([] { (void)p::gradual_schedule{0.0, 0.5, 0, 0, 1}.sparsity_at(1); }, shrink::errc::invalid_argument);
}

TEST_CASE("iterative_schedule: geometric and linear rounds") {
  const p::iterative_schedule g{0.9375, 4};  // density 1/16 after 4 rounds: halves each round
  CHECK(g.sparsity(0) == 0.0);
  CHECK(g.sparsity(1) == Approx(0.5));
  CHECK(g.sparsity(2) == Approx(0.75));
  CHECK(g.sparsity(3) == Approx(0.875));
  CHECK(g.sparsity(4) == 0.9375);
  const p::iterative_schedule l{0.9, 3, p::iterative_schedule::kind::linear};
  CHECK(l.sparsity(1) == Approx(0.3));
  CHECK(l.sparsity(2) == Approx(0.6));
  error_text([&] { (void)l.sparsity(4); }, shrink::errc::out_of_range);
}

TEST_CASE("bad input: sparsity and threshold outside their ranges") {
  const std::vector<float> w{1, 2, 3, 4};
  for (double s : {-0.1, 1.1, std::nan("")})
    error_text([&] { (void)p::magnitude(v1(w), p::by_sparsity(s)); }, shrink::errc::invalid_argument);
  error_text([&] { (void)p::magnitude(v1(w), p::by_threshold(-1.0)); }, shrink::errc::invalid_argument);
  error_text([&] { (void)p::magnitude(v1(w), p::by_threshold(INFINITY)); }, shrink::errc::invalid_argument);
  error_text([&] { (void)p::channels(v2(w, 2, 2), p::channel_axis::output, p::norm::l2, p::by_sparsity(2.0)); },
             shrink::errc::invalid_argument);
  error_text([&] { (void)p::block(v2(w, 2, 2), {1, 1}, p::by_sparsity(-0.5)); }, shrink::errc::invalid_argument);
  error_text([&] { (void)p::prune_count(1.5, 3); }, shrink::errc::invalid_argument);
}

TEST_CASE("bad input: N:M with N >= M, N < 1 or M not dividing the input dimension") {
  const std::vector<float> w(24, 1.0f);
  error_text([&] { (void)p::n_m(v2(w, 2, 12), 4, 4); }, shrink::errc::invalid_argument);
  error_text([&] { (void)p::n_m(v2(w, 2, 12), 5, 4); }, shrink::errc::invalid_argument);
  error_text([&] { (void)p::n_m(v2(w, 2, 12), 0, 4); }, shrink::errc::invalid_argument);
  error_text([&] { (void)p::n_m(v2(w, 2, 12), 2, 8); }, shrink::errc::shape_mismatch);
  error_text([&] { (void)p::block(v2(w, 2, 12), {0, 4}, p::by_sparsity(0.5)); }, shrink::errc::invalid_argument);
  error_text([&] { (void)p::block(v2(w, 2, 12), {4, 4}, p::by_sparsity(0.5)); }, shrink::errc::shape_mismatch);
  error_text([&] { (void)p::block(v2(w, 2, 12), {1, 5}, p::by_sparsity(0.5)); }, shrink::errc::shape_mismatch);
}

TEST_CASE("bad input: NaN weights are errors that name the index") {
  std::vector<float> w(100000, 1.0f);
  w[77777] = std::nanf("");
  shrink::testing::for_each_isa([&](shrink::kernels::isa) {
    for (double s : {0.0, 0.5, 1.0})
      CHECK(error_text([&] { (void)p::magnitude(v1(w), p::by_sparsity(s)); }, shrink::errc::non_finite)
                .find("index 77777") != std::string::npos);
    CHECK(error_text([&] { (void)p::magnitude(v1(w), p::by_threshold(0.5)); }, shrink::errc::non_finite)
              .find("index 77777") != std::string::npos);
  });
  const std::vector<float> a{1, 2}, b{3, -std::nanf("")};
  const std::vector<p::layer_ref> layers{v1(a), v1(b)};
  const std::string msg = error_text([&] { (void)p::global_magnitude(layers, p::by_sparsity(0.5)); },
                                     shrink::errc::non_finite);
  CHECK(msg.find("index 1 of tensor 1") != std::string::npos);
  CHECK(error_text([&] { (void)p::n_m(v2(w, 1000, 100), 2, 4); }, shrink::errc::non_finite).find("index 77777") !=
        std::string::npos);
  CHECK(error_text([&] { (void)p::block(v2(w, 1000, 100), {4, 4}, p::by_sparsity(0.5)); }, shrink::errc::non_finite)
            .find("index 77777") != std::string::npos);
  CHECK(error_text([&] { (void)p::channels(v2(w, 1000, 100), p::channel_axis::input, p::norm::l1,
                                           p::by_sparsity(0.5)); },
                   shrink::errc::non_finite)
            .find("index 77777") != std::string::npos);
}

TEST_CASE("all-zero tensors: structured masks follow the index tie rule") {
  const std::vector<float> z(16, 0.0f);
  const auto ch = p::channels(v2(z, 4, 4), p::channel_axis::output, p::norm::l2, p::by_sparsity(0.5));
  CHECK(ch.kept == std::vector<index_t>{2, 3});
  CHECK(bytes(p::n_m(v2(z, 1, 16), 2, 4)) == std::vector<int>{0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1});
  const auto b = p::block(v2(z, 4, 4), {2, 2}, p::by_sparsity(0.5));  // blocks 0, 1 pruned
  CHECK(bytes(b) == std::vector<int>{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1});
}

TEST_CASE("threshold and global masks agree with a direct loop on every path") {
  const auto a = shrink::testing::normal_floats(200003, 71), b = shrink::testing::normal_floats(37, 72);
  shrink::testing::for_each_isa([&](shrink::kernels::isa) {
    for (double t : {0.0, 0.5, 1.7}) {
      const p::mask m = p::magnitude(v1(a), p::by_threshold(t));
      std::vector<int> expect;
      for (float x : a) expect.push_back(static_cast<double>(std::fabs(x)) > t ? 1 : 0);
      CHECK(bytes(m) == expect);
    }
    const std::vector<p::layer_ref> layers{v1(b), v1(a), v1(b)};
    std::vector<float> all(b);
    all.insert(all.end(), a.begin(), a.end());
    all.insert(all.end(), b.begin(), b.end());
    const auto masks = p::global_magnitude(layers, p::by_sparsity(0.6));
    std::vector<int> got;
    for (const auto& m : masks) {
      const auto part = bytes(m);
      got.insert(got.end(), part.begin(), part.end());
    }
    CHECK(got == oracle_prune(all, p::prune_count(0.6, static_cast<index_t>(all.size()))));
  });
}
