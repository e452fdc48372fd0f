"""The seed policy (docs/policies.md): every sampling op takes `seed=None | int | int64 tensor`."""
from __future__ import annotations

import torch

_INT64_MIN, _UINT64_END = -(1 << 63), 1 << 64


def resolve_seed(seed, device: torch.device) -> torch.Tensor:
    """The seed as an int64 0-d tensor on `device`.

    None draws a fresh 63-bit seed from torch's default CPU generator (so torch.manual_seed governs
    it and two calls differ); an int in [-2^63, 2^64) is taken modulo 2^64; a tensor must hold one
    int64 and is used as is, which keeps compiled graphs from recompiling and never syncs.
    """
    if seed is None:
        seed = torch.randint(0, (1 << 63) - 1, (), dtype=torch.int64)
    elif isinstance(seed, torch.Tensor):
        if seed.dtype != torch.int64 or seed.numel() != 1:
            raise ValueError(f"seed: expected an int64 tensor with one element, got {seed.dtype} of shape {tuple(seed.shape)}")
        if seed.dim() == 0 and seed.device == device:
            return seed
        seed = seed.reshape(())
    elif isinstance(seed, int) and not isinstance(seed, bool):
        if not _INT64_MIN <= seed < _UINT64_END:
            raise ValueError(f"seed: expected an integer in [-2**63, 2**64), got {seed}")
        if seed >= 1 << 63:
            seed -= 1 << 64
        seed = torch.tensor(seed, dtype=torch.int64)
    else:
        raise ValueError(f"seed: expected None, an int or an int64 tensor, got {type(seed).__name__}")
    # Pageable host -> device copies with non_blocking=True are staged without waiting for the GPU.
    return seed.to(device, non_blocking=True)
