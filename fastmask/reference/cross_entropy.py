"""Masked cross-entropy per row (docs/loss.md), in torch ops: the specification of the kernels.

For a row with label y (not ignore_index), logits x in fp32 (fp64 stays fp64), class weights w
(all ones without `weight`), smoothing e, z-loss coefficient zc and softcap s:

    z    = s * tanh(x / s)            (z = x without softcap)
    lse  = log(sum_c exp(z_c))
    loss = (1 - e) * w_y * (lse - z_y) + (e / V) * sum_c w_c * (lse - z_c) + zc * lse^2
    rows' weight (for "mean") = w_y

An ignored row has loss 0, lse 0 and weight 0, and its gradient is 0. So has a row whose label is
outside [0, V) (only reachable on a GPU without validate=True: CPU paths raise). A labelled row with
a +inf or NaN z has lse NaN, hence loss and gradient NaN, as torch.nn.functional.cross_entropy.

The backward also takes an upstream gradient of each row's lse (grad_lse, None: 0): d lse / d z_c = p_c.
"""
from __future__ import annotations

import torch

from .._accumulation import accumulation_dtype, kept_rows  # noqa: F401 (re-exported: other backends import them from here)


def _capped(x: torch.Tensor, softcap: float) -> torch.Tensor:
    return softcap * torch.tanh(x / softcap) if softcap > 0 else x


def forward(logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap):
    """(loss [N], lse [N]) in the accumulation dtype."""
    n, vocab = logits.shape
    acc = accumulation_dtype(logits)
    kept = kept_rows(labels, ignore_index, vocab)
    target = torch.where(kept, labels, 0).to(torch.int64)
    z = _capped(logits.to(acc), softcap)
    lse = torch.logsumexp(z, dim=1) if vocab > 0 else torch.zeros(n, dtype=acc, device=logits.device)
    lse = torch.where(lse == float("inf"), float("nan"), lse)  # a +inf z: torch's log_softmax gives inf - inf
    z_target = z.gather(1, target.unsqueeze(1)).squeeze(1) if vocab > 0 else torch.zeros_like(lse)
    w = torch.ones(vocab, dtype=acc, device=logits.device) if weight is None else weight.to(acc)
    w_target = w[target] if vocab > 0 else torch.zeros_like(lse)
    loss = (1 - label_smoothing) * w_target * (lse - z_target)
    if label_smoothing > 0:
        loss = loss + (label_smoothing / vocab) * (w.sum() * lse - (z * w).sum(1))
    if z_loss > 0:
        loss = loss + z_loss * lse * lse
    zero = torch.zeros((), dtype=acc, device=logits.device)
    return torch.where(kept, loss, zero), torch.where(kept, lse, zero)


def backward(logits, labels, weight, lse, grad_rows, grad_lse, ignore_index, label_smoothing, z_loss, softcap):
    """d(sum_i grad_rows[i] * loss_i + grad_lse[i] * lse_i) / d logits, in logits' dtype (grad_lse None: 0)."""
    acc = accumulation_dtype(logits)
    lse = lse.to(acc)
    grad_rows = grad_rows.to(acc).expand(logits.shape[0])
    lse_rows = 2 * z_loss * grad_rows * lse + (0 if grad_lse is None else grad_lse.to(acc))  # z-loss: d(zc lse^2) = 2 zc lse d lse
    return _gradient(logits, labels, weight, lse, grad_rows, lse_rows, ignore_index, label_smoothing, softcap)


def forward_inplace(logits, labels, weight, grad_scale, ignore_index, label_smoothing, z_loss, softcap):
    """forward, and logits overwritten with the gradient of sum_i loss_i: its cross-entropy and smoothing
    terms times grad_scale[0], its z-loss term times grad_scale[1]."""
    loss, lse = forward(logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap)
    scale = grad_scale.to(loss.dtype)
    grad = _gradient(logits, labels, weight, lse, scale[0].expand(logits.shape[0]), 2 * z_loss * scale[1] * lse,
                     ignore_index, label_smoothing, softcap)
    logits.copy_(grad)
    return loss, lse


def _gradient(logits, labels, weight, lse, grad_rows, grad_lse, ignore_index, label_smoothing, softcap):
    """grad_rows[i] * d(cross-entropy and smoothing terms of row i) / d logits + grad_lse[i] * d lse_i / d logits."""
    n, vocab = logits.shape
    acc = accumulation_dtype(logits)
    kept = kept_rows(labels, ignore_index, vocab)
    target = torch.where(kept, labels, 0).to(torch.int64)
    z = _capped(logits.to(acc), softcap)
    p = torch.exp(z - lse.to(acc).unsqueeze(1))
    w = torch.ones(vocab, dtype=acc, device=logits.device) if weight is None else weight.to(acc)
    w_target = w[target].unsqueeze(1)
    rows = grad_rows.to(acc).unsqueeze(1)
    grad = p * (rows * ((1 - label_smoothing) * w_target + (label_smoothing / vocab) * w.sum()) + grad_lse.to(acc).reshape(-1, 1))
    grad = grad - rows * (label_smoothing / vocab) * w
    grad.scatter_add_(1, target.unsqueeze(1), -(1 - label_smoothing) * w_target * rows)
    if softcap > 0:
        grad = grad * (1 - (z / softcap) ** 2)
    grad = torch.where(kept.unsqueeze(1), grad, 0)  # ignored rows: 0, even if p overflowed
    return grad.to(logits.dtype)


def argmax(logits, labels, ignore_index):
    """Each labelled row's argmax (torch.argmax's: the first largest, NaN the largest), ignore_index for
    ignored rows."""
    predicted = logits.argmax(1) if logits.shape[0] > 0 else labels.new_zeros(0, dtype=torch.int64)
    return torch.where(labels != ignore_index, predicted, ignore_index)


def scale_grad(grad, scale):
    grad.mul_(scale.reshape(-1, 1) if scale.dim() == 1 else scale)
