"""Family "pruning": global magnitude masks (docs/pruning.md) over BERT-base's linear weights
(85.5M: 12 layers of Q, K, V, O and the two FFN matrices, plus the pooler; random weights of those
shapes) at 50% sparsity: fastmask.magnitude_masks against torch.nn.utils.prune.global_unstructured
(L1Unstructured), which concatenates every weight and runs one top-k. Both keep the same set (the
weights are continuous, so there are no ties to break differently; checked when the case is built).
--quick: two layers. Work units are weights.
"""
from __future__ import annotations

import torch
from torch.nn.utils import prune

import fastmask

from . import Case

HIDDEN, FFN, LAYERS = 768, 3072, 12
SPARSITY = 0.5


def bert_base_linear_shapes(layers: int) -> list[tuple[int, int]]:
    per_layer = [(HIDDEN, HIDDEN)] * 4 + [(FFN, HIDDEN), (HIDDEN, FFN)]
    return per_layer * layers + [(HIDDEN, HIDDEN)]  # + the pooler


class _Holder(torch.nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)


def torch_global_masks(weights: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """torch's global magnitude pruning on fresh modules sharing the weights (so calls repeat)."""
    holders = [_Holder(w) for w in weights]
    prune.global_unstructured([(h, "weight") for h in holders], pruning_method=prune.L1Unstructured, amount=sparsity)
    return [h.weight_mask for h in holders]


def cases(device: str, quick: bool) -> list[Case]:
    if device.startswith("cuda"):
        return [_case(device, 2 if quick else LAYERS, "fastmask-triton")]
    return [_case(device, 2 if quick else LAYERS, "fastmask-cpp")]


def _case(device: str, layers: int, ours: str) -> Case:
    g = torch.Generator().manual_seed(0)
    weights = [(torch.randn(shape, generator=g) * 0.02).to(device) for shape in bert_base_linear_shapes(layers)]
    n = sum(w.numel() for w in weights)
    backend = ours.removeprefix("fastmask-")
    got = fastmask.magnitude_masks(weights, SPARSITY, backend=backend)
    expected = torch_global_masks(weights, SPARSITY)
    if not all(torch.equal(a, b.bool()) for a, b in zip(got, expected)):
        raise AssertionError("pruning case: fastmask and torch keep different weights")
    del got, expected
    providers = {
        "torch-global_unstructured": lambda: torch_global_masks(weights, SPARSITY),
        ours: lambda: fastmask.magnitude_masks(weights, SPARSITY, backend=backend),
    }
    return Case("pruning", "global_magnitude_50", f"bert-base-linear-{layers}L-{n}", providers,
                "torch-global_unstructured", n, "weights", repeats=3)
