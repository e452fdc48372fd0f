"""C++ launchers of magnitude pruning (csrc/pruning.cpp): contiguous CPU tensors in, raw pointers out."""
from __future__ import annotations

import torch

from . import DTYPE_CODES, cpp, num_threads


def magnitude_masks(scores: list[torch.Tensor], counts: list[int]) -> list[torch.Tensor]:
    scores = [s.contiguous() for s in scores]
    masks = [torch.empty(s.shape, dtype=torch.bool) for s in scores]
    cpp().magnitude_masks([s.data_ptr() for s in scores], [s.numel() for s in scores], DTYPE_CODES[scores[0].dtype],
                          list(counts), [m.data_ptr() for m in masks], num_threads())
    return masks


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    scores = scores.contiguous()
    mask = torch.empty(scores.shape, dtype=torch.bool)
    cpp().nm_mask(scores.data_ptr(), scores.numel(), DTYPE_CODES[scores.dtype], n, m, mask.data_ptr(), num_threads())
    return mask
