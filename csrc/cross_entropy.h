// Masked cross-entropy per row (docs/loss.md), the C++ twin of fastmask/reference/cross_entropy.py.
#pragma once

#include <cstdint>

namespace fastmask {

// The inputs every cross-entropy kernel shares. Floats are accumulated in fp32, in fp64 for fp64 logits
// (the "accumulation type"); weight, lse, grad_rows, grad_scale, scale and the outputs loss and lse
// are in that type. Strides are in elements, offsets computed in int64.
struct CrossEntropyArgs {
  const void* logits;  // [rows, vocab], row stride logits_stride, unit column stride
  int logits_dtype;    // float32, bfloat16, float16 or float64 (dtype codes of common.h)
  int64_t rows, vocab, logits_stride;
  const void* labels;  // [rows], int32 or int64
  int labels_dtype;
  int64_t labels_stride;
  const void* weight;  // [vocab] contiguous, accumulation type; nullptr: all ones
  int64_t ignore_index;
  double label_smoothing, z_loss, softcap;  // softcap 0: none
  int threads;
};

// loss and lse: [rows] contiguous. Rows labelled ignore_index get 0 and 0 without reading their
// logits; a label outside [0, vocab) raises ValueError (the smallest such row) before any write.
void cross_entropy_forward(const CrossEntropyArgs& args, void* loss, void* lse);

// grad: [rows, vocab] in the logits' dtype with row stride grad_stride; its rows are written
// entirely (ignored rows: zeros, left untouched when grad_zeroed says they are zeros already):
// grad_rows[i] times the gradient of row i's loss plus grad_lse[i] times the gradient of its
// log-sum-exp (grad_lse nullptr: none).
void cross_entropy_backward(const CrossEntropyArgs& args, const void* lse, int64_t lse_stride, const void* grad_rows,
                            int64_t grad_rows_stride, const void* grad_lse, int64_t grad_lse_stride, void* grad,
                            int64_t grad_stride, bool grad_zeroed);

// The forward, then the logits (at args.logits) overwritten with the gradient of sum_i loss_i, its
// cross-entropy and smoothing terms times grad_scale[0] and its z-loss term times grad_scale[1].
void cross_entropy_forward_inplace(const CrossEntropyArgs& args, const void* grad_scale, void* loss, void* lse);

// grad [rows, vocab] (row stride grad_stride) times scale: one value (scale_stride 0, skipped when it is
// 1) or one per row. scale in the accumulation type of grad's dtype.
void cross_entropy_scale_grad(void* grad, int dtype, int64_t rows, int64_t vocab, int64_t grad_stride,
                              const void* scale, int64_t scale_stride, int threads);

// predicted: [rows] int64 contiguous, each labelled row's argmax (the first largest logit, the first NaN
// if any, as torch.argmax), ignore_index for ignored rows (not read). Labels checked as the forward.
void cross_entropy_argmax(const CrossEntropyArgs& args, void* predicted);

// Test hooks. Whether the AVX2 kernels run (false: the portable ones); `enabled` false forces the
// portable ones, true restores the best available. Returns whether AVX2 kernels run now.
bool cross_entropy_simd(bool enabled);
// exp of n floats with the kernels' exp (simd) or libm's.
void cross_entropy_exp(const float* in, float* out, int64_t n, bool simd);
// n values converted between two float dtypes (one of them float32) with the kernels' conversions.
void cross_entropy_convert(const void* in, int in_dtype, void* out, int out_dtype, int64_t n, bool simd);

}  // namespace fastmask
