// Image and patch masking (docs/image.md), bit-identical to fastmask/reference/image.py.
#pragma once

#include <cstdint>

#include "common.h"

namespace fastmask {

struct BlockMaskArgs {
  const int64_t* seed;  // 0-d
  TensorView keys;      // [batch] int32/int64; absent: the row index (common.h)
  const int64_t* cum;     // contiguous int64 [most, num_shapes]: cumulative thresholds for M = 1..most
  const int64_t* shapes;  // contiguous int64 [num_shapes, 2]: (h, w); (0, 0) a failed attempt
  int64_t most, num_shapes;
  int64_t batch, height, width, target, max_attempts;
  bool exact;
  uint8_t* out;  // contiguous bool [batch, height, width]
  int threads;
};

void block_mask(const BlockMaskArgs& args);

struct PatchShuffleArgs {
  const int64_t* seed;
  TensorView keys;
  int64_t batch, length, keep;
  uint8_t* mask;         // contiguous bool [batch, length]
  int64_t* ids_keep;     // contiguous [batch, keep]
  int64_t* ids_restore;  // contiguous [batch, length]
  int threads;
};

void patch_shuffle(const PatchShuffleArgs& args);

}  // namespace fastmask
