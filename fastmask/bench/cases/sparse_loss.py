"""Family "sparse_loss": fastmask.masked_lm_loss (the MLM head on the predicted rows only), forward +
backward through hidden, weight and bias, against the dense head and torch's boolean-index path.

BERT-base's head: hidden [B, L, 768], tied weight [30522, 768], 15% of positions labelled. Peers,
same inputs, same process:
- "dense Linear+CE": F.linear on every row, then F.cross_entropy with ignore_index (what
  BertForMaskedLM does); the baseline;
- "torch boolean-index": hidden[labels != -100] first (MosaicBERT/ModernBERT's sparse head; a host
  sync and a data-dependent shape on a GPU);
- on CUDA also Liger-Kernel's fused linear cross-entropy and Cut Cross-Entropy, on every row as
  users call them (they skip ignored rows' loss but not their matmul), where importable.
fastmask runs with the labels compacted (CPU: exactly; CUDA: into max_rows = 20% of B*L, static),
on CUDA both as the chunked cuBLAS path (the default) and as the fused Triton head (impl="fused").
Peak memory is recorded for every provider, and its workspace: the peak above the three gradients
(the [V, D] weight gradient dominates) that every provider must return. Work units are labelled rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import fastmask

from . import Case

CPU_SHAPES = [(8, 512, 768, 30522)]
QUICK_CPU_SHAPES = [(1, 512, 768, 30522)]
CUDA_SHAPES = [(32, 512, 768, 30522), (8, 2048, 2048, 128256)]
LABELLED = 0.15
CAPACITY = 0.20  # max_rows as a fraction of B * L on CUDA: 15% labelled plus a margin of many sigmas


def cases(device: str, quick: bool) -> list[Case]:
    if device.startswith("cuda"):
        return [_case(device, *shape, torch.bfloat16) for shape in CUDA_SHAPES]
    return [_case(device, *shape, torch.float32) for shape in (QUICK_CPU_SHAPES if quick else CPU_SHAPES)]


def make_inputs(batch: int, length: int, dim: int, vocab: int, dtype: torch.dtype, device: str):
    generator = torch.Generator().manual_seed(batch * length + vocab)
    hidden = torch.randn(batch, length, dim, generator=generator).to(dtype).to(device)
    weight = (0.02 * torch.randn(vocab, dim, generator=generator)).to(dtype).to(device)
    bias = torch.zeros(vocab, dtype=dtype, device=device)
    labels = torch.randint(0, vocab, (batch, length), generator=generator)
    labels[torch.rand(batch, length, generator=generator) >= LABELLED] = -100
    return hidden, weight, bias, labels.to(device)


def _step(loss_fn, hidden, weight, bias, labels):
    leaves = [t.detach().requires_grad_(True) for t in (hidden, weight, bias)]

    def step():
        for leaf in leaves:
            leaf.grad = None
        loss = loss_fn(*leaves, labels)
        loss.backward()
        return loss

    return step


def dense(hidden, weight, bias, labels):
    logits = F.linear(hidden, weight, bias)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))


def boolean_index(hidden, weight, bias, labels):
    kept = labels != -100
    return F.cross_entropy(F.linear(hidden[kept], weight, bias).float(), labels[kept])


def _case(device: str, batch: int, length: int, dim: int, vocab: int, dtype: torch.dtype) -> Case:
    inputs = make_inputs(batch, length, dim, vocab, dtype, device)
    labelled = int((inputs[3] != -100).sum())
    providers = {"dense Linear+CE": _step(dense, *inputs), "torch boolean-index": _step(boolean_index, *inputs)}
    unavailable = {}
    if device.startswith("cuda"):
        max_rows = int(CAPACITY * batch * length)
        providers["fastmask-triton"] = _step(
            lambda h, w, b, y: fastmask.masked_lm_loss(h, w, y, bias=b, max_rows=max_rows), *inputs)
        providers["fastmask-triton fused"] = _step(
            lambda h, w, b, y: fastmask.masked_lm_loss(h, w, y, bias=b, max_rows=max_rows, impl="fused"), *inputs)
        _add_peers(providers, unavailable, inputs)
    else:
        providers["fastmask-cpp"] = _step(lambda h, w, b, y: fastmask.masked_lm_loss(h, w, y, bias=b), *inputs)
    return Case("sparse_loss", "mlm_head/fwd+bwd", f"{batch}x{length}x{dim}x{vocab}", providers, "dense Linear+CE",
                labelled, "rows", repeats=3 if device == "cpu" else 25, memory=True, unavailable=unavailable,
                memory_floor=sum(t.numel() * t.element_size() for t in inputs[:3]))  # the three gradients


def _add_peers(providers, unavailable, inputs) -> None:
    """Liger's and CCE's fused linear cross-entropy, over every row (their documented use)."""
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss()
        providers["liger fused linear CE"] = _step(
            lambda h, w, b, y: liger(w, h.reshape(-1, h.shape[-1]), y.reshape(-1), b), *inputs)
    except ImportError as error:
        unavailable["liger fused linear CE"] = f"liger_kernel not importable ({error})"
    try:
        from cut_cross_entropy import linear_cross_entropy

        # CCE takes no bias; the inputs' bias is zero, so the loss is the same.
        providers["cut cross-entropy"] = _step(lambda h, w, b, y: linear_cross_entropy(h, w, y), *inputs)
    except ImportError as error:
        unavailable["cut cross-entropy"] = f"cut_cross_entropy not importable ({error})"
