"""Permutation language modeling (XLNet): HF's DataCollatorForPermutationLanguageModeling as an op,
counter-based and bit-identical across backends (docs/permutation.md). Argument checks, the host
table of context lengths, backend choice."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from . import _library
from ._backend import check_backend
from ._seed import check_keys, resolve_seed
from ._validate import check_id_rows, check_int, check_probability
from ._args import _INT_IDS, _constant

__all__ = ["PermutationLM", "permutation_lm"]

# Rows are [B, L, L] outputs, so far below the 2^31 counter limit; slots (L / 2) fit the order key's 30 bits.
_MAX_LENGTH = 1 << 30
_MAX_SPAN = 1 << 16
_MAX_CONTEXT = 1 << 31  # Lemire's (w * n) >> 32 in int64 needs n < 2^31
PERM_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.bool, torch.uint8, torch.int32, torch.int64)


class PermutationLM(NamedTuple):
    """permutation_lm's result, XLNet's inputs: input_ids [B, L] (targets replaced by the mask token),
    perm_mask [B, L, L] (1: token i may not see token j), target_mapping [B, L, L] (the identity, a
    read-only expanded view, float32), labels [B, L] (the target's id, ignore_index elsewhere)."""

    input_ids: torch.Tensor
    perm_mask: torch.Tensor
    target_mapping: torch.Tensor
    labels: torch.Tensor


@_library.eager_cache
def context_lengths(plm_probability: float, max_span_length: int) -> tuple[tuple[int, ...], int]:
    """HF's context length int(s / plm_probability) of each span length s in [1, max_span_length], and
    the number of spans that always covers a row: computed once on the host, so kernels only add."""
    contexts = tuple(int(s / plm_probability) for s in range(1, max_span_length + 1))
    if contexts[-1] >= _MAX_CONTEXT:
        raise ValueError(f"plm_probability: max_span_length / plm_probability must stay below 2^31, got "
                         f"{max_span_length} / {plm_probability!r}")
    return contexts, contexts[0]


def permutation_lm(
    input_ids: torch.Tensor,
    *,
    mask_token_id: int,
    seed=None,
    keys=None,
    plm_probability: float = 1 / 6,
    max_span_length: int = 5,
    special_ids=None,
    pad_token_id: Optional[int] = None,
    dtype: torch.dtype = torch.float32,
    ignore_index: int = -100,
    backend: str = "auto",
) -> PermutationLM:
    """XLNet's permutation-LM inputs from input_ids [B, L] (L even), as HF's
    DataCollatorForPermutationLanguageModeling builds them (docs/permutation.md): spans of 1 to
    max_span_length tokens, one in each context of span_length / plm_probability tokens, become
    targets unless special (special_ids) or padding (pad_token_id); a random factorisation order that
    permutes both halves of the row alike decides who sees whom. perm_mask has `dtype` (HF: float32;
    XLNet takes bool alike, 4x less memory); target_mapping is float32 as HF's. A pure function of
    (seed, keys, input_ids), on every backend."""
    check_backend(backend)
    ids, one_row = check_id_rows(input_ids, _INT_IDS, _MAX_LENGTH)
    batch, length = ids.shape
    if length % 2:
        raise ValueError(f"input_ids: permutation LM needs an even sequence length (XLNet reuses half the row as "
                         f"memory and permutes each half alike), got {length}")
    plm_probability = check_probability("plm_probability", plm_probability)
    if plm_probability == 0:
        raise ValueError("plm_probability: expected a probability in (0, 1], got 0.0")
    max_span_length = check_int("max_span_length", max_span_length, 1, _MAX_SPAN)
    id_limit = torch.iinfo(ids.dtype).max + 1
    mask_token_id = check_int("mask_token_id", mask_token_id, 0, id_limit)
    ignore_index = check_int("ignore_index", ignore_index, -id_limit, id_limit)
    if not isinstance(dtype, torch.dtype) or dtype not in PERM_DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(str(d) for d in PERM_DTYPES)}, got {dtype!r}")
    functional = set() if special_ids is None else {check_int("special_ids", int(i), 0, id_limit) for i in special_ids}
    if pad_token_id is not None:
        functional.add(check_int("pad_token_id", pad_token_id, 0, id_limit))
    contexts, shortest = context_lengths(plm_probability, max_span_length)
    attempts = -(-length // shortest)  # every context is at least `shortest` long

    device = ids.device
    seed = resolve_seed(seed, device)
    keys = check_keys(keys, batch, device)
    if keys is None:  # the row index
        keys = torch.arange(batch, dtype=torch.int64, device=device)
    out_ids, perm_mask, labels = _library.permutation_lm(
        ids, seed, keys, _constant(contexts, device),
        attempts, _constant(tuple(sorted(functional)), device), mask_token_id, ignore_index, dtype, backend,
    )
    # HF's float32 identity (XLNet contracts it with float activations), as a view: no [B, L, L] memory.
    target_mapping = torch.eye(length, dtype=torch.float32, device=device).expand(batch, length, length)
    if one_row:
        return PermutationLM(out_ids[0], perm_mask[0], target_mapping[0], labels[0])
    return PermutationLM(out_ids, perm_mask, target_mapping, labels)
