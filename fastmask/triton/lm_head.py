"""Launchers of the fused LM-head cross-entropy (kernels in _lm_head_kernels.py): two launches per
forward (tiles, then torch ops over the per-block partials) and one per backward, no host sync.
The results follow fastmask/reference/cross_entropy.py applied to rows @ weight.T + bias."""
from __future__ import annotations

import torch
import triton

from . import INTERPRETED, on_device_of
from ._lm_head_kernels import lm_head_backward_kernel, lm_head_forward_kernel

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Tile shape: on a GPU 64 rows x 128 classes x 32 of the hidden size over 8 warps (sm_90: forward 127
# registers, backward 225, no spills; BLOCK_D 64 spilled in the backward); not yet tuned on an H100. The interpreter uses small tiles so that
# test shapes cross every tile boundary.
BLOCKS = {"BLOCK_R": 16, "BLOCK_V": 16, "BLOCK_D": 16} if INTERPRETED else {"BLOCK_R": 64, "BLOCK_V": 128, "BLOCK_D": 32}
NUM_WARPS = 8


def _check(rows: torch.Tensor, weight: torch.Tensor, bias) -> None:
    if not rows.is_cuda and not INTERPRETED:
        raise ValueError("impl: 'fused' runs Triton kernels: it needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU)")
    for name, tensor in (("hidden", rows), ("weight", weight)) + ((("bias", bias),) if bias is not None else ()):
        if tensor.dtype not in _DTYPES:
            raise ValueError(f"{name}: the fused Triton head takes float32, bfloat16 or float16, got {str(tensor.dtype).removeprefix('torch.')}")
        if tensor.stride(-1) != 1 and tensor.shape[-1] > 1:
            raise ValueError(f"{name}: the fused Triton head needs a unit last stride, got strides {tuple(tensor.stride())}")


def kept(labels: torch.Tensor, ignore_index: int, vocab: int) -> torch.Tensor:
    return (labels != ignore_index) & (labels >= 0) & (labels < vocab)


def forward(rows, weight, bias, labels, ignore_index: int, label_smoothing: float, z_loss: float, softcap: float):
    """(loss [R], lse [R], predicted [R] int64) in fp32; ignored rows: loss 0, lse 0 (predicted still set)."""
    _check(rows, weight, bias)
    n, dim = rows.shape
    vocab = weight.shape[0]
    device = rows.device
    blocks_v = triton.cdiv(vocab, BLOCKS["BLOCK_V"])
    partial_max = torch.empty((blocks_v, n), dtype=torch.float32, device=device)
    partial_sum = torch.empty_like(partial_max)
    partial_argmax = torch.empty((blocks_v, n), dtype=torch.int32, device=device)
    partial_zsum = torch.empty_like(partial_max) if label_smoothing > 0 else partial_max
    target = torch.zeros(n, dtype=torch.float32, device=device)
    if n > 0:
        with on_device_of(rows):
            lm_head_forward_kernel[(triton.cdiv(n, BLOCKS["BLOCK_R"]), blocks_v)](
                rows, weight, rows if bias is None else bias, labels, partial_max, partial_sum, partial_argmax,
                partial_zsum, target,
                n, vocab, dim, ignore_index,
                rows.stride(0), weight.stride(0),
                softcap,
                HAS_BIAS=bias is not None, HAS_SOFTCAP=softcap > 0, HAS_SMOOTHING=label_smoothing > 0,
                UPCAST=INTERPRETED, num_warps=NUM_WARPS, **BLOCKS,
            )
    # Combine the blocks: lse = M + log(sum_b s_b exp(m_b - M)); argmax from the first block holding the maximum.
    top, block = partial_max.max(0)
    lse = top + torch.log((partial_sum * torch.exp(partial_max - top)).sum(0))
    predicted = partial_argmax.gather(0, block.unsqueeze(0)).squeeze(0).to(torch.int64)
    loss = (1.0 - label_smoothing) * (lse - target)
    if label_smoothing > 0:
        loss = loss + (label_smoothing / vocab) * (vocab * lse - partial_zsum.sum(0))
    if z_loss > 0:
        loss = loss + z_loss * lse * lse
    keep = kept(labels, ignore_index, vocab)
    zero = loss.new_zeros(())
    return torch.where(keep, loss, zero), torch.where(keep, lse, zero), predicted


def backward(rows, weight, bias, labels, lse, grad_loss, ignore_index: int, label_smoothing: float, z_loss: float,
             softcap: float, filter_eps: float, want: tuple[bool, bool, bool]):
    """Gradients of sum_i grad_loss[i] * loss_i w.r.t. (rows, weight, bias), each None where not wanted,
    in the inputs' dtypes (summed in fp32)."""
    _check(rows, weight, bias)
    n, dim = rows.shape
    vocab = weight.shape[0]
    want_rows, want_weight, want_bias = want[0], want[1], want[2] and bias is not None
    scale = torch.where(kept(labels, ignore_index, vocab), grad_loss.to(torch.float32), 0.0).contiguous()
    f32 = {"dtype": torch.float32, "device": rows.device}
    grad_rows = torch.zeros((n, dim), **f32) if want_rows else None
    grad_weight = torch.zeros((vocab, dim), **f32) if want_weight else None
    grad_bias = torch.zeros(vocab, **f32) if want_bias else None
    if n > 0 and (want_rows or want_weight or want_bias):
        stand_in = scale
        with on_device_of(rows):
            lm_head_backward_kernel[(triton.cdiv(n, BLOCKS["BLOCK_R"]), triton.cdiv(vocab, BLOCKS["BLOCK_V"]))](
                rows, weight, rows if bias is None else bias, labels, lse, scale,
                stand_in if grad_rows is None else grad_rows, stand_in if grad_weight is None else grad_weight,
                stand_in if grad_bias is None else grad_bias,
                n, vocab, dim,
                rows.stride(0), weight.stride(0),
                softcap, label_smoothing, z_loss, filter_eps,
                HAS_BIAS=bias is not None, HAS_SOFTCAP=softcap > 0, HAS_FILTER=filter_eps > 0,
                WANT_ROWS=want_rows, WANT_WEIGHT=want_weight, WANT_BIAS=want_bias,
                UPCAST=INTERPRETED, num_warps=NUM_WARPS, **BLOCKS,
            )
    return (None if grad_rows is None else grad_rows.to(rows.dtype),
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype))
