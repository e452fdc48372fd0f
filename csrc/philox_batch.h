// Philox words for kPhiloxBatch consecutive positions at once, as a structure of arrays: the form
// every kernel consumes (word j of position first + i is words[j][i]). AVX2 where the CPU has it,
// chosen at run time (the build has no -march flags), else the scalar philox.h.
#pragma once

#include <cstdint>

namespace fastmask {

constexpr int kPhiloxBatch = 8;

void philox_batch(uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first_position,
                  uint32_t words[4][kPhiloxBatch]);

// The same with a chosen implementation (for tests): false = the scalar loop, true = the fastest.
void philox_batch_with(bool fastest, uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first_position,
                       uint32_t words[4][kPhiloxBatch]);

// "avx2" or "scalar": what philox_batch runs on this CPU.
const char* philox_batch_isa();

}  // namespace fastmask
