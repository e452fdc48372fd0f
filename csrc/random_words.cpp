// random_words: the raw stream, four uint32 words per (row, position), written as int64.
#include "random_words.h"

#include "common.h"
#include "philox.h"

namespace fastmask {

void random_words(const int64_t* seed, const void* keys, int keys_dtype, int64_t keys_stride, int64_t rows,
                  int64_t length, uint32_t purpose, int64_t* out, int threads) {
  const uint64_t s = static_cast<uint64_t>(*seed);
  parallel_for(rows, threads, [&](int64_t r) {
    const uint64_t key = static_cast<uint64_t>(load_int(keys, keys_dtype, r, keys_stride));
    int64_t* row_out = out + r * length * 4;
    for (int64_t p = 0; p < length; ++p) {
      const Words4 w = stream_words(s, key, static_cast<uint32_t>(p), purpose);
      row_out[4 * p + 0] = w.w[0];
      row_out[4 * p + 1] = w.w[1];
      row_out[4 * p + 2] = w.w[2];
      row_out[4 * p + 3] = w.w[3];
    }
  });
}

}  // namespace fastmask
