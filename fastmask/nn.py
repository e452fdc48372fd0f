"""Loss modules over fastmask.functional, with torch.nn's argument names where they overlap."""
from __future__ import annotations

from typing import Optional

import torch

from . import functional


class MaskedCrossEntropyLoss(torch.nn.Module):
    """torch.nn.CrossEntropyLoss for masked modeling: ignored rows cost nothing, an all-ignored
    batch gives 0, plus z-loss, softcapping, a normalizer and an in-place backward.

    forward(input [N, V] or [B, L, V], target [N] or [B, L], normalizer=None).
    """

    def __init__(
        self,
        weight: Optional[torch.Tensor] = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: Optional[float] = None,
        inplace_backward: bool = False,
        backend: str = "auto",
    ):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap, self.inplace_backward, self.backend = z_loss, softcap, inplace_backward, backend

    def forward(self, input: torch.Tensor, target: torch.Tensor, normalizer=None) -> torch.Tensor:
        return functional.masked_cross_entropy(
            input, target, ignore_index=self.ignore_index, reduction=self.reduction,
            label_smoothing=self.label_smoothing, weight=self.weight, z_loss=self.z_loss, softcap=self.softcap,
            normalizer=normalizer, inplace_backward=self.inplace_backward, backend=self.backend,
        )


class MaskedLMLoss(torch.nn.Module):
    """The masked-LM head's loss on the predicted rows only: fastmask.masked_lm_loss with its options
    fixed at construction. forward(hidden, weight, labels, bias=None, positions=None, normalizer=None)
    takes the head's weight (and bias) as arguments, so tied embeddings stay where the model keeps
    them. With max_rows, `dropped_rows` holds the last call's count of labelled rows beyond the
    capacity (an int64 device tensor: reading it syncs)."""

    def __init__(
        self,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: Optional[float] = None,
        max_rows: Optional[int] = None,
        chunk_size: Optional[int] = None,
        validate: bool = False,
        backend: str = "auto",
    ):
        super().__init__()
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap, self.max_rows, self.chunk_size = z_loss, softcap, max_rows, chunk_size
        self.validate, self.backend = validate, backend
        self.dropped_rows: Optional[torch.Tensor] = None

    def forward(self, hidden, weight, labels, bias=None, positions=None, normalizer=None) -> torch.Tensor:
        loss, self.dropped_rows = functional.masked_lm_loss(
            hidden, weight, labels, bias=bias, positions=positions, max_rows=self.max_rows,
            ignore_index=self.ignore_index, reduction=self.reduction, label_smoothing=self.label_smoothing,
            z_loss=self.z_loss, softcap=self.softcap, normalizer=normalizer, chunk_size=self.chunk_size,
            return_dropped=True, validate=self.validate, backend=self.backend,
        )
        return loss


class MaskedDistillationLoss(torch.nn.Module):
    """Distillation on the predicted rows only: fastmask.masked_distillation_loss with its options
    fixed at construction. forward(student_hidden, student_weight, teacher_hidden, teacher_weight,
    labels, student_bias=None, teacher_bias=None, positions=None) takes both heads' weights as
    arguments, so they stay where the models keep them (and the teacher's stay frozen)."""

    def __init__(
        self,
        temperature: float = 1.0,
        divergence: str = "kl",
        jsd_beta: float = 0.5,
        hard_weight: float = 0.0,
        ignore_index: int = -100,
        reduction: str = "mean",
        max_rows: Optional[int] = None,
        chunk_size: Optional[int] = None,
        backend: str = "auto",
    ):
        super().__init__()
        self.temperature, self.divergence, self.jsd_beta, self.hard_weight = temperature, divergence, jsd_beta, hard_weight
        self.ignore_index, self.reduction, self.max_rows, self.chunk_size = ignore_index, reduction, max_rows, chunk_size
        self.backend = backend

    def forward(self, student_hidden, student_weight, teacher_hidden, teacher_weight, labels, student_bias=None,
                teacher_bias=None, positions=None) -> torch.Tensor:
        from ._distillation import masked_distillation_loss

        return masked_distillation_loss(
            student_hidden, student_weight, teacher_hidden, teacher_weight, labels, student_bias=student_bias,
            teacher_bias=teacher_bias, temperature=self.temperature, divergence=self.divergence, jsd_beta=self.jsd_beta,
            hard_weight=self.hard_weight, positions=positions, max_rows=self.max_rows, ignore_index=self.ignore_index,
            reduction=self.reduction, chunk_size=self.chunk_size, backend=self.backend,
        )
