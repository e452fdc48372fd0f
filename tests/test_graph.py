"""Graph masks (docs/graph.md): three backends bit-identical, rates within 6 sigma, undirected pairs
together, walks that follow edges, torch_geometric's dropout_edge / mask_feature cases side by side,
errors, meta, opcheck, compile."""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fastmask

from .conftest import BACKENDS, DEVICE, device_for, op_arguments

pyg_utils = pytest.importorskip("torch_geometric.utils")


def random_graph(nodes, edges, seed=0, dtype=torch.int64):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, nodes, (2, edges), generator=g).to(dtype)


def ring(nodes):
    """Every node has out-degree 2: its two ring neighbours."""
    v = torch.arange(nodes)
    return torch.stack([torch.cat([v, v]), torch.cat([(v + 1) % nodes, (v - 1) % nodes])])


def on(backend, *tensors):
    return [t.to(device_for(backend)) for t in tensors]


def cpu(result):
    return tuple(t.cpu() for t in result) if isinstance(result, tuple) else result.cpu()


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_backends_equal(dtype):
    ei = random_graph(50, 3001, dtype=dtype)
    ei[:, 3] = torch.tensor([9, 9])  # a self-loop
    x = torch.randn(37, 11)
    for seed, key, p in [(0, 0, 0.5), (2**63 + 7, -3, 0.15), (12345, 2**40, 1.0), (1, 2, 0.0)]:
        results = {}
        for backend in BACKENDS:
            (e, xx) = on(backend, ei, x)
            results[backend] = (
                cpu(fastmask.mask_edges(e, p, seed=seed, key=key, backend=backend)),
                cpu(fastmask.mask_edges(e, p, undirected=True, seed=seed, key=key, backend=backend)),
                cpu(fastmask.mask_paths(e, 50, root_p=p, walk_length=3, walks_per_node=2, seed=seed, key=key,
                                        backend=backend)),
                *[cpu(fastmask.mask_features(xx, p, mode, seed=seed, key=key, backend=backend))
                  for mode in ("col", "row", "all")],
            )
        for backend in BACKENDS[1:]:
            for got, expected in zip(results[backend], results["reference"]):
                assert all(torch.equal(a, b) for a, b in zip(got, expected)), (backend, seed)


@given(edges=st.integers(0, 700), nodes=st.integers(1, 40), p=st.floats(0, 1), seed=st.integers(0, 2**64 - 1),
       walk_length=st.integers(1, 5), walks=st.integers(1, 3))
def test_cpp_matches_reference_any_graph(edges, nodes, p, seed, walk_length, walks):
    ei = random_graph(nodes, edges, seed=seed % 1000)
    for undirected in (False, True):
        a = fastmask.mask_edges(ei, p, undirected=undirected, seed=seed, backend="cpp")
        b = fastmask.mask_edges(ei, p, undirected=undirected, seed=seed, backend="reference")
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    a = fastmask.path_mask(ei, nodes, root_p=p, walk_length=walk_length, walks_per_node=walks, seed=seed, backend="cpp")
    b = fastmask.path_mask(ei, nodes, root_p=p, walk_length=walk_length, walks_per_node=walks, seed=seed,
                           backend="reference")
    assert torch.equal(a, b)


def within_six_sigma(count, n, p):
    return abs(count - n * p) <= 6 * math.sqrt(n * p * (1 - p)) + 1e-9


def test_rates_within_six_sigma():
    ei = random_graph(1000, 40000)
    x = torch.zeros(300, 200)
    for p in (0.05, 0.3, 0.7):
        remaining, masked = fastmask.mask_edges(ei, p, seed=7)
        assert remaining.shape[1] + masked.shape[1] == ei.shape[1]
        assert within_six_sigma(masked.shape[1], ei.shape[1], p)
        assert within_six_sigma(int((~fastmask.mask_features(x, p, "all", seed=7)[1]).sum()), x.numel(), p)
        assert within_six_sigma(int((~fastmask.mask_features(x, p, "row", seed=7)[1]).sum()), 300, p)
        # Roots: with one step on a ring every root masks exactly one edge.
        masked = fastmask.path_mask(ring(5000), 5000, root_p=p, walk_length=1, seed=7)
        assert within_six_sigma(int(masked.sum()), 5000, p)


def test_split_keeps_order_and_partitions():
    ei = random_graph(30, 500)
    masked = fastmask.edge_mask(ei, 0.4, seed=3)
    remaining, taken = fastmask.mask_edges(ei, 0.4, seed=3)
    assert torch.equal(remaining, ei[:, ~masked]) and torch.equal(taken, ei[:, masked])


@pytest.mark.parametrize("backend", BACKENDS)
def test_undirected_pairs_masked_together(backend):
    ei = pyg_utils.to_undirected(random_graph(40, 400, seed=1))
    ei, = on(backend, ei)
    remaining, masked = cpu(fastmask.mask_edges(ei, 0.5, undirected=True, seed=11, backend=backend))
    for out in (remaining, masked):
        assert pyg_utils.is_undirected(out)
        half = out.shape[1] // 2
        assert (out[0, :half] <= out[1, :half]).all() and torch.equal(out[:, half:], out[:, :half].flip(0))
    pairs = lambda e: {tuple(sorted(c)) for c in e.t().tolist()}  # noqa: E731
    assert not pairs(remaining) & pairs(masked)
    assert pairs(remaining) | pairs(masked) == pairs(ei.cpu())


