"""Attention masks (docs/attention.md): bidirectional, causal, prefix-LM (UniLM's seq2seq) and
packed-document masks with an optional sliding window, as dense bool, additive float or a
flex_attention BlockMask built block by block; UniLM's mixture of objectives. Argument checks,
backend choice, the BlockMask assembly."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from . import _library
from ._backend import check_backend
from ._rng import Purpose
from ._seed import resolve_seed
from ._validate import check_int, check_tensor
from .functional import random_words
from .t5 import _choice_thresholds

__all__ = ["KINDS", "FORMATS", "UNILM_OBJECTIVES", "UniLMObjectives", "attention_mask", "unilm_objectives"]

KINDS = ("bidirectional", "causal", "prefix_lm", "document_causal", "document_bidirectional")
FORMATS = ("bool", "additive", "flex")
_MAX_LENGTH = (1 << 31) - 1  # window (clamped to L + 1) fits an int32 too
_INTS = (torch.int32, torch.int64)


def _vector(name, values, device) -> Optional[torch.Tensor]:
    if values is None:
        return None
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(values, dtype=torch.int64, device=device)
    return check_tensor(name, values, dtypes=_INTS, ndim=1)


def _check_kind_inputs(kind, segment_ids, prefix_lengths):
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    documents = kind.startswith("document_")
    if documents and segment_ids is None:
        raise ValueError(f"segment_ids: kind={kind!r} needs the segment ids of the packed documents")
    if not documents and segment_ids is not None:
        raise ValueError(f"segment_ids: only the document kinds use segment ids, got kind={kind!r}")
    if kind == "prefix_lm" and prefix_lengths is None:
        raise ValueError("prefix_lengths: kind='prefix_lm' needs each row's prefix (source) length")
    if kind != "prefix_lm" and prefix_lengths is not None:
        raise ValueError(f"prefix_lengths: only kind='prefix_lm' uses prefix lengths, got kind={kind!r}")


def _shape(segment_ids, prefix_lengths, lengths, length, device):
    """(batch, length, device) from the given tensors; every tensor on one device, one batch size."""
    tensors = {n: t for n, t in (("segment_ids", segment_ids), ("prefix_lengths", prefix_lengths),
                                 ("lengths", lengths)) if t is not None}
    if device is not None:
        device = torch.device(device)
    for name, tensor in tensors.items():
        if device is None:
            device = tensor.device
        elif tensor.device != device:
            raise ValueError(f"{name}: expected a tensor on {device}, got {tensor.device}")
    device = device or torch.device("cpu")
    batches = {n: t.shape[0] for n, t in tensors.items()}
    batch = next(iter(batches.values()), 1)
    for name, rows in batches.items():
        if rows != batch:
            raise ValueError(f"{name}: expected {batch} rows like {next(iter(batches))}, got {rows}")
    if segment_ids is not None:
        if length is not None and check_int("length", length, 0, _MAX_LENGTH) != segment_ids.shape[1]:
            raise ValueError(f"length: {length} disagrees with segment_ids of length {segment_ids.shape[1]}")
        length = segment_ids.shape[1]
    elif length is None:
        raise ValueError("length: give the sequence length (or segment_ids, whose shape gives it)")
    return batch, check_int("length", length, 0, _MAX_LENGTH), device


def _mask_mod(segment_ids, prefix_lengths, lengths, causal, window):
    """flex_attention's mask_mod: the predicate of docs/attention.md for one (b, q, kv)."""

    def mask_mod(b, h, q_idx, kv_idx):
        allowed = kv_idx >= 0
        if segment_ids is not None:
            allowed = allowed & (segment_ids[b, q_idx] == segment_ids[b, kv_idx])
        if causal:
            later = kv_idx <= q_idx
            if prefix_lengths is not None:
                later = later | (kv_idx < prefix_lengths[b])
            allowed = allowed & later
        if window:
            allowed = allowed & ((q_idx - kv_idx).abs() < window)
        if lengths is not None:
            allowed = allowed & (kv_idx < lengths[b])
        return allowed

    return mask_mod


