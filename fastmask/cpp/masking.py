"""C++ launcher of mask_tokens: tensors in, raw pointers to fastmask._C (csrc/masking.cpp).

Arguments arrive normalized by fastmask.functional, as for fastmask/reference/masking.py. Inputs
are read in place through their strides (never copied); ids outside [0, vocab_size) raise
ValueError from inside the kernel (vocab_size 0: no check). `words` (one word source in any form of
fastmask.words.word_codes, or None) switches the kernel to whole-word masking; it is read in place
like the other inputs, so no per-token codes are built.
"""
from __future__ import annotations

import torch

from . import _C, DTYPE_CODES, cpp, num_threads


def _matrix(tensor):
    """(address, dtype code, stride 0, stride 1) of an optional [B, L] tensor."""
    if tensor is None:
        return 0, -1, 0, 0
    stride0, stride1 = tensor.stride()
    return tensor.data_ptr(), DTYPE_CODES[tensor.dtype], stride0, stride1


def _vector(tensor):
    """(address, dtype code, stride) of an optional 1-D tensor."""
    if tensor is None:
        return 0, -1, 0
    return tensor.data_ptr(), DTYPE_CODES[tensor.dtype], tensor.stride(0)


# Word sources of the kernel (csrc/constants.h, WordSource).
_SOURCES = _C.WORD_SOURCES if _C is not None else {}
_CODES, _WORD_IDS, _OFFSETS, _TABLE = (_SOURCES.get(name) for name in ("CODES", "WORD_IDS", "OFFSETS", "TABLE"))


def _words(words):
    """(source, address, dtype code, stride 0, stride 1, pair stride) of the op's `words` argument
    (fastmask.words.word_codes tells its forms apart), read in place by the kernel; source 0: token mode."""
    if words is None:
        return 0, 0, -1, 0, 0, 0
    if words.dim() == 1:
        return _TABLE, words.data_ptr(), DTYPE_CODES[words.dtype], words.stride(0), 0, 0
    if words.dim() == 3:
        return _OFFSETS, words.data_ptr(), DTYPE_CODES[words.dtype], *words.stride()
    source = _CODES if words.dtype == torch.uint8 else _WORD_IDS
    return source, words.data_ptr(), DTYPE_CODES[words.dtype], *words.stride(), 0


def _int64(tensor):
    return tensor if tensor.dtype == torch.int64 and tensor.is_contiguous() else tensor.to(torch.int64).contiguous()


def mask_tokens(
    ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table, replace_count,
    mask_token_id, views, exact, max_predictions, ignore_index, *, vocab_size, words=None,
):
    batch, length = ids.shape
    rows = batch * views
    out_ids = torch.empty((rows, length), dtype=ids.dtype)
    labels = torch.empty((rows, length), dtype=ids.dtype)
    positions = torch.empty((rows, max_predictions), dtype=torch.int64)
    # Tiny host tensors that functional already makes contiguous int64 (checked: a conversion costs
    # microseconds, a sizable part of a small call).
    seed, thresholds, special_ids = _int64(seed), _int64(thresholds), _int64(special_ids)
    ids_stride0, ids_stride1 = ids.stride()
    cpp().mask_tokens(
        ids.data_ptr(), DTYPE_CODES[ids.dtype], ids_stride0, ids_stride1, batch, length,
        seed.data_ptr(), *_vector(keys), thresholds.data_ptr(),
        special_ids.data_ptr(), special_ids.shape[0],
        *_matrix(special_mask), *_matrix(attention_mask), *_vector(lengths),
        *_words(words), *_vector(replace_table),
        replace_count, mask_token_id, views, exact, max_predictions, ignore_index, vocab_size,
        out_ids.data_ptr(), labels.data_ptr(), positions.data_ptr(), num_threads(),
    )
    return out_ids, labels, positions
