"""Triton kernels of the masked cross-entropy (fastmask/reference/cross_entropy.py is the specification).

One program per row walks the vocabulary in chunks of BLOCK_V with an online softmax (a running
maximum m and a running sum s of exp(z - m)) in the accumulation dtype, the element type of the
loss (forward) or lse (backward) pointer: fp32, fp64 for fp64 logits. A row whose label is ignore_index or outside
[0, V) reads nothing: its loss and lse are 0 and its gradient a zero-filled row. In the in-place
forward a second pass reads the row again and overwrites it with the gradient, chunk by chunk, so
the logits are read twice and written once, nothing else.
"""
import triton
import triton.language as tl

NEG_INF = tl.constexpr(float("-inf"))


@triton.jit
def capped(x, softcap, HAS_SOFTCAP: tl.constexpr):
    """softcap * tanh(x / softcap), or x. tanh(u) = 1 - 2 / (exp(2u) + 1): exact limits at +-inf, no NaN
    (libdevice.tanh does not run in the interpreter)."""
    if HAS_SOFTCAP:
        return softcap * (1.0 - 2.0 / (tl.exp(2.0 * (x / softcap)) + 1.0))
    else:
        return x


@triton.jit
def rounded_to(x, ptr):
    """fp32 x in ptr's element type, rounded to nearest even. For bfloat16 the rounding is done on the
    bits: the interpreter's fp32 -> bf16 cast truncates, the GPU's rounds; this way both round alike."""
    if ptr.dtype.element_ty == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        rounded = tl.where(x != x, 0x7FC0, rounded)  # NaN stays NaN (rounding could carry it into inf)
        return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(ptr.dtype.element_ty)


@triton.jit
def row_is_kept(labels_ptr, row, labels_stride, ignore_index, vocab):
    """(label as int64, whether the row is kept): a kept label is not ignore_index and inside [0, V)."""
    label = tl.load(labels_ptr + row * labels_stride).to(tl.int64)
    kept = (label != ignore_index) & (label >= 0) & (label < vocab)
    return tl.where(kept, label, 0), kept


@triton.jit
def zero_row(out_row_ptr, vocab, BLOCK_V: tl.constexpr):
    cols = tl.arange(0, BLOCK_V)
    zeros = tl.zeros((BLOCK_V,), dtype=out_row_ptr.dtype.element_ty)
    for start in range(0, vocab, BLOCK_V):
        offsets = start + cols
        tl.store(out_row_ptr + offsets, zeros, mask=offsets < vocab)


@triton.jit
def write_row_gradient(
    in_row_ptr, out_row_ptr, weight_ptr, label, lse, probability_coefficient, smoothing_coefficient,
    target_coefficient, vocab, softcap,
    HAS_WEIGHT: tl.constexpr, HAS_SMOOTHING: tl.constexpr, HAS_SOFTCAP: tl.constexpr, BLOCK_V: tl.constexpr,
):
    """out[c] = (p_c * probability_coefficient - smoothing_coefficient * w_c - target_coefficient * [c == label])
    * (1 - (z_c / softcap)^2 with softcap), chunk by chunk, in lse's dtype; in_row_ptr may equal out_row_ptr."""
    cols = tl.arange(0, BLOCK_V)
    label32 = label.to(tl.int32)  # a kept label is < V < 2^31
    for start in range(0, vocab, BLOCK_V):
        offsets = start + cols
        in_row = offsets < vocab
        z = capped(tl.load(in_row_ptr + offsets, mask=in_row, other=0.0).to(lse.dtype), softcap, HAS_SOFTCAP)
        grad = tl.exp(z - lse) * probability_coefficient
        if HAS_SMOOTHING:
            if HAS_WEIGHT:
                grad -= smoothing_coefficient * tl.load(weight_ptr + offsets, mask=in_row, other=0.0)
            else:
                grad -= smoothing_coefficient
        grad = tl.where(offsets == label32, grad - target_coefficient, grad)
        if HAS_SOFTCAP:
            ratio = z / softcap
            grad *= 1.0 - ratio * ratio
        tl.store(out_row_ptr + offsets, rounded_to(grad, out_row_ptr), mask=in_row)


