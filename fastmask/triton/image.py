"""Launchers of the image-masking kernels: one program per row, one launch, no host sync."""
from __future__ import annotations

import torch
import triton

from .._rng import Purpose
from . import on_device_of
from ._image_kernels import block_mask_kernel, patch_shuffle_kernel

# A row's grid (or patches) is one block of BLOCK >= cells lanes; the Hopper specs compile up to 2048.
MAX_BLOCK = 1 << 11
_MIN_BLOCK = 16


def _num_warps(block: int) -> int:
    return max(1, min(16, block // 128))


def _block(n: int, name: str) -> int:
    if n > MAX_BLOCK:
        raise ValueError(f"{name}: the Triton backend handles at most {MAX_BLOCK} patches per row, got {n}; use the C++ backend on CPU tensors")
    return max(_MIN_BLOCK, triton.next_power_of_2(n))


def block_mask(seed, keys, cum, shapes, height, width, target, max_attempts, exact):
    batch = keys.shape[0]
    out = torch.empty((batch, height, width), dtype=torch.bool, device=seed.device)
    block = _block(height * width, "height * width")
    if batch == 0:
        return out
    with on_device_of(seed):
        block_mask_kernel[(batch,)](
            seed, keys, cum, shapes, out, height, width, cum.shape[0], shapes.shape[0], keys.stride(0),
            target, max_attempts, int(Purpose.BLOCK_MASK), int(Purpose.BLOCK_TOP_UP),
            EXACT=bool(exact), BLOCK=block, SHAPES=max(16, triton.next_power_of_2(shapes.shape[0])),
            num_warps=_num_warps(block),
        )
    return out


def patch_shuffle(seed, keys, length, keep):
    batch = keys.shape[0]
    device = seed.device
    mask = torch.empty((batch, length), dtype=torch.bool, device=device)
    ids_keep = torch.empty((batch, keep), dtype=torch.int64, device=device)
    ids_restore = torch.empty((batch, length), dtype=torch.int64, device=device)
    block = _block(length, "num_patches")
    if batch == 0:
        return mask, ids_keep, ids_restore
    with on_device_of(seed):
        patch_shuffle_kernel[(batch,)](
            seed, keys, mask, ids_keep, ids_restore, length, keep, keys.stride(0), int(Purpose.PATCH_SHUFFLE),
            BLOCK=block, num_warps=_num_warps(block),
        )
    return mask, ids_keep, ids_restore
