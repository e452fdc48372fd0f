"""Launchers of the permutation-LM kernels: three launches, no host sync (docs/permutation.md)."""
from __future__ import annotations

import torch
import triton

from .._rng import Purpose
from . import on_device_of
from ._permutation_kernels import permutation_keys_kernel, permutation_mask_kernel, permutation_spans_kernel

BLOCK_A, BLOCK, BLOCK_I, BLOCK_J = 128, 512, 32, 128


def permutation_lm(ids, seed, keys, contexts, attempts, functional_ids, mask_token_id, ignore_index, dtype):
    batch, length = ids.shape
    device = ids.device
    out_ids = torch.empty((batch, length), dtype=ids.dtype, device=device)
    labels = torch.empty((batch, length), dtype=ids.dtype, device=device)
    perm_mask = torch.empty((batch, length, length), dtype=dtype, device=device)
    if batch == 0 or length == 0:
        return out_ids, perm_mask, labels
    spans = torch.zeros((batch, length), dtype=torch.int8, device=device)
    row_key = torch.empty((batch, length), dtype=torch.int64, device=device)
    column_key = torch.empty((batch, length), dtype=torch.int64, device=device)
    num_functional = functional_ids.shape[0]
    if num_functional == 0:  # a valid pointer that the kernel never reads
        functional_ids = contexts
    purpose = int(Purpose.PERMUTATION)
    with on_device_of(ids):
        permutation_spans_kernel[(batch,)](seed, keys, contexts, spans, length, contexts.shape[0], attempts, keys.stride(0),
                                           purpose, BLOCK_A=BLOCK_A)
        permutation_keys_kernel[(batch, triton.cdiv(length, BLOCK))](
            ids, seed, keys, spans, functional_ids, out_ids, labels, row_key, column_key, length, num_functional,
            ids.stride(0), ids.stride(1), keys.stride(0), mask_token_id, ignore_index, purpose, BLOCK=BLOCK,
        )
        permutation_mask_kernel[(batch, triton.cdiv(length, BLOCK_I), triton.cdiv(length, BLOCK_J))](
            row_key, column_key, perm_mask, length, BLOCK_I=BLOCK_I, BLOCK_J=BLOCK_J,
        )
    return out_ids, perm_mask, labels
