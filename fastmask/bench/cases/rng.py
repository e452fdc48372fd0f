"""Family "rng": fastmask.random_words against torch.randint drawing as many 32-bit words.

torch.randint is the floor: the cheapest way torch gives random words, without fastmask's
reproducibility per (seed, key, position). Shapes are rows x length; each call makes 4 words a position.
"""
from __future__ import annotations

import torch

import fastmask

from . import Case

SHAPES = [(8, 128), (32, 512), (256, 512), (1024, 2048)]
QUICK_SHAPES = SHAPES[:3]
# Below this many positions the call overhead shows: time the custom op through torch.ops too, which
# is how compiled graphs call it (eager calls skip the dispatcher, see fastmask._library.op).
DISPATCH_MAX_POSITIONS = 1 << 12
# The reference is ~20x slower than the C++ on the CPU: past this many positions it costs seconds a call.
REFERENCE_MAX_POSITIONS_CPU = 1 << 20


def cases(device: str, quick: bool) -> list[Case]:
    return [_case(device, rows, length) for rows, length in (QUICK_SHAPES if quick else SHAPES)]


def _case(device: str, rows: int, length: int) -> Case:
    seed = torch.tensor(1234, dtype=torch.int64, device=device)
    keys = torch.arange(rows, dtype=torch.int64, device=device)

    def backend(name):
        return lambda: fastmask.random_words(seed, keys, length, backend=name)

    providers = {"torch.randint": lambda: torch.randint(0, 1 << 32, (rows, length, 4), dtype=torch.int64, device=device)}
    if device.startswith("cuda"):
        providers["fastmask-triton"] = backend("triton")
    else:
        providers["fastmask-cpp"] = backend("cpp")
    if rows * length <= DISPATCH_MAX_POSITIONS:
        name = "triton" if device.startswith("cuda") else "cpp"
        providers[f"fastmask-{name}/torch.ops"] = lambda: torch.ops.fastmask.random_words(seed, keys, length, 0, name)
    if device.startswith("cuda") or rows * length <= REFERENCE_MAX_POSITIONS_CPU:
        providers["fastmask-reference"] = backend("reference")
    return Case("rng", "random_words", f"{rows}x{length}", providers, "torch.randint", 4 * rows * length, "words",
                bytes=32 * rows * length)  # four int64 words written per position
