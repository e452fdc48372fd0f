// Philox4x32-10 (Salmon et al., SC'11), bit-identical to Triton's tl.philox with uint32 counters.
// Layout (docs/rng.md): key = 64-bit seed (low word, high word);
// counter = (position, purpose, sample key low word, sample key high word).
#pragma once

#include <cstdint>

namespace fastmask {

struct Words4 {
  uint32_t w[4];
};

constexpr uint32_t kPhiloxRoundA = 0xD2511F53u, kPhiloxRoundB = 0xCD9E8D57u;
constexpr uint32_t kPhiloxKeyA = 0x9E3779B9u, kPhiloxKeyB = 0xBB67AE85u;

inline Words4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t pa = static_cast<uint64_t>(kPhiloxRoundA) * c0;
    const uint64_t pb = static_cast<uint64_t>(kPhiloxRoundB) * c2;
    const uint32_t n0 = static_cast<uint32_t>(pb >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(pa >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(pb);
    c3 = static_cast<uint32_t>(pa);
    c0 = n0;
    c2 = n2;
    k0 += kPhiloxKeyA;
    k1 += kPhiloxKeyB;
  }
  return {{c0, c1, c2, c3}};
}

// The four words for one (seed, sample key, position, purpose).
inline Words4 stream_words(uint64_t seed, uint64_t key, uint32_t position, uint32_t purpose) {
  return philox4x32_10(position, purpose, static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32),
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

}  // namespace fastmask
