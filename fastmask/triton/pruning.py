"""Launchers of the magnitude-pruning kernels: per group, one 16-bit digit histogram pass per digit
of the key (1 for half types, 2 for float32, 4 for float64), each followed by a scan on the device
(cumsum + searchsorted) that extends the threshold prefix; then a tie count per block and the mask
write. The count k is a host int (from shapes), every data-dependent value stays on the device."""
from __future__ import annotations

import torch
import triton

from . import on_device_of
from ._pruning_kernels import digit_hist_kernel, nm_mask_kernel, tie_count_kernel, write_mask_kernel

BLOCK = 1024
# (integer view, key bits) of each float dtype: the key is |x|'s bits, the sign cleared.
_KEYS = {
    torch.float16: (torch.int16, 15),
    torch.bfloat16: (torch.int16, 15),
    torch.float32: (torch.int32, 31),
    torch.float64: (torch.int64, 63),
}


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(-1).view(_KEYS[x.dtype][0])


def _select(group: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    total = sum(s.numel() for s in group)
    device = group[0].device
    if k <= 0 or k >= total:
        return [torch.full(s.shape, k <= 0, dtype=torch.bool, device=device) for s in group]
    key_bits = _KEYS[group[0].dtype][1]
    key_mask = (1 << key_bits) - 1
    bits = [_bits(s) for s in group]
    prefix = torch.zeros((), dtype=torch.int64, device=device)
    rank = torch.full((1,), k, dtype=torch.int64, device=device)  # 1-based rank of the k-th key among the prefix's
    shift = key_bits
    with on_device_of(group[0]):
        while shift > 0:
            digit_bits = min(16, shift)
            shift -= digit_bits
            hist = torch.zeros(1 << digit_bits, dtype=torch.int64, device=device)
            for x in bits:
                if x.numel():
                    digit_hist_kernel[(triton.cdiv(x.numel(), BLOCK),)](
                        x, prefix, hist, x.numel(), KEY_MASK=key_mask, SHIFT=shift, DIGIT_BITS=digit_bits, BLOCK=BLOCK)
            cum = hist.cumsum(0)
            digit = torch.searchsorted(cum, rank)  # the first digit whose cumulative count reaches the rank
            rank = rank - (cum.gather(0, digit) - hist.gather(0, digit))
            prefix = (prefix << digit_bits) | digit.view(())
        # prefix is now the k-th key itself; rank of the ties at it are pruned, in position order.
        blocks = [triton.cdiv(x.numel(), BLOCK) for x in bits]
        counts = torch.zeros(sum(blocks), dtype=torch.int64, device=device)
        first = 0
        for x, nb in zip(bits, blocks):
            if nb:
                tie_count_kernel[(nb,)](x, prefix, counts, x.numel(), first, KEY_MASK=key_mask, BLOCK=BLOCK)
            first += nb
        starts = counts.cumsum(0) - counts
        masks, first = [], 0
        for s, x, nb in zip(group, bits, blocks):
            mask = torch.empty(s.shape, dtype=torch.bool, device=device)
            if nb:
                write_mask_kernel[(nb,)](x, prefix, rank, starts, mask.view(torch.int8), x.numel(), first,
                                         KEY_MASK=key_mask, BLOCK=BLOCK)
            first += nb
            masks.append(mask)
    return masks


def magnitude_masks(scores: list[torch.Tensor], counts: list[int]) -> list[torch.Tensor]:
    if len(counts) == 1:
        return _select(scores, counts[0])
    return [mask for s, k in zip(scores, counts) for mask in _select([s], k)]


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    bits = _bits(scores)
    mask = torch.empty(scores.shape, dtype=torch.bool, device=scores.device)
    groups = bits.numel() // m
    lanes = triton.next_power_of_2(m)
    per_program = max(1, 4096 // (lanes * lanes))
    if groups:
        with on_device_of(scores):
            nm_mask_kernel[(triton.cdiv(groups, per_program),)](
                bits, mask.view(torch.int8), groups, n, m, KEY_MASK=(1 << _KEYS[scores.dtype][1]) - 1, M=lanes,
                GROUPS=per_program)
    return mask
