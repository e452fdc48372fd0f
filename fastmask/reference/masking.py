"""Token masking (docs/masking.md), in torch ops: the executable specification of mask_tokens.

Arguments arrive normalized by fastmask.functional: ids [B, L]; thresholds int64 [4] =
(select, predict, mask, random) as floor(p * 2^32); special_ids sorted, unique, int64, holding the
mask token; replace_table None (random ids from [0, vocab_size) minus special_ids) or the ids to
draw from; replace_count the number of choices.
"""
from __future__ import annotations

import torch

from .._rng import Purpose
from .rng import stream_words

_PACK_SHIFT = 31  # (word << 31) | position orders by (word, position); positions < 2^31
_NOT_ELIGIBLE = torch.iinfo(torch.int64).max


def eligible_positions(ids, special_ids, special_mask, attention_mask, lengths) -> torch.Tensor:
    """bool [B, L]: not a special id, not marked special, not padding."""
    eligible = ~torch.isin(ids, special_ids.to(ids.dtype))
    if special_mask is not None:
        eligible &= special_mask == 0
    if attention_mask is not None:
        eligible &= attention_mask != 0
    if lengths is not None:
        eligible &= torch.arange(ids.shape[1], device=ids.device) < lengths.reshape(-1, 1)
    return eligible


def count(threshold: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """fastmask._rng.count on tensors: round-half-up of n * threshold / 2^32."""
    return (n * threshold + (1 << 31)) >> 32


def exact_below(packed: torch.Tensor, sorted_packed: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """bool [B, L]: the k smallest packed keys of each row (k [B, 1])."""
    kth = sorted_packed.gather(1, (k - 1).clamp(min=0))
    return (packed <= kth) & (k > 0)


def random_ids(word: torch.Tensor, special_ids, replace_table, replace_count: int) -> torch.Tensor:
    """The replacement id chosen by a 32-bit word: index (word * count) >> 32 into the table, or into
    [0, vocab) with the sorted special ids skipped (index r -> the r-th non-special id)."""
    index = (word * replace_count) >> 32
    if replace_table is not None:
        return replace_table.to(torch.int64)[index]
    for k in range(special_ids.shape[0]):  # ascending: each special at or below the id shifts it up
        index = index + (index >= special_ids[k]).to(torch.int64)
    return index


def mask_tokens(
    ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table, replace_count,
    mask_token_id, views, exact, max_predictions, ignore_index,
):
    batch, length = ids.shape
    positions = torch.arange(length, device=ids.device)
    w = stream_words(seed, keys.reshape(-1, 1), positions, Purpose.MLM_TOKENS)  # [B, L, 4]
    select_t, predict_t, mask_t, random_t = thresholds.to(ids.device).unbind()
    eligible = eligible_positions(ids, special_ids, special_mask, attention_mask, lengths)

    if exact and length > 0:
        packed = torch.where(eligible, (w[..., 0] << _PACK_SHIFT) | positions, _NOT_ELIGIBLE)
        sorted_packed = packed.sort(dim=1).values
        n = eligible.sum(1, keepdim=True)
        selected = exact_below(packed, sorted_packed, count(select_t, n))
        predicted = exact_below(packed, sorted_packed, count(predict_t, n))
    else:
        selected = eligible & (w[..., 0] < select_t)
        predicted = eligible & (w[..., 0] < predict_t)

    # Views: a uniform split by word 3; output row (b, j) corrupts and predicts view j only.
    view = (w[..., 3] * views) >> 32
    in_view = view.unsqueeze(1) == torch.arange(views, device=ids.device).reshape(1, -1, 1)  # [B, n, L]
    selected = (selected.unsqueeze(1) & in_view).reshape(batch * views, length)
    predicted = (predicted.unsqueeze(1) & in_view).reshape(batch * views, length)
    w = w.repeat_interleave(views, dim=0)
    original = ids.repeat_interleave(views, dim=0)

    # Corruption by word 1: [0, mask) -> mask token, [mask, mask + random) -> random id (word 2), else keep.
    corrupted = torch.where(w[..., 1] < mask_t, mask_token_id, original.to(torch.int64))
    is_random = (w[..., 1] >= mask_t) & (w[..., 1] < mask_t + random_t)
    if replace_count > 0:
        corrupted = torch.where(is_random, random_ids(w[..., 2], special_ids, replace_table, replace_count), corrupted)
    out_ids = torch.where(selected, corrupted, original).to(ids.dtype)

    if max_predictions > 0:
        # Capacity: the first max_predictions predicted positions of a row, in position order, keep
        # their label; later ones lose it (their corruption stays).
        rank = predicted.cumsum(1) - 1
        predicted &= rank < max_predictions
        slots = torch.full((batch * views, max_predictions + 1), -1, dtype=torch.int64, device=ids.device)
        slots.scatter_(1, torch.where(predicted, rank, max_predictions), positions.expand(batch * views, -1))
        kept_positions = slots[:, :max_predictions].contiguous()
    else:
        kept_positions = torch.empty(batch * views, 0, dtype=torch.int64, device=ids.device)
    labels = torch.where(predicted, original, torch.full_like(original, ignore_index))
    return out_ids, labels, kept_positions
