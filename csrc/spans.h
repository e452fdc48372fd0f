// mask_spans: SpanBERT span masking and n-gram masking, bit-identical to fastmask/reference/spans.py
// (docs/spans.md).
#pragma once

#include <cstdint>

#include "common.h"

namespace fastmask {

struct MaskSpansArgs {
  TensorView ids;               // [batch, length], int32 or int64
  const int64_t* seed;         // 0-d int64
  TensorView keys;              // [batch]; null data: the row index
  int64_t select_threshold, mask_threshold, random_threshold;  // floor(p * 2^32)
  const int64_t* table;        // int64 [table_size], the span-length CDF thresholds (last = 2^32)
  int64_t table_size;
  const int64_t* special_ids;  // int64 [num_special], sorted, unique
  int64_t num_special;
  TensorView special_mask;      // optional [batch, length]
  TensorView attention_mask;    // optional [batch, length]
  TensorView codes;             // optional uint8 [batch, length] word codes (0 continues, 1 starts, 2 no word)
  TensorView replace_table;     // optional [replace_count]
  int64_t replace_count;
  int64_t mask_token_id;
  int64_t max_predictions;     // 0: no capacity
  int64_t ignore_index;
  int64_t vocab_size;          // 0: no id check
  int64_t batch, length;
  void* out_ids;               // contiguous, ids' dtype [batch, length]
  void* labels;                // contiguous, ids' dtype [batch, length]
  int64_t* positions;          // contiguous int64 [batch, max_predictions]
  int threads;
};

void mask_spans(const MaskSpansArgs& args);

}  // namespace fastmask
