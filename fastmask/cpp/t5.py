"""C++ launcher of span corruption (csrc/t5.cpp): tensors in, views to fastmask._C.

Arguments arrive normalized by fastmask.t5, as for fastmask/reference/t5.py; ids are read in place
through their strides. keys None: the kernel uses the row index.
"""
from __future__ import annotations

import torch

from . import cpp, int64, num_threads, view


def span_corruption(ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw=True, vocab_size=0):
    """vocab_size > 0: the kernel also checks every id against it (0: unchecked)."""
    batch, length = ids.shape
    inputs = torch.empty((batch, input_length), dtype=ids.dtype)
    targets = torch.empty((batch, target_length), dtype=ids.dtype)
    lengths = [torch.empty(batch, dtype=torch.int64) for _ in range(3)]  # separate tensors: outputs never alias
    cpp().span_corruption(
        view(ids), view(int64(seed)), view(keys), view(int64(table)), view(int64(sentinels)), eos, pad,
        view(inputs), view(targets), *(view(t) for t in lengths), num_threads(), vocab_size,
    )
    return inputs, targets, lengths[0], lengths[1], lengths[2]
