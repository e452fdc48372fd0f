"""Triton kernels of the graph masks (docs/graph.md)."""
import triton
import triton.language as tl

from ._rng_kernels import stream_words


@triton.jit(do_not_specialize=["n", "threshold", "purpose"])
def drops_kernel(
    # pointers
    seed_ptr, key_ptr, out_ptr,
    # shapes
    n, threshold, purpose,
    # meta
    BLOCK: tl.constexpr,
):
    """out[d] = word d % 4 of position d // 4 < threshold: BLOCK positions, 4 * BLOCK decisions."""
    position = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    w0, w1, w2, w3 = stream_words(tl.load(seed_ptr), tl.load(key_ptr), position, purpose)
    # join stacks on a new last axis: [i, j, k] = word 2j + k of position i, flattened to decision 4i + 2j + k
    words = tl.reshape(tl.join(tl.join(w0, w2), tl.join(w1, w3)), [4 * BLOCK])
    d = tl.program_id(0).to(tl.int64) * (4 * BLOCK) + tl.arange(0, 4 * BLOCK)
    tl.store(out_ptr + d, (words.to(tl.int64) < threshold).to(tl.int8), mask=d < n)


@triton.jit(do_not_specialize=["num_nodes", "root_threshold", "walk_length", "walks_per_node", "purpose"])
def path_mask_kernel(
    # pointers
    seed_ptr, key_ptr, rowptr_ptr, order_ptr, target_ptr, out_ptr,
    # shapes
    num_nodes, root_threshold, walk_length, walks_per_node, purpose,
    # meta
    BLOCK: tl.constexpr,
):
    """One lane per node: when it is a root, its walks on the CSR (rowptr, order = edge ids, target)."""
    node = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = node < num_nodes
    seed, key = tl.load(seed_ptr), tl.load(key_ptr)
    root_word, _, _, _ = stream_words(seed, key, node, purpose)
    root = valid & (root_word.to(tl.int64) < root_threshold)
    for w in range(walks_per_node):
        at = node
        alive = root
        for s in range(walk_length):
            step = (1 + w * walk_length + s).to(tl.uint32)
            alive = alive & (at >= 0) & (at < num_nodes)  # ids are not validated on the GPU: never read outside
            start = tl.load(rowptr_ptr + at, mask=alive, other=0)
            degree = tl.load(rowptr_ptr + at + 1, mask=alive, other=0) - start
            alive = alive & (degree > 0)
            draw, _, _, _ = stream_words(seed, key, node, purpose + (step << 16))
            slot = start + ((draw.to(tl.int64) * degree) >> 32)
            edge = tl.load(order_ptr + slot, mask=alive, other=0)
            tl.store(out_ptr + edge, tl.full([BLOCK], 1, tl.int8), mask=alive)
            at = tl.where(alive, tl.load(target_ptr + slot, mask=alive, other=0), at)


HOPPER_SPECS = [
    (drops_kernel, {"seed_ptr": "*i64", "key_ptr": "*i64", "out_ptr": "*i8", "n": "i64", "threshold": "i64",
                    "purpose": "i32", "BLOCK": "constexpr"}, {"BLOCK": 256}, {"num_warps": 4}),
    (path_mask_kernel, {"seed_ptr": "*i64", "key_ptr": "*i64", "rowptr_ptr": "*i64", "order_ptr": "*i64",
                        "target_ptr": "*i64", "out_ptr": "*i8", "num_nodes": "i32", "root_threshold": "i64",
                        "walk_length": "i32", "walks_per_node": "i32", "purpose": "i32", "BLOCK": "constexpr"},
     {"BLOCK": 128}, {"num_warps": 4}),
]
