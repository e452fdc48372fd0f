"""SpanBERT span masking and n-gram masking (docs/spans.md): argument checks, the host-side length
table, backend choice. The outputs are mask_tokens' (fastmask.MaskedTokens)."""
from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Optional, Sequence

import torch

from . import _library
from ._backend import check_backend, resolve_backend
from ._rng import TWO_32, probability_threshold
from ._seed import check_keys, resolve_seed
from ._validate import check_id_rows, check_ids_in_range, check_int, check_memory, check_probability, check_same_shape
from ._args import (
    _INT_IDS, _MASK_DTYPES, _MAX_LENGTH, _check_word_table, _constant, _replacements, _rows, _special_ids,
    _word_source,
)
from .functional import MaskedTokens

__all__ = ["mask_spans", "length_table", "draw_lengths"]

MAX_SPAN_LENGTH = 4096  # the longest table (a span longer than a Triton row is pointless)
SUM_TOLERANCE = 1e-6  # span_lengths must sum to 1 within this


def _check_geometric_p(p) -> Fraction:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or not 0.0 < p <= 1.0:
        raise ValueError(f"geometric_p: expected a number in (0, 1], got {p!r}")
    return Fraction(float(p))


@_library.eager_cache
def _table(span_lengths: Optional[tuple], geometric_p: float, max_span_length: int) -> tuple[int, ...]:
    return _table_values(span_lengths, geometric_p, max_span_length)


@torch.compiler.assume_constant_result
def _table_values(span_lengths: Optional[tuple], geometric_p: float, max_span_length: int) -> tuple[int, ...]:
    """Exact rational arithmetic on the host; under torch.compile a constant of the graph, built at trace time."""
    if span_lengths is None:
        p = _check_geometric_p(geometric_p)
        if isinstance(max_span_length, bool) or not isinstance(max_span_length, numbers.Integral) or not 1 <= max_span_length <= MAX_SPAN_LENGTH:
            raise ValueError(f"max_span_length: expected an integer in [1, {MAX_SPAN_LENGTH}], got {max_span_length!r}")
        weights = [p * (1 - p) ** k for k in range(int(max_span_length))]
    else:
        if not 1 <= len(span_lengths) <= MAX_SPAN_LENGTH:
            raise ValueError(f"span_lengths: expected 1 to {MAX_SPAN_LENGTH} probabilities, got {len(span_lengths)}")
        for q in span_lengths:
            if isinstance(q, bool) or not isinstance(q, numbers.Real) or not math.isfinite(q) or q < 0:
                raise ValueError(f"span_lengths: expected finite probabilities >= 0, got {q!r}")
        weights = [Fraction(float(q)) for q in span_lengths]
        total = sum(weights)
        if abs(float(total) - 1.0) > SUM_TOLERANCE:
            raise ValueError(f"span_lengths: expected probabilities summing to 1 (within {SUM_TOLERANCE}), got a sum of {float(total)!r}")
    total = sum(weights)
    table, running = [], Fraction(0)
    for q in weights:
        running += q
        table.append(math.floor(running * TWO_32 / total))
    return tuple(table)


def length_table(span_lengths: Optional[Sequence[float]] = None, geometric_p: float = 0.2, max_span_length: int = 10) -> torch.Tensor:
    """int64 [M]: T[j] = floor(2^32 * (q_1 + .. + q_{j+1}) / sum q), T[M - 1] = 2^32; a span of
    1 + #{j : w >= T[j]} words for a 32-bit word w (docs/spans.md)."""
    lengths = None if span_lengths is None else tuple(span_lengths)
    return torch.tensor(_table(lengths, geometric_p, max_span_length), dtype=torch.int64)


def draw_lengths(seed: int, keys, attempts: int, span_lengths=None, geometric_p: float = 0.2, max_span_length: int = 10) -> torch.Tensor:
    """int64 [len(keys), attempts]: the span length (in words) each attempt draws, before any cut by
    the row end, a taken word or the budget (the distribution the table encodes)."""
    from .reference.spans import draw_lengths as draw

    keys = check_keys(keys, None, None)
    return draw(resolve_seed(seed, keys.device), keys, attempts, length_table(span_lengths, geometric_p, max_span_length))


