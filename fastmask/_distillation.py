"""Distillation on the predicted rows only (docs/distillation.md): the student's and the teacher's LM
heads computed on the selected rows, chunk by chunk, so the two [chunk, V] logit buffers are the only
logits alive; one fused kernel per chunk (fastmask::distill_chunk) takes both distributions'
log-sum-exp, the divergence, the hard cross-entropy and the student logits' gradient, in place.

Two autograd paths, as the masked-LM head's (fastmask/_lm_head.py):
- a summed loss ("mean"/"sum"): the forward also computes the student's gradients for an upstream
  gradient of 1 (4 matmuls per chunk: two heads, grad_hidden, grad_weight); backward rescales them;
- per-row losses ("none") or no gradient wanted: the forward keeps nothing but the inputs, and the
  backward recomputes each chunk's two heads.
The teacher never gets a gradient: its inputs are detached (it may be frozen or run under no_grad).
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple, Optional

import torch

from . import _library  # noqa: F401  (registers fastmask::distill_chunk)
from ._backend import autocast_dtype, check_backend
from ._lm_head import default_chunk_size
from ._validate import check_int, check_tensor
from .functional import (_FLOATS, _MAX_LENGTH, _REDUCTIONS, _check_float, _check_labels, _gather_rows, _lm_output_rows,
                         _lm_rows)
from .reference.cross_entropy import accumulation_dtype, kept_rows
from .reference.distillation import JSD, KL, REVERSE_KL

__all__ = ["masked_distillation_loss"]

DIVERGENCES = {"kl": KL, "reverse_kl": REVERSE_KL, "jsd": JSD}
_INT_IDS = (torch.int64, torch.int32)

# Logits per buffer and chunk (there are two: student and teacher): 2^23 on a CPU (256 rows at
# V = 30522; fewer, smaller chunks re-read the [V, D] weight gradient more often: each chunk's
# grad_weight update streams all of it), 2^26 on a GPU; at least 16 rows, a power of two.
_CHUNK_LOGITS = {"cpu": 1 << 23, "cuda": 1 << 26}


class Options(NamedTuple):
    """The kernel's options (as distill_chunk takes them, after grad_scale) and the chunk size."""

    temperature: float
    divergence: int
    beta: float
    hard_weight: float
    ignore_index: int
    backend: str
    chunk_size: int

    def kernel(self, write_grad: bool) -> tuple:
        return self.temperature, self.divergence, self.beta, self.hard_weight, self.ignore_index, write_grad, self.backend


def _head(rows, weight, bias):
    return torch.mm(rows, weight.t()) if bias is None else torch.addmm(bias, rows, weight.t())


def _chunks(total: int, size: int):
    return [(start, min(start + size, total)) for start in range(0, total, size)]


class _Student:
    """The student's gradients, accumulated chunk by chunk (None where not wanted); the weight's and
    bias' in the accumulation dtype, so that many bf16 chunks lose no bits."""

    def __init__(self, rows, weight, bias, wants):
        acc = accumulation_dtype(rows)
        self.rows = torch.empty_like(rows) if wants[0] else None
        self.weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if wants[1] else None
        self.bias = torch.zeros(bias.shape, dtype=acc, device=bias.device) if wants[2] else None

    def add(self, grad_logits, chunk, weight, start, end):
        if self.rows is not None:
            torch.mm(grad_logits, weight, out=self.rows[start:end])
        if self.weight is not None:
            if grad_logits.dtype == self.weight.dtype:
                self.weight.addmm_(grad_logits.t(), chunk)
            else:  # bf16/fp16 products, fp32 sums
                self.weight.add_(torch.mm(grad_logits.t(), chunk))
        if self.bias is not None:
            self.bias.add_(grad_logits.sum(0, dtype=self.bias.dtype))

    def result(self, weight, bias):
        return (self.rows, None if self.weight is None else self.weight.to(weight.dtype),
                None if self.bias is None else self.bias.to(bias.dtype))


def _chunk_logits(s_rows, s_weight, s_bias, t_rows, t_weight, t_bias, start, end):
    student = _head(s_rows[start:end], s_weight, s_bias)
    teacher = _head(t_rows[start:end], t_weight, t_bias)
    return student, teacher if teacher.dtype == student.dtype else teacher.to(student.dtype)


