"""The public ops: argument checks, defaults and backend choice, then the custom ops of _library."""
from __future__ import annotations

import torch

from . import _library
from ._backend import check_backend
from ._rng import TWO_32
from ._seed import resolve_seed
from ._validate import check_int, check_tensor

__all__ = ["random_words"]

_MAX_LENGTH = 1 << 31  # positions are one uint32 counter word; index math elsewhere assumes < 2^31


def random_words(seed, keys, length, purpose=0, backend="auto") -> torch.Tensor:
    """The raw random stream: Philox4x32-10 words for every (row, position).

    Args:
        seed: None (a fresh seed per call, from torch's default CPU generator), an int, or an int64
            tensor with one element (use a tensor under torch.compile: it never recompiles).
        keys: the sample keys, int64 (or int32) of shape [R]; a row's words depend only on its key.
        length: positions per row, in [0, 2^31).
        purpose: the counter word c1, in [0, 2^32); see fastmask._rng.Purpose.
        backend: "auto", "reference", "cpp" or "triton".

    Returns:
        int64 [R, length, 4] with values in [0, 2^32), on keys' device. Word j of position i in row
        r is word j of Philox4x32-10(key=(seed lo, seed hi), counter=(i, purpose, key lo, key hi)).
    """
    check_backend(backend)
    if not isinstance(keys, torch.Tensor):
        keys = torch.as_tensor(keys, dtype=torch.int64)
    check_tensor("keys", keys, dtypes=(torch.int64, torch.int32), ndim=1)
    check_int("length", length, 0, _MAX_LENGTH)
    check_int("purpose", purpose, 0, TWO_32)
    seed = resolve_seed(seed, keys.device)
    return _library.call(torch.ops.fastmask.random_words, _library.random_words_impl, seed, keys, length, purpose, backend)
