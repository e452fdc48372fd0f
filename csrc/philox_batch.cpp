#include "philox_batch.h"

#include "philox.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FASTMASK_X86 1
#endif

namespace fastmask {
namespace {

void philox_batch_scalar(uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first, uint32_t words[4][kPhiloxBatch]) {
  for (int i = 0; i < kPhiloxBatch; ++i) {
    const Words4 w = stream_words(seed, key, first + static_cast<uint32_t>(i), purpose);
    for (int j = 0; j < 4; ++j) words[j][i] = w.w[j];
  }
}

#ifdef FASTMASK_X86
// (high words, low words) of multiplier * x in eight uint32 lanes. _mm256_mul_epu32 multiplies the
// even lanes into 64-bit products, so the odd lanes are shifted down and multiplied separately.
__attribute__((target("avx2"))) inline void mulhilo_avx2(__m256i multiplier, __m256i x, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(multiplier, x);
  const __m256i odd = _mm256_mul_epu32(multiplier, _mm256_srli_epi64(x, 32));
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

__attribute__((target("avx2"))) void philox_batch_avx2(uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first,
                                                       uint32_t words[4][kPhiloxBatch]) {
  const __m256i round_a = _mm256_set1_epi32(static_cast<int>(kPhiloxRoundA));
  const __m256i round_b = _mm256_set1_epi32(static_cast<int>(kPhiloxRoundB));
  __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256i c1 = _mm256_set1_epi32(static_cast<int>(purpose));
  __m256i c2 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(key)));
  __m256i c3 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(key >> 32)));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    __m256i hi_a, lo_a, hi_b, lo_b;
    mulhilo_avx2(round_a, c0, &hi_a, &lo_a);
    mulhilo_avx2(round_b, c2, &hi_b, &lo_b);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi_b, c1), _mm256_set1_epi32(static_cast<int>(k0)));
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi_a, c3), _mm256_set1_epi32(static_cast<int>(k1)));
    c1 = lo_b;
    c3 = lo_a;
    k0 += kPhiloxKeyA;
    k1 += kPhiloxKeyB;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[0]), c0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[1]), c1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[2]), c2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[3]), c3);
}
#endif

using BatchFn = void (*)(uint64_t, uint64_t, uint32_t, uint32_t, uint32_t[4][kPhiloxBatch]);

BatchFn choose_batch() {
#ifdef FASTMASK_X86
  if (__builtin_cpu_supports("avx2")) return philox_batch_avx2;
#endif
  return philox_batch_scalar;
}

const BatchFn kBatchFn = choose_batch();

}  // namespace

void philox_batch(uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first_position,
                  uint32_t words[4][kPhiloxBatch]) {
  kBatchFn(seed, key, purpose, first_position, words);
}

void philox_batch_with(bool fastest, uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first_position,
                       uint32_t words[4][kPhiloxBatch]) {
  (fastest ? kBatchFn : philox_batch_scalar)(seed, key, purpose, first_position, words);
}

const char* philox_batch_isa() { return kBatchFn == philox_batch_scalar ? "scalar" : "avx2"; }

}  // namespace fastmask
