"""Launcher of the mask_tokens kernel: one program per output row (row, view), one launch, no host sync."""
from __future__ import annotations

import torch
import triton

from .._rng import Purpose
from . import on_device_of
from ._masking_kernels import REPLACE_NONE, REPLACE_SKIP_SPECIALS, REPLACE_TABLE, mask_tokens_kernel

# A row is one block. Past 8192 positions the block spills (exact mode sorts it), and at 65536 an
# exact-mode kernel took 13 minutes to compile for sm_90: 16384 covers long-context MLM (8192).
MAX_LENGTH = 1 << 14
_MIN_BLOCK = 16


def _num_warps(block: int) -> int:
    """4 warps at 512 positions (4 per thread), up to 32 warps (1024 threads) for long rows."""
    return max(1, min(32, block // 128))


def _strides(tensor, dims: int) -> tuple[int, ...]:
    return tuple(tensor.stride()) if tensor is not None else (0,) * dims


def mask_tokens(
    ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table, replace_count,
    mask_token_id, views, exact, max_predictions, ignore_index, words=None,
):
    batch, length = ids.shape
    if length > MAX_LENGTH:
        raise ValueError(
            f"sequence length: the Triton backend handles rows of at most {MAX_LENGTH} positions, got {length}"
        )
    rows = batch * views
    out_ids = torch.empty(rows, length, dtype=ids.dtype, device=ids.device)
    labels = torch.empty(rows, length, dtype=ids.dtype, device=ids.device)
    if rows == 0 or length == 0:  # nothing to draw; every capacity slot is empty
        positions = torch.full((rows, max_predictions), -1, dtype=torch.int64, device=ids.device)
        return out_ids, labels, positions
    positions = torch.empty(rows, max_predictions, dtype=torch.int64, device=ids.device)

    replace = replace_mode(replace_count, replace_table)
    block = max(_MIN_BLOCK, triton.next_power_of_2(length))
    # Absent optional tensors: any valid pointer, never read (their HAS_* flag is off).
    with on_device_of(ids):
        mask_tokens_kernel[(rows,)](
            ids, seed, keys, thresholds, special_ids,
            special_mask if special_mask is not None else ids,
            attention_mask if attention_mask is not None else ids,
            lengths if lengths is not None else keys,
            words if words is not None else ids,
            replace_table if replace_table is not None else keys,
            out_ids, labels, positions,
            length, views, special_ids.shape[0], replace_count, max_predictions,
            *ids.stride(), keys.stride(0), thresholds.stride(0), special_ids.stride(0),
            *_strides(special_mask, 2), *_strides(attention_mask, 2), *_strides(lengths, 1),
            *_strides(words, 2), *_strides(replace_table, 1),
            mask_token_id, ignore_index, int(Purpose.WHOLE_WORD if words is not None else Purpose.MLM_TOKENS),
            EXACT=exact,
            HAS_SPECIAL_MASK=special_mask is not None,
            HAS_ATTENTION_MASK=attention_mask is not None,
            HAS_LENGTHS=lengths is not None,
            REPLACE=replace,
            CAPACITY=max_predictions > 0,
            WHOLE_WORD=words is not None,
            BLOCK_L=block,
            num_warps=_num_warps(block),
        )
    return out_ids, labels, positions


def replace_mode(replace_count: int, replace_table) -> int:
    """The kernels' REPLACE meta-parameter: no replacement, skip the special ids, or a table."""
    if replace_count == 0:
        return REPLACE_NONE.value
    return REPLACE_SKIP_SPECIALS.value if replace_table is None else REPLACE_TABLE.value
