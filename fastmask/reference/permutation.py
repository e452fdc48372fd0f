"""Permutation language modeling (XLNet), the executable specification (docs/permutation.md).

Arguments arrive normalized by fastmask.permutation: ids [B, L] (L even), seed 0-d int64, keys [B],
contexts int64 [M] (the context length of a span of length s is contexts[s - 1]), attempts (spans
drawn per row, enough to pass L), functional_ids int64 (sorted: special and padding ids)."""
from __future__ import annotations

import torch

from .._rng import Purpose
from .rng import stream_words

SLOT_BITS = 30  # order key = (upper half << 62) | (w2 << 30) | slot, slot < 2^30


def targets(ids, seed, keys, contexts, attempts, functional_ids):
    """(targets, functional) bool [B, L]: the spans' tokens that are not functional, and the functional tokens."""
    batch, length = ids.shape
    device = ids.device
    most = contexts.shape[0]
    positions = torch.arange(max(attempts, length // 2), device=device)
    words = stream_words(seed, keys.reshape(-1, 1), positions, int(Purpose.PERMUTATION))
    w0, w1 = words[:, :attempts, 0], words[:, :attempts, 1]
    span = 1 + ((w0 * most) >> 32)  # [B, A] in [1, most]
    context = contexts.to(device)[span - 1]
    start = torch.cumsum(context, dim=1) - context + ((w1 * (context - span + 1)) >> 32)
    step = torch.arange(most, device=device)
    covered = start[..., None] + step  # [B, A, most]
    inside = (step < span[..., None]) & (covered < length)
    spans = torch.zeros((batch, length + 1), dtype=torch.bool, device=device)
    spans.scatter_(1, torch.where(inside, covered, length).reshape(batch, attempts * most), True)  # column L collects the rest
    functional = torch.isin(ids, functional_ids.to(device))
    return spans[:, :length] & ~functional, functional, words[:, : length // 2, 2]


def permutation_lm(ids, seed, keys, contexts, attempts, functional_ids, mask_token_id, ignore_index, dtype):
    """(input_ids, perm_mask [B, L, L] of `dtype`, labels), HF's DataCollatorForPermutationLanguageModeling."""
    batch, length = ids.shape
    device = ids.device
    masked, functional, w2 = targets(ids, seed, keys, contexts, attempts, functional_ids)
    half = length // 2
    position = torch.arange(length, device=device)
    slot = position % max(half, 1)
    upper = (position >= half).to(torch.int64)
    order = (upper << 62) | (w2[:, slot] << SLOT_BITS) | slot  # the factorisation order, as an int64 key
    free = ~masked & ~functional  # seen by every token, sees no target
    row_key = torch.where(free, -1, order)
    column_key = torch.where(masked, order, -2)
    perm_mask = (row_key[:, :, None] <= column_key[:, None, :]).to(dtype)
    out_ids = torch.where(masked, torch.as_tensor(mask_token_id, dtype=ids.dtype, device=device), ids)
    labels = torch.where(masked, ids, torch.as_tensor(ignore_index, dtype=ids.dtype, device=device))
    return out_ids, perm_mask, labels
