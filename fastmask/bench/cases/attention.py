"""Family "attention": fastmask's attention masks against the ways users build them (docs/attention.md).

- flex_block_mask: a packed-causal BlockMask (documents of about 512 tokens, L = 8192, 128-blocks):
  fastmask.attention_mask(format="flex") against flex_attention's create_block_mask with the same
  mask_mod (which evaluates it on all L^2 pairs).
- dense_mask: the packed-causal bool [1, L, L] mask against the broadcast expression
  (seg[:, :, None] == seg[:, None, :]) & (i >= j).

Work units are mask elements (L^2 per row). On CUDA the Triton kernels run against the same peers on
the GPU.
"""
from __future__ import annotations

import torch

import fastmask
from fastmask.attention import _mask_mod

from . import Case

LENGTH, DOCUMENT = 8192, 512


def cases(device: str, quick: bool) -> list[Case]:
    return [_flex_case(device), _dense_case(device)]


def packed_segments(length: int, device) -> torch.Tensor:
    """[1, L] sorted document ids, a new document with probability 1 / DOCUMENT at each token."""
    generator = torch.Generator().manual_seed(0)
    return torch.cumsum(torch.rand(1, length, generator=generator) < 1 / DOCUMENT, 1).to(device)


def _backend(device: str) -> str:
    return "triton" if device.startswith("cuda") else "cpp"


def _flex_case(device: str) -> Case:
    from torch.nn.attention.flex_attention import create_block_mask

    seg = packed_segments(LENGTH, device)
    backend = _backend(device)
    mask_mod = _mask_mod(seg, None, None, True, 0)
    providers = {
        "torch-create_block_mask": lambda: create_block_mask(mask_mod, 1, None, LENGTH, LENGTH, device=device),
        f"fastmask-{backend}": lambda: fastmask.attention_mask(segment_ids=seg, kind="document_causal", format="flex",
                                                               backend=backend),
    }
    return Case("attention", "flex_block_mask", f"1x{LENGTH}", providers, "torch-create_block_mask", LENGTH * LENGTH,
                "pairs", repeats=5)


def _dense_case(device: str) -> Case:
    seg = packed_segments(LENGTH, device)
    backend = _backend(device)

    def broadcast():
        i = torch.arange(LENGTH, device=device)
        return (seg[:, :, None] == seg[:, None, :]) & (i[:, None] >= i[None, :])

    providers = {
        "torch-broadcast": broadcast,
        f"fastmask-{backend}": lambda: fastmask.attention_mask(segment_ids=seg, kind="document_causal", backend=backend),
    }
    return Case("attention", "dense_mask", f"1x{LENGTH}", providers, "torch-broadcast", LENGTH * LENGTH, "pairs",
                repeats=9, bytes=LENGTH * LENGTH)
