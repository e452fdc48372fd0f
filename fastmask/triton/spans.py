"""Launcher of the span-masking kernel: one program per row, one launch, no host sync."""
from __future__ import annotations

import torch
import triton

from .._rng import Purpose
from . import on_device_of
from ._spans_kernels import mask_spans_kernel
from .masking import replace_mode

MAX_LENGTH = 1 << 11  # the row lives in registers; compiled for sm_90 without spills at 2048 lanes / 16 warps
_MIN_BLOCK = 16


def _num_warps(block: int) -> int:
    return max(1, min(16, block // 128))


def _strides(tensor, dims: int) -> tuple[int, ...]:
    return tuple(tensor.stride()) if tensor is not None else (0,) * dims


def mask_spans(ids, seed, keys, thresholds, table, special_ids, special_mask, attention_mask, words, replace_table,
               replace_count, mask_token_id, max_predictions, ignore_index):
    batch, length = ids.shape
    if length > MAX_LENGTH:
        raise ValueError(f"sequence length: the Triton backend of mask_spans handles rows of at most {MAX_LENGTH} positions, got {length}")
    device = ids.device
    out_ids = torch.empty(batch, length, dtype=ids.dtype, device=device)
    labels = torch.empty(batch, length, dtype=ids.dtype, device=device)
    if batch == 0 or length == 0:
        return out_ids, labels, torch.full((batch, max_predictions), -1, dtype=torch.int64, device=device)
    positions = torch.empty(batch, max_predictions, dtype=torch.int64, device=device)
    replace = replace_mode(replace_count, replace_table)
    block = max(_MIN_BLOCK, triton.next_power_of_2(length))
    thresholds, table, special_ids = thresholds.contiguous(), table.contiguous(), special_ids.contiguous()
    with on_device_of(ids):
        mask_spans_kernel[(batch,)](
            ids, seed, keys, thresholds, table, special_ids,
            special_mask if special_mask is not None else ids,
            attention_mask if attention_mask is not None else ids,
            words if words is not None else ids,
            replace_table if replace_table is not None else keys,
            out_ids, labels, positions,
            length, special_ids.shape[0], table.shape[0], replace_count, max_predictions,
            *ids.stride(), keys.stride(0), *_strides(special_mask, 2), *_strides(attention_mask, 2),
            *_strides(words, 2), *_strides(replace_table, 1),
            mask_token_id, ignore_index, int(Purpose.SPANS),
            HAS_SPECIAL_MASK=special_mask is not None,
            HAS_ATTENTION_MASK=attention_mask is not None,
            HAS_WORDS=words is not None,
            REPLACE=replace,
            CAPACITY=max_predictions > 0,
            BLOCK_L=block,
            BLOCK_T=max(2, triton.next_power_of_2(table.shape[0])),
            num_warps=_num_warps(block),
        )
    return out_ids, labels, positions
