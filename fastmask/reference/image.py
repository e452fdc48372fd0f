"""Image and patch masking (docs/image.md), in torch ops: the executable specification.

Arguments arrive normalized by fastmask.image: keys int64 [B]; cum int64 [Mmax, S], the cumulative
choice thresholds of the block shapes for each number M of patches a block may add (row M - 1, last
column 2^32); shapes int64 [S, 2], (h, w) of each shape, (0, 0) a failed attempt.
"""
from __future__ import annotations

import torch

from .._rng import Purpose
from .rng import stream_words

_PACK_SHIFT = 31
_NOT_A_KEY = torch.iinfo(torch.int64).max


def packed_keys(seed, keys, length, purpose):
    """int64 [B, length]: (w0 << 31) | p of every patch p."""
    position = torch.arange(length, device=keys.device)
    w0 = stream_words(seed, keys.reshape(-1, 1), position, purpose)[..., 0]
    return (w0 << _PACK_SHIFT) | position


def block_mask(seed, keys, cum, shapes, height, width, target, max_attempts, exact, blocks=None):
    """bool [B, height, width]. `blocks`, a list, receives (row, top, left, h, w) of every placed block
    (for tests; not part of the op)."""
    device = keys.device
    batch = keys.shape[0]
    cells = height * width
    cum = cum.to(device=device, dtype=torch.int64)
    shapes = shapes.to(device=device, dtype=torch.int64)
    most = cum.shape[0]
    if batch == 0:  # nothing to place: no per-cell tables (a 30000 x 30000 grid would need 14 GB of them)
        return torch.zeros(0, height, width, dtype=torch.bool, device=device)
    row_of = torch.arange(cells, device=device) // width
    col_of = torch.arange(cells, device=device) % width
    mask = torch.zeros(batch, cells, dtype=torch.bool, device=device)
    count = torch.zeros(batch, dtype=torch.int64, device=device)
    fails = torch.zeros_like(count)
    active = torch.full((batch,), target > 0, dtype=torch.bool, device=device)
    t = 0
    while bool(active.any()):
        w = stream_words(seed, keys.reshape(-1, 1), torch.tensor([t], device=device), Purpose.BLOCK_MASK)[:, 0]
        t += 1
        limit = (target - count).clamp(1, most)  # M
        choice = (cum[limit - 1] <= w[:, 0:1]).sum(1)
        h, w_ = shapes[choice, 0], shapes[choice, 1]
        top = (w[:, 1] * (height - h + 1)) >> 32
        left = (w[:, 2] * (width - w_ + 1)) >> 32
        inside = ((row_of >= top[:, None]) & (row_of < (top + h)[:, None])
                  & (col_of >= left[:, None]) & (col_of < (left + w_)[:, None]))
        new = (inside & ~mask).sum(1)
        placed = active & (new > 0) & (new <= limit)
        mask |= inside & placed[:, None]
        count += torch.where(placed, new, 0)
        fails = torch.where(placed, 0, fails + 1)
        if blocks is not None:
            for r in placed.nonzero().flatten().tolist():
                blocks.append((r, int(top[r]), int(left[r]), int(h[r]), int(w_[r])))
        active &= (count < target) & (fails < max_attempts)
    if exact:
        need = target - count  # >= 0
        packed = torch.where(mask, _NOT_A_KEY, packed_keys(seed, keys, cells, Purpose.BLOCK_TOP_UP))
        ordered = packed.sort(dim=1).values
        kth = ordered.gather(1, (need - 1).clamp(min=0).reshape(-1, 1))
        mask |= (packed <= kth) & (need > 0).reshape(-1, 1)
    return mask.reshape(batch, height, width)


def patch_shuffle(seed, keys, length, keep):
    """(mask bool [B, L], ids_keep int64 [B, keep], ids_restore int64 [B, L]): the patches ordered by
    packed key; the first `keep` are kept."""
    packed = packed_keys(seed, keys, length, Purpose.PATCH_SHUFFLE)
    shuffle = packed.sort(dim=1).values & ((1 << _PACK_SHIFT) - 1)
    ranks = torch.arange(length, device=keys.device).expand_as(shuffle)
    ids_restore = torch.empty_like(shuffle).scatter_(1, shuffle, ranks)
    return ids_restore >= keep, shuffle[:, :keep].contiguous(), ids_restore
