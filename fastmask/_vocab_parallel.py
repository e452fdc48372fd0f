"""Vocabulary-parallel cross-entropy over a torch.distributed process group (docs/distributed.md).

Each rank holds a contiguous shard of the vocabulary: the logits [N, V_r] of masked_cross_entropy,
or the weight rows [V_r, D] (and bias) of masked_lm_loss's head; shards may be uneven and are in
rank order. The kernels stay single-device: on its shard a rank computes per row the log-sum-exp
(the ce kernel's own output), the label's logit where the label falls in the shard, the sum of the
logits (label smoothing) and the largest logit with its index (accuracy); the functional layer
combines them with all_reduce (one MAX, one SUM; one MAX and one MIN more for accuracy), as
flash-attn's and Megatron's vocab-parallel losses do. The backward stays local to the shard: the
ce backward kernel with the combined lse, then a correction of N values where its target term does
not belong (the label is on another rank, or the smoothing share differs). The LM head's hidden
gradient is a sum over shards: all-reduced in its backward, as Megatron's copy-to-region does.
Nothing is read back to the host but the shard sizes, once per (group, shard size).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist

from .reference.cross_entropy import _capped, accumulation_dtype

_IGNORED = -1  # the kernels' ignore_index here: localized labels are >= 0
_layouts: dict = {}


def check_group(group, *, weight=None, inplace_backward=False) -> None:
    # A ProcessGroup, or a backend's own group object (dist.ProcessGroupGloo(store, rank, size)): both
    # have rank() and size() and go to the collectives as group=.
    if not (dist.is_available() and callable(getattr(group, "rank", None)) and callable(getattr(group, "size", None))):
        raise ValueError(f"process_group: expected a torch.distributed.ProcessGroup, got {type(group).__name__}")
    if weight is not None:
        raise ValueError("weight: class weights are not supported with process_group")
    if inplace_backward:
        raise ValueError("inplace_backward: not supported with process_group (the gradient needs the all-reduced log-sum-exp)")


def layout(local_vocab: int, group, device) -> tuple[int, int]:
    """(this rank's first vocabulary id, the whole vocabulary): an all_gather of the shard sizes, once
    per (group, shard size), then cached."""
    key = (id(group), local_vocab)
    if key not in _layouts:
        sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(group.size())]
        dist.all_gather(sizes, torch.tensor([local_vocab], dtype=torch.int64, device=device), group=group)
        sizes = [int(s) for s in sizes]
        rank = group.rank()
        _layouts[key] = (sum(sizes[:rank]), sum(sizes))
    return _layouts[key]


class _Shard(NamedTuple):
    """The labels of N rows seen from one shard [offset, offset + V_r): whether a row is labelled, whether
    its label is on this shard, its local column (0 off the shard: a valid column for every row), and
    the labels the kernels get (_IGNORED for ignored rows)."""

    kept: torch.Tensor
    here: torch.Tensor
    local: torch.Tensor
    kernel_labels: torch.Tensor

    @classmethod
    def of(cls, labels, ignore_index, offset, local_vocab):
        kept = labels != ignore_index
        local = labels - offset
        here = kept & (local >= 0) & (local < local_vocab)
        local = torch.where(here, local, 0)
        return cls(kept, here, local, torch.where(kept, local, _IGNORED))

    def rows(self, start, end):
        return _Shard(*(t[start:end] for t in self))


def _all_reduce(tensor, op, group):
    dist.all_reduce(tensor, op=op, group=group)
    return tensor


def shard_stats(logits, shard: _Shard, softcap, smoothing, backend):
    """Per row on this shard: lse, the label's z (0 off the shard), sum of z (smoothing only)."""
    acc = accumulation_dtype(logits)
    _, lse = torch.ops.fastmask.ce_forward(logits, shard.kernel_labels, None, _IGNORED, 0.0, 0.0, softcap, backend)
    z_label = _capped(logits.gather(1, shard.local.unsqueeze(1)).squeeze(1).to(acc), softcap)
    z_label = torch.where(shard.here, z_label, 0)
    z_sum = _capped(logits.to(acc), softcap).sum(1) if smoothing else torch.zeros_like(lse)
    return lse, z_label, z_sum


def combine(lse, z_label, z_sum, kept, ce, vocab, group):
    """(loss [N], lse [N]) over the whole vocabulary from every shard's partials."""
    ignore_index, smoothing, z_loss, softcap, backend = ce
    top = _all_reduce(torch.where(kept, lse, -torch.inf), dist.ReduceOp.MAX, group)
    top = torch.where(top == -torch.inf, 0, top)  # ignored rows (and all -inf rows): no NaN from -inf - -inf
    sums = _all_reduce(torch.stack([torch.exp(lse - top), z_label, z_sum]), dist.ReduceOp.SUM, group)
    total_lse = torch.where(kept, top + torch.log(sums[0]), 0)
    loss = (1 - smoothing) * (total_lse - sums[1])
    if smoothing > 0:
        loss = loss + smoothing * total_lse - (smoothing / vocab) * sums[2]
    if z_loss > 0:
        loss = loss + z_loss * total_lse * total_lse
    return torch.where(kept, loss, 0), total_lse


def shard_grad(logits, shard: _Shard, lse, grad_rows, grad_lse, ce, vocab):
    """d(sum_i grad_rows[i] loss_i + grad_lse[i] lse_i) / d(this shard's logits), lse the combined one."""
    ignore_index, smoothing, z_loss, softcap, backend = ce
    local_vocab = logits.shape[1]
    acc = accumulation_dtype(logits)
    # The kernel's smoothing is e' / V_r per class; the whole vocabulary's is e / V. Its probability
    # coefficient (1 - e') + e' + 2 zc lse does not depend on e', so e' = e V_r / V gives both right.
    local_smoothing = smoothing * local_vocab / vocab
    grad = torch.ops.fastmask.ce_backward(logits, shard.kernel_labels, None, lse, grad_rows, grad_lse,
                                          _IGNORED, local_smoothing, z_loss, softcap, backend)
    # The kernel subtracted (1 - e') g at the row's local column; the row wants (1 - e) g there, or
    # nothing when its label is on another shard. Both through the softcap's factor at that column.
    upstream = grad_rows.to(acc).expand(logits.shape[0])
    correction = upstream * ((1 - local_smoothing) - (1 - smoothing) * shard.here.to(acc))
    if softcap > 0:
        z = _capped(logits.gather(1, shard.local.unsqueeze(1)).squeeze(1).to(acc), softcap)
        correction = correction * (1 - (z / softcap) ** 2)
    correction = torch.where(shard.kept, correction, 0)
    column = grad.gather(1, shard.local.unsqueeze(1)).to(acc) + correction.unsqueeze(1)
    return grad.scatter_(1, shard.local.unsqueeze(1), column.to(grad.dtype))  # grad is the kernel's fresh output


def argmax(logits, group):
    """Each row's argmax over the whole vocabulary (the first on ties), from every shard's."""
    offset, _ = layout(logits.shape[1], group, logits.device)
    value, index = logits.max(1) if logits.shape[0] > 0 else (logits.new_zeros(0), logits.new_zeros(0, dtype=torch.int64))
    return combine_argmax(value, index + offset, group)


def combine_argmax(value, index, group):
    value = value.to(accumulation_dtype(value))
    top = _all_reduce(value.clone(), dist.ReduceOp.MAX, group)
    candidate = torch.where(value == top, index, torch.iinfo(torch.int64).max)
    return _all_reduce(candidate, dist.ReduceOp.MIN, group)


class _CrossEntropy(torch.autograd.Function):
    """Per-row (loss, lse) of this rank's logits shard [N, V_r]; both differentiable."""

    @staticmethod
    def forward(ctx, logits, labels, ce, group):
        ignore_index, smoothing, z_loss, softcap, backend = ce
        offset, vocab = layout(logits.shape[1], group, logits.device)
        shard = _Shard.of(labels, ignore_index, offset, logits.shape[1])
        stats = shard_stats(logits, shard, softcap, smoothing > 0, backend)
        loss, lse = combine(*stats, shard.kept, ce, vocab, group)
        ctx.save_for_backward(logits, labels, lse)
        ctx.ce, ctx.vocab, ctx.offset = ce, vocab, offset
        return loss, lse

    @staticmethod
    def backward(ctx, grad_loss, grad_lse):
        logits, labels, lse = ctx.saved_tensors
        shard = _Shard.of(labels, ctx.ce[0], ctx.offset, logits.shape[1])
        return shard_grad(logits, shard, lse, grad_loss, grad_lse, ctx.ce, ctx.vocab), None, None, None


def cross_entropy_rows(logits, labels, ce, group):
    return _CrossEntropy.apply(logits, labels, ce, group)


class _HeadLoss(torch.autograd.Function):
    """Per-row (loss, lse, predicted ids or [0]) of hidden rows [R, D] against this rank's weight shard
    [V_r, D] (and bias [V_r]), chunked over rows; backward recomputes each chunk's logits."""

    @staticmethod
    def forward(ctx, rows, weight, bias, labels, options, group):
        from . import _lm_head

        ce = options.ce
        ignore_index, smoothing, z_loss, softcap, backend = ce
        offset, vocab = layout(weight.shape[0], group, rows.device)
        shard = _Shard.of(labels, ignore_index, offset, weight.shape[0])
        acc = accumulation_dtype(rows)
        parts, values, indices = [[rows.new_zeros(0, dtype=acc)] * 3], [], []
        for start, end in _lm_head._chunks(rows.shape[0], options.chunk_size):
            logits = _lm_head._logits(rows[start:end], weight, bias)
            parts.append(shard_stats(logits, shard.rows(start, end), softcap, smoothing > 0, backend))
            if options.predict:
                value, index = logits.max(1)
                values.append(value)
                indices.append(index + offset)
            del logits
        loss, lse = combine(*(torch.cat(s) for s in zip(*parts)), shard.kept, ce, vocab, group)
        predicted = rows.new_zeros(0, dtype=torch.int64)
        if options.predict:
            value = torch.cat(values) if values else rows.new_zeros(0)
            index = torch.cat(indices) if indices else predicted
            predicted = torch.where(shard.kept, combine_argmax(value, index, group), ignore_index)
        ctx.save_for_backward(rows, weight, bias, labels, lse)
        ctx.options, ctx.group, ctx.offset, ctx.vocab = options, group, offset, vocab
        ctx.mark_non_differentiable(predicted)
        return loss, lse, predicted

    @staticmethod
    def backward(ctx, grad_loss, grad_lse, grad_predicted):
        from . import _lm_head

        rows, weight, bias, labels, lse = ctx.saved_tensors
        options = ctx.options
        want_rows, want_weight, want_bias = ctx.needs_input_grad[:3]
        acc = accumulation_dtype(rows)
        shard = _Shard.of(labels, options.ignore_index, ctx.offset, weight.shape[0])
        grad_rows = torch.zeros_like(rows) if want_rows else None
        grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if want_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=acc, device=bias.device) if want_bias else None
        for start, end in _lm_head._chunks(rows.shape[0], options.chunk_size):
            chunk = rows[start:end]
            grad_logits = shard_grad(_lm_head._logits(chunk, weight, bias), shard.rows(start, end), lse[start:end], grad_loss[start:end],
                                     None if grad_lse is None else grad_lse[start:end], options.ce, ctx.vocab)
            _lm_head._backprop_chunk(grad_logits, chunk, weight, grad_rows, grad_weight, grad_bias, start, end)
            del grad_logits
        if grad_rows is not None:  # each shard's logits depend on the same hidden rows: their gradients add up
            _all_reduce(grad_rows, dist.ReduceOp.SUM, ctx.group)
        return (grad_rows, None if grad_weight is None else grad_weight.to(weight.dtype),
                None if grad_bias is None else grad_bias.to(bias.dtype), None, None, None)


def lm_head_rows(rows, weight, bias, labels, options, group):
    return _HeadLoss.apply(rows, weight, bias, labels, options, group)
