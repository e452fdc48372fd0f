"""C++ launchers of magnitude pruning (csrc/pruning.cpp): contiguous CPU tensors in, flat views out."""
from __future__ import annotations

import torch

from . import cpp, num_threads, view


def magnitude_masks(scores: list[torch.Tensor], counts: list[int]) -> list[torch.Tensor]:
    scores = [s.contiguous() for s in scores]
    masks = [torch.empty(s.shape, dtype=torch.bool) for s in scores]
    cpp().magnitude_masks([view(s.view(-1)) for s in scores], list(counts), [view(m.view(-1)) for m in masks],
                          num_threads())
    return masks


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    scores = scores.contiguous()
    mask = torch.empty(scores.shape, dtype=torch.bool)
    cpp().nm_mask(view(scores.view(-1)), n, m, view(mask.view(-1)), num_threads())
    return mask
