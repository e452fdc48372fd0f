"""T5 span corruption and UL2 mixtures (docs/t5.md), in torch ops: the executable specification.

Arguments arrive normalized by fastmask.t5: ids [B, L]; table int64 [D, 5], one row per denoiser:
(cumulative choice threshold, n, k, d, sentinels): a row with this denoiser has
N = n - d + ((w1 * (2d + 1)) >> 32) noise tokens in k spans and M = L - N others, with sentinels
(1) or without (0, the prefix LM); sentinels int64, at least max k of the sentinel denoisers.
"""
from __future__ import annotations

import torch

from .._rng import Purpose
from .rng import stream_words

_PACK_SHIFT = 31
_NOT_A_GAP = torch.iinfo(torch.int64).max


def choose_denoisers(seed, keys, table):
    """(denoiser index, noise count N) per row, int64 [B, 1] each."""
    u = stream_words(seed, keys.reshape(-1, 1), torch.zeros(1, dtype=torch.int64, device=keys.device), Purpose.UL2_DENOISER)
    u = u[:, 0, :]
    # The first i with w0 < threshold_i (the last threshold is 2^32): the number of thresholds <= w0.
    choice = (u[:, 0:1] >= table[:-1, 0].reshape(1, -1)).sum(1, keepdim=True)
    n, d = table[choice, 1], table[choice, 3]
    noise = n - d + ((u[:, 1:2] * (2 * d + 1)) >> 32)
    return choice, noise


def cut_gaps(word, gap, items, spans):
    """bool [B, L]: the spans - 1 gaps in [0, items - 1) with the smallest (word << 31) | gap."""
    packed = torch.where(gap < items - 1, (word << _PACK_SHIFT) | gap, _NOT_A_GAP)
    ordered = packed.sort(dim=1).values
    wanted = spans - 1
    kth = torch.where(wanted > 0, ordered.gather(1, (wanted - 1).clamp(min=0)), -1)
    return packed <= kth


def segment_ends(cut, gap, items, length):
    """int64 [B, L + 1]: entry s = the end (exclusive) of segment s, for s < spans; cut gap g of rank
    r ends segment r at g + 1, and the last segment ends at `items`. Column L is a dump."""
    rank = cut.cumsum(1) - 1
    ends = torch.zeros(cut.shape[0], length + 1, dtype=torch.int64, device=cut.device)
    ends.scatter_(1, torch.where(cut, rank, length), (gap + 1).expand_as(rank))
    ends.scatter_(1, cut.sum(1, keepdim=True), items)
    return ends


def span_corruption(ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw=True):
    batch, length = ids.shape
    device = ids.device
    table = table.to(device=device, dtype=torch.int64)
    choice, noise = choose_denoisers(seed, keys, table)
    plain = length - noise
    spans = table[choice, 2]
    with_sentinels = table[choice, 4]  # 1 or 0

    gap = torch.arange(length, device=device)
    # Gap g: word g % 2 (noise) and 2 + g % 2 (non-noise) of position g // 2.
    w = stream_words(seed, keys.reshape(-1, 1), gap // 2, Purpose.T5_SPANS)
    odd = (gap % 2) == 1
    cut_noise = cut_gaps(torch.where(odd, w[..., 1], w[..., 0]), gap, noise, spans)
    cut_plain = cut_gaps(torch.where(odd, w[..., 3], w[..., 2]), gap, plain, spans)
    # Item j lies in segment (cuts at gaps < j); segments s end at ends[s].
    seg_noise = cut_noise.cumsum(1) - cut_noise.to(torch.int64)
    seg_plain = cut_plain.cumsum(1) - cut_plain.to(torch.int64)
    ends_noise = segment_ends(cut_noise, gap, noise, length)
    ends_plain = segment_ends(cut_plain, gap, plain, length)
    starts_noise = torch.cat([torch.zeros_like(ends_noise[:, :1]), ends_noise[:, :-1]], dim=1)

    values = ids.to(torch.int64)
    inputs = torch.full((batch, input_length + 1), pad, dtype=torch.int64, device=device)  # last column: a dump
    targets = torch.full((batch, target_length + 1), pad, dtype=torch.int64, device=device)

    # Non-noise item j of segment s: row position j + (noise before it) = j + starts_noise[s];
    # input position j + s (one sentinel per earlier span).
    source = (gap + starts_noise.gather(1, seg_plain)).clamp(max=length - 1)
    where = torch.where(gap < plain, gap + with_sentinels * seg_plain, input_length)
    inputs.scatter_(1, where, values.gather(1, source))
    # Noise item j of segment s: row position j + ends_plain[s]; target position j + s + 1.
    source = (gap + ends_plain.gather(1, seg_noise)).clamp(max=length - 1)
    where = torch.where(gap < noise, gap + with_sentinels * (seg_noise + 1), target_length)
    targets.scatter_(1, where, values.gather(1, source))

    # Sentinel s: in the inputs after non-noise segment s, in the targets before noise segment s.
    span = gap
    has_sentinel = (span < spans) & (with_sentinels == 1)
    sentinel = sentinels.to(device=device, dtype=torch.int64)[span.clamp(max=sentinels.shape[0] - 1)].expand(batch, -1)
    inputs.scatter_(1, torch.where(has_sentinel, ends_plain[:, :length] + span, input_length), sentinel)
    targets.scatter_(1, torch.where(has_sentinel, starts_noise[:, :length] + span, target_length), sentinel)

    input_lengths = plain + with_sentinels * spans + 1
    target_lengths = noise + with_sentinels * spans + 1
    inputs.scatter_(1, input_lengths - 1, torch.full_like(input_lengths, eos))
    targets.scatter_(1, target_lengths - 1, torch.full_like(target_lengths, eos))
    return (
        inputs[:, :input_length].to(ids.dtype).contiguous(),
        targets[:, :target_length].to(ids.dtype).contiguous(),
        input_lengths.reshape(-1),
        target_lengths.reshape(-1),
        choice.reshape(-1),
    )
