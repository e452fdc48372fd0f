"""The seed policy (docs/policies.md): every sampling op takes `seed=None | int | int64 tensor`."""
from __future__ import annotations

from typing import Optional

import torch

from ._validate import check_tensor

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


_INT64_END = 1 << 63


def as_keys(values, name: str = "keys") -> torch.Tensor:
    """Sample keys (or dataset indices) as an integer tensor: a tensor of an integer dtype as is, a
    sequence of Python or numpy integers exactly as int64. Floats (which would be truncated),
    bools, strings and integers outside [-2^63, 2^63) raise ValueError naming `name`."""
    if isinstance(values, torch.Tensor):
        tensor = values
    elif isinstance(values, (str, bytes)):
        raise ValueError(f"{name}: expected integers, got a {type(values).__name__}")
    else:
        try:
            tensor = torch.as_tensor(values)
        except (TypeError, ValueError, RuntimeError, OverflowError) as error:
            raise ValueError(f"{name}: expected integers in [-2**63, 2**63), got {_preview(values)} ({error})") from None
        if tensor.numel() == 0:
            return torch.empty(tensor.shape, dtype=torch.int64)  # [] infers float32
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise ValueError(f"{name}: expected integers, got {str(tensor.dtype).removeprefix('torch.')} values "
                         f"{_preview(values)}")
    if tensor.dtype == torch.uint64:
        if any(v >= _INT64_END for v in tensor.reshape(-1).tolist()):
            raise ValueError(f"{name}: expected integers in [-2**63, 2**63), got {_preview(values)}")
        tensor = tensor.to(torch.int64)
    return tensor if isinstance(values, torch.Tensor) else tensor.to(torch.int64)


def _preview(values) -> str:
    text = repr(values.tolist() if isinstance(values, torch.Tensor) and values.numel() <= 8 else values)
    return text if len(text) <= 80 else text[:77] + "..."


def check_keys(keys, batch: Optional[int], device) -> Optional[torch.Tensor]:
    """Sample keys: int64/int32 [batch] on `device` (any length when batch is None; a sequence is
    made there), or None, which stays None (the row index, supplied by the backend)."""
    if keys is None:
        return None
    given = keys
    keys = as_keys(keys)
    if not isinstance(given, torch.Tensor) and device is not None:  # a sequence of keys: made on the op's device
        keys = keys.to(device)
    check_tensor("keys", keys, dtypes=(torch.int64, torch.int32), ndim=1)
    if batch is not None and (keys.shape[0] != batch or keys.device != device):
        raise ValueError(f"keys: expected {batch} keys on {device}, got {tuple(keys.shape)} on {keys.device}")
    return keys
