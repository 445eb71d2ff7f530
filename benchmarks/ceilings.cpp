// ceilings.cpp: measures this machine's ceilings (fp32 FMA, int8 dot, popcount, L2 and DRAM read) that kernels report against.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <shrink/core.hpp>
#include <shrink/kernels/dispatch.hpp>
#include <support/bench.hpp>
#include <thread>
#include <vector>

namespace {
namespace k = shrink::kernels;
constexpr int k_iterations = 1 << 16;

// ---- compute peaks: many independent accumulator chains, so throughput, not latency, binds.
// The empty asm makes the operands opaque each step: without it GCC folds the FMA chain on
// constants at compile time and hoists the loop-invariant vpmaddubsw out of the loop.
#if SHRINK_HAS_X86_PATHS
SHRINK_TARGET_AVX2 float fma_avx2(int n) {
  __m256 a[12];
  __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-7f);
  for (auto& r : a) r = _mm256_set1_ps(1.0f);
  for (int i = 0; i < n; ++i) {
    __asm__ volatile("" : "+x"(x), "+x"(y));
    for (auto& r : a) r = _mm256_fmadd_ps(r, x, y);
  }
  __m256 s = a[0];
  for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, a[j]);
  return _mm256_cvtss_f32(s);
}

SHRINK_TARGET_AVX512 float fma_avx512(int n) {
  __m512 a[12];
  __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
  for (auto& r : a) r = _mm512_set1_ps(1.0f);
  for (int i = 0; i < n; ++i) {
    __asm__ volatile("" : "+v"(x), "+v"(y));
    for (auto& r : a) r = _mm512_fmadd_ps(r, x, y);
  }
  __m512 s = a[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, a[j]);
  return _mm512_cvtss_f32(s);
}

// AVX2 int8: vpmaddubsw + vpmaddwd + vpaddd = 32 u8·s8 products per 3 instructions (what an
// AVX2 int8 GEMM can issue at best; shrink's exact kernels widen instead, see docs/kernels.md).
SHRINK_TARGET_AVX2 int int8_avx2(int n) {
  __m256i a[8];
  __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-2);
  const __m256i ones = _mm256_set1_epi16(1);
  for (auto& r : a) r = _mm256_setzero_si256();
  for (int i = 0; i < n; ++i) {
    for (auto& r : a) {
      __asm__ volatile("" : "+x"(u));  // a fresh operand per product: nothing to hoist
      r = _mm256_add_epi32(r, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
    }
  }
  __m256i t = a[0];
  for (int j = 1; j < 8; ++j) t = _mm256_add_epi32(t, a[j]);
  return _mm256_extract_epi32(t, 0);
}

SHRINK_TARGET_AVX512_VNNI int int8_vnni(int n) {
  __m512i a[12];
  __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
  for (auto& r : a) r = _mm512_setzero_si512();
  for (int i = 0; i < n; ++i) {
    __asm__ volatile("" : "+v"(u), "+v"(s));
    for (auto& r : a) r = _mm512_dpbusd_epi32(r, u, s);
  }
  __m512i t = a[0];
  for (int j = 1; j < 12; ++j) t = _mm512_add_epi32(t, a[j]);
  alignas(64) int lanes[16];  // stored: GCC 12's _mm512_castsi512_si128 trips -Wuninitialized
  _mm512_store_si512(lanes, t);
  return lanes[0];
}

// Popcount: XOR then population count of 64-bit words; "binary ops" count one per bit.
SHRINK_TARGET_AVX2 std::uint64_t popcnt_scalar(const std::uint64_t* a, const std::uint64_t* b, int words, int reps) {
  std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int r = 0; r < reps; ++r)
    for (int i = 0; i < words; i += 4) {
      s0 += static_cast<std::uint64_t>(_mm_popcnt_u64(a[i] ^ b[i]));
      s1 += static_cast<std::uint64_t>(_mm_popcnt_u64(a[i + 1] ^ b[i + 1]));
      s2 += static_cast<std::uint64_t>(_mm_popcnt_u64(a[i + 2] ^ b[i + 2]));
      s3 += static_cast<std::uint64_t>(_mm_popcnt_u64(a[i + 3] ^ b[i + 3]));
    }
  return s0 + s1 + s2 + s3;
}

// AVX2 popcount by nibble lookup (vpshufb), accumulated with vpsadbw: Mula's method.
SHRINK_TARGET_AVX2 std::uint64_t popcnt_avx2(const std::uint64_t* a, const std::uint64_t* b, int words, int reps) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                       2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i total = _mm256_setzero_si256();
  for (int r = 0; r < reps; ++r) {
    __m256i acc = _mm256_setzero_si256();
    for (int i = 0; i < words; i += 4) {
      const __m256i v = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i)));
      const __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, low)),
                                        _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
      acc = _mm256_add_epi64(acc, _mm256_sad_epu8(c, _mm256_setzero_si256()));
    }
    total = _mm256_add_epi64(total, acc);
  }
  return static_cast<std::uint64_t>(_mm256_extract_epi64(total, 0) + _mm256_extract_epi64(total, 1) +
                                    _mm256_extract_epi64(total, 2) + _mm256_extract_epi64(total, 3));
}

