"""Token masking (docs/masking.md), in torch ops: the executable specification of mask_tokens.

Arguments arrive normalized by fastmask.functional: ids [B, L]; thresholds int64 [4] =
(select, predict, mask, random) as floor(p * 2^32); special_ids sorted, unique, int64, holding the
mask token; replace_table None (random ids from [0, vocab_size) minus special_ids) or the ids to
draw from; replace_count the number of choices; words None or the uint8 word codes of
fastmask.words (whole-word masking).
"""
from __future__ import annotations

import torch

from .._rng import Purpose
from ..words import NO_WORD, STARTS
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


def word_starts(eligible: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eligible, starts), bool [B, L]: tokens in no word are not eligible; an eligible token starts a
    word when its code says so or the token before it is not eligible (or it is the first)."""
    eligible = eligible & (words != NO_WORD)
    before = torch.cat([torch.zeros_like(eligible[:, :1]), eligible[:, :-1]], dim=1)
    return eligible, eligible & ((words == STARTS) | ~before)


def spread_words(starts: torch.Tensor, fields: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A segmented scan: every token gets the fields (int64 < 2^32) and position of the last word
    start at or before it, (-1, -1) before the first. One running max of (position << 32) | fields."""
    packed = torch.where(starts, (positions << 32) | fields, -1)
    spread = packed.cummax(dim=1).values if packed.shape[1] > 0 else packed
    return torch.where(spread >= 0, spread & 0xFFFFFFFF, -1), torch.where(spread >= 0, spread >> 32, -1)


def mask_tokens(
    ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table, replace_count,
    mask_token_id, views, exact, max_predictions, ignore_index, words=None,
):
    """words: None (token masking) or uint8 [B, L] word codes (whole-word masking: every decision of a
    word is made at its first token, with purpose WHOLE_WORD, and spread over the word)."""
    batch, length = ids.shape
    positions = torch.arange(length, device=ids.device)
    whole_words = words is not None
    purpose = Purpose.WHOLE_WORD if whole_words else Purpose.MLM_TOKENS
    w = stream_words(seed, keys.reshape(-1, 1), positions, purpose)  # [B, L, 4]
    select_t, predict_t, mask_t, random_t = thresholds.to(ids.device).unbind()
    eligible = eligible_positions(ids, special_ids, special_mask, attention_mask, lengths)
    # The candidates of selection: eligible tokens, or the first tokens of eligible words.
    if whole_words:
        eligible, candidates = word_starts(eligible, words.to(ids.device))
    else:
        candidates = eligible

    if exact and length > 0:
        packed = torch.where(candidates, (w[..., 0] << _PACK_SHIFT) | positions, _NOT_ELIGIBLE)
        sorted_packed = packed.sort(dim=1).values
        n = candidates.sum(1, keepdim=True)
        selected = exact_below(packed, sorted_packed, count(select_t, n))
        predicted = exact_below(packed, sorted_packed, count(predict_t, n))
    else:
        selected = candidates & (w[..., 0] < select_t)
        predicted = candidates & (w[..., 0] < predict_t)

    # Corruption kind by word 1: [0, mask) -> mask token, [mask, mask + random) -> random id, else keep.
    is_mask = w[..., 1] < mask_t
    is_random = ~is_mask & (w[..., 1] < mask_t + random_t)
    # Views: a uniform split by word 3.
    view = (w[..., 3] * views) >> 32
    if whole_words:
        # Each word takes its first token's decisions; the random id stays per token (word 2).
        fields = selected.long() | (predicted.long() << 1) | (is_mask.long() << 2) | (is_random.long() << 3) | (view << 4)
        fields, word_start = spread_words(candidates, fields, positions)
        selected = eligible & ((fields & 1) != 0)
        predicted = eligible & ((fields & 2) != 0)
        is_mask, is_random, view = (fields & 4) != 0, (fields & 8) != 0, fields >> 4
        word_start = word_start.repeat_interleave(views, dim=0)

    # Output row (b, j) corrupts and predicts view j only.
    in_view = view.unsqueeze(1) == torch.arange(views, device=ids.device).reshape(1, -1, 1)  # [B, n, L]
    selected = (selected.unsqueeze(1) & in_view).reshape(batch * views, length)
    predicted = (predicted.unsqueeze(1) & in_view).reshape(batch * views, length)
    w = w.repeat_interleave(views, dim=0)
    is_mask = is_mask.repeat_interleave(views, dim=0)
    is_random = is_random.repeat_interleave(views, dim=0)
    original = ids.repeat_interleave(views, dim=0)

    corrupted = torch.where(is_mask, mask_token_id, original.to(torch.int64))
    if replace_count > 0:
        corrupted = torch.where(is_random, random_ids(w[..., 2], special_ids, replace_table, replace_count), corrupted)
    out_ids = torch.where(selected, corrupted, original).to(ids.dtype)

    if max_predictions > 0:
        # Capacity: the first max_predictions predicted positions of a row, in position order, keep
        # their label; later ones lose it (their corruption stays). Whole words keep all their labels
        # or none: the word holding the first prediction past the capacity, and every later word, lose them.
        rank = predicted.cumsum(1) - 1
        if whole_words:
            overflow = predicted & (rank == max_predictions)
            cut = torch.where(overflow, word_start, length).amin(1, keepdim=True) if length > 0 else 0
            predicted &= positions < cut
        else:
            predicted &= rank < max_predictions
        slots = torch.full((batch * views, max_predictions + 1), -1, dtype=torch.int64, device=ids.device)
        slots.scatter_(1, torch.where(predicted, rank, max_predictions), positions.expand(batch * views, -1))
        kept_positions = slots[:, :max_predictions].contiguous()
    else:
        kept_positions = torch.empty(batch * views, 0, dtype=torch.int64, device=ids.device)
    labels = torch.where(predicted, original, torch.full_like(original, ignore_index))
    return out_ids, labels, kept_positions
