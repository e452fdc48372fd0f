"""Family "t5": fastmask.t5_span_corruption against T5 span corruption in numpy (t5_numpy.py, the
algorithm of HF's Flax example, one row at a time), on HF's 568-token chunks (inputs of 512 at
noise density 0.15 and mean span 3: fastmask.t5_lengths(512) == (568, 114)).

Inputs: int64 ids uniform over [100, 32000) (T5's vocabulary is 32100 with its 100 sentinels at the
top). Work units are tokens of the input rows. On CUDA the Triton kernel is timed against the eager
reference on the GPU.
"""
from __future__ import annotations

import numpy as np
import torch

import fastmask

from . import Case
from . import t5_numpy

SHAPES = [(32, 568), (256, 568)]
QUICK_SHAPES = SHAPES[:1]
CUDA_SHAPES = [(256, 568), (4096, 568)]
REFERENCE_MAX_TOKENS_CPU = 32 * 568  # the reference costs ~100x the C++
VOCAB, EOS = 32100, 1
DENSITY, MEAN = 0.15, 3.0


def cases(device: str, quick: bool) -> list[Case]:
    shapes = CUDA_SHAPES if device.startswith("cuda") else (QUICK_SHAPES if quick else SHAPES)
    return [_case(device, rows, length) for rows, length in shapes]


def make_ids(rows: int, length: int, device: str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(rows * 100_003 + length)
    return torch.randint(100, 32000, (rows, length), generator=generator).to(device)


def _case(device: str, rows: int, length: int) -> Case:
    cuda = device.startswith("cuda")
    ids = make_ids(rows, length, device)
    seed = torch.tensor(1234, dtype=torch.int64, device=device)
    keys = torch.arange(rows, device=device)

    def ours(backend):
        return lambda: fastmask.t5_span_corruption(
            ids, noise_density=DENSITY, mean_noise_span_length=MEAN, vocab_size=VOCAB, eos_token_id=EOS,
            seed=seed, keys=keys, backend=backend)

    providers = {}
    if cuda:
        baseline = "fastmask-reference"
        providers["fastmask-triton"] = ours("triton")
    else:
        baseline = "numpy-t5"
        ids_np = ids.numpy()
        rng = np.random.RandomState(0)  # HF's example draws from numpy's legacy global generator
        providers[baseline] = lambda: t5_numpy.t5_span_corruption(ids_np, DENSITY, MEAN, VOCAB, EOS, rng)
        providers["fastmask-cpp"] = ours("cpp")
    if cuda or rows * length <= REFERENCE_MAX_TOKENS_CPU:
        providers["fastmask-reference"] = ours("reference")
    return Case("t5", "t5_span_corruption", f"{rows}x{length}", providers, baseline, rows * length, "tokens")
