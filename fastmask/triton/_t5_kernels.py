"""Triton kernel of T5 span corruption and UL2 mixtures (fastmask/reference/t5.py is the specification)."""
import triton
import triton.language as tl

from ._rng_kernels import stream_words

COLUMNS = tl.constexpr(5)  # the denoiser table: (threshold, n, k, d, sentinels)


@triton.jit
def _cuts(word, gap, items, spans):
    """The spans - 1 gaps in [0, items - 1) with the smallest (word << 31) | gap, by radix selection:
    four 256-bin histograms of the word's bytes, high to low, narrow the candidates to the words
    equal to the k-th smallest word and count the gaps taken below it; among the equal words the
    lowest gaps complete the set (the packed key orders ties by gap)."""
    bins = tl.arange(0, 256)
    need = (spans - 1).to(tl.int32)
    match = gap < items - 1
    taken = gap < 0
    for level in tl.static_range(4):
        digit = ((word >> (24 - 8 * level)) & 255).to(tl.int32)
        hist = tl.histogram(digit, 256, mask=match)
        bucket = tl.sum((tl.cumsum(hist, axis=0) < need).to(tl.int32), axis=0)
        need -= tl.sum(tl.where(bins < bucket, hist, 0), axis=0)
        taken = taken | (match & (digit < bucket))
        match = match & (digit == bucket)
    return taken | (match & (tl.cumsum(match.to(tl.int32), axis=0) <= need))


@triton.jit
def _segment_ends(cut, gap, items, BLOCK: tl.constexpr):
    """Lane s: the end (exclusive) of segment s, for s < spans. With C[g] the cuts at gaps <= g, the
    cut of rank s is at gap #{g < items - 1 : C[g] <= s} and ends segment s one past it; for the last
    segment the count is every gap, items - 1, and the end is items. A histogram of C counts them."""
    ranks = tl.cumsum(cut.to(tl.int32), axis=0)
    below = tl.cumsum(tl.histogram(ranks, BLOCK, mask=gap < items - 1), axis=0)
    return (below + 1).to(tl.int64)


