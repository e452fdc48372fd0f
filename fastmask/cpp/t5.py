"""C++ launcher of span corruption (csrc/t5.cpp): tensors in, raw pointers to fastmask._C.

Arguments arrive normalized by fastmask.t5, as for fastmask/reference/t5.py; ids are read in place
through their strides. keys None: the kernel uses the row index.
"""
from __future__ import annotations

import torch

from . import DTYPE_CODES, cpp, num_threads


def _int64(tensor):
    return tensor if tensor.dtype == torch.int64 and tensor.is_contiguous() else tensor.to(torch.int64).contiguous()


def span_corruption(ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw=True, vocab_size=0):
    """vocab_size > 0: the kernel also checks every id against it (0: unchecked)."""
    batch, length = ids.shape
    inputs = torch.empty((batch, input_length), dtype=ids.dtype)
    targets = torch.empty((batch, target_length), dtype=ids.dtype)
    lengths = [torch.empty(batch, dtype=torch.int64) for _ in range(3)]  # separate tensors: outputs never alias
    seed, table, sentinels = _int64(seed), _int64(table), _int64(sentinels)
    stride0, stride1 = ids.stride()
    if keys is None:
        key_args = (0, -1, 0)
    else:
        key_args = (keys.data_ptr(), DTYPE_CODES[keys.dtype], keys.stride(0))
    cpp().span_corruption(
        ids.data_ptr(), DTYPE_CODES[ids.dtype], stride0, stride1, batch, length, seed.data_ptr(), *key_args,
        table.data_ptr(), table.shape[0], sentinels.data_ptr(), sentinels.shape[0], eos, pad,
        input_length, target_length, inputs.data_ptr(), targets.data_ptr(),
        lengths[0].data_ptr(), lengths[1].data_ptr(), lengths[2].data_ptr(), num_threads(), vocab_size,
    )
    return inputs, targets, lengths[0], lengths[1], lengths[2]
