"""Loss modules over fastmask.functional, with torch.nn's argument names where they overlap."""
from __future__ import annotations

from typing import Optional

import torch

from . import functional


class MaskedCrossEntropyLoss(torch.nn.Module):
    """torch.nn.CrossEntropyLoss for masked modeling: ignored rows cost nothing, an all-ignored
    batch gives 0, plus z-loss, softcapping, a logit scale, the causal shift, a normalizer, an
    in-place backward and a vocabulary-parallel process group.

    forward(input [N, V] or [B, L, V], target [N] or [B, L], normalizer=None). With
    return_z_loss / return_accuracy the last call's z-loss term and token accuracy (0-d tensors,
    detached) are kept in `z_loss_value` and `accuracy`; forward still returns the loss alone.
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
        *,
        logit_scale: Optional[float] = None,
        shift: bool = False,
        return_z_loss: bool = False,
        return_accuracy: bool = False,
        process_group=None,
    ):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap, self.inplace_backward, self.backend = z_loss, softcap, inplace_backward, backend
        self.logit_scale, self.shift, self.process_group = logit_scale, shift, process_group
        self.return_z_loss, self.return_accuracy = return_z_loss, return_accuracy
        self.z_loss_value: Optional[torch.Tensor] = None
        self.accuracy: Optional[torch.Tensor] = None

    def forward(self, input: torch.Tensor, target: torch.Tensor, normalizer=None) -> torch.Tensor:
        out = functional.masked_cross_entropy(
            input, target, ignore_index=self.ignore_index, reduction=self.reduction,
            label_smoothing=self.label_smoothing, weight=self.weight, z_loss=self.z_loss, softcap=self.softcap,
            logit_scale=self.logit_scale, normalizer=normalizer, shift=self.shift, return_z_loss=self.return_z_loss,
            return_accuracy=self.return_accuracy, inplace_backward=self.inplace_backward,
            process_group=self.process_group, backend=self.backend,
        )
        return _keep_extras(self, out, self.return_z_loss, self.return_accuracy)


def _keep_extras(module, out, z_loss: bool, accuracy: bool):
    """The loss of a loss function's output; its z-loss term and accuracy kept on the module."""
    if not (z_loss or accuracy):
        return out
    loss, *extras = out
    module.z_loss_value = extras.pop(0) if z_loss else None
    module.accuracy = extras.pop(0) if accuracy else None
    return loss


class MaskedLMLoss(torch.nn.Module):
    """The masked-LM head's loss on the predicted rows only: fastmask.masked_lm_loss with its options
    fixed at construction. forward(hidden, weight, labels, bias=None, positions=None, normalizer=None)
    takes the head's weight (and bias) as arguments, so tied embeddings stay where the model keeps
    them. With max_rows, `dropped_rows` holds the last call's count of labelled rows beyond the
    capacity (an int64 device tensor: reading it syncs); with return_z_loss / return_accuracy,
    `z_loss_value` and `accuracy` hold the last call's z-loss term and token accuracy."""

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
        *,
        logit_scale: Optional[float] = None,
        shift: bool = False,
        return_z_loss: bool = False,
        return_accuracy: bool = False,
        process_group=None,
    ):
        super().__init__()
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap, self.max_rows, self.chunk_size = z_loss, softcap, max_rows, chunk_size
        self.validate, self.backend = validate, backend
        self.logit_scale, self.shift, self.process_group = logit_scale, shift, process_group
        self.return_z_loss, self.return_accuracy = return_z_loss, return_accuracy
        self.dropped_rows: Optional[torch.Tensor] = None
        self.z_loss_value: Optional[torch.Tensor] = None
        self.accuracy: Optional[torch.Tensor] = None

    def forward(self, hidden, weight, labels, bias=None, positions=None, normalizer=None) -> torch.Tensor:
        *out, self.dropped_rows = functional.masked_lm_loss(
            hidden, weight, labels, bias=bias, positions=positions, max_rows=self.max_rows,
            ignore_index=self.ignore_index, reduction=self.reduction, label_smoothing=self.label_smoothing,
            z_loss=self.z_loss, softcap=self.softcap, logit_scale=self.logit_scale, normalizer=normalizer,
            shift=self.shift, chunk_size=self.chunk_size, return_z_loss=self.return_z_loss,
            return_accuracy=self.return_accuracy, return_dropped=True, process_group=self.process_group,
            validate=self.validate, backend=self.backend,
        )
        return _keep_extras(self, out if len(out) > 1 else out[0], self.return_z_loss, self.return_accuracy)


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
