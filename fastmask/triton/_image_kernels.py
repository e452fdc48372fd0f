"""Triton kernels of image and patch masking (fastmask/reference/image.py is the specification)."""
import triton
import triton.language as tl

from ._rng_kernels import stream_words

PACK_SHIFT = tl.constexpr(31)
NOT_A_KEY = tl.constexpr(0x7FFFFFFFFFFFFFFF)
POSITION_BITS = tl.constexpr(0x7FFFFFFF)  # the low PACK_SHIFT bits of a packed key


@triton.jit(
    do_not_specialize=[
        "height", "width", "most", "num_shapes", "target", "max_attempts", "purpose_block", "purpose_top_up",
    ]
)
def block_mask_kernel(
    # pointers
    seed_ptr,
    keys_ptr,
    cum_ptr,
    shapes_ptr,
    out_ptr,
    # shapes and strides
    height,
    width,
    most,
    num_shapes,
    keys_stride,
    # scalars
    target,
    max_attempts,
    purpose_block,
    purpose_top_up,
    # meta
    EXACT: tl.constexpr,
    BLOCK: tl.constexpr,
    SHAPES: tl.constexpr,
):
    """One program masks one row: BEiT's attempts in a loop (docs/image.md), the grid in BLOCK lanes;
    with EXACT the unmasked cells with the smallest top-up keys complete the count."""
    row = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, BLOCK)
    cells = height * width
    in_grid = lane < cells
    grid_row = lane // width
    grid_col = lane % width
    slane = tl.arange(0, SHAPES)
    seed = tl.load(seed_ptr)
    key = tl.load(keys_ptr + row * keys_stride).to(tl.int64)

    mask = lane < 0
    count = key * 0
    fails = key * 0
    t = tl.zeros([16], dtype=tl.int32)
    while (count < target) & (fails < max_attempts):
        limit = tl.minimum(target - count, most)  # M: the patches this block may add
        w0, w1, w2, _ = stream_words(seed, key, t, purpose_block)
        t += 1
        u0 = tl.max(w0.to(tl.int64), axis=0)
        u1 = tl.max(w1.to(tl.int64), axis=0)
        u2 = tl.max(w2.to(tl.int64), axis=0)
        cum = tl.load(cum_ptr + (limit - 1) * num_shapes + slane, mask=slane < num_shapes, other=1 << 32)
        choice = tl.minimum(tl.sum((cum <= u0).to(tl.int32), axis=0), num_shapes - 1)
        h = tl.load(shapes_ptr + 2 * choice)
        w = tl.load(shapes_ptr + 2 * choice + 1)
        top = (u1 * (height - h + 1)) >> 32
        left = (u2 * (width - w + 1)) >> 32
        inside = in_grid & (grid_row >= top) & (grid_row < top + h) & (grid_col >= left) & (grid_col < left + w)
        added = tl.sum((inside & ~mask).to(tl.int32), axis=0).to(tl.int64)
        placed = (added > 0) & (added <= limit)
        mask = mask | (inside & placed)
        count += tl.where(placed, added, 0)
        fails = tl.where(placed, 0, fails + 1)

    if EXACT:
        need = target - count
        w0, _, _, _ = stream_words(seed, key, lane, purpose_top_up)
        packed = tl.where(mask | ~in_grid, NOT_A_KEY, (w0.to(tl.int64) << PACK_SHIFT) | lane.to(tl.int64))
        ordered = tl.sort(packed)
        kth = tl.sum(tl.where(lane == need - 1, ordered, 0), axis=0)
        mask = mask | ((packed <= kth) & (need > 0))
    tl.store(out_ptr + row * cells + lane, mask, mask=in_grid)


@triton.jit(do_not_specialize=["length", "keep", "purpose"])
def patch_shuffle_kernel(
    # pointers
    seed_ptr,
    keys_ptr,
    mask_ptr,
    keep_ptr,
    restore_ptr,
    # shapes and strides
    length,
    keep,
    keys_stride,
    # scalars
    purpose,
    # meta
    BLOCK: tl.constexpr,
):
    """One program shuffles one row: the patches sorted by packed key; rank r < keep is kept
    (ids_keep[r]), ids_restore[patch] = r, mask[patch] = r >= keep."""
    row = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, BLOCK)
    valid = lane < length
    seed = tl.load(seed_ptr)
    key = tl.load(keys_ptr + row * keys_stride).to(tl.int64)
    w0, _, _, _ = stream_words(seed, key, lane, purpose)
    packed = tl.where(valid, (w0.to(tl.int64) << PACK_SHIFT) | lane.to(tl.int64), NOT_A_KEY)
    patch = tl.sort(packed) & POSITION_BITS
    tl.store(keep_ptr + row * keep + lane, patch, mask=lane < keep)
    tl.store(restore_ptr + row * length + patch, lane.to(tl.int64), mask=valid)
    tl.store(mask_ptr + row * length + patch, lane >= keep, mask=valid)


_BLOCK_SIGNATURE = {
    "seed_ptr": "*i64", "keys_ptr": "*i64", "cum_ptr": "*i64", "shapes_ptr": "*i64", "out_ptr": "*i1",
    "height": "i32", "width": "i32", "most": "i32", "num_shapes": "i32", "keys_stride": "i64",
    "target": "i32", "max_attempts": "i32", "purpose_block": "i32", "purpose_top_up": "i32",
    "EXACT": "constexpr", "BLOCK": "constexpr", "SHAPES": "constexpr",
}
_SHUFFLE_SIGNATURE = {
    "seed_ptr": "*i64", "keys_ptr": "*i64", "mask_ptr": "*i1", "keep_ptr": "*i64", "restore_ptr": "*i64",
    "length": "i32", "keep": "i32", "keys_stride": "i64", "purpose": "i32", "BLOCK": "constexpr",
}

# Argument types for compiling each kernel ahead of time (fastmask/triton/hopper.py, CI's sm_90 test),
# as launched: BEiT's 14 x 14 grid (256 lanes, 2 warps, 128 shape slots), MAE's 196 patches, and the
# largest blocks the launchers allow (2048 lanes, 16 warps).
HOPPER_SPECS = [
    (block_mask_kernel, _BLOCK_SIGNATURE, {"EXACT": False, "BLOCK": 256, "SHAPES": 128}, {"num_warps": 2}),
    (block_mask_kernel, _BLOCK_SIGNATURE, {"EXACT": True, "BLOCK": 256, "SHAPES": 128}, {"num_warps": 2}),
    (block_mask_kernel, _BLOCK_SIGNATURE, {"EXACT": True, "BLOCK": 2048, "SHAPES": 1024}, {"num_warps": 16}),
    (patch_shuffle_kernel, _SHUFFLE_SIGNATURE, {"BLOCK": 256}, {"num_warps": 2}),
    (patch_shuffle_kernel, _SHUFFLE_SIGNATURE, {"BLOCK": 2048}, {"num_warps": 16}),
]