@triton.jit
def row_coefficients(weight_ptr, weight_sum_ptr, label, label_smoothing, vocab, acc_zero, HAS_WEIGHT: tl.constexpr,
                     HAS_SMOOTHING: tl.constexpr):
    """(w_label, (1 - e) w_label, e / V, e / V * sum_c w_c) of a kept row, in acc_zero's dtype."""
    if HAS_WEIGHT:
        w_target = tl.load(weight_ptr + label)
    else:
        w_target = acc_zero + 1.0
    smoothing_coefficient = label_smoothing / vocab.to(acc_zero.dtype)
    if HAS_SMOOTHING:
        if HAS_WEIGHT:
            weight_sum = tl.load(weight_sum_ptr)
        else:
            weight_sum = vocab.to(acc_zero.dtype)
    else:
        weight_sum = acc_zero
    return w_target, (1.0 - label_smoothing) * w_target, smoothing_coefficient, smoothing_coefficient * weight_sum


@triton.jit(do_not_specialize=["vocab", "logits_stride", "labels_stride", "ignore_index"])
def ce_forward_kernel(
    # pointers
    logits_ptr,
    labels_ptr,
    weight_ptr,
    weight_sum_ptr,
    grad_scale_ptr,
    loss_ptr,
    lse_ptr,
    # shapes and strides
    vocab,
    logits_stride,
    labels_stride,
    # scalars
    ignore_index,
    label_smoothing,
    z_loss,
    softcap,
    # meta
    HAS_WEIGHT: tl.constexpr,
    HAS_SMOOTHING: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    INPLACE: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    """Row program: loss[row], lse[row]; with INPLACE also logits[row, :] = the gradient of loss[row], its
    cross-entropy and smoothing terms times grad_scale[0] and its z-loss term times grad_scale[1].
    weight_ptr (with HAS_WEIGHT) holds V weights, weight_sum_ptr (with HAS_WEIGHT and HAS_SMOOTHING)
    their sum, grad_scale_ptr (with INPLACE) two values, all in the accumulation dtype."""
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * logits_stride
    label, kept = row_is_kept(labels_ptr, row, labels_stride, ignore_index, vocab)
    acc_zero = tl.zeros((), loss_ptr.dtype.element_ty)
    if kept:
        cols = tl.arange(0, BLOCK_V)
        m = acc_zero + NEG_INF  # running maximum of z
        s = acc_zero  # running sum of exp(z - m)
        weighted_sum = acc_zero  # sum_c w_c z_c, for smoothing
        for start in range(0, vocab, BLOCK_V):
            offsets = start + cols
            in_row = offsets < vocab
            x = tl.load(row_ptr + offsets, mask=in_row, other=NEG_INF).to(acc_zero.dtype)
            z = capped(x, softcap, HAS_SOFTCAP)
            if HAS_SOFTCAP:
                z = tl.where(in_row, z, NEG_INF)
            m_new = tl.maximum(m, tl.max(z, axis=0))
            m_safe = tl.where(m_new == NEG_INF, 0.0, m_new)  # every z so far -inf: exp(-inf - 0) = 0, no NaN
            s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(z - m_safe), axis=0)
            m = m_new
            if HAS_SMOOTHING:
                z_in_row = tl.where(in_row, z, 0.0)
                if HAS_WEIGHT:
                    z_in_row *= tl.load(weight_ptr + offsets, mask=in_row, other=0.0)
                weighted_sum += tl.sum(z_in_row, axis=0)
        # A +inf z makes s NaN (exp(inf - inf)), so lse is NaN, as torch's cross_entropy.
        lse = tl.where(m == NEG_INF, 0.0, m) + tl.log(s)
        z_target = capped(tl.load(row_ptr + label).to(acc_zero.dtype), softcap, HAS_SOFTCAP)
        w_target, target_coefficient, smoothing_coefficient, smoothing_total = row_coefficients(
            weight_ptr, weight_sum_ptr, label, label_smoothing, vocab, acc_zero, HAS_WEIGHT, HAS_SMOOTHING)
        loss = target_coefficient * (lse - z_target)
        if HAS_SMOOTHING:
            loss += smoothing_total * lse - smoothing_coefficient * weighted_sum
        loss = tl.where(z_loss > 0.0, loss + z_loss * lse * lse, loss)
        tl.store(loss_ptr + row, loss)
        tl.store(lse_ptr + row, lse)
        if INPLACE:
            scale_ce = tl.load(grad_scale_ptr)
            scale_z = tl.load(grad_scale_ptr + 1)
            write_row_gradient(
                row_ptr, row_ptr, weight_ptr, label, lse,
                scale_ce * (target_coefficient + smoothing_total) + scale_z * 2.0 * z_loss * lse,
                scale_ce * smoothing_coefficient, scale_ce * target_coefficient, vocab, softcap,
                HAS_WEIGHT, HAS_SMOOTHING, HAS_SOFTCAP, BLOCK_V,
            )
    else:
        tl.store(loss_ptr + row, acc_zero)
        tl.store(lse_ptr + row, acc_zero)
        if INPLACE:
            zero_row(row_ptr, vocab, BLOCK_V)


