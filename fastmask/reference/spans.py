"""Span and n-gram masking (docs/spans.md), in torch ops and a plain per-row loop: the executable
specification of mask_spans.

Arguments arrive normalized by fastmask.spans: ids [B, L]; thresholds int64 [3] = floor(p * 2^32) of
(mlm_probability, mask_replace_prob, random_replace_prob); table int64 [M], the length CDF
thresholds (last = 2^32); special_ids sorted, unique, int64, holding the mask token; words None
(every token its own word) or the uint8 word codes of fastmask.words; replace_table/replace_count
as mask_tokens.
"""
from __future__ import annotations

import torch

from .._rng import Purpose
from ..words import STARTS
from .masking import count, eligible_positions, random_ids, spread_words, word_starts
from .rng import stream_words

MASK, RANDOM, KEEP = 1, 2, 3  # a span's kind; 0 = not in a span


def attempt_cap(budget: int) -> int:
    return min(4 * budget + 16, (1 << 31) - 1)


def span_length(word: int, table: list) -> int:
    """1 + #{j : word >= table[j]}."""
    return 1 + sum(1 for t in table if word >= t)


def draw_lengths(seed, keys, attempts, table) -> torch.Tensor:
    """int64 [R, attempts]: the length drawn by each attempt (w1 of position a) for rows keyed `keys`."""
    w = stream_words(seed, keys.reshape(-1, 1), torch.arange(attempts, device=keys.device), int(Purpose.SPANS))
    return 1 + (w[..., 1].unsqueeze(-1) >= table.to(w.device).reshape(1, 1, -1)).sum(-1)


def plan_row(sizes: list, budget: int, words, table: list, mask_t: int, random_t: int) -> list:
    """The spans of one row as (first word, end word, kind), in attempt order. sizes: tokens per word;
    words(a) -> (w0, w1, w2) of attempt a."""
    num_words = len(sizes)
    taken = [False] * num_words
    spans = []
    masked, attempt, cap = 0, 0, attempt_cap(budget)
    while masked < budget and attempt < cap:
        w0, w1, w2 = words(attempt)
        attempt += 1
        start = (w0 * num_words) >> 32
        length = span_length(w1, table)
        if taken[start]:
            continue
        end, size = start, 0
        while end < num_words and end - start < length and not taken[end] and masked + size + sizes[end] <= budget:
            size += sizes[end]
            end += 1
        if end == start:
            continue
        kind = MASK if w2 < mask_t else (RANDOM if w2 < mask_t + random_t else KEEP)
        for k in range(start, end):
            taken[k] = True
        spans.append((start, end, kind))
        masked += size
    return spans


def mask_spans(
    ids, seed, keys, thresholds, table, special_ids, special_mask, attention_mask, words, replace_table, replace_count,
    mask_token_id, max_predictions, ignore_index,
):
    batch, length = ids.shape
    device = ids.device
    positions = torch.arange(length, device=device)
    eligible = eligible_positions(ids, special_ids, special_mask, attention_mask, None)
    if words is None:
        words = torch.full_like(ids, STARTS, dtype=torch.uint8)
    eligible, starts = word_starts(eligible, words.to(device))
    select_t, mask_t, random_t = (int(v) for v in thresholds.tolist())
    table_list = [int(v) for v in table.tolist()]
    budgets = count(select_t, eligible.sum(1)).tolist()

    # The word index of every token (-1 before the first word) and the word sizes, per row.
    word_index = starts.long().cumsum(1) - 1
    kind = torch.zeros(batch, length, dtype=torch.int64, device=device)
    for b in range(batch):
        budget = budgets[b]
        if budget == 0:
            continue
        index = word_index[b][eligible[b]]
        sizes = torch.bincount(index, minlength=int(starts[b].sum())).tolist()
        cap = attempt_cap(budget)
        w = stream_words(seed, keys[b].reshape(1, 1), torch.arange(cap, device=device), int(Purpose.SPANS))[0].tolist()
        spans = plan_row(sizes, budget, lambda a: w[a][:3], table_list, mask_t, random_t)
        word_kind = torch.zeros(len(sizes), dtype=torch.int64)
        for start, end, k in spans:
            word_kind[start:end] = k
        kind[b] = torch.where(eligible[b], word_kind.to(device)[word_index[b].clamp(min=0)], 0)

    w3 = stream_words(seed, keys.reshape(-1, 1), positions, int(Purpose.SPANS))[..., 3]
    original = ids.to(torch.int64)
    corrupted = torch.where(kind == MASK, mask_token_id, original)
    if replace_count > 0:
        corrupted = torch.where(kind == RANDOM, random_ids(w3, special_ids, replace_table, replace_count), corrupted)
    out_ids = corrupted.to(ids.dtype)
    predicted = kind > 0

    if max_predictions > 0:
        # Whole words: the word holding the first prediction past the capacity, and later ones, lose labels.
        _, word_start = spread_words(starts, torch.zeros_like(original), positions.expand(batch, -1))
        rank = predicted.long().cumsum(1) - 1
        overflow = predicted & (rank == max_predictions)
        cut = torch.where(overflow, word_start, length).amin(1, keepdim=True) if length > 0 else 0
        predicted &= positions < cut
        slots = torch.full((batch, max_predictions + 1), -1, dtype=torch.int64, device=device)
        slots.scatter_(1, torch.where(predicted, rank, max_predictions), positions.expand(batch, -1).contiguous())
        kept_positions = slots[:, :max_predictions].contiguous()
    else:
        kept_positions = torch.empty(batch, 0, dtype=torch.int64, device=device)
    labels = torch.where(predicted, original, ignore_index).to(ids.dtype)
    return out_ids, labels, kept_positions
