"""Distillation of one chunk of rows (docs/distillation.md), in torch ops: the specification of the kernels.

For a row with student logits s, teacher logits t, label y, temperature T, in fp32 (fp64 stays fp64):

    lq = log_softmax(s / T)   (the student, q)     lp = log_softmax(t / T)   (the teacher, p)
    KL          D = sum_c p_c (lp_c - lq_c)                         KL(teacher || student)
    REVERSE_KL  D = sum_c q_c (lq_c - lp_c)                         KL(student || teacher)
    JSD         lm = log(beta p + (1 - beta) q),  0 < beta < 1
                D = beta sum_c p_c (lp_c - lm_c) + (1 - beta) sum_c q_c (lq_c - lm_c)
    divergence = T^2 D,   ce = logsumexp(s) - s_y   (the hard loss, at temperature 1)

A row whose label is ignore_index (or outside [0, V)) gives 0 and 0, and a zero gradient; ce is 0
where hard_weight is 0 (not computed). With
write_grad, the student logits are overwritten with d(sum_i grad_scale_i (divergence_i +
hard_weight ce_i)) / d s; the teacher gets no gradient.
"""
from __future__ import annotations

import math

import torch

from .cross_entropy import accumulation_dtype, kept_rows

KL, REVERSE_KL, JSD = 0, 1, 2


def distill_chunk(student, teacher, labels, grad_scale, temperature, divergence, beta, hard_weight, ignore_index, write_grad):
    """(divergence [R], ce [R]); with write_grad the student logits now hold the gradient:
    T^2 dD/ds = T dD/dz (z = s / T), with dD/dz = q - p (KL), q (r - D) with r = lq - lp (reverse KL),
    q (g - sum_c q_c g_c) with g = (1 - beta)(lq - lm) (JSD); d ce/ds = softmax(s) - onehot(y)."""
    acc = accumulation_dtype(student)
    n, vocab = student.shape
    s, t = student.to(acc), teacher.to(acc)
    lq = torch.log_softmax(s / temperature, dim=1)
    lp = torch.log_softmax(t / temperature, dim=1)
    p, q = lp.exp(), lq.exp()
    if divergence == KL:
        d = (p * (lp - lq)).sum(1)
    elif divergence == REVERSE_KL:
        d = (q * (lq - lp)).sum(1)
    else:
        lm = torch.logaddexp(lp + math.log(beta), lq + math.log1p(-beta))  # finite where p and q underflow
        d = beta * (p * (lp - lm)).sum(1) + (1 - beta) * (q * (lq - lm)).sum(1)
    kept = kept_rows(labels, ignore_index, vocab)
    target = torch.where(kept, labels, 0).to(torch.int64).unsqueeze(1)
    lse = torch.logsumexp(s, dim=1)
    ce = lse - s.gather(1, target).squeeze(1)
    zero = torch.zeros((), dtype=acc, device=s.device)
    if write_grad:
        if divergence == KL:
            dz = q - p
        elif divergence == REVERSE_KL:
            dz = q * (lq - lp - d.unsqueeze(1))
        else:
            g = (1 - beta) * (lq - lm)
            dz = q * (g - (q * g).sum(1, keepdim=True))
        dce = torch.exp(s - lse.unsqueeze(1)).scatter_add_(1, target, torch.full_like(lse, -1.0).unsqueeze(1))
        grad = (temperature * dz + hard_weight * dce) * grad_scale.to(acc).unsqueeze(1)
        student.copy_(torch.where(kept.unsqueeze(1), grad, 0))  # ignored rows: 0, even where the row overflowed
    return torch.where(kept, temperature * temperature * d, zero), torch.where(kept & (hard_weight > 0), ce, zero)
