"""Family "loss": fastmask.masked_cross_entropy, forward + backward, against torch.

Logits [N, V] with 15% of rows labelled (the rest ignore_index), as a masked-LM batch has them.
On the CPU: the C++ kernel against F.cross_entropy (fp32, V = 30522, BERT's vocabulary). On CUDA:
the Triton kernel, with and without the in-place backward, against F.cross_entropy, its
torch.compile, and Liger-Kernel's cross-entropy where it is installed (bf16, V = 131072). Work
units are logits (N x V) per second; each call reads the logits at least once.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

import fastmask

from . import Case

CPU_SHAPES = [(512, 30522), (4096, 30522)]
QUICK_CPU_SHAPES = CPU_SHAPES[:1]
CUDA_SHAPES = [(8192, 131072)]
LABELLED = 0.15


def cases(device: str, quick: bool) -> list[Case]:
    if device.startswith("cuda"):
        return [_case(device, n, v, torch.bfloat16) for n, v in CUDA_SHAPES]
    return [_case(device, n, v, torch.float32) for n, v in (QUICK_CPU_SHAPES if quick else CPU_SHAPES)]


def make_inputs(n: int, vocab: int, dtype: torch.dtype, device: str):
    generator = torch.Generator().manual_seed(n + vocab)
    logits = torch.randn(n, vocab, generator=generator).to(dtype).to(device)
    labels = torch.randint(0, vocab, (n,), generator=generator)
    labels[torch.rand(n, generator=generator) >= LABELLED] = -100
    return logits, labels.to(device)


def _forward_backward(loss_fn, logits, labels):
    def step():
        x = logits.detach().requires_grad_(True)
        loss = loss_fn(x, labels)
        loss.backward()
        return loss

    return step


def _case(device: str, n: int, vocab: int, dtype: torch.dtype) -> Case:
    logits, labels = make_inputs(n, vocab, dtype, device)
    providers = {"torch.cross_entropy": _forward_backward(F.cross_entropy, logits, labels)}
    if device.startswith("cuda"):
        providers["torch.compile(cross_entropy)"] = _forward_backward(torch.compile(F.cross_entropy), logits, labels)
        providers["fastmask-triton"] = _forward_backward(fastmask.masked_cross_entropy, logits, labels)
        buffer = logits.clone()  # overwritten by its own gradient each call: same work every time

        def inplace():
            x = buffer.detach().requires_grad_(True)
            fastmask.masked_cross_entropy(x * 1, labels, inplace_backward=True).backward()

        providers["fastmask-triton/inplace"] = inplace
        try:
            from liger_kernel.transformers import LigerCrossEntropyLoss

            providers["liger"] = _forward_backward(LigerCrossEntropyLoss(), logits, labels)
        except ImportError as error:
            warnings.warn(f"loss benchmarks: Liger-Kernel not importable here ({error})", stacklevel=2)
    else:
        providers["fastmask-cpp"] = _forward_backward(fastmask.masked_cross_entropy, logits, labels)
    return Case("loss", "cross_entropy/fwd+bwd", f"{n}x{vocab}", providers, "torch.cross_entropy", n * vocab, "logits",
                bytes=3 * n * vocab * logits.element_size())  # logits read twice, gradient written once
