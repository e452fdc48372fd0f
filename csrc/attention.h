// Attention masks (docs/attention.md), bit-identical to fastmask/reference/attention.py.
#pragma once

#include <cstdint>

namespace pybind11 {
class module_;
}

namespace fastmask {

struct AttentionArgs {
  const void* segment_ids;  // [batch, length] int32/int64, or nullptr (no documents)
  int segment_dtype;
  int64_t segment_stride0, segment_stride1;
  const void* prefix;  // [batch] int32/int64, or nullptr (no prefix)
  int prefix_dtype;
  int64_t prefix_stride;
  const void* lengths;  // [batch] int32/int64, or nullptr (no padding)
  int lengths_dtype;
  int64_t lengths_stride;
  int64_t batch, length;
  bool causal;
  int64_t window;  // 0: none
  int threads;
};

// out: contiguous bool [batch, length, length], True = attend.
void attention_dense(const AttentionArgs& args, uint8_t* out);
// out: contiguous int8 [batch, nQ, nK] with nQ = nK = ceil(length / block): 0 empty, 1 partial, 2 full.
void attention_blocks(const AttentionArgs& args, int64_t block, int8_t* out);

// Registers attention_dense and attention_blocks on fastmask._C (called from csrc/module.cpp).
void bind_attention(pybind11::module_& m);

}  // namespace fastmask
