"""C++ launcher of mask_tokens: tensors in, views to fastmask._C (csrc/masking.cpp).

Arguments arrive normalized by fastmask.functional, as for fastmask/reference/masking.py. Inputs
are read in place through their strides (never copied); ids outside [0, vocab_size) raise
ValueError from inside the kernel (vocab_size 0: no check). `words` (one word source in any form of
fastmask.words.word_codes, or None) switches the kernel to whole-word masking; it is read in place
like the other inputs, so no per-token codes are built.
"""
from __future__ import annotations

import torch

from . import _C, cpp, int64, num_threads, view

# Word sources of the kernel (csrc/constants.h, WordSource); 0: token mode.
_SOURCES = _C.WORD_SOURCES if _C is not None else {}


def _word_source(words) -> int:
    """The kernel's word source for the op's `words` argument (fastmask.words.word_codes tells its forms apart)."""
    if words is None:
        return 0
    if words.dim() == 1:
        return _SOURCES["TABLE"]
    if words.dim() == 3:
        return _SOURCES["OFFSETS"]
    return _SOURCES["CODES"] if words.dtype == torch.uint8 else _SOURCES["WORD_IDS"]


def mask_tokens(
    ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table, replace_count,
    mask_token_id, views, exact, max_predictions, ignore_index, *, vocab_size, words=None,
):
    batch, length = ids.shape
    rows = batch * views
    out_ids = torch.empty((rows, length), dtype=ids.dtype)
    labels = torch.empty((rows, length), dtype=ids.dtype)
    positions = torch.empty((rows, max_predictions), dtype=torch.int64)
    cpp().mask_tokens(
        view(ids), view(int64(seed)), view(keys), view(int64(thresholds)), view(int64(special_ids)),
        view(special_mask), view(attention_mask), view(lengths), _word_source(words), view(words), view(replace_table),
        replace_count, mask_token_id, views, exact, max_predictions, ignore_index, vocab_size,
        view(out_ids), view(labels), view(positions), num_threads(),
    )
    return out_ids, labels, positions