def test_walks_follow_edges():
    nodes = 200
    ei = random_graph(nodes, 800, seed=2)
    for walk_length, walks in [(1, 1), (3, 1), (4, 3)]:
        masked = fastmask.path_mask(ei, nodes, root_p=0.1, walk_length=walk_length, walks_per_node=walks, seed=5)
        roots = fastmask.path_mask(ei, nodes, root_p=0.1, walk_length=1, seed=5)  # one edge from each root
        root_nodes = set(ei[0, roots].tolist())
        heads = set(ei[1, masked].tolist())
        for u in ei[0, masked].tolist():  # each walked edge leaves a root or the head of a walked edge
            assert u in root_nodes or u in heads
        assert masked.sum() <= len(root_nodes) * walk_length * walks
        assert roots.sum() == len(root_nodes)  # one edge per root: the first step
        assert (masked | ~roots).all()  # longer walks start with the same first step


def test_walk_steps_are_uniform_over_out_edges():
    sources = torch.arange(2000).repeat_interleave(10)  # node v's edges are 10v .. 10v + 9, to nodes >= 2000
    ei = torch.stack([sources, 2000 + torch.arange(20000) % 7])
    masked = fastmask.path_mask(ei, 2007, root_p=1.0, walk_length=1, seed=3).view(2000, 10)
    assert (masked.sum(1) == 1).all()  # one step from every root
    assert all(within_six_sigma(int(c), 2000, 0.1) for c in masked.sum(0))


def test_keys_and_seeds_change_the_mask():
    ei = random_graph(100, 2000)
    base = fastmask.edge_mask(ei, 0.5, seed=1, key=0)
    assert torch.equal(base, fastmask.edge_mask(ei, 0.5, seed=1, key=0))
    assert not torch.equal(base, fastmask.edge_mask(ei, 0.5, seed=1, key=1))
    assert not torch.equal(base, fastmask.edge_mask(ei, 0.5, seed=2, key=0))
    torch.manual_seed(0)
    assert not torch.equal(fastmask.edge_mask(ei, 0.5), fastmask.edge_mask(ei, 0.5))  # seed=None: fresh


# torch_geometric's own dropout_edge / mask_feature cases, side by side where the outcome is determined.

PYG_GRAPH = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])


def test_pyg_dropout_edge_cases():
    for p in (0.0, 1.0):  # deterministic: the same edges as torch_geometric
        theirs, _ = pyg_utils.dropout_edge(PYG_GRAPH, p=p)
        ours, masked = fastmask.mask_edges(PYG_GRAPH, p)
        assert torch.equal(ours, theirs) and masked.shape[1] == PYG_GRAPH.shape[1] - theirs.shape[1]
    theirs, _ = pyg_utils.dropout_edge(PYG_GRAPH, p=1.0, force_undirected=True)
    assert torch.equal(fastmask.mask_edges(PYG_GRAPH, 1.0, undirected=True)[0], theirs)
    # Random outcomes: the same structure as torch_geometric's (kept upper edges followed by their flips).
    for seed in range(5):
        torch.manual_seed(seed)
        theirs, _ = pyg_utils.dropout_edge(PYG_GRAPH, p=0.5, force_undirected=True)
        ours, _ = fastmask.mask_edges(PYG_GRAPH, 0.5, undirected=True, seed=seed)
        for out in (theirs, ours):
            half = out.shape[1] // 2
            assert torch.equal(out[:, half:], out[:, :half].flip(0)) and (out[0, :half] <= out[1, :half]).all()
    with pytest.raises(ValueError):
        pyg_utils.dropout_edge(PYG_GRAPH, p=-0.1)
    with pytest.raises(ValueError, match="p"):
        fastmask.mask_edges(PYG_GRAPH, -0.1)


def test_pyg_mask_feature_cases():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    shapes = {"col": (1, 3), "row": (3, 1), "all": (3, 3)}
    for mode, shape in shapes.items():
        out, keep = fastmask.mask_features(x, 0.0, mode)
        assert torch.equal(out, x) and keep.all()
        theirs, their_keep = pyg_utils.mask_feature(x, 1.0, mode=mode, fill_value=-1.0)
        ours, keep = fastmask.mask_features(x, 1.0, mode, fill_value=-1.0)
        assert torch.equal(ours, theirs) and torch.equal(keep, their_keep) and keep.shape == shape
        for seed in range(5):  # random: the same contract as torch_geometric's
            torch.manual_seed(seed)
            for out, keep in (pyg_utils.mask_feature(x, 0.5, mode=mode, fill_value=-1.0),
                              fastmask.mask_features(x, 0.5, mode, fill_value=-1.0, seed=seed)):
                assert keep.shape == shape and keep.dtype == torch.bool
                assert torch.equal(out, torch.where(keep, x, torch.tensor(-1.0)))
    with pytest.raises(ValueError, match="mode"):
        fastmask.mask_features(x, 0.5, "cols")


