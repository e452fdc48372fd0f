"""C++ launcher of the masked cross-entropy: tensors in, raw pointers to fastmask._C (csrc/cross_entropy.cpp).

Same functions, arguments and results as fastmask/reference/cross_entropy.py. Logits are read in
place through their row stride (any size: offsets are int64) when their columns are contiguous;
labels through their stride. Labels outside [0, V) other than ignore_index raise ValueError from
inside the kernel, before anything is written. Floats are accumulated in fp32 (fp64 for fp64 logits).
"""
from __future__ import annotations

import mmap

import torch

from ..reference.cross_entropy import accumulation_dtype
from . import DTYPE_CODES, cpp, num_threads


def _rows(logits: torch.Tensor) -> torch.Tensor:
    """logits with unit column stride (the kernels walk a row contiguously)."""
    return logits if logits.stride(1) == 1 or logits.shape[1] <= 1 or logits.shape[0] == 0 else logits.contiguous()


# A gradient at least this large is a fresh anonymous mapping (the OS's zero pages) instead of torch's
# allocator's memory: the backward writes the labelled rows only and never touches the ignored rows'
# pages, so they cost no page fault, no zero-fill and no memory until something reads them (then the
# shared zero page). On a masked-LM batch that is 85% of the gradient; its first-touch faults were
# most of the backward's time (the zero-fill of a fresh [4096, 30522] fp32 buffer: 0.3 s idle, 2 s
# on a loaded 2-core machine, against 0.14 s for the whole forward).
_FRESH_BYTES = 1 << 24


def _gradient_buffer(n: int, vocab: int, dtype: torch.dtype) -> tuple[torch.Tensor, bool]:
    """(an [n, vocab] tensor to write the gradient into, whether it holds zeros already)."""
    count = n * vocab
    if count * dtype.itemsize < _FRESH_BYTES:
        return torch.empty((n, vocab), dtype=dtype), False
    # frombuffer keeps the mapping alive as long as the tensor; it is unmapped when both are gone.
    return torch.frombuffer(mmap.mmap(-1, count * dtype.itemsize), dtype=dtype, count=count).view(n, vocab), True


def _vector(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def _args(logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap):
    """The leading arguments every kernel takes, and the tensors that must outlive the call."""
    n, vocab = logits.shape
    acc = accumulation_dtype(logits)
    if weight is not None:
        weight = weight.to(acc).contiguous()
    if labels.dtype not in (torch.int32, torch.int64):
        labels = labels.to(torch.int64)
    args = (
        logits.data_ptr(), DTYPE_CODES[logits.dtype], n, vocab, logits.stride(0) if n > 1 else vocab,
        labels.data_ptr(), DTYPE_CODES[labels.dtype], labels.stride(0) if n > 1 else 1,
        0 if weight is None else weight.data_ptr(), ignore_index, float(label_smoothing), float(z_loss), float(softcap),
    )
    return args, (labels, weight)


def forward(logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap):
    """(loss [N], lse [N]) in fp32 (fp64 for fp64 logits)."""
    logits = _rows(logits)
    acc = accumulation_dtype(logits)
    loss = torch.empty(logits.shape[0], dtype=acc)
    lse = torch.empty(logits.shape[0], dtype=acc)
    args, _keep = _args(logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap)
    cpp().cross_entropy_forward(*args, loss.data_ptr(), lse.data_ptr(), num_threads())
    return loss, lse


def backward(logits, labels, weight, lse, grad_rows, grad_lse, ignore_index, label_smoothing, z_loss, softcap):
    """d(sum_i grad_rows[i] * loss_i + grad_lse[i] * lse_i) / d logits (grad_lse None: 0): a new
    contiguous [N, V] tensor in logits' dtype."""
    logits = _rows(logits)
    n, vocab = logits.shape
    acc = accumulation_dtype(logits)
    grad, zeroed = _gradient_buffer(n, vocab, logits.dtype)
    lse = _vector(lse, acc).expand(n)
    grad_rows = _vector(grad_rows, acc).expand(n)  # also a 0-d upstream gradient
    grad_lse = None if grad_lse is None else _vector(grad_lse, acc).expand(n)
    args, _keep = _args(logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap)
    cpp().cross_entropy_backward(
        *args, lse.data_ptr(), lse.stride(0), grad_rows.data_ptr(), grad_rows.stride(0),
        0 if grad_lse is None else grad_lse.data_ptr(), 0 if grad_lse is None else grad_lse.stride(0),
        grad.data_ptr(), vocab, zeroed, num_threads(),
    )
    return grad


def forward_inplace(logits, labels, weight, grad_scale, ignore_index, label_smoothing, z_loss, softcap):
    """forward, and logits overwritten with d(sum_i loss_i) / d logits: its cross-entropy and smoothing
    terms times grad_scale[0], its z-loss term times grad_scale[1]."""
    rows = _rows(logits)
    acc = accumulation_dtype(rows)
    loss = torch.empty(rows.shape[0], dtype=acc)
    lse = torch.empty(rows.shape[0], dtype=acc)
    scale = _vector(grad_scale.reshape(2), acc).contiguous()
    args, _keep = _args(rows, labels, weight, ignore_index, label_smoothing, z_loss, softcap)
    cpp().cross_entropy_forward_inplace(*args, scale.data_ptr(), loss.data_ptr(), lse.data_ptr(), num_threads())
    if rows is not logits:  # columns were strided: the gradient was written into a copy
        logits.copy_(rows)
    return loss, lse


def argmax(logits, labels, ignore_index):
    """Each labelled row's argmax, ignore_index for ignored rows (not read): int64 [N]."""
    logits = _rows(logits)
    predicted = torch.empty(logits.shape[0], dtype=torch.int64)
    args, _keep = _args(logits, labels, None, ignore_index, 0.0, 0.0, 0.0)
    cpp().cross_entropy_argmax(*args, predicted.data_ptr(), num_threads())
    return predicted


def scale_grad(grad, scale):
    """grad *= scale, in place: scale 0-d (nothing happens when it is 1) or one value per row."""
    n, vocab = grad.shape
    if n == 0 or vocab == 0:
        return
    rows = _rows(grad)
    scale = _vector(scale, accumulation_dtype(grad))
    if scale.dim() == 1:
        scale = scale.expand(n)  # a single value may come as [1]
    scale_stride = 0 if scale.dim() == 0 else scale.stride(0)
    cpp().cross_entropy_scale_grad(
        rows.data_ptr(), DTYPE_CODES[rows.dtype], n, vocab, rows.stride(0), scale.data_ptr(), scale_stride, num_threads(),
    )
    if rows is not grad:
        grad.copy_(rows)
