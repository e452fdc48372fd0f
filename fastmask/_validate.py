"""Host-side argument checks shared by every op (docs/policies.md). Each raises ValueError naming
the argument. Tensor *contents* are checked inside the C++ kernels, and on the GPU only under
validate=True."""
from __future__ import annotations

import math
import numbers
import os

import torch

from ._backend import has_memory


def check_probability(name: str, p) -> float:
    if type(p) is float and 0.0 <= p <= 1.0:  # the common case (NaN fails the compare)
        return p
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {p!r}")
    return float(p)


def check_int(name: str, value, low: int, high: int) -> int:
    """An integer in [low, high)."""
    if type(value) is int and low <= value < high:  # the common case, without the ABC checks below
        return value
    if isinstance(value, torch.SymInt):  # a dynamic shape under torch.compile: guarded, not checked
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer, got {type(value).__name__}")
    if not low <= value < high:
        raise ValueError(f"{name}: expected an integer in [{low}, {high}), got {value}")
    return int(value)


def check_tensor(name: str, tensor, *, dtypes: tuple[torch.dtype, ...], ndim: int) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor, got {type(tensor).__name__}")
    if tensor.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise ValueError(f"{name}: expected dtype {names}, got {str(tensor.dtype).removeprefix('torch.')}")
    if tensor.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {tuple(tensor.shape)}")
    return tensor


def check_same_shape(name: str, tensor, like: torch.Tensor, *, dtypes: tuple[torch.dtype, ...]) -> torch.Tensor:
    """A per-position tensor (masks) with `like`'s shape and device."""
    check_tensor(name, tensor, dtypes=dtypes, ndim=like.dim())
    if tensor.shape != like.shape:
        raise ValueError(f"{name}: expected shape {tuple(like.shape)} like input_ids, got {tuple(tensor.shape)}")
    if tensor.device != like.device:
        raise ValueError(f"{name}: expected a tensor on {like.device} like input_ids, got {tensor.device}")
    return tensor


def check_ids_in_range(name: str, ids: torch.Tensor, high: int) -> None:
    """Tensor contents in [0, high): reads the tensor, so on a GPU this syncs (validate=True only).
    Meta and fake tensors have no contents to check."""
    if not has_memory(ids):
        return
    bad = (ids < 0) | (ids >= high)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name}: id {int(ids[where])} at position {where} is outside the vocabulary [0, {high})")


def check_id_rows(input_ids, dtypes: tuple[torch.dtype, ...], max_length: int) -> tuple[torch.Tensor, bool]:
    """input_ids [B, L] or [L] (one row) as [B, L], and whether it was one row; L below max_length
    (positions are one 32-bit counter word)."""
    one_row = isinstance(input_ids, torch.Tensor) and input_ids.dim() == 1
    check_tensor("input_ids", input_ids, dtypes=dtypes, ndim=1 if one_row else 2)
    ids = input_ids.unsqueeze(0) if one_row else input_ids
    check_int("sequence length", ids.shape[1], 0, max_length)
    return ids, one_row


_GIB = 1 << 30


def check_memory(name: str, nbytes, what, device: torch.device) -> None:
    """Refuse an allocation of `nbytes` that cannot succeed, before trying it: ValueError naming the
    argument and the memory it would take (`what()` says what it is for). Only sizes above 1 GiB look
    at the device; meta tensors allocate nothing; under torch.compile (symbolic sizes) nothing is asked."""
    if torch.compiler.is_compiling() or nbytes <= _GIB or device.type == "meta":
        return
    available = _available_bytes(device)
    if available is not None and nbytes > available:
        raise ValueError(f"{name}: {what()} would take {nbytes / _GIB:.1f} GiB, more than the {available / _GIB:.1f} GiB "
                         f"of {device.type} memory available")


def _available_bytes(device: torch.device):
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] if torch.cuda.is_available() else None
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