def mask_spans(
    input_ids: torch.Tensor,
    *,
    seed=None,
    keys=None,
    mask_token_id: int,
    vocab_size: Optional[int] = None,
    replace_ids=None,
    special_ids=None,
    special_tokens_mask: Optional[torch.Tensor] = None,
    attention_mask: Optional[torch.Tensor] = None,
    word_ids: Optional[torch.Tensor] = None,
    offset_mapping: Optional[torch.Tensor] = None,
    word_table: Optional[torch.Tensor] = None,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    span_lengths: Optional[Sequence[float]] = None,
    geometric_p: float = 0.2,
    max_span_length: int = 10,
    max_predictions: Optional[int] = None,
    ignore_index: int = -100,
    backend: str = "auto",
) -> MaskedTokens:
    """SpanBERT span masking (geometric_p, max_span_length) or n-gram masking (span_lengths: the
    probabilities of spans of 1, 2, ... words): spans of whole words until count(mlm_probability,
    eligible tokens) tokens are taken, one mask/random/keep decision per span. docs/spans.md.

    Returns MaskedTokens(input_ids, labels, positions): new tensors of input_ids' dtype and shape;
    positions int64 [B, max_predictions] padded with -1, or None.
    """
    check_backend(backend)
    ids, one_row = check_id_rows(input_ids, _INT_IDS, _MAX_LENGTH)
    batch, length = ids.shape
    device = ids.device
    id_limit = torch.iinfo(ids.dtype).max + 1

    if vocab_size is not None:
        vocab_size = check_int("vocab_size", vocab_size, 1, min(id_limit, _MAX_LENGTH))
    if word_table is not None:
        vocab_size = _check_word_table(word_table, vocab_size, device, min(id_limit, _MAX_LENGTH))
    mask_token_id = check_int("mask_token_id", mask_token_id, 0, vocab_size or id_limit)
    ignore_index = check_int("ignore_index", ignore_index, -id_limit, id_limit)
    if max_predictions is not None:
        max_predictions = check_int("max_predictions", max_predictions, 1, _MAX_LENGTH)
        check_memory("max_predictions", batch * max_predictions * 8, lambda: f"the positions of {batch} rows (int64)", device)
    lengths = None if span_lengths is None else tuple(span_lengths)
    table = _constant(_table(lengths, geometric_p, max_span_length), device)

    specials = _special_ids(special_ids, mask_token_id, vocab_size)
    for name, mask in (("special_tokens_mask", special_tokens_mask), ("attention_mask", attention_mask)):
        if mask is not None:
            check_same_shape(name, mask.unsqueeze(0) if one_row else mask, ids, dtypes=_MASK_DTYPES)
    special_mask = _rows(special_tokens_mask, one_row)
    attention = _rows(attention_mask, one_row)
    if keys is not None:
        keys = check_keys(keys, batch, device)
    words = _word_source(ids, one_row, word_ids, offset_mapping, word_table)

    for name, p in (("mlm_probability", mlm_probability), ("mask_replace_prob", mask_replace_prob),
                    ("random_replace_prob", random_replace_prob)):
        check_probability(name, p)
    if mask_replace_prob + random_replace_prob > 1:
        raise ValueError(f"mask_replace_prob + random_replace_prob: expected at most 1, got {mask_replace_prob} + {random_replace_prob}")
    thresholds = _constant(tuple(probability_threshold(p) for p in (mlm_probability, mask_replace_prob, random_replace_prob)), device)
    replace_table, replace_count = _replacements(replace_ids, specials, vocab_size, random_replace_prob, device, False)

    chosen = resolve_backend(backend, device)
    if vocab_size is not None and device.type == "cpu" and chosen != "cpp" and not torch.compiler.is_compiling():
        check_ids_in_range("input_ids", ids, vocab_size)  # the C++ kernel checks inside

    seed = resolve_seed(seed, device)
    out_ids, labels, positions = _library.mask_spans(
        ids, seed, keys, thresholds, table, _constant(specials, device), special_mask, attention, words, replace_table,
        replace_count, mask_token_id, max_predictions or 0, ignore_index, vocab_size or 0, chosen,
    )
    if one_row:
        out_ids, labels, positions = out_ids[0], labels[0], positions[0]
    return MaskedTokens(out_ids, labels, positions if max_predictions else None)
