"""The LM head and its cross-entropy over a few gathered rows, chunked over rows so the [rows, V]
logits never exist whole (docs/lm_loss.md). Built on torch's BLAS (torch.mm/addmm) and the
cross-entropy ops of _library; the functional layer (masked_lm_loss) chooses rows and reduction.

Two autograd paths:
- a summed loss (reduction "mean"/"sum"): the forward computes the gradients as well, one chunk at
  a time (logits -> in-place CE gradient -> grad_hidden and grad_weight), so the backward only
  rescales them by the upstream gradient, on the device and only where it is not 1: 3 matmuls in all;
- per-row losses (reduction "none"), or no gradient wanted: the forward keeps the log-sum-exp, the
  backward recomputes each chunk's logits: 4 matmuls.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .reference.cross_entropy import accumulation_dtype

# Rows per chunk, by default: about 2^22 logits (16 MiB in fp32) per chunk on a CPU, 2^26 on a GPU
# (whose matmuls need many rows to reach peak: 2^24 gave 128-row chunks at V = 128256, measured slow), at least 16 rows; a power of two. Large enough that
# each matmul runs near the BLAS's peak, small enough to stay a fraction of the [V, D] weight
# gradient that the loss returns anyway.
_CHUNK_LOGITS = {"cpu": 1 << 22, "cuda": 1 << 26}
_MIN_CHUNK = 16


def default_chunk_size(vocab: int, device: torch.device, logits: dict = _CHUNK_LOGITS) -> int:
    """Rows per chunk for `logits` logits per chunk on `device`'s type (at least _MIN_CHUNK, a power of two)."""
    rows = max(_MIN_CHUNK, logits.get(device.type, logits["cpu"]) // max(vocab, 1))
    return 1 << (rows.bit_length() - 1)


class HeadOptions(NamedTuple):
    """The cross-entropy options (as the ce ops take them), the chunk size, and whether to return each
    row's argmax (the predicted id; ignore_index for ignored rows)."""

    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: float
    backend: str
    chunk_size: int
    predict: bool = False

    @property
    def ce(self) -> tuple:
        return self.ignore_index, self.label_smoothing, self.z_loss, self.softcap, self.backend


def _logits(rows: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    if bias is None:
        return torch.mm(rows, weight.t())
    return torch.addmm(bias, rows, weight.t())


def _chunks(total: int, size: int):
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def _predicted(logits: torch.Tensor, labels: torch.Tensor, options: HeadOptions) -> torch.Tensor:
    """A chunk's argmax per labelled row (the first on ties), ignore_index where the row is ignored."""
    return torch.ops.fastmask.ce_argmax(logits, labels, options.ignore_index, options.backend)


def _outputs(rows: torch.Tensor, lses: list, predictions: list, options: HeadOptions):
    acc = accumulation_dtype(rows)
    lse = torch.cat(lses) if lses else rows.new_zeros(0, dtype=acc)
    if not options.predict:
        return lse, rows.new_zeros(0, dtype=torch.int64)
    return lse, torch.cat(predictions) if predictions else rows.new_zeros(0, dtype=torch.int64)


def _backprop_chunk(grad_logits, chunk, weight, grad_rows, grad_weight, grad_bias, start: int, end: int) -> None:
    """One chunk's share of the three gradients (each None when not wanted): rows' into their slice,
    weight's and bias' accumulated in the accumulation dtype."""
    if grad_rows is not None:
        torch.mm(grad_logits, weight, out=grad_rows[start:end])
    if grad_weight is not None:
        if grad_logits.dtype == grad_weight.dtype:
            grad_weight.addmm_(grad_logits.t(), chunk)
        else:  # bf16/fp16: the product in that dtype (tensor cores, fp32 inside), the sum over chunks in fp32
            grad_weight.add_(torch.mm(grad_logits.t(), chunk))
    if grad_bias is not None:
        grad_bias.add_(grad_logits.sum(0, dtype=grad_bias.dtype))


class SummedHeadLoss(torch.autograd.Function):
    """(scale * sum_i loss_i, lse [R], predicted ids [R] or [0] without options.predict) over rows h [R, D];
    gradients computed in the forward for an upstream gradient of 1, rescaled in backward."""

    @staticmethod
    def forward(ctx, rows, weight, bias, labels, scale, options: HeadOptions):
        want_rows, want_weight, want_bias = ctx.needs_input_grad[:3]
        acc = accumulation_dtype(rows)
        total = rows.new_zeros((), dtype=acc)
        grad_rows = torch.empty_like(rows) if want_rows else None
        # Summed over chunks in the accumulation dtype: fp16/bf16 sums of many chunks lose bits.
        grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if want_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=acc, device=bias.device) if want_bias else None
        grad_scale = scale.to(acc).reshape(1).expand(2)  # the same scale for the z-loss: no class weights here
        lses, predictions = [], []
        for start, end in _chunks(rows.shape[0], options.chunk_size):
            chunk = rows[start:end]
            logits = _logits(chunk, weight, bias)
            if options.predict:  # before the logits turn into their gradient
                predictions.append(_predicted(logits, labels[start:end], options))
            loss, lse = torch.ops.fastmask.ce_forward_inplace(logits, labels[start:end], None, grad_scale, *options.ce)
            total = total + loss.sum()
            lses.append(lse)
            # logits now hold scale * dloss/dlogits
            _backprop_chunk(logits, chunk, weight, grad_rows, grad_weight, grad_bias, start, end)
            del logits  # before the next chunk's logits exist
        saved = [g if g is None else g.to(dtype) for g, dtype in
                 ((grad_rows, rows.dtype), (grad_weight, weight.dtype), (grad_bias, None if bias is None else bias.dtype))]
        ctx.save_for_backward(*saved)
        ctx.backend = options.backend
        lse, predicted = _outputs(rows, lses, predictions, options)
        ctx.mark_non_differentiable(lse, predicted)
        return total * scale, lse, predicted

    @staticmethod
    def backward(ctx, grad_loss, grad_lse, grad_predicted):
        grads = []
        for grad in ctx.saved_tensors:
            if grad is not None:
                flat = grad.reshape(1, -1) if grad.dim() == 1 else grad
                torch.ops.fastmask.scale_grad(flat, grad_loss, ctx.backend)
            grads.append(grad)
        return grads[0], grads[1], grads[2], None, None, None


class RowHeadLoss(torch.autograd.Function):
    """(per-row losses [R], lse [R], predicted ids [R] or [0]); both the losses and the lse are
    differentiable: backward recomputes each chunk's logits from the saved log-sum-exp."""

    @staticmethod
    def forward(ctx, rows, weight, bias, labels, options: HeadOptions):
        losses, lses, predictions = [], [], []
        for start, end in _chunks(rows.shape[0], options.chunk_size):
            logits = _logits(rows[start:end], weight, bias)
            if options.predict:
                predictions.append(_predicted(logits, labels[start:end], options))
            loss, lse = torch.ops.fastmask.ce_forward(logits, labels[start:end], None, *options.ce)
            losses.append(loss)
            lses.append(lse)
            del logits
        lse, predicted = _outputs(rows, lses, predictions, options)
        loss = torch.cat(losses) if losses else torch.zeros_like(lse)
        ctx.save_for_backward(rows, weight, bias, labels, lse)
        ctx.options = options
        ctx.mark_non_differentiable(predicted)
        return loss, lse, predicted

    @staticmethod
    def backward(ctx, grad_loss, grad_lse, grad_predicted):
        rows, weight, bias, labels, lse = ctx.saved_tensors
        options = ctx.options
        want_rows, want_weight, want_bias = ctx.needs_input_grad[:3]
        acc = accumulation_dtype(rows)
        grad_rows = torch.empty_like(rows) if want_rows else None
        grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if want_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=acc, device=bias.device) if want_bias else None
        for start, end in _chunks(rows.shape[0], options.chunk_size):
            chunk = rows[start:end]
            grad_logits = torch.ops.fastmask.ce_backward(
                _logits(chunk, weight, bias), labels[start:end], None, lse[start:end], grad_loss[start:end],
                None if grad_lse is None else grad_lse[start:end], *options.ce)
            _backprop_chunk(grad_logits, chunk, weight, grad_rows, grad_weight, grad_bias, start, end)
            del grad_logits
        return (grad_rows, None if grad_weight is None else grad_weight.to(weight.dtype),
                None if grad_bias is None else grad_bias.to(bias.dtype), None, None)


