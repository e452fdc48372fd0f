"""C++ launchers of the attention masks (csrc/attention.cpp): tensors in, views to fastmask._C.

Arguments arrive normalized by fastmask.attention, as for fastmask/reference/attention.py.
"""
from __future__ import annotations

import torch

from . import cpp, num_threads, view


def dense(segment_ids, prefix_lengths, lengths, device, batch, length, causal, window):
    out = torch.empty((batch, length, length), dtype=torch.bool)
    cpp().attention_dense(view(segment_ids), view(prefix_lengths), view(lengths), batch, length, bool(causal), window,
                          view(out), num_threads())
    return out


def block_states(segment_ids, prefix_lengths, lengths, device, batch, length, causal, window, block):
    blocks = -(-length // block)
    out = torch.empty((batch, blocks, blocks), dtype=torch.int8)  # int8 has no dtype code: passed as its bytes
    cpp().attention_blocks(view(segment_ids), view(prefix_lengths), view(lengths), batch, length, bool(causal),
                           window, block, view(out.view(torch.uint8)), num_threads())
    return out
