"""The torch.library custom ops (namespace fastmask::): schemas, fake kernels, backend dispatch.

Each op takes its backend name as an argument, so forcing "reference", "cpp" or "triton" still goes
through the op (and so through torch.compile). Eager calls skip the dispatcher (see `call`).
"""
from __future__ import annotations

import torch

from ._backend import resolve_backend
from .cpp import rng as cpp_rng
from .reference import rng as reference_rng


def _triton_rng():
    from .triton import rng  # imports triton: only on the first Triton call

    return rng


def call(op, implementation, *args):
    """Run `op` under torch.compile (so it traces as one node) and `implementation` directly in
    eager mode, which saves the dispatcher's tens of microseconds per call."""
    if torch.compiler.is_compiling():
        return op(*args)
    return implementation(*args)


# --- random_words ----------------------------------------------------------------------------


def random_words_impl(seed: torch.Tensor, keys: torch.Tensor, length: int, purpose: int, backend: str) -> torch.Tensor:
    chosen = resolve_backend(backend, keys.device)
    if chosen == "cpp":
        return cpp_rng.random_words(seed, keys, length, purpose)
    if chosen == "triton":
        return _triton_rng().random_words(seed, keys, length, purpose)
    return reference_rng.random_words(seed, keys, length, purpose)


@torch.library.custom_op("fastmask::random_words", mutates_args=())
def random_words(seed: torch.Tensor, keys: torch.Tensor, length: int, purpose: int, backend: str) -> torch.Tensor:
    return random_words_impl(seed, keys, length, purpose, backend)


@random_words.register_fake
def _(seed, keys, length, purpose, backend):
    return keys.new_empty((keys.shape[0], length, 4), dtype=torch.int64)
