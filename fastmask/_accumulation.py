"""Dtype and row helpers every loss backend shares (imports only torch, so reference/ may use it too)."""
from __future__ import annotations

import torch


def accumulation_dtype(logits: torch.Tensor) -> torch.dtype:
    """The dtype losses, lse and sums use: fp64 for fp64 logits (gradcheck), else fp32. Every backend's."""
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def kept_rows(labels: torch.Tensor, ignore_index: int, vocab: int) -> torch.Tensor:
    """Rows whose label counts: not ignore_index and inside the vocabulary."""
    return (labels != ignore_index) & (labels >= 0) & (labels < vocab)
