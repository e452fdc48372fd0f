// T5 span corruption and UL2 mixtures, bit-identical to fastmask/reference/t5.py (docs/t5.md).
#pragma once

#include <cstdint>

#include "common.h"

namespace fastmask {

struct SpanCorruptionArgs {
  // inputs
  TensorView ids;  // [batch, length], int32 or int64 (common.h)
  int64_t batch, length;
  const int64_t* seed;  // 0-d
  TensorView keys;      // [batch] int32/int64; absent: the row index
  const int64_t* table;  // contiguous int64 [num_denoisers, 5]: (threshold, n, k, d, sentinels)
  int64_t num_denoisers;
  const int64_t* sentinels;  // contiguous int64 [num_sentinels]
  int64_t num_sentinels;
  int64_t eos, pad;
  int64_t input_length, target_length;  // the (padded) output widths
  // outputs (contiguous): ids' dtype [batch, input_length] and [batch, target_length]; int64 [batch] x3
  void* inputs;
  void* targets;
  int64_t* input_lengths;
  int64_t* target_lengths;
  int64_t* denoiser;
  int threads;
  int64_t vocab_size = 0;  // > 0: ids, sentinels, eos and pad must lie in [0, vocab_size)
};

void span_corruption(const SpanCorruptionArgs& args);

}  // namespace fastmask
