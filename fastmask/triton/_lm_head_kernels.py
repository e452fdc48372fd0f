"""Triton kernels of the fused LM-head cross-entropy (Cut Cross-Entropy's approach; docs/lm_loss.md).

The logits of a [BLOCK_R, BLOCK_V] tile are computed in registers from BLOCK_D-wide slices of the
hidden rows and the weight rows, used and dropped: no [rows, V] tensor exists.
- Forward: one program per (row block, vocabulary block) writes the tile's per-row partials (the
  maximum of z, the sum of exp(z - max), the first argmax, the sum of z for smoothing) and the
  label's z where the label falls in its block. The launcher combines the partials over vocabulary
  blocks (a log-sum-exp of a few hundred numbers per row) in torch ops, with no host sync.
- Backward: the same tiles again, turned into dloss/dz from the saved log-sum-exp, then
  grad_rows += G @ W_block and grad_weight += G^T @ H_block, accumulated in fp32 with atomics.
  With filter_eps > 0 a tile whose every |dloss/dz| is below it contributes nothing (CCE's
  gradient filtering; the label's tile never qualifies, as p - 1 < -1 + eps there).
The z of a tile and the smoothing and z-loss terms follow fastmask/reference/cross_entropy.py
(class weights are not supported by the head loss).
"""
import triton
import triton.language as tl

from ._ce_kernels import NEG_INF, capped

INT_MAX = tl.constexpr(2147483647)


@triton.jit
def operand(x, UPCAST: tl.constexpr):
    """A tl.dot operand: as loaded (bf16/fp16 on tensor cores), or fp32 under the interpreter, whose
    dot misreads bf16."""
    if UPCAST:
        return x.to(tl.float32)
    else:
        return x


@triton.jit
def head_tile(
    rows_ptr, weight_ptr, bias_ptr, r, v, r_ok, v_ok, dim, rows_stride, weight_stride, softcap,
    HAS_BIAS: tl.constexpr, HAS_SOFTCAP: tl.constexpr, UPCAST: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """z of the tile (fp32 [BLOCK_R, BLOCK_V]): rows[r] @ weight[v]^T (+ bias), softcapped; the
    products in the inputs' dtype (tensor cores for bf16/fp16), accumulated in fp32."""
    acc = tl.zeros((BLOCK_R, BLOCK_V), dtype=tl.float32)
    cols = tl.arange(0, BLOCK_D)
    for start in range(0, dim, BLOCK_D):
        d = start + cols
        d_ok = d < dim
        h = tl.load(rows_ptr + r[:, None].to(tl.int64) * rows_stride + d[None, :], mask=r_ok[:, None] & d_ok[None, :], other=0.0)
        w = tl.load(weight_ptr + v[:, None].to(tl.int64) * weight_stride + d[None, :], mask=v_ok[:, None] & d_ok[None, :], other=0.0)
        acc = tl.dot(operand(h, UPCAST), tl.trans(operand(w, UPCAST)), acc)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + v, mask=v_ok, other=0.0).to(tl.float32)[None, :]
    return capped(acc, softcap, HAS_SOFTCAP)


