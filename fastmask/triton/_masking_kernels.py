"""Triton kernel of mask_tokens (fastmask/reference/masking.py is the specification)."""
import triton
import triton.language as tl

from ._rng_kernels import stream_words

# How random ids are drawn (the REPLACE meta-parameter; mask_spans' kernel shares it). w is the op's
# replacement word: w2 of the position for mask_tokens, w3 for mask_spans.
REPLACE_NONE = tl.constexpr(0)  # replace_count == 0: the "random" part of the corruption keeps the id
REPLACE_SKIP_SPECIALS = tl.constexpr(1)  # index (w * count) >> 32 into [0, vocab), the sorted special ids skipped
REPLACE_TABLE = tl.constexpr(2)  # replace_table[(w * count) >> 32]

PACK_SHIFT = tl.constexpr(31)  # (w0 << 31) | position orders by (word, position); positions < 2^31
NOT_ELIGIBLE = tl.constexpr(0x7FFFFFFFFFFFFFFF)  # packs above every eligible key
HALF = tl.constexpr(0x80000000)  # 2^31: count(t, n) = (n * t + 2^31) >> 32 rounds half up
WORD_STARTS = tl.constexpr(1)  # word codes (fastmask/words.py): 0 continues the word, 1 starts one, 2 no word
NO_WORD = tl.constexpr(2)
LOW_32 = tl.constexpr(0xFFFFFFFF)


@triton.jit
def _maximum(a, b):
    return tl.maximum(a, b)