@triton.jit(do_not_specialize=["vocab", "logits_stride", "labels_stride", "grad_rows_stride", "grad_lse_stride", "grad_stride",
                                "ignore_index"])
def ce_backward_kernel(
    # pointers
    logits_ptr,
    labels_ptr,
    weight_ptr,
    weight_sum_ptr,
    lse_ptr,
    grad_rows_ptr,
    grad_lse_ptr,
    grad_ptr,
    # shapes and strides
    vocab,
    logits_stride,
    labels_stride,
    grad_rows_stride,
    grad_lse_stride,
    grad_stride,
    # scalars
    ignore_index,
    label_smoothing,
    z_loss,
    softcap,
    # meta
    HAS_WEIGHT: tl.constexpr,
    HAS_SMOOTHING: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    HAS_GRAD_LSE: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    """Row program: grad[row, :] = grad_rows[row] * d loss[row] / d logits[row, :] (+ grad_lse[row] *
    d lse[row] / d logits[row, :] with HAS_GRAD_LSE), from the saved lse; an ignored row is
    zero-filled without reading the logits."""
    row = tl.program_id(0).to(tl.int64)
    grad_row_ptr = grad_ptr + row * grad_stride
    label, kept = row_is_kept(labels_ptr, row, labels_stride, ignore_index, vocab)
    if kept:
        lse = tl.load(lse_ptr + row)
        w_target, target_coefficient, smoothing_coefficient, smoothing_total = row_coefficients(
            weight_ptr, weight_sum_ptr, label, label_smoothing, vocab, tl.zeros((), lse.dtype), HAS_WEIGHT, HAS_SMOOTHING)
        upstream = tl.load(grad_rows_ptr + row * grad_rows_stride)
        probability_coefficient = upstream * (target_coefficient + smoothing_total + 2.0 * z_loss * lse)
        if HAS_GRAD_LSE:
            probability_coefficient += tl.load(grad_lse_ptr + row * grad_lse_stride)
        write_row_gradient(
            logits_ptr + row * logits_stride, grad_row_ptr, weight_ptr, label, lse, probability_coefficient,
            upstream * smoothing_coefficient, upstream * target_coefficient, vocab, softcap,
            HAS_WEIGHT, HAS_SMOOTHING, HAS_SOFTCAP, BLOCK_V,
        )
    else:
        zero_row(grad_row_ptr, vocab, BLOCK_V)


@triton.jit(do_not_specialize=["vocab", "grad_stride", "scale_stride"])
def ce_scale_grad_kernel(
    # pointers
    grad_ptr,
    scale_ptr,
    # shapes and strides
    vocab,
    grad_stride,
    scale_stride,
    # meta
    BLOCK_V: tl.constexpr,
):
    """Row program: grad[row, :] *= scale[row * scale_stride] (fp32, fp64 for fp64 grad); nothing read
    or written where the scale is exactly 1."""
    row = tl.program_id(0).to(tl.int64)
    scale = tl.load(scale_ptr + row * scale_stride)
    if scale != 1.0:
        row_ptr = grad_ptr + row * grad_stride
        cols = tl.arange(0, BLOCK_V)
        for start in range(0, vocab, BLOCK_V):
            offsets = start + cols
            in_row = offsets < vocab
            grad = tl.load(row_ptr + offsets, mask=in_row, other=0.0).to(scale.dtype)
            tl.store(row_ptr + offsets, rounded_to(grad * scale, row_ptr), mask=in_row)


@triton.jit(do_not_specialize=["vocab", "logits_stride", "labels_stride", "ignore_index"])
def ce_argmax_kernel(
    # pointers
    logits_ptr,
    labels_ptr,
    predicted_ptr,
    # shapes and strides
    vocab,
    logits_stride,
    labels_stride,
    # scalars
    ignore_index,
    # meta
    BLOCK_V: tl.constexpr,
):
    """Row program: predicted[row] = the row's argmax (the first largest; a NaN counts as the largest, the
    first one), ignore_index for an ignored row, which reads nothing."""
    row = tl.program_id(0).to(tl.int64)
    label = tl.load(labels_ptr + row * labels_stride).to(tl.int64)
    if label != ignore_index:
        row_ptr = logits_ptr + row * logits_stride
        cols = tl.arange(0, BLOCK_V)
        if logits_ptr.dtype.element_ty == tl.float64:  # compared in fp64, else in fp32 (exact for bf16, fp16)
            best = tl.full((), NEG_INF, tl.float64)
        else:
            best = tl.full((), NEG_INF, tl.float32)
        best_index = tl.zeros((), tl.int64)
        seen_nan = tl.zeros((), tl.int1)
        for start in range(0, vocab, BLOCK_V):
            offsets = start + cols
            x = tl.load(row_ptr + offsets, mask=offsets < vocab, other=NEG_INF).to(best.dtype)
            # NaN first (the smallest NaN column), then the largest value's first column.
            nan_column = tl.min(tl.where(x != x, offsets, vocab), axis=0)
            x = tl.where(x != x, NEG_INF, x)
            chunk_best = tl.max(x, axis=0)
            chunk_index = tl.min(tl.where(x == chunk_best, offsets, vocab), axis=0)
            take = (~seen_nan) & ((nan_column < vocab) | (chunk_best > best) | (start == 0))
            best_index = tl.where(take, tl.where(nan_column < vocab, nan_column, chunk_index).to(tl.int64), best_index)
            best = tl.where(take & (nan_column >= vocab), chunk_best, best)
            seen_nan = seen_nan | (nan_column < vocab)
        tl.store(predicted_ptr + row, best_index)
    else:
        tl.store(predicted_ptr + row, label)


# Argument types for compiling each kernel ahead of time (fastmask/triton/hopper.py, CI's sm_90 test).
# hopper.py compiles with Triton's default num_warps=4, so these specs use BLOCK_V = 2048: the 16 elements
# per thread of the launch on a GPU (GPU_BLOCK_V = 4096 over GPU_NUM_WARPS = 8 in cross_entropy.py).
_FORWARD_SIGNATURE = {
    "logits_ptr": "*bf16", "labels_ptr": "*i64", "weight_ptr": "*fp32", "weight_sum_ptr": "*fp32",
    "grad_scale_ptr": "*fp32", "loss_ptr": "*fp32", "lse_ptr": "*fp32",
    "vocab": "i32", "logits_stride": "i64", "labels_stride": "i64",
    "ignore_index": "i64", "label_smoothing": "fp32", "z_loss": "fp32", "softcap": "fp32",
    "HAS_WEIGHT": "constexpr", "HAS_SMOOTHING": "constexpr", "HAS_SOFTCAP": "constexpr", "INPLACE": "constexpr",
    "BLOCK_V": "constexpr",
}
_BACKWARD_SIGNATURE = {
    "logits_ptr": "*bf16", "labels_ptr": "*i64", "weight_ptr": "*fp32", "weight_sum_ptr": "*fp32",
    "lse_ptr": "*fp32", "grad_rows_ptr": "*fp32", "grad_lse_ptr": "*fp32", "grad_ptr": "*bf16",
    "vocab": "i32", "logits_stride": "i64", "labels_stride": "i64", "grad_rows_stride": "i64", "grad_lse_stride": "i64",
    "grad_stride": "i64", "ignore_index": "i64", "label_smoothing": "fp32", "z_loss": "fp32", "softcap": "fp32",
    "HAS_WEIGHT": "constexpr", "HAS_SMOOTHING": "constexpr", "HAS_SOFTCAP": "constexpr", "HAS_GRAD_LSE": "constexpr",
    "BLOCK_V": "constexpr",
}
# As cross_entropy.py launches on a GPU: chunks of 4096 over 8 warps.
_PLAIN = {"HAS_WEIGHT": False, "HAS_SMOOTHING": False, "HAS_SOFTCAP": False, "BLOCK_V": 4096}
_EVERYTHING = {"HAS_WEIGHT": True, "HAS_SMOOTHING": True, "HAS_SOFTCAP": True, "BLOCK_V": 4096}
_FP64 = {"logits_ptr": "*fp64", "weight_ptr": "*fp64", "weight_sum_ptr": "*fp64"}
_LAUNCH = {"num_warps": 8}


def _with(signature, **types):
    return {**signature, **types}


HOPPER_SPECS = [
    (ce_forward_kernel, _FORWARD_SIGNATURE, {**_PLAIN, "INPLACE": False}, _LAUNCH),
    (ce_forward_kernel, _FORWARD_SIGNATURE, {**_PLAIN, "INPLACE": True}, _LAUNCH),
    (ce_forward_kernel, _FORWARD_SIGNATURE, {**_EVERYTHING, "INPLACE": True}, _LAUNCH),
    (ce_forward_kernel, _with(_FORWARD_SIGNATURE, logits_ptr="*fp32", labels_ptr="*i32"), {**_EVERYTHING, "INPLACE": True}, _LAUNCH),
    (ce_forward_kernel, _with(_FORWARD_SIGNATURE, logits_ptr="*fp16"), {**_PLAIN, "INPLACE": True}, _LAUNCH),
    (ce_forward_kernel, _with(_FORWARD_SIGNATURE, **_FP64, grad_scale_ptr="*fp64", loss_ptr="*fp64", lse_ptr="*fp64"),
     {**_EVERYTHING, "INPLACE": True}, _LAUNCH),
    (ce_backward_kernel, _BACKWARD_SIGNATURE, {**_PLAIN, "HAS_GRAD_LSE": False}, _LAUNCH),
    (ce_backward_kernel, _BACKWARD_SIGNATURE, {**_EVERYTHING, "HAS_GRAD_LSE": True}, _LAUNCH),
    (ce_backward_kernel, _with(_BACKWARD_SIGNATURE, logits_ptr="*fp32", grad_ptr="*fp32"), {**_EVERYTHING, "HAS_GRAD_LSE": False}, _LAUNCH),
    (ce_backward_kernel, _with(_BACKWARD_SIGNATURE, **_FP64, lse_ptr="*fp64", grad_rows_ptr="*fp64", grad_lse_ptr="*fp64",
                               grad_ptr="*fp64"), {**_EVERYTHING, "HAS_GRAD_LSE": True}, _LAUNCH),
    (ce_argmax_kernel, {"logits_ptr": "*bf16", "labels_ptr": "*i64", "predicted_ptr": "*i64", "vocab": "i32",
                        "logits_stride": "i64", "labels_stride": "i64", "ignore_index": "i64", "BLOCK_V": "constexpr"},
     {"BLOCK_V": 4096}, _LAUNCH),
    (ce_scale_grad_kernel, {"grad_ptr": "*bf16", "scale_ptr": "*fp32", "vocab": "i32", "grad_stride": "i64",
                            "scale_stride": "i64", "BLOCK_V": "constexpr"}, {"BLOCK_V": 4096}, _LAUNCH),
]
