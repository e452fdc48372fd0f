"""Magnitude pruning masks (docs/pruning.md), stated directly: a stable sort of the concatenated
keys prunes the first k in (key, tensor, flat index) order. Slow and obvious: the oracle."""
from __future__ import annotations

import torch

# The sign bit cleared: the float bits of |x| as a non-negative integer, monotone in |x|.
_KEY_VIEWS = {
    torch.float16: (torch.int16, 0x7FFF),
    torch.bfloat16: (torch.int16, 0x7FFF),
    torch.float32: (torch.int32, 0x7FFFFFFF),
    torch.float64: (torch.int64, 0x7FFFFFFFFFFFFFFF),
}


def magnitude_keys(x: torch.Tensor) -> torch.Tensor:
    """int64 keys of |x|, flattened (docs/pruning.md)."""
    view, sign_off = _KEY_VIEWS[x.dtype]
    return (x.contiguous().reshape(-1).view(view).to(torch.int64)) & sign_off


def magnitude_masks(scores: list[torch.Tensor], counts: list[int]) -> list[torch.Tensor]:
    """One count: the tensors form one group; one count per tensor: each tensor is its own group."""
    groups = [scores] if len(counts) == 1 else [[s] for s in scores]
    masks = []
    for group, k in zip(groups, counts):
        keys = torch.cat([magnitude_keys(s) for s in group])
        keep = torch.ones_like(keys, dtype=torch.bool)
        keep[torch.sort(keys, stable=True).indices[:k]] = False
        masks.extend(part.view(s.shape).clone() for part, s in zip(keep.split([s.numel() for s in group]), group))
    return masks


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Each group of m consecutive elements along the last dimension keeps its n largest keys; the
    lower index is pruned first among ties (stable sort)."""
    keys = magnitude_keys(scores).view(-1, m)
    keep = torch.ones_like(keys, dtype=torch.bool)
    keep.scatter_(1, torch.sort(keys, dim=1, stable=True).indices[:, : m - n], False)
    return keep.view(scores.shape)
