// The ten Philox4x32 rounds on AVX2: eight counters per vector, kVectors vectors interleaved (one
// vector is latency-bound on ten dependent rounds of multiplies; four in flight use the vector units
// about twice as well). x86 translation units only, called from avx2-targeted functions. The caller
// loads the positions (counter word 0) into c0 and stores the four words, in whatever layout it
// needs; c1..c3 are set here to (purpose, key lo, key hi) as docs/rng.md lays the counter out.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "philox.h"

namespace fastmask {

template <int kVectors>
__attribute__((target("avx2"), always_inline)) inline void philox_avx2(uint64_t seed, uint64_t key, uint32_t purpose,
                                                                      __m256i (&c0)[kVectors], __m256i (&c1)[kVectors],
                                                                      __m256i (&c2)[kVectors], __m256i (&c3)[kVectors]) {
  for (int n = 0; n < kVectors; ++n) {
    c1[n] = _mm256_set1_epi32(static_cast<int>(purpose));
    c2[n] = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(key)));
    c3[n] = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(key >> 32)));
  }
  const __m256i round_a = _mm256_set1_epi32(static_cast<int>(kPhiloxRoundA));
  const __m256i round_b = _mm256_set1_epi32(static_cast<int>(kPhiloxRoundB));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0)), key1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int n = 0; n < kVectors; ++n) {
      // (high, low) words of the 32x32-bit products: _mm256_mul_epu32 multiplies the even lanes
      // into 64-bit products, so the odd lanes are shifted down and multiplied separately.
      const __m256i even_a = _mm256_mul_epu32(round_a, c0[n]);
      const __m256i odd_a = _mm256_mul_epu32(round_a, _mm256_srli_epi64(c0[n], 32));
      const __m256i even_b = _mm256_mul_epu32(round_b, c2[n]);
      const __m256i odd_b = _mm256_mul_epu32(round_b, _mm256_srli_epi64(c2[n], 32));
      const __m256i hi_a = _mm256_blend_epi32(_mm256_srli_epi64(even_a, 32), odd_a, 0xAA);
      const __m256i lo_a = _mm256_blend_epi32(even_a, _mm256_slli_epi64(odd_a, 32), 0xAA);
      const __m256i hi_b = _mm256_blend_epi32(_mm256_srli_epi64(even_b, 32), odd_b, 0xAA);
      const __m256i lo_b = _mm256_blend_epi32(even_b, _mm256_slli_epi64(odd_b, 32), 0xAA);
      c0[n] = _mm256_xor_si256(_mm256_xor_si256(hi_b, c1[n]), key0);
      c2[n] = _mm256_xor_si256(_mm256_xor_si256(hi_a, c3[n]), key1);
      c1[n] = lo_b;
      c3[n] = lo_a;
    }
    k0 += kPhiloxKeyA;
    k1 += kPhiloxKeyB;
  }
}

}  // namespace fastmask