@triton.jit
def lm_head_forward_kernel(
    # pointers
    rows_ptr, weight_ptr, bias_ptr, labels_ptr, max_ptr, sum_ptr, argmax_ptr, zsum_ptr, target_ptr,
    # shapes
    n_rows, vocab, dim, ignore_index,
    # strides
    rows_stride, weight_stride,
    # options
    softcap,
    # meta
    HAS_BIAS: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_SMOOTHING: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Partials of tile (row block program_id(0), vocabulary block program_id(1)); max/sum/argmax/zsum
    are [vocab blocks, n_rows], target [n_rows] (written by the block that holds the label)."""
    block_v = tl.program_id(1)
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    v = block_v * BLOCK_V + tl.arange(0, BLOCK_V)
    r_ok = r < n_rows
    v_ok = v < vocab
    z = head_tile(rows_ptr, weight_ptr, bias_ptr, r, v, r_ok, v_ok, dim, rows_stride, weight_stride, softcap,
                  HAS_BIAS, HAS_SOFTCAP, UPCAST, BLOCK_R, BLOCK_V, BLOCK_D)
    z = tl.where(v_ok[None, :], z, NEG_INF)
    m = tl.max(z, axis=1)
    s = tl.sum(tl.exp(z - m[:, None]), axis=1)
    first = tl.min(tl.where(z == m[:, None], v[None, :], INT_MAX), axis=1)
    out = block_v.to(tl.int64) * n_rows + r
    tl.store(max_ptr + out, m, mask=r_ok)
    tl.store(sum_ptr + out, s, mask=r_ok)
    tl.store(argmax_ptr + out, first, mask=r_ok)
    if HAS_SMOOTHING:
        tl.store(zsum_ptr + out, tl.sum(tl.where(v_ok[None, :], z, 0.0), axis=1), mask=r_ok)
    label = tl.load(labels_ptr + r, mask=r_ok, other=-1).to(tl.int64)
    here = r_ok & (label >= block_v * BLOCK_V) & (label < block_v * BLOCK_V + BLOCK_V) & (label != ignore_index)
    target = tl.sum(tl.where(v[None, :] == label[:, None], z, 0.0), axis=1)
    tl.store(target_ptr + r, target, mask=here)


@triton.jit
def lm_head_backward_kernel(
    # pointers
    rows_ptr, weight_ptr, bias_ptr, labels_ptr, lse_ptr, scale_ptr, grad_rows_ptr, grad_weight_ptr, grad_bias_ptr,
    # shapes
    n_rows, vocab, dim,
    # strides
    rows_stride, weight_stride,
    # options
    softcap, label_smoothing, z_loss, filter_eps,
    # meta
    HAS_BIAS: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_FILTER: tl.constexpr,
    WANT_ROWS: tl.constexpr, WANT_WEIGHT: tl.constexpr, WANT_BIAS: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Adds tile (program_id(0), program_id(1))'s share of d(sum_i scale_i * loss_i) to the fp32
    gradients. The launcher sets scale to 0 on ignored rows (and on labels outside [0, V))."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    v = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    r_ok = r < n_rows
    v_ok = v < vocab
    z = head_tile(rows_ptr, weight_ptr, bias_ptr, r, v, r_ok, v_ok, dim, rows_stride, weight_stride, softcap,
                  HAS_BIAS, HAS_SOFTCAP, UPCAST, BLOCK_R, BLOCK_V, BLOCK_D)
    lse = tl.load(lse_ptr + r, mask=r_ok, other=0.0)
    scale = tl.load(scale_ptr + r, mask=r_ok, other=0.0)
    label = tl.load(labels_ptr + r, mask=r_ok, other=-1).to(tl.int64)
    p = tl.exp(z - lse[:, None])
    # with unit class weights: (1 - e) * w_y + (e / V) * sum(w) = 1
    grad = p * (1.0 + 2.0 * z_loss * lse)[:, None] - label_smoothing / vocab
    grad = tl.where(v[None, :] == label[:, None], grad - (1.0 - label_smoothing), grad)
    if HAS_SOFTCAP:
        grad = grad * (1.0 - (z / softcap) * (z / softcap))
    # scale 0 marks an ignored row: its lse is 0, so p may overflow there; nothing of it is kept
    grad = tl.where(r_ok[:, None] & v_ok[None, :] & (scale != 0.0)[:, None], grad, 0.0)
    keep = True
    if HAS_FILTER:
        keep = tl.max(tl.abs(grad)) >= filter_eps
    if keep:
        grad = grad * scale[:, None]
        if WANT_BIAS:
            tl.atomic_add(grad_bias_ptr + v, tl.sum(grad, axis=0), mask=v_ok)
        g = operand(grad.to(rows_ptr.dtype.element_ty), UPCAST)  # rounded as the chunked path's bf16 gradient
        cols = tl.arange(0, BLOCK_D)
        for start in range(0, dim, BLOCK_D):
            d = start + cols
            d_ok = d < dim
            if WANT_ROWS:
                w = tl.load(weight_ptr + v[:, None].to(tl.int64) * weight_stride + d[None, :], mask=v_ok[:, None] & d_ok[None, :], other=0.0)
                tl.atomic_add(grad_rows_ptr + r[:, None].to(tl.int64) * dim + d[None, :], tl.dot(g, operand(w, UPCAST)),
                              mask=r_ok[:, None] & d_ok[None, :])
            if WANT_WEIGHT:
                h = tl.load(rows_ptr + r[:, None].to(tl.int64) * rows_stride + d[None, :], mask=r_ok[:, None] & d_ok[None, :], other=0.0)
                tl.atomic_add(grad_weight_ptr + v[:, None].to(tl.int64) * dim + d[None, :], tl.dot(tl.trans(g), operand(h, UPCAST)),
                              mask=v_ok[:, None] & d_ok[None, :])


_GPU_BLOCKS = {"BLOCK_R": 64, "BLOCK_V": 128, "BLOCK_D": 32, "UPCAST": False}
_LAUNCH = {"num_warps": 8}
_FORWARD_SIGNATURE = {
    "rows_ptr": "*bf16", "weight_ptr": "*bf16", "bias_ptr": "*bf16", "labels_ptr": "*i64", "max_ptr": "*fp32",
    "sum_ptr": "*fp32", "argmax_ptr": "*i32", "zsum_ptr": "*fp32", "target_ptr": "*fp32", "n_rows": "i32", "vocab": "i32",
    "dim": "i32", "ignore_index": "i64", "rows_stride": "i64", "weight_stride": "i64", "softcap": "fp32",
    "HAS_BIAS": "constexpr", "HAS_SOFTCAP": "constexpr", "HAS_SMOOTHING": "constexpr", "UPCAST": "constexpr",
    "BLOCK_R": "constexpr", "BLOCK_V": "constexpr", "BLOCK_D": "constexpr",
}
_BACKWARD_SIGNATURE = {
    "rows_ptr": "*bf16", "weight_ptr": "*bf16", "bias_ptr": "*bf16", "labels_ptr": "*i64", "lse_ptr": "*fp32",
    "scale_ptr": "*fp32", "grad_rows_ptr": "*fp32", "grad_weight_ptr": "*fp32", "grad_bias_ptr": "*fp32",
    "n_rows": "i32", "vocab": "i32", "dim": "i32", "rows_stride": "i64", "weight_stride": "i64",
    "softcap": "fp32", "label_smoothing": "fp32", "z_loss": "fp32", "filter_eps": "fp32",
    "HAS_BIAS": "constexpr", "HAS_SOFTCAP": "constexpr", "HAS_FILTER": "constexpr", "WANT_ROWS": "constexpr",
    "WANT_WEIGHT": "constexpr", "WANT_BIAS": "constexpr", "UPCAST": "constexpr", "BLOCK_R": "constexpr", "BLOCK_V": "constexpr",
    "BLOCK_D": "constexpr",
}
_FORWARD_ALL = {"HAS_BIAS": True, "HAS_SOFTCAP": True, "HAS_SMOOTHING": True, **_GPU_BLOCKS}
_BACKWARD_ALL = {"HAS_BIAS": True, "HAS_SOFTCAP": True, "HAS_FILTER": True, "WANT_ROWS": True, "WANT_WEIGHT": True,
                 "WANT_BIAS": True, **_GPU_BLOCKS}

HOPPER_SPECS = [
    (lm_head_forward_kernel, _FORWARD_SIGNATURE, {"HAS_BIAS": False, "HAS_SOFTCAP": False, "HAS_SMOOTHING": False, **_GPU_BLOCKS}, _LAUNCH),
    (lm_head_forward_kernel, _FORWARD_SIGNATURE, _FORWARD_ALL, _LAUNCH),
    (lm_head_backward_kernel, _BACKWARD_SIGNATURE, {**_BACKWARD_ALL, "HAS_BIAS": False, "HAS_SOFTCAP": False,
                                                    "HAS_FILTER": False, "WANT_BIAS": False}, _LAUNCH),
    (lm_head_backward_kernel, _BACKWARD_SIGNATURE, _BACKWARD_ALL, _LAUNCH),
]
