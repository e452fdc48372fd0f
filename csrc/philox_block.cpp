#include "philox_block.h"

#include "philox.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FASTMASK_X86 1
#endif

namespace fastmask {
namespace {

void philox_block_scalar(uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first, PhiloxBlockWords& words) {
  for (int i = 0; i < kPhiloxBlock; ++i) {
    const Words4 w = stream_words(seed, key, first + static_cast<uint32_t>(i), purpose);
    for (int j = 0; j < 4; ++j) words[j][i] = w.w[j];
  }
}

#ifdef FASTMASK_X86
// Eight positions per vector, four vectors in flight: one vector is latency-bound (ten dependent
// rounds of multiplies); four interleaved use the vector units about twice as well.
constexpr int kLanes = 8;
constexpr int kVectors = kPhiloxBlock / kLanes;

__attribute__((target("avx2"))) void philox_block_avx2_impl(uint64_t seed, uint64_t key, uint32_t purpose,
                                                            uint32_t first, PhiloxBlockWords& words) {
  const __m256i round_a = _mm256_set1_epi32(static_cast<int>(kPhiloxRoundA));
  const __m256i round_b = _mm256_set1_epi32(static_cast<int>(kPhiloxRoundB));
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i c0[kVectors], c1[kVectors], c2[kVectors], c3[kVectors];
  for (int n = 0; n < kVectors; ++n) {
    c0[n] = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first + static_cast<uint32_t>(n * kLanes))), lanes);
    c1[n] = _mm256_set1_epi32(static_cast<int>(purpose));
    c2[n] = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(key)));
    c3[n] = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(key >> 32)));
  }
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
  for (int n = 0; n < kVectors; ++n) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(&words[0][n * kLanes]), c0[n]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(&words[1][n * kLanes]), c1[n]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(&words[2][n * kLanes]), c2[n]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(&words[3][n * kLanes]), c3[n]);
  }
}
#endif

using BlockFn = void (*)(uint64_t, uint64_t, uint32_t, uint32_t, PhiloxBlockWords&);

BlockFn choose_block() {
#ifdef FASTMASK_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return philox_block_avx2_impl;
#endif
  return philox_block_scalar;
}

const BlockFn kBlockFn = choose_block();

}  // namespace

void philox_block(uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first_position, PhiloxBlockWords& words) {
  kBlockFn(seed, key, purpose, first_position, words);
}

void philox_block_with(bool fastest, uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first_position,
                       PhiloxBlockWords& words) {
  (fastest ? kBlockFn : philox_block_scalar)(seed, key, purpose, first_position, words);
}

bool philox_block_avx2() { return kBlockFn != philox_block_scalar; }

}  // namespace fastmask
