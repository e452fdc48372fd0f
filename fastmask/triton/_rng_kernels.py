"""Triton kernels of the random stream (docs/rng.md)."""
import triton
import triton.language as tl


@triton.jit
def stream_words(seed, key, position, purpose):
    """The four words of (seed, key, position, purpose): Philox4x32-10 with key = seed and counter =
    (position, purpose, key low word, key high word). seed and key are int64; position a block."""
    c0 = position.to(tl.uint32)
    c1 = tl.zeros_like(c0) + purpose.to(tl.uint32)
    c2 = tl.zeros_like(c0) + (key & 0xFFFFFFFF).to(tl.uint32)
    c3 = tl.zeros_like(c0) + ((key >> 32) & 0xFFFFFFFF).to(tl.uint32)
    # tl.philox switches to Philox4x64 on 64-bit counters: pin the 32-bit stream.
    tl.static_assert(c0.dtype == tl.uint32)
    tl.static_assert(c3.dtype == tl.uint32)
    return tl.philox(seed, c0, c1, c2, c3, n_rounds=10)


@triton.jit(do_not_specialize=["length", "purpose"])
def random_words_kernel(
    # pointers
    seed_ptr,
    keys_ptr,
    out_ptr,
    # shapes and strides
    length,
    keys_stride,
    purpose,
    # meta
    BLOCK: tl.constexpr,
):
    """One program writes BLOCK positions of one row: out[row, position, 0:4] as int64."""
    blocks_per_row = tl.cdiv(length, BLOCK)
    program = tl.program_id(0)
    row = program // blocks_per_row
    position = (program % blocks_per_row) * BLOCK + tl.arange(0, BLOCK)
    in_row = position < length
    seed = tl.load(seed_ptr)
    key = tl.load(keys_ptr + row.to(tl.int64) * keys_stride).to(tl.int64)
    w0, w1, w2, w3 = stream_words(seed, key, position, purpose)
    # join stacks on a new last axis, so the outer join picks the pair: [w0, w1, w2, w3] in memory.
    words = tl.join(tl.join(w0, w2), tl.join(w1, w3)).reshape(BLOCK, 4).to(tl.int64)
    offsets = (row.to(tl.int64) * length + position)[:, None] * 4 + tl.arange(0, 4)[None, :]
    tl.store(out_ptr + offsets, words, mask=in_row[:, None])


# Argument types for compiling each kernel ahead of time (fastmask/triton/hopper.py, CI's sm_90 test).
HOPPER_SPECS = [
    (
        random_words_kernel,
        {"seed_ptr": "*i64", "keys_ptr": "*i64", "out_ptr": "*i64", "length": "i32", "keys_stride": "i64",
         "purpose": "i32", "BLOCK": "constexpr"},
        {"BLOCK": 1024},
    ),
]
