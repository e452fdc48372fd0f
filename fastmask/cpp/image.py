"""C++ launchers of image and patch masking (csrc/image.cpp): tensors in, views to fastmask._C.

Arguments arrive normalized by fastmask.image, as for fastmask/reference/image.py. keys None: the
kernel uses the row index.
"""
from __future__ import annotations

import torch

from . import cpp, int64, num_threads, view


def block_mask(seed, keys, cum, shapes, batch, height, width, target, max_attempts, exact):
    out = torch.empty((batch, height, width), dtype=torch.bool)
    cpp().block_mask(
        view(int64(seed)), view(keys), view(int64(cum)), view(int64(shapes)), target, max_attempts, bool(exact), view(out),
        num_threads(),
    )
    return out


def patch_shuffle(seed, keys, batch, length, keep):
    mask = torch.empty((batch, length), dtype=torch.bool)
    ids_keep = torch.empty((batch, keep), dtype=torch.int64)
    ids_restore = torch.empty((batch, length), dtype=torch.int64)
    cpp().patch_shuffle(view(int64(seed)), view(keys), view(mask), view(ids_keep), view(ids_restore), num_threads())
    return mask, ids_keep, ids_restore
