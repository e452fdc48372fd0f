"""Launchers of the masked cross-entropy kernels: one program per row, one launch per call, no host sync.
Same functions, arguments and results as fastmask/reference/cross_entropy.py (the specification)."""
from __future__ import annotations

import torch
import triton

from ..reference.cross_entropy import accumulation_dtype
from . import INTERPRETED, on_device_of
from ._ce_kernels import ce_argmax_kernel, ce_backward_kernel, ce_forward_kernel, ce_scale_grad_kernel

_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
# Chunk of the vocabulary a program holds at once. On a GPU 4096 elements over 8 warps: 16 per thread
# (with every option on, 32 per thread spill on sm_90), 64-115 registers, so 2-4 programs share an
# SM; not yet tuned on an H100. The interpreter uses small chunks so that short test rows still
# cross chunk boundaries.
GPU_BLOCK_V = 4096
GPU_NUM_WARPS = 8
MAX_BLOCK_V = 256 if INTERPRETED else GPU_BLOCK_V
_MIN_BLOCK_V = 16


def _launch_config(vocab: int) -> dict:
    block = min(MAX_BLOCK_V, max(_MIN_BLOCK_V, triton.next_power_of_2(vocab)))
    return {"BLOCK_V": block, "num_warps": max(4, block * GPU_NUM_WARPS // GPU_BLOCK_V)}


def _check_dtype(name: str, tensor: torch.Tensor) -> None:
    if tensor.dtype not in _DTYPES:
        raise ValueError(f"{name}: the Triton backend takes float32, bfloat16, float16 or float64, got {str(tensor.dtype).removeprefix('torch.')}")


def _check_unit_column_stride(name: str, tensor: torch.Tensor) -> None:
    if tensor.shape[1] > 1 and tensor.stride(1) != 1:
        raise ValueError(f"{name}: the Triton backend needs rows with unit column stride, got strides {tuple(tensor.stride())}")


def _weights(weight, label_smoothing, like):
    """(contiguous weights in like's dtype, their sum as a 0-d tensor) or stand-in pointers (never read
    without HAS_WEIGHT)."""
    if weight is None:
        return like, like
    weight = weight.to(like.dtype).contiguous()
    return weight, (weight.sum() if label_smoothing > 0 else weight)


def _forward(logits, labels, weight, grad_scale, ignore_index, label_smoothing, z_loss, softcap):
    _check_dtype("logits", logits)
    n, vocab = logits.shape
    acc = accumulation_dtype(logits)
    loss = torch.empty(n, dtype=acc, device=logits.device)
    lse = torch.empty(n, dtype=acc, device=logits.device)
    if n == 0:
        return loss, lse
    inplace = grad_scale is not None
    if logits.stride(1) != 1 and vocab > 1:
        if inplace:
            _check_unit_column_stride("logits", logits)
        logits = logits.contiguous()
    weights, weight_sum = _weights(weight, label_smoothing, loss)
    grad_scale = grad_scale.to(acc).reshape(2).contiguous() if inplace else loss
    with on_device_of(logits):
        ce_forward_kernel[(n,)](
            logits, labels, weights, weight_sum, grad_scale, loss, lse,
            vocab, logits.stride(0), labels.stride(0),
            ignore_index, float(label_smoothing), float(z_loss), float(softcap),
            HAS_WEIGHT=weight is not None,
            HAS_SMOOTHING=label_smoothing > 0,
            HAS_SOFTCAP=softcap > 0,
            INPLACE=inplace,
            **_launch_config(vocab),
        )
    return loss, lse


def forward(logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap):
    """(loss [N], lse [N]) in fp32; 0 for rows whose label is ignore_index or outside [0, V)."""
    return _forward(logits, labels, weight, None, ignore_index, label_smoothing, z_loss, softcap)


def forward_inplace(logits, labels, weight, grad_scale, ignore_index, label_smoothing, z_loss, softcap):
    """forward, and logits overwritten with d(sum_i loss_i) / d logits: its cross-entropy and smoothing
    terms times grad_scale[0], its z-loss term times grad_scale[1] (a [2] device tensor)."""
    return _forward(logits, labels, weight, grad_scale, ignore_index, label_smoothing, z_loss, softcap)


def backward(logits, labels, weight, lse, grad_rows, grad_lse, ignore_index, label_smoothing, z_loss, softcap):
    """d(sum_i grad_rows[i] * loss_i + grad_lse[i] * lse_i) / d logits (grad_lse None: 0): a new
    contiguous [N, V] tensor in logits' dtype."""
    _check_dtype("logits", logits)
    n, vocab = logits.shape
    grad = torch.empty(n, vocab, dtype=logits.dtype, device=logits.device)
    if n == 0 or vocab == 0:
        return grad
    if logits.stride(1) != 1 and vocab > 1:
        logits = logits.contiguous()
    acc = accumulation_dtype(logits)
    lse = lse.to(acc)
    weights, weight_sum = _weights(weight, label_smoothing, lse)
    grad_rows = grad_rows.to(acc).expand(n)  # [N], maybe expanded from one value (stride 0)
    has_grad_lse = grad_lse is not None
    grad_lse = grad_lse.to(acc).expand(n) if has_grad_lse else grad_rows
    with on_device_of(logits):
        ce_backward_kernel[(n,)](
            logits, labels, weights, weight_sum, lse, grad_rows, grad_lse, grad,
            vocab, logits.stride(0), labels.stride(0), grad_rows.stride(0), grad_lse.stride(0), grad.stride(0),
            ignore_index, float(label_smoothing), float(z_loss), float(softcap),
            HAS_WEIGHT=weight is not None,
            HAS_SMOOTHING=label_smoothing > 0,
            HAS_SOFTCAP=softcap > 0,
            HAS_GRAD_LSE=has_grad_lse,
            **_launch_config(vocab),
        )
    return grad


def argmax(logits, labels, ignore_index):
    """Each labelled row's argmax, ignore_index for ignored rows (not read): int64 [N]."""
    _check_dtype("logits", logits)
    n, vocab = logits.shape
    predicted = torch.empty(n, dtype=torch.int64, device=logits.device)
    if n == 0:
        return predicted
    if logits.stride(1) != 1 and vocab > 1:
        logits = logits.contiguous()
    with on_device_of(logits):
        ce_argmax_kernel[(n,)](logits, labels, predicted, vocab, logits.stride(0), labels.stride(0), ignore_index,
                               **_launch_config(vocab))
    return predicted


def scale_grad(grad, scale):
    """grad *= scale in place, scale 0-d or [N] on the device; rows whose scale is exactly 1 are left alone
    (decided in the kernel: no host sync)."""
    _check_dtype("grad", grad)
    n, vocab = grad.shape
    if n == 0 or vocab == 0:
        return
    _check_unit_column_stride("grad", grad)
    scale = scale.to(accumulation_dtype(grad)).reshape(-1).expand(n)  # one per row (stride 0 for a single value)
    with on_device_of(grad):
        ce_scale_grad_kernel[(n,)](grad, scale, vocab, grad.stride(0), scale.stride(0), **_launch_config(vocab))
