// Distillation of one chunk of rows (docs/distillation.md), the C++ twin of fastmask/reference/distillation.py.
#pragma once

#include <cstdint>

namespace pybind11 {
class module_;
}

namespace fastmask {

enum Divergence : int { kKL = 0, kReverseKL = 1, kJSD = 2 };

// Floats are accumulated in fp32 (fp64 for fp64 logits), the "accumulation type"; grad_scale and the
// outputs are in that type. Strides in elements, offsets in int64.
struct DistillArgs {
  void* student;         // [rows, vocab], row stride student_stride, unit column stride; the gradient goes here
  const void* teacher;   // [rows, vocab], same dtype, row stride teacher_stride, unit column stride
  int dtype;             // float32, bfloat16, float16 or float64 (dtype codes of common.h)
  int64_t rows, vocab, student_stride, teacher_stride;
  const void* labels;    // [rows], int32 or int64
  int labels_dtype;
  int64_t labels_stride;
  const void* grad_scale;  // [rows] with stride grad_scale_stride (0: one value), accumulation type
  int64_t grad_scale_stride;
  double temperature;    // > 0
  int divergence;        // Divergence; kJSD with 0 < beta < 1
  double beta, hard_weight;
  int64_t ignore_index;
  bool write_grad;
  int threads;
};

// div and ce: [rows] contiguous: T^2 times the divergence, and the hard cross-entropy at temperature 1
// (0 where hard_weight is 0: not computed).
// A row whose label is ignore_index or outside [0, vocab) gets 0 and 0 (and, with write_grad, a zero
// gradient row). With write_grad each student row is overwritten with
// grad_scale[i] * d(div_i + hard_weight * ce_i) / d student_i.
void distill_chunk(const DistillArgs& args, void* div, void* ce);

// Test hook: whether the AVX2 rows run (false: the portable ones); `enabled` false forces the portable
// ones, true restores the best available.
bool distillation_simd(bool enabled);

// The Python bindings (csrc/distillation_binding.cpp), called once from module.cpp.
void bind_distillation(pybind11::module_& m);

}  // namespace fastmask
