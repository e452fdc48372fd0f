"""Family "spans": fastmask.mask_spans (SpanBERT's geometric spans of whole words) against SpanBERT's
masking scheme in Python (spans_python.py, one row at a time, numpy's legacy generator).

Inputs: synthetic rows [CLS] text [SEP] of ids uniform over [1000, 30000), with words of 1 (70%),
2 (20%) or 3 (10%) tokens given as word ids (-1 on [CLS]/[SEP]). Both sides mask 15% of the text
tokens with SpanBERT's lengths (p = 0.2, at most 10 words) and 80/10/10 per span. The Python peer
gets the rows as lists of text tokens (its own input format, built outside the timing), fastmask
the tensors. Work units are tokens. On CUDA the Triton kernel is timed against the eager reference.
"""
from __future__ import annotations

import numpy as np
import torch

import fastmask

from . import Case
from . import spans_python

SHAPES = [(32, 512), (256, 128)]
QUICK_SHAPES = SHAPES[:1]
CUDA_SHAPES = [(256, 512), (4096, 512)]
REFERENCE_MAX_TOKENS_CPU = 8 * 512  # the reference loops in Python per attempt
CLS, SEP, MASK, VOCAB = 101, 102, 103, 30522


def make_batch(rows: int, length: int, device: str = "cpu"):
    generator = torch.Generator().manual_seed(rows * 100_003 + length)
    ids = torch.randint(1000, 30000, (rows, length), generator=generator)
    ids[:, 0], ids[:, -1] = CLS, SEP
    sizes = torch.multinomial(torch.tensor([0.7, 0.2, 0.1]), rows * length, replacement=True, generator=generator) + 1
    word_ids = torch.empty(rows, length, dtype=torch.int64)
    for r in range(rows):
        starts = torch.cumsum(sizes[r * length:(r + 1) * length], 0)
        word_ids[r] = torch.bucketize(torch.arange(length), starts, right=True)
    word_ids[:, 0], word_ids[:, -1] = -1, -1
    return ids.to(device), word_ids.to(device)


def cases(device: str, quick: bool) -> list[Case]:
    shapes = CUDA_SHAPES if device.startswith("cuda") else (QUICK_SHAPES if quick else SHAPES)
    return [_case(device, rows, length) for rows, length in shapes]


def _case(device: str, rows: int, length: int) -> Case:
    cuda = device.startswith("cuda")
    ids, word_ids = make_batch(rows, length, device)
    seed = torch.tensor(1234, dtype=torch.int64, device=device)
    keys = torch.arange(rows, device=device)

    def ours(backend):
        return lambda: fastmask.mask_spans(
            ids, word_ids=word_ids, mask_token_id=MASK, vocab_size=VOCAB, special_ids=[0, CLS, SEP],
            seed=seed, keys=keys, backend=backend)

    providers = {}
    if cuda:
        baseline = "fastmask-reference"
        providers["fastmask-triton"] = ours("triton")
    else:
        baseline = "python-spanbert"
        text = [row[1:-1] for row in ids.tolist()]
        words = [row[1:-1] for row in word_ids.tolist()]
        rng = np.random.RandomState(0)
        providers[baseline] = lambda: spans_python.mask_batch(text, words, rng, MASK, 1000, 30000)
        providers["fastmask-cpp"] = ours("cpp")
    if cuda or rows * length <= REFERENCE_MAX_TOKENS_CPU:
        providers["fastmask-reference"] = ours("reference")
    return Case("spans", "mask_spans", f"{rows}x{length}", providers, baseline, rows * length, "tokens",
                repeats=15)
