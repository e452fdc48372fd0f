"""Loads the C++ kernels (fastmask._C); the modules beside this one turn tensors into their raw arguments."""
from __future__ import annotations

import os
import warnings
from typing import Optional

import torch

# The dtype codes of csrc/common.h.
DTYPE_CODES = {
    torch.int32: 0,
    torch.int64: 1,
    torch.float32: 2,
    torch.float16: 3,
    torch.bfloat16: 4,
    torch.float64: 5,
    torch.bool: 6,
    torch.uint8: 7,
}

try:
    from .. import _C
except ImportError as error:  # the extension did not build, or this is a source tree without it
    if os.environ.get("FASTMASK_REQUIRE_CPP") == "1":
        raise ImportError(
            "fastmask: FASTMASK_REQUIRE_CPP=1 but the C++ extension fastmask._C is missing; "
            "rebuild it with `pip install -e .` (or `make install`)"
        ) from error
    _C = None
    warnings.warn(
        f"fastmask: the C++ extension fastmask._C could not be imported ({error}); CPU ops fall back "
        "to the slow pure-torch reference.",
        RuntimeWarning,
        stacklevel=2,
    )

HAS_CPP = _C is not None


def check_constants(module) -> None:
    """The constants a build of _C was compiled with (csrc/constants.h) against the Python side:
    the stream version, the purposes, the dtype codes and the word codes. A mismatch means a stale
    or foreign build whose kernels would draw other bits, so it is an ImportError, not a warning."""
    from .. import words
    from .._rng import STREAM_VERSION, Purpose

    expected = {
        "STREAM_VERSION": STREAM_VERSION,
        # Purposes only a reference/Triton family uses need no C++ twin; those C++ has must agree.
        "PURPOSES": {name: int(Purpose[name]) for name in module.PURPOSES if name in Purpose.__members__},
        "DTYPE_CODES": {str(dtype).removeprefix("torch."): code for dtype, code in DTYPE_CODES.items()},
        "WORD_CODES": {"CONTINUES": words.CONTINUES, "STARTS": words.STARTS, "NO_WORD": words.NO_WORD},
    }
    for name, value in expected.items():
        built = getattr(module, name, None)
        if isinstance(built, dict):
            built = dict(built)
        if built != value:
            raise ImportError(
                f"fastmask: the C++ extension fastmask._C was built with {name} = {built!r}, but this fastmask "
                f"expects {value!r}; rebuild it (python setup.py build_ext --inplace, or pip install -e .)"
            )


if HAS_CPP:
    check_constants(_C)


class _Checked:
    """fastmask._C whose kernels raise: each returns its error message ("" when none) instead of
    throwing through pybind11 (csrc/module.cpp says why); here a message becomes a ValueError."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        function = getattr(self._module, name)
        if not callable(function):
            return function

        def call(*args, **kwargs):
            result = function(*args, **kwargs)
            if isinstance(result, str):
                if result:
                    raise ValueError(result)
                return None
            return result

        call.__name__ = name
        setattr(self, name, call)  # resolved once per name
        return call


_CHECKED = None if _C is None else _Checked(_C)


def cpp():
    """The C++ module (errors raised as ValueError), or a clear error when it did not build."""
    if _CHECKED is None:
        raise RuntimeError("fastmask: backend='cpp' needs the C++ extension fastmask._C, which is not built")
    return _CHECKED


def num_threads() -> int:
    """Threads for a C++ kernel: torch's setting, which DataLoader workers set to 1 (docs/policies.md)."""
    return torch.get_num_threads()


def view(tensor: Optional[torch.Tensor]):
    """A tensor as the kernels see it (csrc/common.h, TensorView): (address, dtype code, shape,
    strides), or None for an absent optional tensor. The binding checks pointer, sizes and strides."""
    if tensor is None:
        return None
    return tensor.data_ptr(), DTYPE_CODES[tensor.dtype], tensor.shape, tensor.stride()


def int64(tensor: torch.Tensor) -> torch.Tensor:
    """A small host tensor (seed, thresholds, tables) as contiguous int64: functional already makes
    them so (checked: a conversion costs microseconds, a sizable part of a small call)."""
    return tensor if tensor.dtype == torch.int64 and tensor.is_contiguous() else tensor.to(torch.int64).contiguous()
