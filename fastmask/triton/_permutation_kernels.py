"""Triton kernels of permutation language modeling (docs/permutation.md), bit-identical to
fastmask/reference/permutation.py: spans (one program per row), order keys (blocks of positions),
perm_mask (tiles of [BLOCK_I, BLOCK_J])."""
import triton
import triton.language as tl

from ._rng_kernels import stream_words

SLOT_BITS = tl.constexpr(30)  # as fastmask/reference/permutation.py


@triton.jit(do_not_specialize=["length", "most", "attempts", "purpose"])
def permutation_spans_kernel(
    # pointers
    seed_ptr,
    keys_ptr,
    contexts_ptr,
    spans_ptr,
    # shapes and strides
    length,
    most,
    attempts,
    keys_stride,
    # scalars
    purpose,
    # meta
    BLOCK_A: tl.constexpr,
):
    """One program walks one row's spans, BLOCK_A at a time: span p's start is the sum of the earlier
    contexts plus its offset; its tokens are set in spans (zeroed int8 [B, L])."""
    row = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    key = tl.load(keys_ptr + row * keys_stride).to(tl.int64)
    cursor = tl.zeros((), dtype=tl.int64)
    for first in range(0, attempts, BLOCK_A):
        p = first + tl.arange(0, BLOCK_A)
        valid = p < attempts
        w0, w1, _, _ = stream_words(seed, key, p, purpose)
        span = 1 + ((w0.to(tl.int64) * most) >> 32)
        context = tl.where(valid, tl.load(contexts_ptr + span - 1, mask=valid, other=0), 0)
        start = cursor + tl.cumsum(context, 0) - context + ((w1.to(tl.int64) * (context - span + 1)) >> 32)
        cursor += tl.sum(context, 0)
        for k in range(0, most):
            position = start + k
            inside = valid & (k < span) & (position < length)
            tl.store(spans_ptr + row * length + position, tl.full((BLOCK_A,), 1, tl.int8), mask=inside)


@triton.jit(do_not_specialize=["length", "num_functional", "mask_token_id", "ignore_index", "purpose"])
def permutation_keys_kernel(
    # pointers
    ids_ptr,
    seed_ptr,
    keys_ptr,
    spans_ptr,
    functional_ptr,
    out_ids_ptr,
    labels_ptr,
    row_key_ptr,
    column_key_ptr,
    # shapes and strides
    length,
    num_functional,
    ids_stride0,
    ids_stride1,
    keys_stride,
    # scalars
    mask_token_id,
    ignore_index,
    purpose,
    # meta
    BLOCK: tl.constexpr,
):
    """Targets (span tokens that are not functional), input_ids, labels, and the int64 keys whose
    compare is perm_mask: row key -1 for free tokens, else the order; column key the order of a
    target, else -2. Order = (upper half << 62) | (w2 of the slot << 30) | slot."""
    row = tl.program_id(0).to(tl.int64)
    t = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = t < length
    ids = tl.load(ids_ptr + row * ids_stride0 + t.to(tl.int64) * ids_stride1, mask=valid, other=0)
    spans = tl.load(spans_ptr + row * length + t, mask=valid, other=0) != 0
    functional = tl.zeros((BLOCK,), dtype=tl.int1)
    for f in range(0, num_functional):
        functional = functional | (ids.to(tl.int64) == tl.load(functional_ptr + f))
    target = spans & ~functional
    half = length // 2
    slot = t % tl.maximum(half, 1)
    seed = tl.load(seed_ptr)
    key = tl.load(keys_ptr + row * keys_stride).to(tl.int64)
    _, _, w2, _ = stream_words(seed, key, slot, purpose)
    order = ((t >= half).to(tl.int64) << 62) | (w2.to(tl.int64) << SLOT_BITS) | slot.to(tl.int64)
    offsets = row * length + t
    tl.store(row_key_ptr + offsets, tl.where(~target & ~functional, -1, order), mask=valid)
    tl.store(column_key_ptr + offsets, tl.where(target, order, -2), mask=valid)
    tl.store(out_ids_ptr + offsets, tl.where(target, mask_token_id, ids).to(ids.dtype), mask=valid)
    tl.store(labels_ptr + offsets, tl.where(target, ids, ignore_index).to(ids.dtype), mask=valid)


@triton.jit(do_not_specialize=["length"])
def permutation_mask_kernel(
    # pointers
    row_key_ptr,
    column_key_ptr,
    perm_ptr,
    # shapes
    length,
    # meta
    BLOCK_I: tl.constexpr,
    BLOCK_J: tl.constexpr,
):
    """perm_mask[b, i, j] = row_key[b, i] <= column_key[b, j], one [BLOCK_I, BLOCK_J] tile."""
    row = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    j = tl.program_id(2) * BLOCK_J + tl.arange(0, BLOCK_J)
    rows = tl.load(row_key_ptr + row * length + i, mask=i < length, other=0)
    columns = tl.load(column_key_ptr + row * length + j, mask=j < length, other=-2)
    tile = tl.where(rows[:, None] <= columns[None, :], 1.0, 0.0).to(perm_ptr.dtype.element_ty)
    offsets = row * length * length + i.to(tl.int64)[:, None] * length + j[None, :]
    tl.store(perm_ptr + offsets, tile, mask=(i < length)[:, None] & (j < length)[None, :])


_SPANS_SIGNATURE = {"seed_ptr": "*i64", "keys_ptr": "*i64", "contexts_ptr": "*i64", "spans_ptr": "*i8", "length": "i32",
                    "most": "i32", "attempts": "i32", "keys_stride": "i64", "purpose": "i32", "BLOCK_A": "constexpr"}
_KEYS_SIGNATURE = {
    "ids_ptr": "*i64", "seed_ptr": "*i64", "keys_ptr": "*i64", "spans_ptr": "*i8", "functional_ptr": "*i64",
    "out_ids_ptr": "*i64", "labels_ptr": "*i64", "row_key_ptr": "*i64", "column_key_ptr": "*i64", "length": "i32",
    "num_functional": "i32", "ids_stride0": "i64", "ids_stride1": "i64", "keys_stride": "i64", "mask_token_id": "i64",
    "ignore_index": "i64", "purpose": "i32", "BLOCK": "constexpr",
}
_MASK_SIGNATURE = {"row_key_ptr": "*i64", "column_key_ptr": "*i64", "perm_ptr": "*fp32", "length": "i32",
                   "BLOCK_I": "constexpr", "BLOCK_J": "constexpr"}

# Argument types for compiling each kernel ahead of time (fastmask/triton/hopper.py, CI's sm_90 test),
# with the launcher's blocks: HF's float32 perm_mask and the bool one.
HOPPER_SPECS = [
    (permutation_spans_kernel, _SPANS_SIGNATURE, {"BLOCK_A": 128}, {"num_warps": 4}),
    (permutation_keys_kernel, _KEYS_SIGNATURE, {"BLOCK": 512}, {"num_warps": 4}),
    (permutation_mask_kernel, _MASK_SIGNATURE, {"BLOCK_I": 32, "BLOCK_J": 128}, {"num_warps": 4}),
    (permutation_mask_kernel, {**_MASK_SIGNATURE, "perm_ptr": "*i1"}, {"BLOCK_I": 32, "BLOCK_J": 128}, {"num_warps": 4}),
]
