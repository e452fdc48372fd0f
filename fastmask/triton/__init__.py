"""Triton GPU kernels (`_*_kernels.py`, importing only triton) and their launchers.

Importing this package imports triton; fastmask imports it lazily, on the first Triton call.
Set TRITON_INTERPRET=1 before that to run the kernels on CPU tensors (CI does).
"""
from ._rng_kernels import random_words_kernel as _probe
from triton.runtime.interpreter import InterpretedFunction as _InterpretedFunction

# Whether the kernels were built by Triton's interpreter (TRITON_INTERPRET=1 at import time).
INTERPRETED = isinstance(_probe, _InterpretedFunction)
