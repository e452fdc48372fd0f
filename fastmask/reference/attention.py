"""Attention masks (docs/attention.md), in torch ops: the executable specification.

Arguments arrive normalized by fastmask.attention: segment_ids [B, L] (int32/int64) or None,
prefix_lengths [B] or None, lengths [B] or None; causal a bool; window 0 for none.
"""
from __future__ import annotations

import torch


def check_lengths(name, values, length) -> None:
    """Tensor contents in [0, L] (the CPU backends check them; docs/attention.md#errors)."""
    if values is not None and values.numel():
        bad = (values < 0) | (values > length)
        if bool(bad.any()):
            b = int(bad.nonzero()[0, 0])
            raise ValueError(f"{name}: {int(values[b])} at row {b} is outside [0, {length}]")


def dense(segment_ids, prefix_lengths, lengths, device, batch, length, causal, window):
    """bool [B, L, L]: the predicate of docs/attention.md for every (query i, key j)."""
    check_lengths("prefix_lengths", prefix_lengths, length)
    check_lengths("lengths", lengths, length)
    i = torch.arange(length, device=device).reshape(1, -1, 1)
    j = torch.arange(length, device=device).reshape(1, 1, -1)
    allowed = torch.ones(batch, length, length, dtype=torch.bool, device=device)
    if segment_ids is not None:
        allowed &= segment_ids[:, :, None] == segment_ids[:, None, :]
    if causal:
        later = j <= i
        if prefix_lengths is not None:
            later = later | (j < prefix_lengths.reshape(-1, 1, 1))
        allowed &= later
    if window:
        allowed &= (i - j).abs() < window
    if lengths is not None:
        allowed &= j < lengths.reshape(-1, 1, 1)
    return allowed


def block_states(segment_ids, prefix_lengths, lengths, device, batch, length, causal, window, block):
    """int8 [B, nQ, nK]: 0 empty, 1 partial, 2 full, from the dense mask padded with False to whole
    blocks (as create_block_mask pads it)."""
    mask = dense(segment_ids, prefix_lengths, lengths, device, batch, length, causal, window)
    blocks = -(-length // block)
    pad = blocks * block - length
    mask = torch.nn.functional.pad(mask, (0, pad, 0, pad))
    sums = mask.reshape(batch, blocks, block, blocks, block).sum(dim=(2, 4))
    return ((sums > 0).to(torch.int8) + (sums == block * block).to(torch.int8))
