"""Triton GPU kernels (`_*_kernels.py`, importing only triton) and their launchers.

Importing this package imports triton; fastmask imports it lazily, on the first Triton call.
Set TRITON_INTERPRET=1 before that to run the kernels on CPU tensors (CI does).
"""
import contextlib

import torch
from triton.runtime.interpreter import InterpretedFunction as _InterpretedFunction

from ._rng_kernels import random_words_kernel as _probe

# Whether the kernels were built by Triton's interpreter (TRITON_INTERPRET=1 at import time).
INTERPRETED = isinstance(_probe, _InterpretedFunction)


def on_device_of(tensor: torch.Tensor):
    """Launch on the tensor's GPU, not the current one (Triton launches on the current CUDA device)."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()
