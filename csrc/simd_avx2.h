// AVX2 + FMA + F16C helpers of the float-row kernels (cross_entropy.cpp, distillation.cpp): eight
// fp32 / bf16 / fp16 values to and from fp32 lanes, horizontal sum and max, a vectorized exp, and
// the run-time check. No -march in the build: a kernel that uses these is a FASTMASK_AVX2 function,
// called only where kHasAvx2 (the helpers are FASTMASK_AVX2_INLINE, inlined into it). x86 only:
// FASTMASK_SIMD_X86 says whether the rest of this header exists.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#define FASTMASK_SIMD_X86 1
#endif

#ifdef FASTMASK_SIMD_X86
#include <immintrin.h>

#include <cstdint>

#include "half.h"

#define FASTMASK_AVX2 __attribute__((target("avx2,fma,f16c")))
#define FASTMASK_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline
#endif

namespace fastmask {

#ifdef FASTMASK_SIMD_X86
inline bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
// Const at namespace scope: each translation unit has its own copy, read without the GOT.
const bool kHasAvx2 = cpu_has_avx2();

FASTMASK_AVX2_INLINE __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
FASTMASK_AVX2_INLINE __m256 load8(const BFloat16* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
FASTMASK_AVX2_INLINE __m256 load8(const Float16* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

FASTMASK_AVX2_INLINE void store8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
FASTMASK_AVX2_INLINE void store8(BFloat16* p, __m256 v) {
  // Round to nearest even: add 0x7FFF plus the lowest kept bit, keep the high half; NaN -> 0x7FC0
  // (torch's).
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  rounded = _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7FC0), nan);
  // 32 -> 16 bits (values fit: no saturation); packus works per 128-bit lane, so reorder the quads.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(rounded, rounded), 0xD8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}
FASTMASK_AVX2_INLINE void store8(Float16* p, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// All ones in the first n (0 <= n <= 8) lanes.
FASTMASK_AVX2_INLINE __m256 first_lanes(int64_t n) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), index));
}

FASTMASK_AVX2_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
FASTMASK_AVX2_INLINE float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// exp(x): x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite, two-part ln2), exp(r) by Cephes' expf
// polynomial (<= 2 ulp), times 2^n built in the exponent bits. Below ln(FLT_MIN) the result is 0
// (exp(-inf) = 0), above 88.376 it saturates near FLT_MAX; NaN stays NaN (min/max return their
// second operand on NaN).
FASTMASK_AVX2_INLINE __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3365447505531f);
  __m256 xc = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
  xc = _mm256_max_ps(lo, xc);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 result = _mm256_mul_ps(y, _mm256_castsi256_ps(two_n));
  return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), result);
}
#else
constexpr bool kHasAvx2 = false;
#endif

}  // namespace fastmask