SHRINK_TARGET_AVX512_VPOPCNT std::uint64_t popcnt_avx512(const std::uint64_t* a, const std::uint64_t* b, int words,
                                                          int reps) {
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
  for (int r = 0; r < reps; ++r)
    for (int i = 0; i < words; i += 16) {
      acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(a + i),
                                                                          _mm512_loadu_si512(b + i))));
      acc1 = _mm512_add_epi64(acc1, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(a + i + 8),
                                                                          _mm512_loadu_si512(b + i + 8))));
    }
  // Stored and summed: GCC 12's _mm512_reduce_add_epi64 trips -Wuninitialized (undefined source).
  alignas(64) std::uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(acc0, acc1));
  std::uint64_t total = 0;
  for (std::uint64_t v : lanes) total += v;
  return total;
}

SHRINK_TARGET_AVX2 double read_avx2(const float* p, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (std::size_t i = 0; i < n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
  }
  return _mm256_cvtss_f32(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}
#endif

bool has(k::isa path, benchmark::State& state) {
  if (k::available(path)) return true;
  state.SkipWithError(("this CPU lacks " + std::string(k::name(path))).c_str());
  return false;
}

#if SHRINK_HAS_X86_PATHS
void fma_peak(benchmark::State& state, bool wide) {
  if (!has(wide ? k::isa::avx512 : k::isa::avx2, state)) return;
  for (auto _ : state) benchmark::DoNotOptimize(wide ? fma_avx512(k_iterations) : fma_avx2(k_iterations));
  shrink::bench::set_ops(state, 2.0 * 12 * (wide ? 16 : 8) * k_iterations);
}
void int8_peak(benchmark::State& state, bool vnni) {
  if (!has(vnni ? k::isa::avx512_vnni : k::isa::avx2, state)) return;
  for (auto _ : state) benchmark::DoNotOptimize(vnni ? int8_vnni(k_iterations) : int8_avx2(k_iterations));
  shrink::bench::set_ops(state, vnni ? 2.0 * 12 * 64 * k_iterations : 2.0 * 8 * 32 * k_iterations);
}
void popcount_peak(benchmark::State& state, int variant) {
  if (variant == 2 && !(has(k::isa::avx512, state) && (k::cpu_features() & k::avx512_vpopcntdq))) {
    if (k::available(k::isa::avx512)) state.SkipWithError("this CPU lacks avx512_vpopcntdq");
    return;
  }
  if (!has(k::isa::avx2, state)) return;
  constexpr int words = 1024, reps = 64;  // 16 KiB of operands: L1-resident
  std::vector<std::uint64_t> a(words), b(words);
  for (int i = 0; i < words; ++i) a[i] = 0x9E3779B97F4A7C15ull * (i + 1), b[i] = 0xC2B2AE3D27D4EB4Full * (i + 7);
  for (auto _ : state) {
    std::uint64_t r = variant == 0   ? popcnt_scalar(a.data(), b.data(), words, reps)
                      : variant == 1 ? popcnt_avx2(a.data(), b.data(), words, reps)
                                     : popcnt_avx512(a.data(), b.data(), words, reps);
    benchmark::DoNotOptimize(r);
  }
  shrink::bench::set_ops(state, 64.0 * words * reps);
}
void read_bandwidth(benchmark::State& state) {
  if (!has(k::isa::avx2, state)) return;
  // Each thread reads its own buffer: 1 GiB split over the threads for DRAM, 512 KiB for L2.
  const std::size_t total = static_cast<std::size_t>(state.range(0));
  const std::size_t bytes = total >= (64u << 20) ? total / static_cast<std::size_t>(state.threads()) : total;
  shrink::aligned_buffer<float> buf(bytes / sizeof(float));
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>(i & 7);
  for (auto _ : state) benchmark::DoNotOptimize(read_avx2(buf.data(), buf.size()));
  shrink::bench::set_bytes(state, static_cast<double>(bytes));
}
#endif

const int k_hw_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

}  // namespace

#if SHRINK_HAS_X86_PATHS
BENCHMARK_CAPTURE(fma_peak, "ceiling_fp32_fma/avx2/12acc", false)->ThreadRange(1, k_hw_threads)->UseRealTime();
BENCHMARK_CAPTURE(fma_peak, "ceiling_fp32_fma/avx512/12acc", true)->ThreadRange(1, k_hw_threads)->UseRealTime();
BENCHMARK_CAPTURE(int8_peak, "ceiling_int8_dot/avx2_maddubs/8acc", false)->ThreadRange(1, k_hw_threads)->UseRealTime();
BENCHMARK_CAPTURE(int8_peak, "ceiling_int8_dot/avx512_vnni/12acc", true)->ThreadRange(1, k_hw_threads)->UseRealTime();
BENCHMARK_CAPTURE(popcount_peak, "ceiling_xnor_popcount/scalar_popcnt/16KiB", 0)->ThreadRange(1, k_hw_threads)->UseRealTime();
BENCHMARK_CAPTURE(popcount_peak, "ceiling_xnor_popcount/avx2_pshufb/16KiB", 1)->ThreadRange(1, k_hw_threads)->UseRealTime();
BENCHMARK_CAPTURE(popcount_peak, "ceiling_xnor_popcount/avx512_vpopcntdq/16KiB", 2)->ThreadRange(1, k_hw_threads)->UseRealTime();
BENCHMARK(read_bandwidth)->Name("ceiling_read/l2/512KiB")->Arg(512 << 10)->ThreadRange(1, k_hw_threads)->UseRealTime();
BENCHMARK(read_bandwidth)->Name("ceiling_read/dram/1GiB")->Arg(1 << 30)->ThreadRange(1, k_hw_threads)->UseRealTime()->MinTime(1.0);
#endif
