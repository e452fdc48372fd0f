#pragma once

#include <cstdint>

namespace fastmask {

// out: contiguous int64 [rows, length, 4]; keys: rows integers (dtype code, stride in elements).
void random_words(const int64_t* seed, const void* keys, int keys_dtype, int64_t keys_stride, int64_t rows,
                  int64_t length, uint32_t purpose, int64_t* out, int threads);

}  // namespace fastmask