@triton.jit(
    do_not_specialize=[
        "length", "views", "num_specials", "replace_count", "max_predictions", "mask_token_id", "ignore_index",
        "purpose",
    ]
)
def mask_tokens_kernel(
    # pointers
    ids_ptr,
    seed_ptr,
    keys_ptr,
    thresholds_ptr,
    special_ids_ptr,
    special_mask_ptr,
    attention_mask_ptr,
    lengths_ptr,
    words_ptr,
    replace_table_ptr,
    out_ids_ptr,
    labels_ptr,
    positions_ptr,
    # shapes and strides
    length,
    views,
    num_specials,
    replace_count,
    max_predictions,
    ids_stride_row,
    ids_stride_col,
    keys_stride,
    thresholds_stride,
    special_ids_stride,
    special_mask_stride_row,
    special_mask_stride_col,
    attention_mask_stride_row,
    attention_mask_stride_col,
    lengths_stride,
    words_stride_row,
    words_stride_col,
    replace_table_stride,
    # scalars
    mask_token_id,
    ignore_index,
    purpose,
    # meta
    EXACT: tl.constexpr,
    HAS_SPECIAL_MASK: tl.constexpr,
    HAS_ATTENTION_MASK: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    REPLACE: tl.constexpr,
    CAPACITY: tl.constexpr,
    WHOLE_WORD: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One program writes output row (row, view) = program (row * views + view): out_ids[program, :],
    labels[program, :] and, with CAPACITY, positions[program, :max_predictions]. The whole row is one
    block of BLOCK_L >= length positions. WHOLE_WORD: words_ptr holds the row's word codes; each
    word's decisions are made at its first token and spread over the word by a running max."""
    program = tl.program_id(0)
    row = (program // views).to(tl.int64)
    view_index = program % views
    out_row = program.to(tl.int64)
    position = tl.arange(0, BLOCK_L)
    position64 = position.to(tl.int64)
    in_row = position < length

    ids = tl.load(ids_ptr + row * ids_stride_row + position64 * ids_stride_col, mask=in_row, other=0)
    original = ids.to(tl.int64)

    # The four words of (seed, key, position, purpose), as int64 in [0, 2^32).
    seed = tl.load(seed_ptr)
    key = tl.load(keys_ptr + row * keys_stride).to(tl.int64)
    u0, u1, u2, u3 = stream_words(seed, key, position, purpose)
    w0 = u0.to(tl.int64)
    w1 = u1.to(tl.int64)
    w2 = u2.to(tl.int64)
    w3 = u3.to(tl.int64)

    select_t = tl.load(thresholds_ptr)
    predict_t = tl.load(thresholds_ptr + thresholds_stride)
    mask_t = tl.load(thresholds_ptr + 2 * thresholds_stride)
    random_t = tl.load(thresholds_ptr + 3 * thresholds_stride)

    # Eligible: not a special id, not marked special, not padding. The same (ascending) loop over the
    # special ids shifts a random index past them: index r -> the r-th non-special id.
    eligible = in_row
    index = (w2 * replace_count) >> 32
    for s in range(num_specials):
        special = tl.load(special_ids_ptr + s * special_ids_stride)
        eligible = eligible & (original != special)
        if REPLACE == REPLACE_SKIP_SPECIALS:
            index += (index >= special).to(tl.int64)
    if HAS_SPECIAL_MASK:
        special_mask = tl.load(
            special_mask_ptr + row * special_mask_stride_row + position64 * special_mask_stride_col, mask=in_row, other=0
        )
        eligible = eligible & (special_mask == 0)
    if HAS_ATTENTION_MASK:
        attention = tl.load(
            attention_mask_ptr + row * attention_mask_stride_row + position64 * attention_mask_stride_col,
            mask=in_row, other=0,
        )
        eligible = eligible & (attention != 0)
    if HAS_LENGTHS:
        row_length = tl.load(lengths_ptr + row * lengths_stride).to(tl.int64)
        eligible = eligible & (position64 < row_length)

    # The candidates of selection: eligible tokens, or the first tokens of eligible words.
    if WHOLE_WORD:
        code = tl.load(words_ptr + row * words_stride_row + position64 * words_stride_col, mask=in_row, other=NO_WORD)
        eligible, candidates = word_starts(code, eligible, position)
    else:
        candidates = eligible

    if EXACT:
        # The k smallest (w0, position) pairs, k = count(t, n): packed keys are distinct and >= 0, so
        # they are the keys <= the largest of the first k sorted ones (-1 when k = 0: none).
        packed = tl.where(candidates, (w0 << PACK_SHIFT) | position64, NOT_ELIGIBLE)
        ordered = tl.sort(packed)
        n = tl.sum(candidates.to(tl.int64), axis=0)
        select_k = (n * select_t + HALF) >> 32
        predict_k = (n * predict_t + HALF) >> 32
        selected = packed <= tl.max(tl.where(position64 < select_k, ordered, -1), axis=0)
        predicted = packed <= tl.max(tl.where(position64 < predict_k, ordered, -1), axis=0)
    else:
        selected = candidates & (w0 < select_t)
        predicted = candidates & (w0 < predict_t)

    # Corruption kind by word 1: [0, mask) -> mask token, [mask, mask + random) -> random id (word 2),
    # else keep. Views: a uniform split by word 3.
    is_mask = w1 < mask_t
    is_random = (w1 >= mask_t) & (w1 < mask_t + random_t)
    view = (w3 * views) >> 32
    if WHOLE_WORD:
        # Every token takes the decisions of its word's first token: the running max of
        # (position << 32) | fields over the first tokens (the random id stays per token).
        fields = (
            selected.to(tl.int64) | (predicted.to(tl.int64) << 1) | (is_mask.to(tl.int64) << 2)
            | (is_random.to(tl.int64) << 3) | (view << 4)
        )
        spread = tl.associative_scan(tl.where(candidates, (position64 << 32) | fields, -1), 0, _maximum)
        word_start = spread >> 32
        fields = spread & LOW_32
        selected = eligible & ((fields & 1) != 0)
        predicted = eligible & ((fields & 2) != 0)
        is_mask = (fields & 4) != 0
        is_random = (fields & 8) != 0
        view = fields >> 4

    # This program corrupts and predicts its view only.
    in_view = view == view_index
    selected = selected & in_view
    predicted = predicted & in_view

    corrupted = tl.where(is_mask, mask_token_id, original).to(tl.int64)
    if REPLACE != REPLACE_NONE:
        if REPLACE == REPLACE_TABLE:
            index = tl.load(replace_table_ptr + index * replace_table_stride, mask=selected & is_random, other=0)
            index = index.to(tl.int64)
        corrupted = tl.where(is_random, index, corrupted)
    out_ids = tl.where(selected, corrupted, original)

    if CAPACITY:
        # The first max_predictions predicted positions, in position order, keep their label and
        # fill positions[program, rank]; the remaining slots hold -1 (disjoint stores).
        rank = tl.cumsum(predicted.to(tl.int32), axis=0) - 1
        if WHOLE_WORD:
            # Whole words keep all their labels or none: the word holding the first prediction past
            # the capacity, and every later word, lose them.
            cut = tl.min(tl.where(predicted & (rank == max_predictions), word_start, BLOCK_L), axis=0)
            predicted = predicted & (position64 < cut)
        else:
            predicted = predicted & (rank < max_predictions)
        store_positions(positions_ptr + out_row * max_predictions, rank, position64, predicted, max_predictions, BLOCK_L)
    labels = tl.where(predicted, original, ignore_index)

    out_offsets = out_row * length + position64
    tl.store(out_ids_ptr + out_offsets, out_ids.to(out_ids_ptr.dtype.element_ty), mask=in_row)
    tl.store(labels_ptr + out_offsets, labels.to(labels_ptr.dtype.element_ty), mask=in_row)


@triton.jit
def word_starts(code, eligible, position):
    """(eligible, the first tokens of eligible words) from a row's word codes: tokens in no word are
    not eligible, and a word also starts where the token before is not eligible (the last
    ineligible position at or before i, a running max, is then i - 1; -1 for i = 0)."""
    eligible = eligible & (code != NO_WORD)
    last_outside = tl.associative_scan(tl.where(eligible, -1, position), 0, _maximum)
    return eligible, eligible & ((code == WORD_STARTS) | (last_outside == position - 1))


@triton.jit
def store_positions(slots_ptr, rank, position64, predicted, max_predictions, BLOCK_L: tl.constexpr):
    """A row's capacity slots: the predicted positions in order (rank = their index), then -1."""
    tl.store(slots_ptr + rank.to(tl.int64), position64, mask=predicted)
    kept = tl.sum(predicted.to(tl.int64), axis=0)
    for start in range(0, max_predictions, BLOCK_L):
        slot = start + position64
        tl.store(slots_ptr + slot, tl.full((BLOCK_L,), -1, tl.int64), mask=(slot >= kept) & (slot < max_predictions))


_SIGNATURE = {
    "ids_ptr": "*i64", "seed_ptr": "*i64", "keys_ptr": "*i64", "thresholds_ptr": "*i64", "special_ids_ptr": "*i64",
    "special_mask_ptr": "*i1", "attention_mask_ptr": "*i64", "lengths_ptr": "*i64", "words_ptr": "*u8",
    "replace_table_ptr": "*i64",
    "out_ids_ptr": "*i64", "labels_ptr": "*i64", "positions_ptr": "*i64",
    "length": "i32", "views": "i32", "num_specials": "i32", "replace_count": "i32", "max_predictions": "i32",
    "ids_stride_row": "i64", "ids_stride_col": "i64", "keys_stride": "i64", "thresholds_stride": "i64",
    "special_ids_stride": "i64", "special_mask_stride_row": "i64", "special_mask_stride_col": "i64",
    "attention_mask_stride_row": "i64", "attention_mask_stride_col": "i64", "lengths_stride": "i64",
    "words_stride_row": "i64", "words_stride_col": "i64", "replace_table_stride": "i64", "mask_token_id": "i64", "ignore_index": "i64", "purpose": "i32",
    "EXACT": "constexpr", "HAS_SPECIAL_MASK": "constexpr", "HAS_ATTENTION_MASK": "constexpr",
    "HAS_LENGTHS": "constexpr", "REPLACE": "constexpr", "CAPACITY": "constexpr", "WHOLE_WORD": "constexpr",
    "BLOCK_L": "constexpr",
}
_ALL_INPUTS = {"HAS_SPECIAL_MASK": True, "HAS_ATTENTION_MASK": True, "HAS_LENGTHS": True, "CAPACITY": True, "BLOCK_L": 512}

# Argument types for compiling each kernel ahead of time (fastmask/triton/hopper.py, CI's sm_90 test).
HOPPER_SPECS = [
    (mask_tokens_kernel, _SIGNATURE, {"EXACT": True, "REPLACE": REPLACE_SKIP_SPECIALS.value, "WHOLE_WORD": False, **_ALL_INPUTS}),
    (mask_tokens_kernel, _SIGNATURE, {"EXACT": False, "REPLACE": REPLACE_TABLE.value, "WHOLE_WORD": False, **_ALL_INPUTS}),
    # Whole words: the two running maxima and the capacity cut on top of each mode.
    (mask_tokens_kernel, _SIGNATURE, {"EXACT": True, "REPLACE": REPLACE_SKIP_SPECIALS.value, "WHOLE_WORD": True, **_ALL_INPUTS}),
    (mask_tokens_kernel, _SIGNATURE, {"EXACT": False, "REPLACE": REPLACE_TABLE.value, "WHOLE_WORD": True, **_ALL_INPUTS}),
]
