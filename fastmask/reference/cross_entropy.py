"""Masked cross-entropy per row (docs/loss.md), in torch ops: the specification of the kernels.

For a row with label y (not ignore_index), logits x in fp32 (fp64 stays fp64), class weights w
(all ones without `weight`), smoothing e, z-loss coefficient zc and softcap s:

    z    = s * tanh(x / s)            (z = x without softcap)
    lse  = log(sum_c exp(z_c))
    loss = (1 - e) * w_y * (lse - z_y) + (e / V) * sum_c w_c * (lse - z_c) + zc * lse^2
    rows' weight (for "mean") = w_y

An ignored row has loss 0, lse 0 and weight 0, and its gradient is 0. So has a row whose label is
outside [0, V) (only reachable on a GPU without validate=True: CPU paths raise).
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


def backward(logits, labels, weight, lse, grad_rows, ignore_index, label_smoothing, z_loss, softcap):
    """d(sum_i grad_rows[i] * loss_i) / d logits, in logits' dtype."""
    n, vocab = logits.shape
    acc = accumulation_dtype(logits)
    kept = kept_rows(labels, ignore_index, vocab)
    target = torch.where(kept, labels, 0).to(torch.int64)
    x = logits.to(acc)
    z = _capped(x, softcap)
    p = torch.exp(z - lse.to(acc).unsqueeze(1))
    w = torch.ones(vocab, dtype=acc, device=logits.device) if weight is None else weight.to(acc)
    w_target = w[target].unsqueeze(1)
    coefficient = (1 - label_smoothing) * w_target + (label_smoothing / vocab) * w.sum() + 2 * z_loss * lse.to(acc).unsqueeze(1)
    grad = p * coefficient - (label_smoothing / vocab) * w
    grad.scatter_add_(1, target.unsqueeze(1), -(1 - label_smoothing) * w_target)
    if softcap > 0:
        grad = grad * (1 - (z / softcap) ** 2)
    grad = torch.where(kept.unsqueeze(1), grad * grad_rows.to(acc).unsqueeze(1), 0)  # ignored rows: 0, even if p overflowed
    return grad.to(logits.dtype)


def forward_inplace(logits, labels, weight, grad_scale, ignore_index, label_smoothing, z_loss, softcap):
    loss, lse = forward(logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap)
    grad_rows = grad_scale.to(loss.dtype).expand(logits.shape[0])
    logits.copy_(backward(logits, labels, weight, lse, grad_rows, ignore_index, label_smoothing, z_loss, softcap))
    return loss, lse


def scale_grad(grad, scale):
    grad.mul_(scale.reshape(-1, 1) if scale.dim() == 1 else scale)
