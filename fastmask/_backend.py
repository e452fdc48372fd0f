"""Backend choice (DESIGN.md): "auto" picks C++ on the CPU (the reference if _C did not build) and
Triton on CUDA; "reference", "cpp" and "triton" force one implementation."""
from __future__ import annotations

import torch

from . import cpp

BACKENDS = ("auto", "reference", "cpp", "triton")


def check_backend(backend) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def resolve_backend(backend: str, device: torch.device) -> str:
    """The implementation that runs for `backend` on tensors of `device`."""
    if backend == "auto":
        if device.type == "cuda":
            return "triton"
        return "cpp" if cpp.HAS_CPP else "reference"
    if backend == "cpp" and device.type != "cpu":
        raise ValueError(f"backend: 'cpp' runs on CPU tensors, got tensors on {device}")
    if backend == "triton" and device.type == "cpu" and not triton_interpreting():
        raise ValueError("backend: 'triton' on CPU tensors needs the Triton interpreter (TRITON_INTERPRET=1 before import)")
    return backend


def triton_interpreting() -> bool:
    """Whether fastmask's Triton kernels were built by the interpreter (TRITON_INTERPRET=1)."""
    try:
        from .triton import INTERPRETED
    except ImportError:
        return False
    return INTERPRETED
