"""C++ launcher of span masking (csrc/spans.cpp): tensors in, views to fastmask._C.

Arguments arrive normalized by fastmask.spans, as for fastmask/reference/spans.py (words: uint8
codes or None); tensors are read in place through their strides. keys None: the row index.
"""
from __future__ import annotations

import torch

from . import cpp, int64, num_threads, view


def mask_spans(ids, seed, keys, thresholds, table, special_ids, special_mask, attention_mask, words, replace_table,
               replace_count, mask_token_id, max_predictions, ignore_index, vocab_size=0):
    batch, length = ids.shape
    out_ids = torch.empty((batch, length), dtype=ids.dtype)
    labels = torch.empty((batch, length), dtype=ids.dtype)
    positions = torch.empty((batch, max_predictions), dtype=torch.int64)
    if batch == 0 or length == 0:
        positions.fill_(-1)
        return out_ids, labels, positions
    cpp().mask_spans(
        view(ids), view(int64(seed)), view(keys), view(int64(thresholds)), view(int64(table)), view(int64(special_ids)),
        view(special_mask), view(attention_mask), view(words), view(replace_table), replace_count, mask_token_id,
        max_predictions, ignore_index, vocab_size, view(out_ids), view(labels), view(positions), num_threads(),
    )
    return out_ids, labels, positions
