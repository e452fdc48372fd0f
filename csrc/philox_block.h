// Philox words for kPhiloxBlock consecutive positions at once, as a structure of arrays: the form
// every kernel consumes (word j of position first + i is words[j][i]). AVX2 where the CPU has it,
// chosen at run time (the build has no -march flags), else the scalar philox.h.
#pragma once

#include <cstdint>

namespace fastmask {

constexpr int kPhiloxBlock = 32;  // one bit per position in a uint32_t mask

using PhiloxBlockWords = uint32_t[4][kPhiloxBlock];

void philox_block(uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first_position, PhiloxBlockWords& words);

// The same with a chosen implementation (for tests): false = the scalar loop, true = the fastest.
void philox_block_with(bool fastest, uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first_position,
                       PhiloxBlockWords& words);

// Whether philox_block runs the AVX2 path on this CPU (kernels pick their own AVX2 paths by it).
bool philox_block_avx2();

}  // namespace fastmask
