"""Philox4x32-10 in torch integer ops: uint32 words held in int64, with every 32x32-bit product
split so that no intermediate value exceeds 2^49 (no int64 overflow on any device)."""
from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85


def _mulhilo(multiplier: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(high word, low word) of multiplier * x for a 32-bit constant and uint32 values in int64."""
    low_product = multiplier * (x & 0xFFFF)  # < 2^48
    high_product = multiplier * (x >> 16)  # < 2^48
    middle = low_product + ((high_product & 0xFFFF) << 16)  # < 2^49
    return (high_product >> 16) + (middle >> 32), middle & _MASK32


def philox4x32_10(c0, c1, c2, c3, k0, k1) -> tuple[torch.Tensor, ...]:
    """Ten Philox rounds on broadcastable int64 tensors holding uint32 values."""
    for _ in range(10):
        hi_a, lo_a = _mulhilo(_ROUND_A, c0)
        hi_b, lo_b = _mulhilo(_ROUND_B, c2)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + _KEY_A) & _MASK32
        k1 = (k1 + _KEY_B) & _MASK32
    return c0, c1, c2, c3


def stream_words(seed: torch.Tensor, keys: torch.Tensor, positions: torch.Tensor, purpose: int) -> torch.Tensor:
    """The words of (seed, key, position, purpose) for int64 keys [R, 1] and positions [L]:
    int64 [R, L, 4] with values in [0, 2^32)."""
    seed = seed.to(torch.int64)
    keys = keys.to(torch.int64)
    c0 = positions.to(torch.int64) & _MASK32
    c1 = torch.full_like(c0, purpose & _MASK32)
    c2, c3 = keys & _MASK32, (keys >> 32) & _MASK32  # arithmetic shift, then masked: the high word
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    words = philox4x32_10(c0, c1, c2, c3, k0, k1)
    return torch.stack(torch.broadcast_tensors(*words), dim=-1)


def random_words(seed: torch.Tensor, keys: torch.Tensor, length: int, purpose: int) -> torch.Tensor:
    positions = torch.arange(length, device=keys.device)
    return stream_words(seed, keys.reshape(-1, 1), positions, purpose)
