"""Launcher of the span-corruption kernel: one program per row, one launch, no host sync."""
from __future__ import annotations

import torch
import triton

from .._rng import Purpose
from . import on_device_of
from ._t5_kernels import span_corruption_kernel

# A row and its outputs are one block of BLOCK > length lanes (the outputs are at most length + 1).
# Past 2048 lanes the kernel spills on sm_90 (4096 lanes: 64 bytes of stack at 16 warps, 80 at 32).
MAX_BLOCK = 1 << 11
MAX_LENGTH = MAX_BLOCK - 1
_MIN_BLOCK = 16


def _num_warps(block: int) -> int:
    return max(1, min(32, block // 128))


def span_corruption(ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw):
    batch, length = ids.shape
    if length > MAX_LENGTH:
        raise ValueError(f"input_ids: the Triton backend handles rows of at most {MAX_LENGTH} tokens, got {length}; use the C++ backend on CPU tensors")
    device = ids.device
    inputs = torch.empty(batch, input_length, dtype=ids.dtype, device=device)
    targets = torch.empty(batch, target_length, dtype=ids.dtype, device=device)
    lengths = [torch.empty(batch, dtype=torch.int64, device=device) for _ in range(3)]
    if batch == 0:
        return inputs, targets, *lengths
    block = max(_MIN_BLOCK, triton.next_power_of_2(length + 1))
    # draw: a choice among several denoisers or a random prefix-LM split (fastmask.t5 knows it from
    # the host-side table; reading the device table here would sync).
    with on_device_of(ids):
        span_corruption_kernel[(batch,)](
            ids, seed, keys, table, sentinels, inputs, targets, *lengths,
            length, table.shape[0], sentinels.shape[0], input_length, target_length,
            *ids.stride(), keys.stride(0), eos, pad, int(Purpose.T5_SPANS), int(Purpose.UL2_DENOISER),
            DRAW=bool(draw), BLOCK=block, num_warps=_num_warps(block),
        )
    return inputs, targets, *lengths

