"""C++ launcher of the distillation kernel: tensors in, views to fastmask._C (csrc/distillation.cpp).

Same function, arguments and results as fastmask/reference/distillation.py. Both logits are read
through their row stride when their columns are contiguous (the student's gradient is written there
too), labels and grad_scale through their strides.
"""
from __future__ import annotations

import torch

from ..reference.cross_entropy import accumulation_dtype
from . import cpp, num_threads, view


def _rows(logits: torch.Tensor) -> torch.Tensor:
    return logits if logits.stride(1) == 1 or logits.shape[1] <= 1 or logits.shape[0] == 0 else logits.contiguous()


def distill_chunk(student, teacher, labels, grad_scale, temperature, divergence, beta, hard_weight, ignore_index, write_grad):
    """(T^2 divergence [R], hard ce [R]) in fp32 (fp64 for fp64); with write_grad the student logits hold the gradient."""
    rows = _rows(student)
    teacher = _rows(teacher.to(student.dtype))
    n, vocab = rows.shape
    acc = accumulation_dtype(rows)
    div = torch.empty(n, dtype=acc)
    ce = torch.empty(n, dtype=acc)
    if labels.dtype not in (torch.int32, torch.int64):
        labels = labels.to(torch.int64)
    scale = grad_scale.to(acc).expand(n)
    cpp().distill_chunk(
        view(rows), view(teacher), view(labels), view(scale), float(temperature), int(divergence), float(beta),
        float(hard_weight), ignore_index, bool(write_grad), view(div), view(ce), num_threads(),
    )
    if write_grad and rows is not student:  # columns were strided: the gradient was written into a copy
        student.copy_(rows)
    return div, ce