def test_errors():
    ei = PYG_GRAPH
    cases = [
        (lambda: fastmask.mask_edges(ei.float(), 0.5), "edge_index"),
        (lambda: fastmask.mask_edges(ei[0], 0.5), "edge_index"),
        (lambda: fastmask.mask_edges(torch.zeros(3, 4, dtype=torch.int64), 0.5), r"\[2, E\]"),
        (lambda: fastmask.mask_edges(ei, 1.5), "p"),
        (lambda: fastmask.mask_edges(ei, 0.5, key=1.5), "key"),
        (lambda: fastmask.mask_edges(ei, 0.5, seed="x"), "seed"),
        (lambda: fastmask.mask_edges(ei, 0.5, backend="gpu"), "backend"),
        (lambda: fastmask.mask_paths(ei, 4, root_p=0.5, walk_length=0), "walk_length"),
        (lambda: fastmask.mask_paths(ei, 4, root_p=0.5, walk_length=3, walks_per_node=0), "walks_per_node"),
        (lambda: fastmask.mask_paths(ei, 4, root_p=0.5, walk_length=300, walks_per_node=300), "steps"),
        (lambda: fastmask.mask_paths(ei, 4, root_p=2, walk_length=3), "root_p"),
        (lambda: fastmask.mask_paths(ei, -1, root_p=0.5, walk_length=3), "num_nodes"),
        (lambda: fastmask.mask_features(torch.arange(6).view(2, 3), 0.5), "x"),
        (lambda: fastmask.mask_features(torch.randn(2, 3, 4), 0.5), "x"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()
    bad = torch.tensor([[0, 1, -2], [1, 0, 1]])
    for backend in ("reference", "cpp"):
        with pytest.raises(ValueError, match=r"node id -2 at \[0, 2\]"):
            fastmask.mask_edges(bad, 0.5, backend=backend)
        two_bad = PYG_GRAPH.clone()
        two_bad[1, 2], two_bad[0, 5] = 4, 7  # the first in row-major order is reported
        with pytest.raises(ValueError, match=r"node id 7 at \[0, 5\] is outside \[0, num_nodes = 4\)"):
            fastmask.mask_paths(two_bad, 4, root_p=0.5, walk_length=2, backend=backend)
        with pytest.raises(ValueError, match="outside"):
            fastmask.mask_edges(PYG_GRAPH, 0.5, num_nodes=3, backend=backend)


def test_meta_and_opcheck(backend):
    meta = torch.empty(2, 9, dtype=torch.int64, device="meta")
    assert fastmask.edge_mask(meta, 0.5).shape == (9,)
    assert fastmask.path_mask(meta, 4, root_p=0.5, walk_length=2).device.type == "meta"
    assert fastmask.mask_features(torch.empty(4, 3, device="meta"), 0.5)[1].shape == (1, 3)
    e, x = on(backend, PYG_GRAPH, torch.randn(4, 5))
    args = op_arguments(lambda: fastmask.edge_mask(e, 0.5, seed=1, backend=backend))
    torch.library.opcheck(torch.ops.fastmask.edge_mask.default, args)
    args = op_arguments(lambda: fastmask.path_mask(e, 4, root_p=0.5, walk_length=2, seed=1, backend=backend))
    torch.library.opcheck(torch.ops.fastmask.path_mask.default, args)
    args = op_arguments(lambda: fastmask.mask_features(x, 0.5, "all", seed=1, backend=backend))
    torch.library.opcheck(torch.ops.fastmask.feature_drops.default, args)


def test_compile_fullgraph_static_masks():
    e, x = PYG_GRAPH.to(DEVICE), torch.randn(4, 5, device=DEVICE)
    seed = torch.tensor(3, device=DEVICE)

    def fn(e, x, seed):
        return (fastmask.edge_mask(e, 0.5, seed=seed), fastmask.path_mask(e, 4, root_p=0.5, walk_length=2, seed=seed),
                fastmask.mask_features(x, 0.5, "all", seed=seed))

    expected = fn(e, x, seed)
    got = torch.compile(fn, fullgraph=True)(e, x, seed)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert all(torch.equal(a, b) for a, b in zip(got[2], expected[2]))


def test_thread_count_does_not_change_the_masks():
    ei = random_graph(70000, 300000, seed=4)  # several tasks of 2^16 edges and nodes
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append((*fastmask.mask_edges(ei, 0.3, seed=1, backend="cpp"),
                            *fastmask.mask_edges(ei, 0.3, undirected=True, seed=1, backend="cpp"),
                            fastmask.path_mask(ei, 70000, root_p=0.5, walk_length=3, seed=1, backend="cpp"),
                            fastmask.mask_features(torch.zeros(600, 300), 0.5, "all", seed=1, backend="cpp")[1]))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*results))
