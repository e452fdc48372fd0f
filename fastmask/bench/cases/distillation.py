"""Family "distillation": fastmask.masked_distillation_loss (a student's and a teacher's LM heads and
KL(teacher || student) at T = 2 with the masked-LM cross-entropy beside it, on the predicted rows
only), forward + backward through the student's hidden, weight and bias, against torch.

BERT-base sizes for both models (DistilBERT's student and teacher share D = 768): hidden [B, L, 768],
weights [30522, 768], 15% of positions labelled. Peers, same inputs, same process:
- "dense recipe": both heads on every row (the teacher's under no_grad), the labelled rows selected,
  F.kl_div(log_target=True) * T^2 as HF's distillation example writes it, plus hard_weight * the
  cross-entropy; the baseline;
- "torch gathered rows": the same recipe in plain torch on the labelled rows gathered first (the
  heads see only those rows).
Peak memory and workspace (the peak above the student's three gradients, which every provider
returns) are recorded for each. Work units are labelled rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import fastmask

from . import Case

CPU_SHAPES = [(8, 512, 768, 30522)]
QUICK_CPU_SHAPES = [(1, 512, 768, 30522)]
CUDA_SHAPES = [(32, 512, 768, 30522)]
LABELLED = 0.15
CAPACITY = 0.20  # max_rows as a fraction of B * L on CUDA: a static shape, many sigmas above 15%
TEMPERATURE = 2.0
HARD_WEIGHT = 0.4  # DistilBERT's alpha_mlm / alpha_ce = 2 / 5


def cases(device: str, quick: bool) -> list[Case]:
    if device.startswith("cuda"):
        return [_case(device, *shape, torch.bfloat16) for shape in CUDA_SHAPES]
    return [_case(device, *shape, torch.float32) for shape in (QUICK_CPU_SHAPES if quick else CPU_SHAPES)]


def make_inputs(batch: int, length: int, dim: int, vocab: int, dtype: torch.dtype, device: str):
    generator = torch.Generator().manual_seed(batch * length + vocab + 1)
    tensors = [torch.randn(batch, length, dim, generator=generator), 0.05 * torch.randn(vocab, dim, generator=generator),
               torch.zeros(vocab), torch.randn(batch, length, dim, generator=generator),
               0.05 * torch.randn(vocab, dim, generator=generator), torch.zeros(vocab)]
    labels = torch.randint(0, vocab, (batch, length), generator=generator)
    labels[torch.rand(batch, length, generator=generator) >= LABELLED] = -100
    return [t.to(dtype).to(device) for t in tensors] + [labels.to(device)]


def _losses(student, teacher, labels):
    kl = F.kl_div(F.log_softmax(student.float() / TEMPERATURE, -1), F.log_softmax(teacher.float() / TEMPERATURE, -1),
                  reduction="batchmean", log_target=True)
    return kl * TEMPERATURE**2 + HARD_WEIGHT * F.cross_entropy(student.float(), labels)


def dense(sh, sw, sb, th, tw, tb, labels):
    student = F.linear(sh, sw, sb)
    with torch.no_grad():
        teacher = F.linear(th, tw, tb)
    kept = labels != -100
    return _losses(student[kept], teacher[kept], labels[kept])


def gathered(sh, sw, sb, th, tw, tb, labels):
    kept = labels != -100
    with torch.no_grad():
        teacher = F.linear(th[kept], tw, tb)
    return _losses(F.linear(sh[kept], sw, sb), teacher, labels[kept])


def _step(loss_fn, sh, sw, sb, th, tw, tb, labels):
    leaves = [t.detach().requires_grad_(True) for t in (sh, sw, sb)]

    def step():
        for leaf in leaves:
            leaf.grad = None
        loss = loss_fn(*leaves, th, tw, tb, labels)
        loss.backward()
        return loss

    return step


def _case(device: str, batch: int, length: int, dim: int, vocab: int, dtype: torch.dtype) -> Case:
    inputs = make_inputs(batch, length, dim, vocab, dtype, device)
    labelled = int((inputs[6] != -100).sum())
    options = dict(temperature=TEMPERATURE, hard_weight=HARD_WEIGHT)
    if device.startswith("cuda"):
        options["max_rows"] = int(CAPACITY * batch * length)

    def fused(sh, sw, sb, th, tw, tb, labels):
        return fastmask.masked_distillation_loss(sh, sw, th, tw, labels, student_bias=sb, teacher_bias=tb, **options)

    providers = {"dense recipe": _step(dense, *inputs), "torch gathered rows": _step(gathered, *inputs),
                 "fastmask-triton" if device.startswith("cuda") else "fastmask-cpp": _step(fused, *inputs)}
    return Case("distillation", "kl+mlm/fwd+bwd", f"{batch}x{length}x{dim}x{vocab}", providers, "dense recipe",
                labelled, "rows", repeats=3 if device == "cpu" else 25, memory=True,
                memory_floor=sum(t.numel() * t.element_size() for t in inputs[:3]))  # the student's three gradients