class SummedDistillation(torch.autograd.Function):
    """scale * sum_i (div_i + hard_weight ce_i); gradients made in the forward, rescaled in backward."""

    @staticmethod
    def forward(ctx, s_rows, s_weight, s_bias, t_rows, t_weight, t_bias, labels, scale, options: Options):
        grads = _Student(s_rows, s_weight, s_bias, ctx.needs_input_grad[:3])
        total = s_rows.new_zeros((), dtype=accumulation_dtype(s_rows))
        for start, end in _chunks(s_rows.shape[0], options.chunk_size):
            student, teacher = _chunk_logits(s_rows, s_weight, s_bias, t_rows, t_weight, t_bias, start, end)
            div, ce = torch.ops.fastmask.distill_chunk(
                student, teacher, labels[start:end], scale.expand(end - start), *options.kernel(True))
            del teacher
            total = total + div.sum() + options.hard_weight * ce.sum()
            grads.add(student, s_rows[start:end], s_weight, start, end)  # student: scale * dloss/dlogits
            del student
        ctx.save_for_backward(*grads.result(s_weight, s_bias))
        ctx.backend = options.backend
        return total * scale

    @staticmethod
    def backward(ctx, grad_loss):
        grads = []
        for grad in ctx.saved_tensors:
            if grad is not None:
                torch.ops.fastmask.scale_grad(grad.reshape(1, -1) if grad.dim() == 1 else grad, grad_loss, ctx.backend)
            grads.append(grad)
        return (*grads, None, None, None, None, None, None)


class RowDistillation(torch.autograd.Function):
    """Per-row div_i + hard_weight ce_i [R]; backward recomputes each chunk's two heads."""

    @staticmethod
    def forward(ctx, s_rows, s_weight, s_bias, t_rows, t_weight, t_bias, labels, options: Options):
        losses = []
        no_scale = s_rows.new_zeros((), dtype=accumulation_dtype(s_rows))
        for start, end in _chunks(s_rows.shape[0], options.chunk_size):
            student, teacher = _chunk_logits(s_rows, s_weight, s_bias, t_rows, t_weight, t_bias, start, end)
            div, ce = torch.ops.fastmask.distill_chunk(
                student, teacher, labels[start:end], no_scale.expand(end - start), *options.kernel(False))
            losses.append(div + options.hard_weight * ce)
        ctx.save_for_backward(s_rows, s_weight, s_bias, t_rows, t_weight, t_bias, labels)
        ctx.options = options
        return torch.cat(losses) if losses else no_scale.expand(0).clone()

    @staticmethod
    def backward(ctx, grad_rows):
        s_rows, s_weight, s_bias, t_rows, t_weight, t_bias, labels = ctx.saved_tensors
        options = ctx.options
        grads = _Student(s_rows, s_weight, s_bias, ctx.needs_input_grad[:3])
        for start, end in _chunks(s_rows.shape[0], options.chunk_size):
            student, teacher = _chunk_logits(s_rows, s_weight, s_bias, t_rows, t_weight, t_bias, start, end)
            torch.ops.fastmask.distill_chunk(student, teacher, labels[start:end], grad_rows[start:end], *options.kernel(True))
            del teacher
            grads.add(student, s_rows[start:end], s_weight, start, end)
            del student
        return (*grads.result(s_weight, s_bias), None, None, None, None, None)


def _check_head(prefix, hidden, weight, bias, labels_shape, device):
    """hidden [..., D], weight [V, D], bias [V] of one model; returns (D, V)."""
    check_tensor(f"{prefix}_hidden", hidden, dtypes=_FLOATS, ndim=hidden.dim() if hidden.dim() in (2, 3) else 2)
    check_tensor(f"{prefix}_weight", weight, dtypes=(hidden.dtype,), ndim=2)
    dim, vocab = hidden.shape[-1], weight.shape[0]
    if hidden.shape[:-1] != labels_shape or hidden.device != device:
        raise ValueError(f"{prefix}_hidden: expected shape {tuple(labels_shape)} + [D] on {device} to match labels, "
                         f"got {tuple(hidden.shape)} on {hidden.device}")
    if weight.shape[1] != dim or weight.device != device or vocab == 0:
        raise ValueError(f"{prefix}_weight: expected [V >= 1, {dim}] on {device} to match {prefix}_hidden, "
                         f"got {tuple(weight.shape)} on {weight.device}")
    if bias is not None:
        check_tensor(f"{prefix}_bias", bias, dtypes=(hidden.dtype,), ndim=1)
        if bias.shape[0] != vocab or bias.device != device:
            raise ValueError(f"{prefix}_bias: expected [{vocab}] on {device} to match {prefix}_weight, "
                             f"got {tuple(bias.shape)} on {bias.device}")
    return dim, vocab


def _autocast(tensors, device):
    """Under autocast the heads run in its dtype (as nn.Linear would), then with autocast off, so
    that the chunks' matmuls keep that dtype; the loss stays in fp32. (inputs, context to run in)."""
    if not torch.amp.is_autocast_available(device.type):  # e.g. meta
        return tensors, contextlib.nullcontext()
    dtype = autocast_dtype(device)
    if dtype is not None:
        tensors = [None if t is None else t.to(dtype) for t in tensors]
    return tensors, torch.autocast(device.type, enabled=False)


