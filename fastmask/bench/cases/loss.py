"""Family "loss": fastmask.masked_cross_entropy, forward + backward, against torch.

Logits [N, V] with 15% of rows labelled (the rest ignore_index), as a masked-LM batch has them.
On the CPU: the C++ kernel against F.cross_entropy (fp32, V = 30522, BERT's vocabulary). On CUDA:
the Triton kernel, with and without the in-place backward, against F.cross_entropy, its
torch.compile, and Liger-Kernel's cross-entropy where it is installed (bf16, V = 131072). Work
units are logits (N x V) per second; each call reads the logits at least once.

Also the vocabulary-parallel loss (process_group=, docs/distributed.md): 2 gloo ranks, each holding
half of the vocabulary, against one process on the whole vocabulary. The ranks are two threads of
this process with their own gloo groups over one store (a process group needs no
init_process_group), so both run in the same timing loop; on a 2-core CPU the ideal is 2x.
"""
from __future__ import annotations

import datetime
import threading
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
    shapes = QUICK_CPU_SHAPES if quick else CPU_SHAPES
    return [_case(device, n, v, torch.float32) for n, v in shapes] + [_vocab_parallel_case(*shapes[-1])]


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


def _vocab_parallel_case(n: int, vocab: int, world: int = 2) -> Case:
    import torch.distributed as dist

    logits, labels = make_inputs(n, vocab, torch.float32, "cpu")
    store = dist.HashStore()
    groups = [None] * world
    bounds = [(r * vocab // world, (r + 1) * vocab // world) for r in range(world)]

    def connect(rank):
        groups[rank] = dist.ProcessGroupGloo(store, rank, world, datetime.timedelta(seconds=300))

    def in_threads(fn):
        threads = [threading.Thread(target=fn, args=(rank,)) for rank in range(world)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    in_threads(connect)
    shards = [logits[:, start:end].contiguous() for start, end in bounds]

    def ranks():
        in_threads(lambda rank: _shard_step(shards[rank], labels, groups[rank]))

    providers = {"fastmask-cpp": _forward_backward(fastmask.masked_cross_entropy, logits, labels),
                 f"fastmask-cpp/{world} gloo ranks": ranks}
    return Case("loss", "vocab_parallel_cross_entropy/fwd+bwd", f"{n}x{vocab}", providers, "fastmask-cpp", n * vocab,
                "logits", repeats=10)


def _shard_step(shard, labels, group):
    x = shard.detach().requires_grad_(True)
    fastmask.masked_cross_entropy(x, labels, process_group=group).backward()