@triton.jit(
    do_not_specialize=[
        "length", "num_denoisers", "num_sentinels", "input_length", "target_length", "eos", "pad",
        "purpose_spans", "purpose_denoiser",
    ]
)
def span_corruption_kernel(
    # pointers
    ids_ptr,
    seed_ptr,
    keys_ptr,
    table_ptr,
    sentinels_ptr,
    inputs_ptr,
    targets_ptr,
    input_lengths_ptr,
    target_lengths_ptr,
    denoiser_ptr,
    # shapes and strides
    length,
    num_denoisers,
    num_sentinels,
    input_length,
    target_length,
    ids_stride_row,
    ids_stride_col,
    keys_stride,
    # scalars
    eos,
    pad,
    purpose_spans,
    purpose_denoiser,
    # meta
    DRAW: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One program corrupts one row: inputs[row, :input_length], targets[row, :target_length] and the
    row's lengths and denoiser. BLOCK > length: every gap, item and output position is one lane."""
    row = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, BLOCK)
    gap = lane.to(tl.int64)
    seed = tl.load(seed_ptr)
    key = tl.load(keys_ptr + row * keys_stride).to(tl.int64)

    # The denoiser: the first i with w0 < threshold_i; N = n - d + ((w1 * (2d + 1)) >> 32).
    choice = key * 0
    if DRAW:
        d0, d1, _, _ = stream_words(seed, key, tl.zeros([16], dtype=tl.int32), purpose_denoiser)
        u0 = tl.max(d0.to(tl.int64), axis=0)
        u1 = tl.max(d1.to(tl.int64), axis=0)
        for i in range(num_denoisers - 1):
            choice += (u0 >= tl.load(table_ptr + i * COLUMNS)).to(tl.int64)
    entry = table_ptr + choice * COLUMNS
    half = tl.load(entry + 3)
    noise = tl.load(entry + 1) - half
    if DRAW:
        noise += (u1 * (2 * half + 1)) >> 32
    spans = tl.load(entry + 2)
    with_sentinels = tl.load(entry + 4)
    plain = length - noise

    # The cuts: K - 1 noise gaps by w0, K - 1 non-noise gaps by w1; the segments they end.
    # Gap g: word g % 2 (noise) and 2 + g % 2 (non-noise) of position g // 2.
    w0, w1, w2, w3 = stream_words(seed, key, lane // 2, purpose_spans)
    odd = (lane % 2) == 1
    cut_noise = _cuts(tl.where(odd, w1, w0).to(tl.int64), gap, noise, spans)
    cut_plain = _cuts(tl.where(odd, w3, w2).to(tl.int64), gap, plain, spans)
    seg_noise = (tl.cumsum(cut_noise.to(tl.int32), axis=0) - cut_noise.to(tl.int32)).to(tl.int64)
    seg_plain = (tl.cumsum(cut_plain.to(tl.int32), axis=0) - cut_plain.to(tl.int32)).to(tl.int64)
    ends_noise = _segment_ends(cut_noise, gap, noise, BLOCK)
    ends_plain = _segment_ends(cut_plain, gap, plain, BLOCK)
    starts_noise = tl.where(lane == 0, 0, tl.gather(ends_noise, tl.maximum(lane - 1, 0), axis=0))

    ids_row = ids_ptr + row * ids_stride_row
    inputs_row = inputs_ptr + row * input_length
    targets_row = targets_ptr + row * target_length
    dtype = inputs_ptr.dtype.element_ty
    # Non-noise item j of segment s: row position j + starts_noise[s], input position j + s.
    is_plain = gap < plain
    source = gap + tl.gather(starts_noise, seg_plain.to(tl.int32), axis=0)
    value = tl.load(ids_row + source * ids_stride_col, mask=is_plain, other=0)
    tl.store(inputs_row + gap + with_sentinels * seg_plain, value.to(dtype), mask=is_plain)
    # Noise item j of segment s: row position j + ends_plain[s], target position j + s + 1.
    is_noise = gap < noise
    source = gap + tl.gather(ends_plain, seg_noise.to(tl.int32), axis=0)
    value = tl.load(ids_row + source * ids_stride_col, mask=is_noise, other=0)
    tl.store(targets_row + gap + with_sentinels * (seg_noise + 1), value.to(dtype), mask=is_noise)

    # Sentinel s: after non-noise segment s in the inputs, before noise segment s in the targets.
    has_sentinel = gap < spans * with_sentinels  # with_sentinels is 0 or 1
    sentinel = tl.load(sentinels_ptr + tl.minimum(gap, num_sentinels - 1), mask=has_sentinel, other=0).to(dtype)
    tl.store(inputs_row + ends_plain + gap, sentinel, mask=has_sentinel)
    tl.store(targets_row + starts_noise + gap, sentinel, mask=has_sentinel)

    # EOS, then padding.
    row_input_length = plain + with_sentinels * spans + 1
    row_target_length = noise + with_sentinels * spans + 1
    tail = tl.where(gap == row_input_length - 1, eos, pad).to(dtype)
    tl.store(inputs_row + gap, tail, mask=(gap >= row_input_length - 1) & (gap < input_length))
    tail = tl.where(gap == row_target_length - 1, eos, pad).to(dtype)
    tl.store(targets_row + gap, tail, mask=(gap >= row_target_length - 1) & (gap < target_length))
    tl.store(input_lengths_ptr + row, row_input_length)
    tl.store(target_lengths_ptr + row, row_target_length)
    tl.store(denoiser_ptr + row, choice)


_SIGNATURE = {
    "ids_ptr": "*i64", "seed_ptr": "*i64", "keys_ptr": "*i64", "table_ptr": "*i64", "sentinels_ptr": "*i64",
    "inputs_ptr": "*i64", "targets_ptr": "*i64", "input_lengths_ptr": "*i64", "target_lengths_ptr": "*i64",
    "denoiser_ptr": "*i64",
    "length": "i32", "num_denoisers": "i32", "num_sentinels": "i32", "input_length": "i32", "target_length": "i32",
    "ids_stride_row": "i64", "ids_stride_col": "i64", "keys_stride": "i64",
    "eos": "i64", "pad": "i64", "purpose_spans": "i32", "purpose_denoiser": "i32",
    "DRAW": "constexpr", "BLOCK": "constexpr",
}

# Argument types for compiling each kernel ahead of time (fastmask/triton/hopper.py, CI's sm_90 test),
# at HF's 568-token chunks as launched (BLOCK 1024, 8 warps), and at the longest rows (BLOCK 2048, 16 warps).
HOPPER_SPECS = [
    (span_corruption_kernel, _SIGNATURE, {"DRAW": False, "BLOCK": 1024}, {"num_warps": 8}),
    (span_corruption_kernel, _SIGNATURE, {"DRAW": True, "BLOCK": 1024}, {"num_warps": 8}),
    (span_corruption_kernel, _SIGNATURE, {"DRAW": True, "BLOCK": 2048}, {"num_warps": 16}),
]
