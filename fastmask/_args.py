"""Argument handling shared by the masked-LM faces (fastmask.functional.mask_tokens and
fastmask.spans.mask_spans): word sources, sample keys, special ids, replacement tables, small
cached constants. Each check raises ValueError naming the argument (docs/policies.md)."""
from __future__ import annotations

from typing import Optional

import torch

from . import _library
from ._validate import check_ids_in_range, check_int, check_same_shape, check_tensor

_MAX_LENGTH = 1 << 31  # positions are one uint32 counter word; index math elsewhere assumes < 2^31
_INT_IDS = (torch.int64, torch.int32)
_MASK_DTYPES = (torch.bool, torch.uint8, torch.int32, torch.int64)

_OFFSET_DTYPES = (torch.int64, torch.int32)
_TABLE_DTYPES = (torch.bool, torch.uint8, torch.int32, torch.int64)


def _check_word_table(table, vocab_size, device, id_limit) -> int:
    """The vocabulary size a word table implies: its length, which must equal vocab_size if given."""
    check_tensor("word_table", table, dtypes=_TABLE_DTYPES, ndim=1)
    if table.device != device:
        raise ValueError(f"word_table: expected a tensor on {device} like input_ids, got {table.device}")
    size = table.shape[0]
    if vocab_size is None:  # the table's length is the vocabulary: ids are checked against it
        if not 0 < size < id_limit:
            raise ValueError(f"word_table: expected one entry per token id, between 1 and {id_limit - 1}, got {size}")
        return size
    if size != vocab_size:
        raise ValueError(f"word_table: expected {vocab_size} entries (vocab_size), got {size}")
    return vocab_size


def _word_source(ids, one_row, word_ids, offset_mapping, word_table) -> Optional[torch.Tensor]:
    """The one word source given, checked, in the op's `words` form (fastmask.words.word_codes): word
    ids [B, L], offsets [B, L, 2] or the table [vocab]; or None. Passed as is: the C++ kernel reads it
    in place (no per-token codes), the other backends turn it into codes."""
    given = [name for name, value in (("word_ids", word_ids), ("offset_mapping", offset_mapping), ("word_table", word_table))
             if value is not None]
    if not given:
        return None
    if len(given) > 1:
        raise ValueError(f"{', '.join(given)}: pass one word source, got {len(given)}")
    if word_ids is not None:
        word_ids = _rows(word_ids, one_row)
        check_same_shape("word_ids", word_ids, ids, dtypes=_INT_IDS)
        return word_ids
    if offset_mapping is not None:
        check_tensor("offset_mapping", offset_mapping, dtypes=_OFFSET_DTYPES, ndim=2 if one_row else 3)
        offsets = offset_mapping.unsqueeze(0) if one_row else offset_mapping
        if offsets.shape != (*ids.shape, 2):
            raise ValueError(f"offset_mapping: expected shape {(*ids.shape, 2)[one_row:]} (input_ids' shape, then "
                             f"start and end), got {tuple(offset_mapping.shape)}")
        if offsets.device != ids.device:
            raise ValueError(f"offset_mapping: expected a tensor on {ids.device} like input_ids, got {offsets.device}")
        return offsets
    return word_table  # checked by _check_word_table


def _rows(mask, one_row):
    return mask.unsqueeze(0) if one_row and isinstance(mask, torch.Tensor) else mask


@_library.eager_cache
def _constant(values: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A small int64 tensor of host values on `device`, made once per (values, device): ops only
    read it, and building it costs more than a small batch's kernel."""
    return torch.tensor(values, dtype=torch.int64).to(device)


def _special_ids(special_ids, mask_token_id, vocab_size) -> tuple[int, ...]:
    """Sorted, unique special ids on the host, with the mask token always among them."""
    if special_ids is None:
        special_ids = ()
    elif isinstance(special_ids, torch.Tensor):
        if special_ids.dim() != 1 or special_ids.dtype not in _INT_IDS:
            raise ValueError(f"special_ids: expected a 1-D integer tensor or a sequence of ints, got {special_ids.dtype} {tuple(special_ids.shape)}")
        special_ids = special_ids.tolist()  # a small host-side list; pass a list to avoid a device read
    return _sorted_specials(tuple(special_ids), mask_token_id, vocab_size)


@_library.eager_cache
def _sorted_specials(special_ids: tuple, mask_token_id: int, vocab_size) -> tuple[int, ...]:
    ids = {check_int("special_ids", value, 0, vocab_size or _MAX_LENGTH) for value in special_ids}
    return tuple(sorted(ids | {mask_token_id}))


def _replacements(replace_ids, specials, vocab_size, random_replace_prob, device, validate):
    """(table or None, number of choices) for random replacements."""
    if replace_ids is not None:
        table = replace_ids if isinstance(replace_ids, torch.Tensor) else torch.as_tensor(replace_ids, dtype=torch.int64)
        check_tensor("replace_ids", table, dtypes=_INT_IDS, ndim=1)
        table = table.to(device)
        if vocab_size is not None and (validate or table.device.type == "cpu"):
            check_ids_in_range("replace_ids", table, vocab_size)
        count = table.shape[0]
    elif vocab_size is not None:
        table, count = None, _vocabulary_choices(specials, vocab_size)
    else:
        table, count = None, 0
    if count == 0 and (isinstance(random_replace_prob, torch.Tensor) or random_replace_prob > 0):
        what = "vocab_size or replace_ids" if replace_ids is None and vocab_size is None else "replace_ids"
        raise ValueError(f"{what}: random_replace_prob > 0 needs a non-empty replacement set")
    return table, count


@_library.eager_cache
def _vocabulary_choices(specials: tuple[int, ...], vocab_size: int) -> int:
    """Replacement ids without a table: the vocabulary less its special ids."""
    return vocab_size - sum(1 for s in specials if s < vocab_size)