class FusedHeadLoss(torch.autograd.Function):
    """(losses [R] fp32, lse [R], predicted ids [R]) from the fused Triton head: logit tiles live only
    in the kernel's registers; the backward recomputes them (4 matmul-equivalents, as Cut
    Cross-Entropy). Only the losses are differentiable."""

    @staticmethod
    def forward(ctx, rows, weight, bias, labels, options: HeadOptions, filter_eps: float):
        ignore_index, label_smoothing, z_loss, softcap, _ = options.ce
        loss, lse, predicted = torch.ops.fastmask.lm_head_fused_forward(
            rows, weight, bias, labels, ignore_index, label_smoothing, z_loss, softcap)
        kept = (labels != ignore_index) & (labels >= 0) & (labels < weight.shape[0])
        predicted = torch.where(kept, predicted, ignore_index)  # as RowHeadLoss's
        ctx.save_for_backward(rows, weight, bias, labels, lse)
        ctx.options, ctx.filter_eps = options, filter_eps
        ctx.mark_non_differentiable(lse, predicted)
        return loss, lse, predicted

    @staticmethod
    def backward(ctx, grad_loss, _grad_lse, _grad_predicted):
        rows, weight, bias, labels, lse = ctx.saved_tensors
        ignore_index, label_smoothing, z_loss, softcap, _ = ctx.options.ce
        grad_rows, grad_weight, grad_bias = torch.ops.fastmask.lm_head_fused_backward(
            rows, weight, bias, labels, lse, grad_loss.contiguous(), ignore_index, label_smoothing, z_loss, softcap,
            ctx.filter_eps, *ctx.needs_input_grad[:3])
        wanted = ctx.needs_input_grad
        return (grad_rows if wanted[0] else None, grad_weight if wanted[1] else None,
                grad_bias if wanted[2] and bias is not None else None, None, None, None)
