// Permutation language modeling (XLNet, docs/permutation.md), bit-identical to
// fastmask/reference/permutation.py.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace fastmask {

struct PermutationArgs {
  const void* ids;  // [batch, length] int32/int64, strided
  int ids_dtype;
  int64_t ids_stride0, ids_stride1;
  int64_t batch, length;
  const int64_t* seed;  // 0-d
  const void* keys;     // [batch] int32/int64
  int keys_dtype;
  int64_t keys_stride;
  const int64_t* contexts;  // contiguous [max_span]: context length of a span of length s at s - 1
  int64_t max_span, attempts;
  const int64_t* functional;  // contiguous, sorted: special and padding ids
  int64_t num_functional;
  int64_t mask_token_id, ignore_index;
  void* out_ids;    // contiguous [batch, length], ids' dtype
  void* labels;     // contiguous [batch, length], ids' dtype
  void* perm_mask;  // contiguous [batch, length, length]
  int perm_dtype;   // any dtype code: 1 is written as that dtype's one
  int threads;
};

// Throws std::invalid_argument on bad input (the binding returns it as a message).
void permutation_lm(const PermutationArgs& args);

// Registers permutation_lm on fastmask._C (called once from csrc/module.cpp).
void bind_permutation(pybind11::module_& m);

}  // namespace fastmask
