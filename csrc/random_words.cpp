// random_words: the raw stream, four uint32 words per (row, position), written as int64.
#include "random_words.h"

#include "common.h"
#include "philox.h"
#include "philox_block.h"

namespace fastmask {

void random_words(const int64_t* seed, const void* keys, int keys_dtype, int64_t keys_stride, int64_t rows,
                  int64_t length, uint32_t purpose, int64_t* out, int threads) {
  const uint64_t s = static_cast<uint64_t>(*seed);
  const int64_t full = length - length % kPhiloxBlock;
  parallel_for(rows, threads, [&](int64_t r) {
    const uint64_t key = static_cast<uint64_t>(load_int(keys, keys_dtype, r, keys_stride));
    int64_t* row_out = out + r * length * 4;
    PhiloxBlockWords words;
    for (int64_t start = 0; start < full; start += kPhiloxBlock) {
      philox_block(s, key, purpose, static_cast<uint32_t>(start), words);
      for (int i = 0; i < kPhiloxBlock; ++i)
        for (int j = 0; j < 4; ++j) row_out[4 * (start + i) + j] = words[j][i];
    }
    for (int64_t p = full; p < length; ++p) {
      const Words4 w = stream_words(s, key, static_cast<uint32_t>(p), purpose);
      for (int j = 0; j < 4; ++j) row_out[4 * p + j] = w.w[j];
    }
  });
}

}  // namespace fastmask
