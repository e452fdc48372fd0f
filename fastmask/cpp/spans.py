"""C++ launcher of span masking (csrc/spans.cpp): tensors in, raw pointers to fastmask._C.

Arguments arrive normalized by fastmask.spans, as for fastmask/reference/spans.py (words: uint8
codes or None); tensors are read in place through their strides. keys None: the row index.
"""
from __future__ import annotations

import torch

from . import DTYPE_CODES, cpp, num_threads

_VIEW_NONE = (0, -1, 0, 0)


def _view2(tensor):
    if tensor is None:
        return _VIEW_NONE
    return (tensor.data_ptr(), DTYPE_CODES[tensor.dtype], *tensor.stride())


def _int64(tensor):
    return tensor if tensor.dtype == torch.int64 and tensor.is_contiguous() else tensor.to(torch.int64).contiguous()


def mask_spans(ids, seed, keys, thresholds, table, special_ids, special_mask, attention_mask, words, replace_table,
               replace_count, mask_token_id, max_predictions, ignore_index, vocab_size=0):
    batch, length = ids.shape
    out_ids = torch.empty((batch, length), dtype=ids.dtype)
    labels = torch.empty((batch, length), dtype=ids.dtype)
    positions = torch.empty((batch, max_predictions), dtype=torch.int64)
    if batch == 0 or length == 0:
        positions.fill_(-1)
        return out_ids, labels, positions
    seed, table, special_ids = _int64(seed), _int64(table), _int64(special_ids)
    select_t, mask_t, random_t = thresholds.tolist()  # host constants (CPU)
    if special_mask is not None and special_mask.dtype == torch.bool:
        special_mask = special_mask.view(torch.uint8)
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        attention_mask = attention_mask.view(torch.uint8)
    key_args = (0, -1, 0) if keys is None else (keys.data_ptr(), DTYPE_CODES[keys.dtype], keys.stride(0))
    code_args = (0, 0, 0) if words is None else (words.data_ptr(), *words.stride())
    replace_args = (0, -1, 0) if replace_table is None else (replace_table.data_ptr(), DTYPE_CODES[replace_table.dtype], replace_table.stride(0))
    cpp().mask_spans(
        ids.data_ptr(), DTYPE_CODES[ids.dtype], *ids.stride(), batch, length, seed.data_ptr(), *key_args,
        select_t, mask_t, random_t, table.data_ptr(), table.shape[0], special_ids.data_ptr(), special_ids.shape[0],
        *_view2(special_mask), *_view2(attention_mask), *code_args, *replace_args, replace_count, mask_token_id,
        max_predictions, ignore_index, vocab_size, out_ids.data_ptr(), labels.data_ptr(), positions.data_ptr(),
        num_threads(),
    )
    return out_ids, labels, positions
