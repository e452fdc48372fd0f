"""C++ launchers of image and patch masking (csrc/image.cpp): tensors in, raw pointers to fastmask._C.

Arguments arrive normalized by fastmask.image, as for fastmask/reference/image.py. keys None: the
kernel uses the row index.
"""
from __future__ import annotations

import torch

from . import DTYPE_CODES, cpp, num_threads


def _int64(tensor):
    return tensor if tensor.dtype == torch.int64 and tensor.is_contiguous() else tensor.to(torch.int64).contiguous()


def _key_args(keys):
    return (0, -1, 0) if keys is None else (keys.data_ptr(), DTYPE_CODES[keys.dtype], keys.stride(0))


def block_mask(seed, keys, cum, shapes, batch, height, width, target, max_attempts, exact):
    out = torch.empty((batch, height, width), dtype=torch.bool)
    seed, cum, shapes = _int64(seed), _int64(cum), _int64(shapes)
    cpp().block_mask(
        seed.data_ptr(), *_key_args(keys), cum.data_ptr(), shapes.data_ptr(), cum.shape[0], shapes.shape[0],
        batch, height, width, target, max_attempts, bool(exact), out.data_ptr(), num_threads(),
    )
    return out


def patch_shuffle(seed, keys, batch, length, keep):
    mask = torch.empty((batch, length), dtype=torch.bool)
    ids_keep = torch.empty((batch, keep), dtype=torch.int64)
    ids_restore = torch.empty((batch, length), dtype=torch.int64)
    seed = _int64(seed)
    cpp().patch_shuffle(
        seed.data_ptr(), *_key_args(keys), batch, length, keep, mask.data_ptr(), ids_keep.data_ptr(),
        ids_restore.data_ptr(), num_threads(),
    )
    return mask, ids_keep, ids_restore
