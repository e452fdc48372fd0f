"""C++ launcher of the random stream: tensors in, raw pointers to fastmask._C."""
from __future__ import annotations

import torch

from . import cpp, dtype_code, num_threads


def random_words(seed: torch.Tensor, keys: torch.Tensor, length: int, purpose: int) -> torch.Tensor:
    out = torch.empty(keys.shape[0], length, 4, dtype=torch.int64)
    cpp().random_words(
        seed.data_ptr(), keys.data_ptr(), dtype_code(keys), keys.stride(0), keys.shape[0], length, purpose,
        out.data_ptr(), num_threads(),
    )
    return out
