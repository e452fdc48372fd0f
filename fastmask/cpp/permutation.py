"""C++ launcher of permutation language modeling (csrc/permutation.cpp): tensors in, raw pointers to
fastmask._C. Arguments arrive normalized by fastmask.permutation."""
from __future__ import annotations

import torch

from . import DTYPE_CODES, cpp, num_threads


def permutation_lm(ids, seed, keys, contexts, attempts, functional_ids, mask_token_id, ignore_index, dtype):
    batch, length = ids.shape
    out_ids = torch.empty((batch, length), dtype=ids.dtype)
    labels = torch.empty((batch, length), dtype=ids.dtype)
    perm_mask = torch.empty((batch, length, length), dtype=dtype)
    contexts, functional_ids = contexts.to(torch.int64).contiguous(), functional_ids.to(torch.int64).contiguous()
    cpp().permutation_lm(
        ids.data_ptr(), DTYPE_CODES[ids.dtype], ids.stride(0), ids.stride(1), batch, length, seed.data_ptr(),
        keys.data_ptr(), DTYPE_CODES[keys.dtype], keys.stride(0), contexts.data_ptr(), contexts.shape[0], attempts,
        functional_ids.data_ptr(), functional_ids.shape[0], mask_token_id, ignore_index, out_ids.data_ptr(),
        labels.data_ptr(), perm_mask.data_ptr(), DTYPE_CODES[dtype], num_threads(),
    )
    return out_ids, perm_mask, labels
