"""Backend choice (DESIGN.md), decided here and nowhere else: "auto" picks C++ on the CPU (the
reference if _C did not build) and Triton on CUDA; "reference", "cpp" and "triton" force one
implementation. Meta and fake tensors have shapes but no memory: every backend hands them to the
op's fake kernel (through the dispatcher), so no kernel ever reads their null pointers."""
from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensor

from . import cpp

BACKENDS = ("auto", "reference", "cpp", "triton")


def check_backend(backend) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def has_memory(tensor: torch.Tensor) -> bool:
    """False for meta and fake tensors (torch.compile's tracing, FakeTensorMode): nothing may read
    their contents, and only the fake kernels may see them."""
    return tensor.device.type != "meta" and not isinstance(tensor, FakeTensor)


def making_fake_tensors() -> bool:
    """Whether a FakeTensorMode is active: tensors made now are fake, so host caches of tensors
    must neither keep nor return them."""
    return torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE) is not None


def needs_dispatcher(tensor: torch.Tensor) -> bool:
    """Whether an op on `tensor` (its anchor: ids, logits, or the seed on the output device) must go
    through torch.ops rather than call an implementation directly: under torch.compile, and for
    tensors without memory, which the dispatcher sends to the fake kernel."""
    return torch.compiler.is_compiling() or not has_memory(tensor)


def resolve_backend(backend: str, device: torch.device) -> str:
    """The implementation that runs for `backend` on tensors of `device`. C++ reads raw pointers,
    so it is chosen for CPU memory only; meta tensors, which reach an implementation only when a
    caller skipped `needs_dispatcher`, get the pure-torch reference (it makes meta outputs)."""
    if device.type == "meta":
        return "reference"
    if backend == "auto":
        if device.type == "cuda":
            return "triton"
        return "cpp" if cpp.HAS_CPP and device.type == "cpu" else "reference"
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


def autocast_dtype(device: torch.device):
    """The dtype torch.autocast runs matmuls in on `device` now; None when it is off or the device
    type has no autocast (meta)."""
    if torch.amp.is_autocast_available(device.type) and torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None
