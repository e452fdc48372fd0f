"""Triton kernels of the attention masks (fastmask/reference/attention.py is the specification)."""
import triton
import triton.language as tl


@triton.jit
def _row_bounds(prefix_ptr, lengths_ptr, row, length, HAS_PREFIX: tl.constexpr, HAS_LENGTHS: tl.constexpr):
    """(prefix length, key limit) of one row: 0 and L when not given."""
    prefix = 0
    limit = length
    if HAS_PREFIX:
        prefix = tl.load(prefix_ptr + row).to(tl.int32)
    if HAS_LENGTHS:
        limit = tl.minimum(tl.load(lengths_ptr + row).to(tl.int32), length)
    return prefix, limit


@triton.jit
def _query_interval(i, prefix, limit, window, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):
    """[lo, hi): the keys that the causal, prefix, window and length conditions allow query i."""
    lo = i * 0
    hi = tl.minimum(i * 0 + limit, limit)
    if CAUSAL:
        hi = tl.minimum(hi, tl.maximum(i + 1, prefix))
    if HAS_WINDOW:
        lo = tl.maximum(lo, i - window + 1)
        hi = tl.minimum(hi, i + window)
    return lo, hi


@triton.jit(do_not_specialize=["length", "window"])
def attention_dense_kernel(
    # pointers
    segments_ptr,
    prefix_ptr,
    lengths_ptr,
    out_ptr,
    # shapes and strides
    length,
    segments_stride0,
    segments_stride1,
    # scalars
    window,
    # meta
    HAS_SEGMENTS: tl.constexpr,
    HAS_PREFIX: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """One program writes one BLOCK_Q x BLOCK_K tile of row b's bool [L, L] mask."""
    row = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    j = tl.program_id(2) * BLOCK_K + tl.arange(0, BLOCK_K)
    prefix, limit = _row_bounds(prefix_ptr, lengths_ptr, row, length, HAS_PREFIX, HAS_LENGTHS)
    lo, hi = _query_interval(i, prefix, limit, window, CAUSAL, HAS_WINDOW)
    allowed = (j[None, :] >= lo[:, None]) & (j[None, :] < hi[:, None])
    if HAS_SEGMENTS:
        base = segments_ptr + row * segments_stride0
        seg_q = tl.load(base + i.to(tl.int64) * segments_stride1, mask=i < length, other=0)
        seg_k = tl.load(base + j.to(tl.int64) * segments_stride1, mask=j < length, other=0)
        allowed = allowed & (seg_q[:, None] == seg_k[None, :])
    offsets = (row * length + i.to(tl.int64)[:, None]) * length + j.to(tl.int64)[None, :]
    tl.store(out_ptr + offsets, allowed, mask=(i[:, None] < length) & (j[None, :] < length))


@triton.jit(do_not_specialize=["length", "blocks", "block", "window"])
def attention_blocks_kernel(
    # pointers
    segments_ptr,
    prefix_ptr,
    lengths_ptr,
    out_ptr,
    # shapes and strides
    length,
    blocks,
    block,
    segments_stride0,
    segments_stride1,
    # scalars
    window,
    # meta
    HAS_SEGMENTS: tl.constexpr,
    HAS_PREFIX: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    LANES: tl.constexpr,
    SUB: tl.constexpr,
):
    """One program classifies the key blocks of one query block: per key block, the per-query
    intervals (and the segment-id ranges of both blocks) decide empty and full; only undecided
    blocks with documents evaluate their tile."""
    row = tl.program_id(0).to(tl.int64)
    q_block = tl.program_id(1)
    lane = tl.arange(0, LANES)
    i = q_block * block + lane
    valid_q = (lane < block) & (i < length)
    prefix, limit = _row_bounds(prefix_ptr, lengths_ptr, row, length, HAS_PREFIX, HAS_LENGTHS)
    lo, hi = _query_interval(i, prefix, limit, window, CAUSAL, HAS_WINDOW)
    base = segments_ptr + row * segments_stride0
    seg_q = tl.zeros([LANES], dtype=tl.int64)
    q_min = tl.min(seg_q, axis=0)
    q_max = q_min
    if HAS_SEGMENTS:
        seg_q = tl.load(base + i.to(tl.int64) * segments_stride1, mask=valid_q, other=0).to(tl.int64)
        q_min = tl.min(tl.where(valid_q, seg_q, 0x7FFFFFFFFFFFFFFF), axis=0)
        q_max = tl.max(tl.where(valid_q, seg_q, -0x7FFFFFFFFFFFFFFF), axis=0)
    out = out_ptr + (row * blocks + q_block) * blocks
    for k_block in range(0, blocks):
        k0 = k_block * block
        k_end = tl.minimum(k0 + block, length)
        touch = tl.sum((valid_q & (tl.maximum(lo, k0) < tl.minimum(hi, k_end))).to(tl.int32), axis=0)
        cover = tl.sum((valid_q & (lo <= k0) & (hi >= k0 + block)).to(tl.int32), axis=0)
        state = tl.where(cover == block, 2, tl.where(touch > 0, 1, 0)).to(tl.int8)
        if HAS_SEGMENTS:
            if touch > 0:
                j = k0 + lane
                valid_k = (lane < block) & (j < length)
                seg_k = tl.load(base + j.to(tl.int64) * segments_stride1, mask=valid_k, other=0).to(tl.int64)
                k_min = tl.min(tl.where(valid_k, seg_k, 0x7FFFFFFFFFFFFFFF), axis=0)
                k_max = tl.max(tl.where(valid_k, seg_k, -0x7FFFFFFFFFFFFFFF), axis=0)
                one_document = (q_min == q_max) & (k_min == k_max) & (q_min == k_min)
                apart = (k_max < q_min) | (k_min > q_max)
                if apart:
                    state = tl.zeros([], dtype=tl.int8)
                elif not one_document:  # the tile, SUB query rows at a time (no spills)
                    count = 0
                    for r in range(0, LANES, SUB):
                        sub = r + tl.arange(0, SUB)
                        i_sub = q_block * block + sub
                        valid_sub = (sub < block) & (i_sub < length)
                        lo_sub, hi_sub = _query_interval(i_sub, prefix, limit, window, CAUSAL, HAS_WINDOW)
                        seg_sub = tl.load(base + i_sub.to(tl.int64) * segments_stride1, mask=valid_sub, other=0)
                        allowed = (valid_sub[:, None] & valid_k[None, :] & (j[None, :] >= lo_sub[:, None])
                                   & (j[None, :] < hi_sub[:, None]) & (seg_sub.to(tl.int64)[:, None] == seg_k[None, :]))
                        count += tl.sum(tl.sum(allowed.to(tl.int32), axis=1), axis=0)
                    state = tl.where(count == block * block, 2, tl.where(count > 0, 1, 0)).to(tl.int8)
        tl.store(out + k_block, state)


_COMMON = {
    "segments_ptr": "*i64", "prefix_ptr": "*i64", "lengths_ptr": "*i64", "segments_stride0": "i64",
    "segments_stride1": "i64", "window": "i32", "HAS_SEGMENTS": "constexpr", "HAS_PREFIX": "constexpr",
    "HAS_LENGTHS": "constexpr", "CAUSAL": "constexpr", "HAS_WINDOW": "constexpr",
}
_DENSE_SIGNATURE = {**_COMMON, "out_ptr": "*i1", "length": "i32", "BLOCK_Q": "constexpr", "BLOCK_K": "constexpr"}
_BLOCKS_SIGNATURE = {**_COMMON, "out_ptr": "*i8", "length": "i32", "blocks": "i32", "block": "i32", "LANES": "constexpr", "SUB": "constexpr"}
_ALL = {"HAS_SEGMENTS": True, "HAS_PREFIX": True, "HAS_LENGTHS": True, "CAUSAL": True, "HAS_WINDOW": True}
_DOCUMENTS = {"HAS_SEGMENTS": True, "HAS_PREFIX": False, "HAS_LENGTHS": False, "CAUSAL": True, "HAS_WINDOW": False}

# Argument types for compiling each kernel ahead of time (fastmask/triton/hopper.py), as launched:
# 64 x 64 dense tiles (4 warps), 128-query blocks (flex_attention's default, 8 warps) and 256 lanes.
HOPPER_SPECS = [
    (attention_dense_kernel, _DENSE_SIGNATURE, {**_ALL, "BLOCK_Q": 64, "BLOCK_K": 64}, {"num_warps": 4}),
    (attention_blocks_kernel, _BLOCKS_SIGNATURE, {**_DOCUMENTS, "LANES": 128, "SUB": 16}, {"num_warps": 8}),
    (attention_blocks_kernel, _BLOCKS_SIGNATURE, {**_ALL, "LANES": 128, "SUB": 16}, {"num_warps": 8}),
    (attention_blocks_kernel, _BLOCKS_SIGNATURE, {**_ALL, "LANES": 256, "SUB": 16}, {"num_warps": 8}),
]
