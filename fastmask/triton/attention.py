"""Launchers of the attention-mask kernels: one launch each, no host sync."""
from __future__ import annotations

import torch
import triton

from . import on_device_of
from ._attention_kernels import attention_blocks_kernel, attention_dense_kernel

# A query block is one program of LANES >= block_size lanes with a LANES x LANES tile; the Hopper
# specs compile up to 256.
MAX_BLOCK = 256
_TILE = 64


def _arguments(segment_ids, prefix_lengths, lengths, out, causal, window):
    """The kernels' pointers (out stands in for absent tensors: never read), strides and flags."""
    pointers = tuple(out if t is None else t for t in (segment_ids, prefix_lengths, lengths)) + (out,)
    strides = (0, 0) if segment_ids is None else segment_ids.stride()
    flags = dict(HAS_SEGMENTS=segment_ids is not None, HAS_PREFIX=prefix_lengths is not None,
                 HAS_LENGTHS=lengths is not None, CAUSAL=bool(causal), HAS_WINDOW=window > 0)
    return pointers, strides, flags


def dense(segment_ids, prefix_lengths, lengths, device, batch, length, causal, window):
    out = torch.empty((batch, length, length), dtype=torch.bool, device=device)
    if batch == 0 or length == 0:
        return out
    pointers, strides, flags = _arguments(segment_ids, prefix_lengths, lengths, out, causal, window)
    grid = (batch, triton.cdiv(length, _TILE), triton.cdiv(length, _TILE))
    with on_device_of(out):
        attention_dense_kernel[grid](*pointers, length, *strides, window, BLOCK_Q=_TILE, BLOCK_K=_TILE, num_warps=4,
                                     **flags)
    return out


def block_states(segment_ids, prefix_lengths, lengths, device, batch, length, causal, window, block):
    if block > MAX_BLOCK:
        raise ValueError(f"block_size: the Triton backend handles blocks of at most {MAX_BLOCK}, got {block}")
    blocks = triton.cdiv(length, block)
    out = torch.empty((batch, blocks, blocks), dtype=torch.int8, device=device)
    if batch == 0 or blocks == 0:
        return out
    pointers, strides, flags = _arguments(segment_ids, prefix_lengths, lengths, out, causal, window)
    lanes = max(16, triton.next_power_of_2(block))
    with on_device_of(out):
        attention_blocks_kernel[(batch, blocks)](*pointers, length, blocks, block, *strides, window, LANES=lanes,
                                                 SUB=min(16, lanes), num_warps=8 if lanes >= 128 else 4, **flags)
    return out
