"""Padding rows of ids into a batch, in torch: the specification of csrc/padding.cpp."""
from __future__ import annotations

import numpy as np
import torch


def pad_sequences(rows: list, length: int, pad_value: int, left: bool, name: str, dtype: torch.dtype,
                  width: int) -> torch.Tensor:
    """[len(rows), length] (or [.., width] for rows of pairs) from lists, tuples, numpy arrays or
    tensors: row b's values at the start (at the end when `left`), pad_value elsewhere."""
    out = torch.empty((len(rows), length) + ((width,) if width > 1 else ()), dtype=dtype).fill_(pad_value)
    for b, row in enumerate(rows):
        try:
            values = torch.as_tensor(np.asarray(row) if width > 1 else row)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{name}: feature {b} is not a sequence of integers ({error})") from None
        shape_ok = values.dim() == 1 if width == 1 else (values.dim() == 2 and values.shape[1] == width)
        if not shape_ok or (values.numel() and (values.dtype.is_floating_point or values.dtype == torch.bool)):
            raise ValueError(f"{name}: feature {b}: expected integers of shape [n{'' if width == 1 else f', {width}'}], "
                             f"got {values.dtype} {tuple(values.shape)}")
        n = values.shape[0]
        if n:
            (out[b, length - n:] if left else out[b, :n]).copy_(values)
    return out
