"""Triton kernels of magnitude pruning (docs/pruning.md): a radix select over the keys (|x|'s float
bits) one 16-bit digit at a time, then the ties at the threshold ranked by position. The launchers
keep the running prefix and rank on the device, so nothing syncs."""
import triton
import triton.language as tl


@triton.jit
def _keys(bits_ptr, offsets, valid, KEY_MASK: tl.constexpr):
    return tl.load(bits_ptr + offsets, mask=valid, other=0).to(tl.int64) & KEY_MASK


@triton.jit
def digit_hist_kernel(
    # pointers
    bits_ptr, prefix_ptr, hist_ptr,
    # shapes
    n,
    # meta
    KEY_MASK: tl.constexpr, SHIFT: tl.constexpr, DIGIT_BITS: tl.constexpr, BLOCK: tl.constexpr,
):
    """Counts the digit (key >> SHIFT) mod 2^DIGIT_BITS of the keys whose bits above it equal the prefix."""
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = offsets < n
    key = _keys(bits_ptr, offsets, valid, KEY_MASK)
    prefix = tl.load(prefix_ptr)
    match = valid & ((key >> (SHIFT + DIGIT_BITS)) == prefix)
    digit = (key >> SHIFT) & ((1 << DIGIT_BITS) - 1)
    tl.atomic_add(hist_ptr + digit, tl.full([BLOCK], 1, tl.int64), mask=match)


@triton.jit
def tie_count_kernel(
    bits_ptr, threshold_ptr, counts_ptr,
    n, first_block,
    KEY_MASK: tl.constexpr, BLOCK: tl.constexpr,
):
    """counts[first_block + program] = how many keys of the program's block equal the threshold."""
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = offsets < n
    key = _keys(bits_ptr, offsets, valid, KEY_MASK)
    tie = valid & (key == tl.load(threshold_ptr))
    tl.store(counts_ptr + first_block + pid, tl.sum(tie.to(tl.int64), axis=0))


@triton.jit
def write_mask_kernel(
    bits_ptr, threshold_ptr, ties_ptr, starts_ptr, mask_ptr,
    n, first_block,
    KEY_MASK: tl.constexpr, BLOCK: tl.constexpr,
):
    """Keeps keys above the threshold and the ties ranked at or after ties (the count still to prune)."""
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = offsets < n
    key = _keys(bits_ptr, offsets, valid, KEY_MASK)
    threshold = tl.load(threshold_ptr)
    tie = (valid & (key == threshold)).to(tl.int64)
    rank = tl.load(starts_ptr + first_block + pid) + tl.cumsum(tie, axis=0) - tie
    keep = (key > threshold) | ((tie != 0) & (rank >= tl.load(ties_ptr)))
    tl.store(mask_ptr + offsets, keep.to(tl.int8), mask=valid)


@triton.jit
def nm_mask_kernel(
    bits_ptr, mask_ptr,
    groups, n, m,
    KEY_MASK: tl.constexpr, M: tl.constexpr, GROUPS: tl.constexpr,
):
    """GROUPS groups of m (<= M) consecutive elements: keeps those ranked >= m - n in (key, index) order."""
    group = tl.program_id(0).to(tl.int64) * GROUPS + tl.arange(0, GROUPS)
    lane = tl.arange(0, M)
    valid = (group[:, None] < groups) & (lane[None, :] < m)
    offsets = group[:, None] * m + lane[None, :]
    key = _keys(bits_ptr, offsets, valid, KEY_MASK)
    ki = key[:, :, None]
    kj = key[:, None, :]
    before = (kj < ki) | ((kj == ki) & (lane[None, None, :] < lane[None, :, None]))
    rank = tl.sum((before & (lane[None, None, :] < m)).to(tl.int32), axis=2)
    tl.store(mask_ptr + offsets, (rank >= m - n).to(tl.int8), mask=valid)


_BITS = {"i16": 0x7FFF, "i32": 0x7FFFFFFF, "i64": 0x7FFFFFFFFFFFFFFF}
HOPPER_SPECS = []
for _type, _mask in _BITS.items():
    HOPPER_SPECS += [
        (digit_hist_kernel, {"bits_ptr": f"*{_type}", "prefix_ptr": "*i64", "hist_ptr": "*i64", "n": "i64",
                             "KEY_MASK": "constexpr", "SHIFT": "constexpr", "DIGIT_BITS": "constexpr", "BLOCK": "constexpr"},
         {"KEY_MASK": _mask, "SHIFT": 15 if _type == "i32" else 0, "DIGIT_BITS": 15 if _type == "i16" else 16, "BLOCK": 1024}, {"num_warps": 4}),
        (tie_count_kernel, {"bits_ptr": f"*{_type}", "threshold_ptr": "*i64", "counts_ptr": "*i64", "n": "i64",
                            "first_block": "i64", "KEY_MASK": "constexpr", "BLOCK": "constexpr"},
         {"KEY_MASK": _mask, "BLOCK": 1024}, {"num_warps": 4}),
        (write_mask_kernel, {"bits_ptr": f"*{_type}", "threshold_ptr": "*i64", "ties_ptr": "*i64", "starts_ptr": "*i64",
                             "mask_ptr": "*i8", "n": "i64", "first_block": "i64", "KEY_MASK": "constexpr",
                             "BLOCK": "constexpr"},
         {"KEY_MASK": _mask, "BLOCK": 1024}, {"num_warps": 4}),
        (nm_mask_kernel, {"bits_ptr": f"*{_type}", "mask_ptr": "*i8", "groups": "i64", "n": "i32", "m": "i32",
                          "KEY_MASK": "constexpr", "M": "constexpr", "GROUPS": "constexpr"},
         {"KEY_MASK": _mask, "M": 4, "GROUPS": 256}, {"num_warps": 4}),
    ]
