// mask_tokens: BERT-style token masking, bit-identical to fastmask/reference/masking.py.
#pragma once

#include <cstdint>

#include "common.h"

namespace fastmask {

struct MaskTokensArgs {
  // inputs (views: common.h; an optional one that is absent has data == nullptr)
  TensorView ids;              // [batch, length], int32 or int64
  const int64_t* seed;         // 0-d int64
  TensorView keys;             // [batch], int32 or int64; absent: the row index
  const int64_t* thresholds;   // int64 [4], contiguous: (select, predict, mask, random)
  const int64_t* special_ids;  // int64 [num_special], sorted, unique, contiguous
  int64_t num_special;
  TensorView special_mask;    // optional [batch, length]: bool / uint8 / int32 / int64
  TensorView attention_mask;  // optional [batch, length]
  TensorView lengths;         // optional [batch]
  // Whole-word masking (purpose WHOLE_WORD) when word_source is not kNoWordSource; `words` is then:
  //   kWordCodes:   uint8 [batch, length] codes (fastmask/words.py): 0 continues the word, 1 starts one, 2 no word
  //   kWordIds:     int32/int64 [batch, length] word ids: a run of equal ids is a word, a negative id no word
  //   kWordOffsets: int32/int64 [batch, length, 2] offsets (start at stride[0] * b + stride[1] * i, end at
  //                 stride[2] past it): a token whose start equals the previous token's end continues
  //   kWordTable:   bool/uint8/int32/int64 [vocab_size] (stride[0]): table[id] == 0 continues the word
  int word_source = kNoWordSource;
  TensorView words;
  TensorView replace_table;  // optional [replace_count]
  int64_t replace_count;
  int64_t mask_token_id;
  int64_t views;
  bool exact;
  int64_t max_predictions;  // 0: no capacity
  int64_t ignore_index;
  int64_t vocab_size;  // 0: unknown (no id check)
  int64_t batch, length;
  // outputs (contiguous): ids' dtype [batch * views, length] twice; int64 [batch * views, max_predictions]
  void* out_ids;
  void* labels;
  int64_t* positions;
  int threads;
};

void mask_tokens(const MaskTokensArgs& args);

}  // namespace fastmask
