"""Triton kernel of the distillation chunk (fastmask/reference/distillation.py is the specification).

One program per row. A first pass over the vocabulary keeps, online in fp32, the running maxima and
rescaled sums of exp(t/T), exp(s/T) (and exp(s) for the hard loss at T != 1) with the divergence's
cross term: both log-sum-exps and KL / reverse KL at the end of one read of both rows. JSD reads
them once more for log m. With WRITE_GRAD a last pass overwrites the student row with its gradient.
An ignored row (label ignore_index or outside [0, V)) reads nothing and, with WRITE_GRAD, is zeroed.
"""
import triton
import triton.language as tl

from ._ce_kernels import rounded_to, row_is_kept, zero_row

KL = tl.constexpr(0)
REVERSE_KL = tl.constexpr(1)
NEG_INF = tl.constexpr(float("-inf"))


@triton.jit
def log_add_exp(x, y):
    m = tl.maximum(x, y)
    return m + tl.log(1.0 + tl.exp(-tl.abs(x - y)))


@triton.jit
def distill_chunk_kernel(
    # pointers
    student_ptr, teacher_ptr, labels_ptr, grad_scale_ptr, div_ptr, ce_ptr,
    # shapes and strides
    vocab, student_stride, teacher_stride, labels_stride, grad_scale_stride,
    # scalars
    inv_t, temperature, beta, log_beta, log_rest, hard_weight, ignore_index,
    # meta
    DIVERGENCE: tl.constexpr, HARD: tl.constexpr, UNIT_T: tl.constexpr, WRITE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    s_row = student_ptr + row * student_stride
    t_row = teacher_ptr + row * teacher_stride
    label, kept = row_is_kept(labels_ptr, row, labels_stride, ignore_index, vocab)
    if not kept:
        tl.store(div_ptr + row, 0.0)
        tl.store(ce_ptr + row, 0.0)
        if WRITE_GRAD:
            zero_row(s_row, vocab, BLOCK_V)
    else:
        cols = tl.arange(0, BLOCK_V)
        ma = -float("inf")
        mb = -float("inf")
        sa = 0.0
        sb = 0.0
        ss = 0.0
        w = 0.0
        for start in range(0, vocab, BLOCK_V):
            offsets = start + cols
            inside = offsets < vocab
            sv = tl.load(s_row + offsets, mask=inside, other=0.0).to(tl.float32)
            a = tl.load(t_row + offsets, mask=inside, other=0.0).to(tl.float32) * inv_t
            b = sv * inv_t
            new_ma = tl.maximum(ma, tl.max(tl.where(inside, a, NEG_INF), 0))
            new_mb = tl.maximum(mb, tl.max(tl.where(inside, b, NEG_INF), 0))
            ra = tl.exp(ma - new_ma)
            rb = tl.exp(mb - new_mb)
            ea = tl.where(inside, tl.exp(a - new_ma), 0.0)
            eb = tl.where(inside, tl.exp(b - new_mb), 0.0)
            sa = sa * ra + tl.sum(ea, 0)
            sb = sb * rb + tl.sum(eb, 0)
            if DIVERGENCE == KL:
                w = w * ra + tl.sum(ea * (a - b), 0)
            elif DIVERGENCE == REVERSE_KL:
                w = w * rb + tl.sum(eb * (b - a), 0)
            if HARD and not UNIT_T:  # exp(s - T mb): the max of s is T times the max of s / T
                ss = ss * tl.exp(temperature * (mb - new_mb)) + tl.sum(tl.where(inside, tl.exp(sv - temperature * new_mb), 0.0), 0)
            ma = new_ma
            mb = new_mb
        lse_a = ma + tl.log(sa)
        lse_b = mb + tl.log(sb)
        if HARD and not UNIT_T:
            lse_s = temperature * mb + tl.log(ss)
        else:
            lse_s = lse_b
        g = 0.0
        if DIVERGENCE == KL:
            d = w / sa - lse_a + lse_b
        elif DIVERGENCE == REVERSE_KL:
            d = w / sb - lse_b + lse_a
        else:
            dp = 0.0
            dq = 0.0
            for start in range(0, vocab, BLOCK_V):
                offsets = start + cols
                inside = offsets < vocab
                la = tl.load(t_row + offsets, mask=inside, other=0.0).to(tl.float32) * inv_t - lse_a
                lb = tl.load(s_row + offsets, mask=inside, other=0.0).to(tl.float32) * inv_t - lse_b
                lm = log_add_exp(la + log_beta, lb + log_rest)
                dp += tl.sum(tl.where(inside, tl.exp(la) * (la - lm), 0.0), 0)
                dq += tl.sum(tl.where(inside, tl.exp(lb) * (lb - lm), 0.0), 0)
            d = beta * dp + (1.0 - beta) * dq
            g = (1.0 - beta) * dq
        s_y = tl.load(s_row + label).to(tl.float32)
        tl.store(div_ptr + row, temperature * temperature * d)
        if HARD:
            tl.store(ce_ptr + row, lse_s - s_y)
        else:  # only computed where it is used
            tl.store(ce_ptr + row, 0.0)
        if WRITE_GRAD:
            scale = tl.load(grad_scale_ptr + row * grad_scale_stride).to(tl.float32)
            c_div = scale * temperature
            c_hard = scale * hard_weight
            label32 = label.to(tl.int32)  # a kept label is < V < 2^31
            for start in range(0, vocab, BLOCK_V):
                offsets = start + cols
                inside = offsets < vocab
                sv = tl.load(s_row + offsets, mask=inside, other=0.0).to(tl.float32)
                la = tl.load(t_row + offsets, mask=inside, other=0.0).to(tl.float32) * inv_t - lse_a
                lb = sv * inv_t - lse_b
                q = tl.exp(lb)
                if DIVERGENCE == KL:
                    dz = q - tl.exp(la)
                elif DIVERGENCE == REVERSE_KL:
                    dz = q * (lb - la - d)
                else:
                    lm = log_add_exp(la + log_beta, lb + log_rest)
                    dz = q * ((1.0 - beta) * (lb - lm) - g)
                grad = c_div * dz
                if HARD:
                    if UNIT_T:
                        grad += c_hard * q
                    else:
                        grad += c_hard * tl.exp(sv - lse_s)
                    grad = tl.where(offsets == label32, grad - c_hard, grad)
                tl.store(s_row + offsets, rounded_to(grad, s_row), mask=inside)


# Argument types for compiling ahead of time (fastmask/triton/hopper.py): bf16 logits, chunks of 4096
# over 8 warps, as distillation.py launches on a GPU.
_SIGNATURE = {
    "student_ptr": "*bf16", "teacher_ptr": "*bf16", "labels_ptr": "*i64", "grad_scale_ptr": "*fp32",
    "div_ptr": "*fp32", "ce_ptr": "*fp32",
    "vocab": "i32", "student_stride": "i64", "teacher_stride": "i64", "labels_stride": "i64", "grad_scale_stride": "i64",
    "inv_t": "fp32", "temperature": "fp32", "beta": "fp32", "log_beta": "fp32", "log_rest": "fp32",
    "hard_weight": "fp32", "ignore_index": "i64",
    "DIVERGENCE": "constexpr", "HARD": "constexpr", "UNIT_T": "constexpr", "WRITE_GRAD": "constexpr", "BLOCK_V": "constexpr",
}
_LAUNCH = {"num_warps": 8}

HOPPER_SPECS = [
    (distill_chunk_kernel, _SIGNATURE, {"DIVERGENCE": 0, "HARD": True, "UNIT_T": False, "WRITE_GRAD": True, "BLOCK_V": 4096}, _LAUNCH),
    (distill_chunk_kernel, _SIGNATURE, {"DIVERGENCE": 1, "HARD": False, "UNIT_T": True, "WRITE_GRAD": True, "BLOCK_V": 4096}, _LAUNCH),
    (distill_chunk_kernel, _SIGNATURE, {"DIVERGENCE": 2, "HARD": True, "UNIT_T": False, "WRITE_GRAD": True, "BLOCK_V": 4096}, _LAUNCH),
    (distill_chunk_kernel, {**_SIGNATURE, "student_ptr": "*fp32", "teacher_ptr": "*fp32"},
     {"DIVERGENCE": 0, "HARD": True, "UNIT_T": True, "WRITE_GRAD": False, "BLOCK_V": 4096}, _LAUNCH),
]
