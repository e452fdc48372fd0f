#include "philox_block.h"

#include "philox.h"

#if defined(__x86_64__) || defined(_M_X64)
#define FASTMASK_X86 1
#include "philox_avx2.h"
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
// Eight positions per vector, four vectors in flight (philox_avx2.h).
constexpr int kLanes = 8;
constexpr int kVectors = kPhiloxBlock / kLanes;

__attribute__((target("avx2"))) void philox_block_avx2_impl(uint64_t seed, uint64_t key, uint32_t purpose,
                                                            uint32_t first, PhiloxBlockWords& words) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i c0[kVectors], c1[kVectors], c2[kVectors], c3[kVectors];
  for (int n = 0; n < kVectors; ++n) {
    c0[n] = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first + static_cast<uint32_t>(n * kLanes))), lanes);
  }
  philox_avx2(seed, key, purpose, c0, c1, c2, c3);
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
