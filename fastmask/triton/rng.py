"""Launcher of the random-stream kernel."""
from __future__ import annotations

import torch
import triton

from . import on_device_of
from ._rng_kernels import random_words_kernel

BLOCK = 1024


def random_words(seed: torch.Tensor, keys: torch.Tensor, length: int, purpose: int) -> torch.Tensor:
    out = torch.empty(keys.shape[0], length, 4, dtype=torch.int64, device=keys.device)
    programs = keys.shape[0] * triton.cdiv(length, BLOCK)
    if programs == 0:
        return out
    with on_device_of(keys):
        random_words_kernel[(programs,)](seed, keys, out, length, keys.stride(0), purpose, BLOCK=BLOCK)
    return out
