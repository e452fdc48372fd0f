// Collating Python features into a padded batch (fastmask/collators.py): the one kernel that reads
// Python objects, so it holds the GIL.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace fastmask {

// Writes row b of `rows` (a sequence of Python sequences of ints: lists, tuples, or anything with a
// length and integer items; with width > 1, items that are themselves `width` ints, as offset pairs)
// into out[b, :] (dtype int32, int64 or uint8; [length, width] per row, row stride in elements),
// right-aligned when `left` (left padding), and `pad_value` elsewhere. Rows longer than `length`,
// non-integer items and values the dtype cannot hold raise ValueError naming `name`, the feature and
// the position.
void pad_sequences(pybind11::handle rows, std::uintptr_t out, int dtype, int64_t batch, int64_t length, int64_t width,
                   int64_t row_stride, int64_t pad_value, bool left, const std::string& name);

}  // namespace fastmask
