"""Launcher of the distillation chunk kernel: one program per row, one launch per chunk, no host sync.
Same function, arguments and results as fastmask/reference/distillation.py (the specification)."""
from __future__ import annotations

import math

import torch

from .._accumulation import accumulation_dtype
from . import on_device_of
from ._distillation_kernels import distill_chunk_kernel
from .cross_entropy import _check_dtype, _check_unit_column_stride, _launch_config


def distill_chunk(student, teacher, labels, grad_scale, temperature, divergence, beta, hard_weight, ignore_index, write_grad):
    """(T^2 divergence [R], hard ce [R]) in fp32 (summed in fp32, returned in fp64 for fp64 logits, as the
    other backends' dtype); with write_grad the student logits hold the gradient."""
    _check_dtype("student", student)
    n, vocab = student.shape
    div = torch.empty(n, dtype=torch.float32, device=student.device)
    ce = torch.empty(n, dtype=torch.float32, device=student.device)
    if n == 0:
        return div.to(accumulation_dtype(student)), ce.to(accumulation_dtype(student))
    _check_unit_column_stride("student", student)
    teacher = teacher.to(student.dtype)
    if vocab > 1 and teacher.stride(1) != 1:
        teacher = teacher.contiguous()
    scale = grad_scale.to(torch.float32).expand(n)
    jsd = divergence == 2
    with on_device_of(student):
        distill_chunk_kernel[(n,)](
            student, teacher, labels, scale, div, ce,
            vocab, student.stride(0), teacher.stride(0), labels.stride(0), scale.stride(0),
            1.0 / temperature, float(temperature), float(beta), math.log(beta) if jsd else 0.0,
            math.log1p(-beta) if jsd else 0.0, float(hard_weight), ignore_index,
            DIVERGENCE=int(divergence), HARD=hard_weight > 0, UNIT_T=temperature == 1.0, WRITE_GRAD=bool(write_grad),
            **_launch_config(vocab),
        )
    return div.to(accumulation_dtype(student)), ce.to(accumulation_dtype(student))
