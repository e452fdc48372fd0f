"""Magnitude pruning masks (docs/pruning.md): global, per layer and N:M masks with exact counts, and
the helpers that apply them through torch.nn.utils.prune and run lottery-ticket rounds."""
from __future__ import annotations

import math
import numbers
import re
from typing import Callable, Optional, Sequence, Union

import torch
from torch.nn.utils import prune

from . import _library
from ._backend import check_backend
from ._validate import check_probability

__all__ = ["apply_masks", "lottery_ticket", "magnitude_masks"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_SCOPES = ("global", "layer")
_PATTERN = re.compile(r"^(\d+):(\d+)$")


def _check_tensors(name: str, tensors) -> list[torch.Tensor]:
    if isinstance(tensors, torch.Tensor) or not isinstance(tensors, Sequence) or len(tensors) == 0:
        raise ValueError(f"{name}: expected a non-empty list of tensors, got {type(tensors).__name__}")
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}[{i}]: expected a tensor, got {type(t).__name__}")
        if t.dtype not in _FLOATS:
            raise ValueError(f"{name}[{i}]: expected a floating dtype (float16, bfloat16, float32, float64), got {t.dtype}")
        if t.dtype != tensors[0].dtype or t.device != tensors[0].device:
            raise ValueError(f"{name}[{i}]: expected {tensors[0].dtype} on {tensors[0].device} like {name}[0], "
                             f"got {t.dtype} on {t.device}")
    return [t.detach() for t in tensors]


def _parse_pattern(pattern) -> tuple[int, int]:
    match = _PATTERN.match(pattern) if isinstance(pattern, str) else None
    if match is None:
        raise ValueError(f"pattern: expected None or 'N:M' such as '2:4', got {pattern!r}")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 <= n <= m or not 1 <= m <= 64:
        raise ValueError(f"pattern: expected 'N:M' with 0 <= N <= M <= 64, got {pattern!r}")
    return n, m


def magnitude_masks(
    tensors: Sequence[torch.Tensor],
    sparsity: Optional[float] = None,
    *,
    scope: str = "global",
    pattern: Optional[str] = None,
    scores: Optional[Sequence[torch.Tensor]] = None,
    backend: str = "auto",
) -> list[torch.Tensor]:
    """One bool mask per tensor, True where the weight is kept (torch.nn.utils.prune's convention).

    Prunes the round(sparsity * n) weights of smallest |score| (score = the weight itself unless
    `scores` is given) over all tensors (scope="global") or in each tensor (scope="layer"), ties
    pruned in (tensor, flat index) order, the same on every backend. pattern="N:M" keeps the N
    largest of every M consecutive elements along the last dimension instead (sparsity None or
    1 - N/M). Exact counts, found by a two-pass histogram select rather than a sort.
    """
    check_backend(backend)
    weights = _check_tensors("tensors", tensors)
    if scores is not None:
        ranked = _check_tensors("scores", scores)
        if len(ranked) != len(weights) or any(s.shape != w.shape for s, w in zip(ranked, weights)):
            raise ValueError(f"scores: expected one tensor per weight with its shape, got shapes "
                             f"{[tuple(s.shape) for s in ranked]}")
    else:
        ranked = weights
    if scope not in _SCOPES:
        raise ValueError(f"scope: expected 'global' or 'layer', got {scope!r}")
    if pattern is not None:
        n, m = _parse_pattern(pattern)
        if sparsity is not None and not (isinstance(sparsity, numbers.Real) and math.isclose(sparsity, 1 - n / m)):
            raise ValueError(f"sparsity: pattern {pattern!r} prunes {1 - n / m:g} of the weights; pass None or that, "
                             f"got {sparsity!r}")
        for i, s in enumerate(ranked):
            if s.dim() == 0 or s.shape[-1] % m:
                raise ValueError(f"tensors[{i}]: pattern {pattern!r} needs a last dimension divisible by {m}, "
                                 f"got shape {tuple(s.shape)}")
        return [_library.nm_mask(s, n, m, backend) for s in ranked]
    if sparsity is None:
        raise ValueError("sparsity: expected a fraction in [0, 1] (or a pattern), got None")
    sparsity = check_probability("sparsity", sparsity)
    sizes = [s.numel() for s in ranked]
    # Python's round, as torch.nn.utils.prune's nparams_toprune.
    counts = [round(sparsity * sum(sizes))] if scope == "global" else [round(sparsity * n) for n in sizes]
    return list(_library.magnitude_masks(ranked, counts, backend))


def apply_masks(modules: Sequence[torch.nn.Module], masks: Sequence[torch.Tensor], name: str = "weight") -> None:
    """Registers each mask on its module's parameter `name` with torch.nn.utils.prune.custom_from_mask
    (combined with a mask already there, as torch does), so prune.remove and the pre-hooks work."""
    if len(modules) != len(masks):
        raise ValueError(f"masks: expected one mask per module ({len(modules)}), got {len(masks)}")
    for module, mask in zip(modules, masks):
        prune.custom_from_mask(module, name, mask)


def lottery_ticket(
    modules: Sequence[torch.nn.Module],
    train: Callable[[], object],
    sparsity: float,
    *,
    rounds: int = 1,
    scope: str = "global",
    name: str = "weight",
    backend: str = "auto",
) -> list[torch.Tensor]:
    """Iterative magnitude pruning with weight rewinding (Frankle and Carbin, 2019).

    Saves the parameters `name` of `modules`, then `rounds` times: calls train() (which trains the
    model in place, masks applied), prunes to 1 - (1 - sparsity)^(j / rounds) of the weights by
    magnitude (weights pruned before stay pruned) and rewinds the survivors to the saved values.
    Returns the final masks, which stay registered on the modules (torch.nn.utils.prune)."""
    sparsity = check_probability("sparsity", sparsity)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: expected a positive integer, got {rounds!r}")
    initial = [getattr(module, name).detach().clone() for module in modules]
    masks: Union[list[torch.Tensor], None] = None
    for j in range(1, rounds + 1):
        train()
        current = [getattr(module, name).detach() for module in modules]  # masked weights: pruned ones are 0
        target = 1 - (1 - sparsity) ** (j / rounds)
        new = magnitude_masks(current, target, scope=scope, backend=backend)
        masks = new if masks is None else [a & b for a, b in zip(new, masks)]
        for module, mask, start in zip(modules, masks, initial):
            if prune.is_pruned(module) and hasattr(module, name + "_orig"):
                prune.remove(module, name)
            with torch.no_grad():
                getattr(module, name).copy_(start)
            prune.custom_from_mask(module, name, mask)
    return masks
