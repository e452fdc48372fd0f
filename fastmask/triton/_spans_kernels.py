"""Triton kernel of span / n-gram masking (fastmask/reference/spans.py is the specification)."""
import triton
import triton.language as tl

from ._masking_kernels import (NO_WORD, REPLACE_NONE, REPLACE_SKIP_SPECIALS, REPLACE_TABLE, _maximum, store_positions,
                               word_starts)
from ._rng_kernels import stream_words


HALF = tl.constexpr(0x80000000)  # count(t, n) = (n * t + 2^31) >> 32
MAX_CAP = tl.constexpr(0x7FFFFFFF)
ABOVE_WORDS = tl.constexpr(1 << 33)  # above every 32-bit word: padding of the length table


@triton.jit(do_not_specialize=["length", "num_specials", "table_size", "replace_count", "max_predictions",
                               "mask_token_id", "ignore_index", "purpose"])
def mask_spans_kernel(
    # pointers
    ids_ptr,
    seed_ptr,
    keys_ptr,
    thresholds_ptr,
    table_ptr,
    special_ids_ptr,
    special_mask_ptr,
    attention_mask_ptr,
    words_ptr,
    replace_table_ptr,
    out_ids_ptr,
    labels_ptr,
    positions_ptr,
    # shapes
    length,
    num_specials,
    table_size,
    replace_count,
    max_predictions,
    # strides
    ids_stride_row,
    ids_stride_col,
    keys_stride,
    special_mask_stride_row,
    special_mask_stride_col,
    attention_mask_stride_row,
    attention_mask_stride_col,
    words_stride_row,
    words_stride_col,
    replace_table_stride,
    # scalars
    mask_token_id,
    ignore_index,
    purpose,
    # meta
    HAS_SPECIAL_MASK: tl.constexpr,
    HAS_ATTENTION_MASK: tl.constexpr,
    HAS_WORDS: tl.constexpr,
    REPLACE: tl.constexpr,
    CAPACITY: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """One program per row, the row in BLOCK_L >= length lanes. The attempts (docs/spans.md) run in a
    while loop: scalar draws for attempt a, then a few reductions over the row find the start word's
    state, where the span stops and which tokens it covers."""
    row = tl.program_id(0).to(tl.int64)
    position = tl.arange(0, BLOCK_L)
    position64 = position.to(tl.int64)
    in_row = position < length

    original = tl.load(ids_ptr + row * ids_stride_row + position64 * ids_stride_col, mask=in_row, other=0).to(tl.int64)
    seed = tl.load(seed_ptr)
    key = tl.load(keys_ptr + row * keys_stride).to(tl.int64)
    select_t = tl.load(thresholds_ptr)
    mask_t = tl.load(thresholds_ptr + 1)
    random_t = tl.load(thresholds_ptr + 2)
    lanes_t = tl.arange(0, BLOCK_T)
    table = tl.load(table_ptr + lanes_t, mask=lanes_t < table_size, other=ABOVE_WORDS)

    # Eligibility, and random indices shifted past the sorted special ids.
    token_words = stream_words(seed, key, position, purpose)
    u3 = token_words[3]
    index = (u3.to(tl.int64) * replace_count) >> 32
    eligible = in_row
    for s in range(num_specials):
        special = tl.load(special_ids_ptr + s)
        eligible = eligible & (original != special)
        if REPLACE == REPLACE_SKIP_SPECIALS:
            index += (index >= special).to(tl.int64)
    if HAS_SPECIAL_MASK:
        marked = tl.load(special_mask_ptr + row * special_mask_stride_row + position64 * special_mask_stride_col,
                         mask=in_row, other=0)
        eligible = eligible & (marked == 0)
    if HAS_ATTENTION_MASK:
        attention = tl.load(attention_mask_ptr + row * attention_mask_stride_row + position64 * attention_mask_stride_col,
                            mask=in_row, other=0)
        eligible = eligible & (attention != 0)
    if HAS_WORDS:
        code = tl.load(words_ptr + row * words_stride_row + position64 * words_stride_col, mask=in_row, other=NO_WORD)
        eligible, first = word_starts(code, eligible, position)
    else:
        first = eligible

    word = tl.cumsum(first.to(tl.int32), axis=0) - 1  # the word index of each eligible token
    num_words = tl.sum(first.to(tl.int64), axis=0)
    ones = eligible.to(tl.int32)
    through = tl.cumsum(ones, axis=0)  # eligible tokens at or before i
    before = through - ones  # eligible tokens before i
    n = tl.sum(ones.to(tl.int64), axis=0)
    budget = (n * select_t + HALF) >> 32
    cap = tl.minimum(4 * budget + 16, MAX_CAP)

    kind = tl.zeros((BLOCK_L,), tl.int32)  # 0: not in a span, 1 mask, 2 random, 3 keep
    masked = budget * 0
    attempt = budget * 0
    while (masked < budget) & (attempt < cap):
        draws = stream_words(seed, key, attempt.to(tl.int32), purpose)
        u0 = draws[0]
        u1 = draws[1]
        u2 = draws[2]
        start = ((u0.to(tl.int64) * num_words) >> 32).to(tl.int32)
        span = 1 + tl.sum((u1.to(tl.int64) >= table).to(tl.int32), axis=0)
        w2 = u2.to(tl.int64)
        span_kind = tl.where(w2 < mask_t, 1, tl.where(w2 < mask_t + random_t, 2, 3))
        at_start = eligible & (word == start)
        start_free = tl.max(tl.where(at_start, kind, 0), axis=0) == 0
        start_before = tl.min(tl.where(at_start, before, 0x7FFFFFFF), axis=0)
        room = (budget - masked).to(tl.int32)
        stop = eligible & (word >= start) & ((word - start >= span) | (kind != 0) | (through - start_before > room))
        end = tl.min(tl.where(stop, word, num_words.to(tl.int32)), axis=0)
        take = eligible & (word >= start) & (word < end) & start_free
        kind = tl.where(take, span_kind, kind)
        masked += tl.sum(take.to(tl.int64), axis=0)
        attempt += 1

    corrupted = tl.where(kind == 1, mask_token_id, original).to(tl.int64)
    if REPLACE != REPLACE_NONE:
        if REPLACE == REPLACE_TABLE:
            index = tl.load(replace_table_ptr + index * replace_table_stride, mask=kind == 2, other=0).to(tl.int64)
        corrupted = tl.where(kind == 2, index, corrupted)
    predicted = kind != 0

    if CAPACITY:
        word_start = tl.associative_scan(tl.where(first, position, -1), 0, _maximum)
        rank = tl.cumsum(predicted.to(tl.int32), axis=0) - 1
        cut = tl.min(tl.where(predicted & (rank == max_predictions), word_start, BLOCK_L), axis=0)
        predicted = predicted & (position < cut)
        store_positions(positions_ptr + row * max_predictions, rank, position64, predicted, max_predictions, BLOCK_L)
    labels = tl.where(predicted, original, ignore_index)
    out_offsets = row * length + position64
    tl.store(out_ids_ptr + out_offsets, corrupted.to(out_ids_ptr.dtype.element_ty), mask=in_row)
    tl.store(labels_ptr + out_offsets, labels.to(labels_ptr.dtype.element_ty), mask=in_row)


_SIGNATURE = {
    "ids_ptr": "*i64", "seed_ptr": "*i64", "keys_ptr": "*i64", "thresholds_ptr": "*i64", "table_ptr": "*i64",
    "special_ids_ptr": "*i64", "special_mask_ptr": "*i1", "attention_mask_ptr": "*i64", "words_ptr": "*u8",
    "replace_table_ptr": "*i64", "out_ids_ptr": "*i64", "labels_ptr": "*i64", "positions_ptr": "*i64",
    "length": "i32", "num_specials": "i32", "table_size": "i32", "replace_count": "i32", "max_predictions": "i32",
    "ids_stride_row": "i64", "ids_stride_col": "i64", "keys_stride": "i64",
    "special_mask_stride_row": "i64", "special_mask_stride_col": "i64",
    "attention_mask_stride_row": "i64", "attention_mask_stride_col": "i64",
    "words_stride_row": "i64", "words_stride_col": "i64", "replace_table_stride": "i64",
    "mask_token_id": "i64", "ignore_index": "i64", "purpose": "i32",
    "HAS_SPECIAL_MASK": "constexpr", "HAS_ATTENTION_MASK": "constexpr", "HAS_WORDS": "constexpr", "REPLACE": "constexpr",
    "CAPACITY": "constexpr", "BLOCK_L": "constexpr", "BLOCK_T": "constexpr",
}
_ALL = {"HAS_SPECIAL_MASK": True, "HAS_ATTENTION_MASK": True, "HAS_WORDS": True, "CAPACITY": True, "BLOCK_T": 16}

# Argument types for compiling each kernel ahead of time (fastmask/triton/hopper.py, CI's sm_90 test).
HOPPER_SPECS = [
    (mask_spans_kernel, _SIGNATURE, {"REPLACE": REPLACE_SKIP_SPECIALS.value, "BLOCK_L": 512, **_ALL}, {"num_warps": 4}),
    (mask_spans_kernel, _SIGNATURE, {"REPLACE": REPLACE_TABLE.value, "BLOCK_L": 2048, **_ALL}, {"num_warps": 16}),
]
