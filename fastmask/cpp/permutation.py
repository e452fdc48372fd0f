"""C++ launcher of permutation language modeling (csrc/permutation.cpp): tensors in, views to
fastmask._C. Arguments arrive normalized by fastmask.permutation."""
from __future__ import annotations

import torch

from . import cpp, int64, num_threads, view


def permutation_lm(ids, seed, keys, contexts, attempts, functional_ids, mask_token_id, ignore_index, dtype):
    batch, length = ids.shape
    out_ids = torch.empty((batch, length), dtype=ids.dtype)
    labels = torch.empty((batch, length), dtype=ids.dtype)
    perm_mask = torch.empty((batch, length, length), dtype=dtype)
    cpp().permutation_lm(
        view(ids), view(int64(seed)), view(keys), view(int64(contexts)), attempts, view(int64(functional_ids)),
        mask_token_id, ignore_index, view(out_ids), view(labels), view(perm_mask), num_threads(),
    )
    return out_ids, perm_mask, labels
