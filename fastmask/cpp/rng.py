"""C++ launcher of the random stream: tensors in, views to fastmask._C (csrc/random_words.cpp)."""
from __future__ import annotations

import torch

from . import cpp, int64, num_threads, view


def random_words(seed: torch.Tensor, keys: torch.Tensor, length: int, purpose: int) -> torch.Tensor:
    out = torch.empty(keys.shape[0], length, 4, dtype=torch.int64)
    cpp().random_words(view(int64(seed)), view(keys), purpose, view(out), num_threads())
    return out