def masked_distillation_loss(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    student_bias: Optional[torch.Tensor] = None,
    teacher_bias: Optional[torch.Tensor] = None,
    temperature: float = 1.0,
    divergence: str = "kl",
    jsd_beta: float = 0.5,
    hard_weight: float = 0.0,
    positions: Optional[torch.Tensor] = None,
    max_rows: Optional[int] = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    process_group=None,
    chunk_size: Optional[int] = None,
    backend: str = "auto",
):
    """Distillation of a student's masked-LM head from a teacher's, on the predicted rows only:
    T^2 D(teacher, student) at temperature T + hard_weight * masked-LM cross-entropy (at T = 1),
    both heads computed only on the selected rows, without ever holding [rows, V] logits whole.

    student_hidden [B, L, Ds] or [N, Ds], student_weight [V, Ds], student_bias [V]; the teacher's
    likewise with its own width Dt (same V); labels [B, L] or [N]. divergence: "kl" = KL(teacher ||
    student) (DistilBERT's, Hinton's), "reverse_kl" = KL(student || teacher), "jsd" = the generalized
    Jensen-Shannon divergence with weight jsd_beta on the teacher (Liger's: 0 gives "kl", 1
    "reverse_kl"). Rows: `positions`, `max_rows` or every labelled row, exactly as masked_lm_loss
    selects them; a row counts when its label is not ignore_index, also for the divergence.
    "mean" divides by the number of counted rows (0 rows give 0), "sum" does not, "none" returns
    each row's loss in the selection's shape. Gradients reach the student's hidden, weight and bias;
    the teacher gets none. docs/distillation.md has the definitions and a Trainer recipe.
    """
    check_backend(backend)
    if process_group is not None:
        raise NotImplementedError("process_group: vocab-parallel distillation is not implemented yet; pass None "
                                  "(each rank holding the whole vocabulary)")
    check_tensor("labels", labels, dtypes=_INT_IDS, ndim=labels.dim() if labels.dim() in (1, 2) else 1)
    device = labels.device
    s_dim, vocab = _check_head("student", student_hidden, student_weight, student_bias, labels.shape, device)
    t_dim, t_vocab = _check_head("teacher", teacher_hidden, teacher_weight, teacher_bias, labels.shape, device)
    if t_vocab != vocab:
        raise ValueError(f"teacher_weight: expected the student's vocabulary of {vocab}, got {t_vocab} rows")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence: expected one of {', '.join(DIVERGENCES)}, got {divergence!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
    temperature = _check_float("temperature", temperature, 0.0, float("inf"), low_open=True, high_open=True)
    beta = _check_float("jsd_beta", jsd_beta, 0.0, 1.0)
    hard_weight = _check_float("hard_weight", hard_weight, 0.0, float("inf"), high_open=True)
    ignore_index = check_int("ignore_index", ignore_index, -(1 << 63), 1 << 63)
    code = DIVERGENCES[divergence]
    if code == JSD and beta in (0.0, 1.0):  # the limits, as Liger defines them
        code = KL if beta == 0.0 else REVERSE_KL
    chunk_size = default_chunk_size(vocab, device, _CHUNK_LOGITS) if chunk_size is None else check_int("chunk_size", chunk_size, 1, _MAX_LENGTH)
    if max_rows is not None:
        max_rows = check_int("max_rows", max_rows, 1, _MAX_LENGTH)

    flat_labels = labels.reshape(-1)
    static = device.type != "cpu" or torch.compiler.is_compiling() or reduction == "none"
    host_checks = device.type == "cpu" and not torch.compiler.is_compiling()
    if host_checks:
        _check_labels(flat_labels, ignore_index, vocab)
    index, _ = _lm_rows(flat_labels, labels.shape, positions, max_rows, ignore_index, False, static, host_checks)
    safe = index.clamp(min=0)
    row_labels = torch.where(index >= 0, _gather_rows(flat_labels, safe), ignore_index)
    s_rows = _gather_rows(student_hidden.reshape(-1, s_dim), safe)
    t_rows = _gather_rows(teacher_hidden.detach().reshape(-1, t_dim), safe)
    teacher = [t_rows, teacher_weight.detach(), None if teacher_bias is None else teacher_bias.detach()]
    (s_rows, s_weight, s_bias, *teacher), no_autocast = _autocast([s_rows, student_weight, student_bias, *teacher], device)

    options = Options(temperature, code, beta, hard_weight, ignore_index, backend, chunk_size)
    counted = kept_rows(row_labels, ignore_index, vocab).sum(dtype=accumulation_dtype(s_rows))
    with no_autocast:
        if reduction == "none":
            loss = RowDistillation.apply(s_rows, s_weight, s_bias, *teacher, row_labels, options)
            return _lm_output_rows(loss, labels, positions, max_rows, False)
        scale = 1 / torch.where(counted > 0, counted, 1) if reduction == "mean" else torch.ones_like(counted)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (s_rows, s_weight, s_bias)):
            return SummedDistillation.apply(s_rows, s_weight, s_bias, *teacher, row_labels, scale, options)
        return RowDistillation.apply(s_rows, s_weight, s_bias, *teacher, row_labels, options).sum() * scale
