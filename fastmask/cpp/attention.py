"""C++ launchers of the attention masks (csrc/attention.cpp): tensors in, raw pointers to fastmask._C.

Arguments arrive normalized by fastmask.attention, as for fastmask/reference/attention.py.
"""
from __future__ import annotations

import torch

from . import DTYPE_CODES, cpp, num_threads


def _vector(tensor):
    return (0, 0, 0) if tensor is None else (tensor.data_ptr(), DTYPE_CODES[tensor.dtype], tensor.stride(0))


def _args(segment_ids, prefix_lengths, lengths, batch, length, causal, window):
    segments = (0, 0, 0, 0) if segment_ids is None else (
        segment_ids.data_ptr(), DTYPE_CODES[segment_ids.dtype], segment_ids.stride(0), segment_ids.stride(1))
    return (*segments, *_vector(prefix_lengths), *_vector(lengths), batch, length, bool(causal), window)


def dense(segment_ids, prefix_lengths, lengths, device, batch, length, causal, window):
    out = torch.empty((batch, length, length), dtype=torch.bool)
    cpp().attention_dense(*_args(segment_ids, prefix_lengths, lengths, batch, length, causal, window),
                          out.data_ptr(), num_threads())
    return out


def block_states(segment_ids, prefix_lengths, lengths, device, batch, length, causal, window, block):
    blocks = -(-length // block)
    out = torch.empty((batch, blocks, blocks), dtype=torch.int8)
    cpp().attention_blocks(*_args(segment_ids, prefix_lengths, lengths, batch, length, causal, window), block,
                           out.data_ptr(), num_threads())
    return out
