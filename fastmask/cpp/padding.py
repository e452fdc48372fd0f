"""C++ launcher of padding (csrc/padding.cpp): Python lists or tuples of ints in, a padded tensor out."""
from __future__ import annotations

import torch

from . import DTYPE_CODES, cpp


def pad_sequences(rows: list, length: int, pad_value: int, left: bool, name: str, dtype: torch.dtype,
                  width: int) -> torch.Tensor:
    out = torch.empty((len(rows), length) + ((width,) if width > 1 else ()), dtype=dtype)
    cpp().pad_sequences(rows, out.data_ptr(), DTYPE_CODES[dtype], len(rows), length, width, length * width, pad_value,
                        left, name)
    return out