def _ordered(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(count [B, 1, n], indices [B, 1, n, m]) of flags [B, n, m]: the set blocks in ascending order,
    then the others in ascending order (create_block_mask's stable sort)."""
    flags = flags.to(torch.int32)
    count = flags.sum(-1, dtype=torch.int32)
    indices = torch.argsort(flags, dim=-1, descending=True, stable=True).to(torch.int32)
    return count.unsqueeze(1), indices.unsqueeze(1)


def _block_mask(states, length, block, mask_mod):
    from torch.nn.attention.flex_attention import BlockMask

    partial, full = states == 1, states == 2
    kv, full_kv = _ordered(partial), _ordered(full)
    q, full_q = _ordered(partial.transpose(1, 2)), _ordered(full.transpose(1, 2))
    return BlockMask(
        (length, length), kv[0], kv[1], full_kv[0], full_kv[1], q[0], q[1], full_q[0], full_q[1],
        BLOCK_SIZE=(block, block), mask_mod=mask_mod,
    )


def attention_mask(
    *,
    segment_ids: Optional[torch.Tensor] = None,
    prefix_lengths=None,
    lengths=None,
    length: Optional[int] = None,
    kind: str = "causal",
    window: Optional[int] = None,
    format: str = "bool",
    block_size: int = 128,
    dtype: torch.dtype = torch.float32,
    backend: str = "auto",
    device=None,
):
    """The attention mask of `kind` (docs/attention.md), True / 0 = attend.

    kind: "bidirectional", "causal", "prefix_lm" (UniLM's seq2seq: needs prefix_lengths [B]),
    "document_causal" or "document_bidirectional" (packed documents: needs segment_ids [B, L]);
    window: keys with |i - j| < window only; lengths [B]: keys j < lengths[b] only.
    format: "bool" -> bool [B, L, L]; "additive" -> dtype [B, 1, L, L] (0 or finfo(dtype).min);
    "flex" -> a flex_attention BlockMask [B, 1, L, L] of block_size blocks, equal to create_block_mask's.
    """
    check_backend(backend)
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
    if segment_ids is not None:
        check_tensor("segment_ids", segment_ids, dtypes=_INTS, ndim=2)
    _check_kind_inputs(kind, segment_ids, prefix_lengths)
    target = device if device is not None else next(
        (t.device for t in (segment_ids, prefix_lengths, lengths) if isinstance(t, torch.Tensor)), None)
    prefix_lengths = _vector("prefix_lengths", prefix_lengths, target)
    lengths = _vector("lengths", lengths, target)
    batch, length, device = _shape(segment_ids, prefix_lengths, lengths, length, device)
    window = 0 if window is None else min(check_int("window", window, 1, 1 << 62), length + 1)  # w > L: no limit
    causal = kind in ("causal", "prefix_lm", "document_causal")
    device_like = torch.empty(0, device=device)
    if format == "flex":
        block = check_int("block_size", block_size, 1, _MAX_LENGTH)
        states = _library.attention_blocks(segment_ids, prefix_lengths, lengths, device_like, batch, length, causal, window, block, backend)
        return _block_mask(states, length, block, _mask_mod(segment_ids, prefix_lengths, lengths, causal, window))
    mask = _library.attention_dense(segment_ids, prefix_lengths, lengths, device_like, batch, length, causal, window, backend)
    if format == "bool":
        return mask
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a floating dtype for format='additive', got {dtype!r}")
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(mask, zero, torch.finfo(dtype).min).unsqueeze(1)


# --- UniLM: a mixture of objectives ------------------------------------------------------------------

UNILM_OBJECTIVES = ("bidirectional", "left_to_right", "seq2seq")


class UniLMObjectives(NamedTuple):
    """unilm_objectives' result: objective int64 [B] (an index into UNILM_OBJECTIVES) and the
    prefix_lengths int64 [B] of attention_mask(kind="prefix_lm") that give each row its mask."""

    objective: torch.Tensor
    prefix_lengths: torch.Tensor


def unilm_objectives(
    batch: Optional[int] = None,
    *,
    length: int,
    source_lengths=None,
    weights=None,
    seed=None,
    keys=None,
    backend: str = "auto",
    device=None,
) -> UniLMObjectives:
    """Each row's UniLM objective, drawn from (seed, key) with probabilities proportional to weights
    (default equal) over UNILM_OBJECTIVES (docs/attention.md#unilm-a-mixture-of-objectives), and the
    prefix length that gives its mask: L (bidirectional), 0 (left-to-right) or source_lengths[b]."""
    check_backend(backend)
    length = check_int("length", length, 0, _MAX_LENGTH)
    if weights is not None and len(tuple(weights)) != len(UNILM_OBJECTIVES):
        raise ValueError(f"weights: expected {len(UNILM_OBJECTIVES)} weights, one per objective of {UNILM_OBJECTIVES}")
    thresholds = _choice_thresholds(weights, len(UNILM_OBJECTIVES))
    if device is None:
        device = next((t.device for t in (keys, source_lengths, seed) if isinstance(t, torch.Tensor)), torch.device("cpu"))
    device = torch.device(device)
    source = _vector("source_lengths", source_lengths, device)
    if batch is None:
        batch = source.shape[0] if source is not None else (len(keys) if keys is not None else None)
    if batch is None:
        raise ValueError("batch: give the batch size (or keys / source_lengths)")
    batch = check_int("batch", batch, 0, _MAX_LENGTH)
    seq2seq_weight = thresholds[2] - thresholds[1]
    if source is None and seq2seq_weight > 0:
        raise ValueError("source_lengths: the seq2seq objective (positive weight) needs each row's source length")
    if source is not None and source.shape[0] != batch:
        raise ValueError(f"source_lengths: expected {batch} rows, got {source.shape[0]}")
    if keys is None:
        keys = torch.arange(batch, device=device)
    elif not isinstance(keys, torch.Tensor):
        keys = torch.as_tensor(keys, dtype=torch.int64, device=device)
    if keys.dim() != 1 or keys.shape[0] != batch:
        raise ValueError(f"keys: expected {batch} keys, got shape {tuple(keys.shape)}")
    word = random_words(resolve_seed(seed, device), keys, 1, Purpose.UNILM_OBJECTIVE, backend=backend)[:, 0, 0]
    objective = (word.unsqueeze(1) >= torch.tensor(thresholds, device=device)).sum(1)
    prefix = torch.where(objective == 0, length, 0)
    if source is not None:
        prefix = torch.where(objective == 2, source.to(torch.int64), prefix)
    return UniLMObjectives(objective, prefix)
