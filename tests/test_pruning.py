"""Magnitude pruning masks (docs/pruning.md): exact counts, kept weights dominate pruned ones, ties by
position, three backends bit-identical, torch.nn.utils.prune's masks, N:M structure, helpers,
errors, opcheck, compile."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn.utils import prune

import fastmask
from fastmask.reference.pruning import magnitude_keys

from .conftest import BACKENDS, DEVICE, device_for, op_arguments

FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def weights(dtype, seed=0):
    """Gaussian, small-integer (many ties), all-zero and NaN/inf entries: every corner of the keys."""
    g = torch.Generator().manual_seed(seed)
    ts = [torch.randn(37, 53, generator=g), torch.randn(1000, generator=g),
          torch.randint(-3, 4, (16, 64), generator=g).float(), torch.zeros(5), torch.randn(2, 3, 4, generator=g)]
    ts[0][0, 0], ts[0][1, 1], ts[1][7] = float("nan"), float("inf"), -0.0
    return [t.to(dtype) for t in ts]


def run(backend, tensors, *args, **kwargs):
    device = device_for(backend)
    return [m.cpu() for m in fastmask.magnitude_masks([t.to(device) for t in tensors], *args, backend=backend, **kwargs)]


def check_pinned_order(tensors, masks, k):
    """The pruned set is the first k in (key, tensor, index) order: count exact, every kept key >= every
    pruned key, and among the ties at the threshold the pruned ones come first."""
    keys = torch.cat([magnitude_keys(t) for t in tensors])
    keep = torch.cat([m.reshape(-1) for m in masks])
    assert int((~keep).sum()) == k
    if 0 < k < keys.numel():
        pruned_max, kept_min = keys[~keep].max(), keys[keep].min()
        assert kept_min >= pruned_max
        ties = (keys == pruned_max).nonzero().view(-1)
        tied_keep = keep[ties]
        assert not tied_keep[: int((~tied_keep).sum())].any()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_backends_equal_and_order_pinned(dtype, scope):
    tensors = weights(dtype)
    for sparsity in (0.0, 0.001, 0.37, 0.5, 0.999, 1.0):
        expected = run("reference", tensors, sparsity, scope=scope)
        for backend in BACKENDS[1:]:
            got = run(backend, tensors, sparsity, scope=scope)
            assert all(torch.equal(a, b) for a, b in zip(got, expected)), (backend, sparsity)
        if scope == "global":
            check_pinned_order(tensors, expected, round(sparsity * sum(t.numel() for t in tensors)))
        else:
            for t, m in zip(tensors, expected):
                check_pinned_order([t], [m], round(sparsity * t.numel()))


@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=4), sparsity=st.floats(0, 1), seed=st.integers(0, 99),
       levels=st.sampled_from([3, 1000]))
def test_counts_exact_any_shapes(sizes, sparsity, seed, levels):
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.randint(-levels, levels, (n,), generator=g).float() / 7 for n in sizes]
    expected = run("reference", tensors, sparsity)
    check_pinned_order(tensors, expected, round(sparsity * sum(sizes)))
    assert all(torch.equal(a, b) for a, b in zip(run("cpp", tensors, sparsity), expected))


def test_matches_torch_global_unstructured():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(48, 64), torch.nn.Linear(64, 32), torch.nn.Linear(32, 10)]
    ours = fastmask.magnitude_masks([m.weight for m in layers], 0.6)
    prune.global_unstructured([(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=0.6)
    assert all(torch.equal(m.weight_mask.bool(), mask) for m, mask in zip(layers, ours))  # random weights: no ties


def test_matches_torch_per_layer_and_scores():
    torch.manual_seed(1)
    layer = torch.nn.Linear(30, 20)
    scores = torch.randn(20, 30)
    ours = fastmask.magnitude_masks([layer.weight], 0.45, scope="layer", scores=[scores])[0]
    prune.l1_unstructured(layer, "weight", amount=0.45, importance_scores=scores)
    assert torch.equal(layer.weight_mask.bool(), ours)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern", ["2:4", "1:4", "3:8", "0:2", "2:2", "4:6"])
def test_nm_structure(backend, pattern):
    n, m = map(int, pattern.split(":"))
    for dtype in FLOATS:
        x = weights(dtype)[2][:, :48]  # ties everywhere
        got = run(backend, [x], pattern=pattern)[0]
        assert torch.equal(got, run("reference", [x], pattern=pattern)[0])
        groups, keys = got.view(-1, m), magnitude_keys(x).view(-1, m)
        assert (groups.sum(1) == n).all()
        if 0 < n < m:
            kept_min = torch.where(groups, keys, keys.max() + 1).min(1).values
            pruned_max = torch.where(groups, -1, keys).max(1).values
            assert (kept_min >= pruned_max).all()


def test_two_four_is_semi_structured():
    x = torch.randn(64, 128, dtype=torch.float16)
    mask = fastmask.magnitude_masks([x], 0.5, pattern="2:4")[0]
    assert (mask.view(64, 32, 4).sum(-1) == 2).all()
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("to_sparse_semi_structured needs a CUDA device of compute capability 8.0+")
    from torch.sparse import to_sparse_semi_structured
    dense = (x * mask).cuda()
    assert torch.equal(to_sparse_semi_structured(dense).to_dense(), dense)


def test_apply_masks_and_remove():
    layers = [torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)]
    masks = fastmask.magnitude_masks([m.weight for m in layers], 0.5)
    fastmask.apply_masks(layers, masks)
    for layer, mask in zip(layers, masks):
        assert torch.equal(layer.weight_mask.bool(), mask) and (layer.weight[~mask] == 0).all()
        prune.remove(layer, "weight")
        assert (layer.weight[~mask] == 0).all()


def test_lottery_ticket_rewinds_and_reaches_sparsity():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    layers = [model[0], model[2]]
    initial = [m.weight.detach().clone() for m in layers]
    x, y = torch.randn(64, 16), torch.randn(64, 4)
    calls = []

    def train():
        calls.append(1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()

    masks = fastmask.lottery_ticket(layers, train, 0.8, rounds=3)
    assert len(calls) == 3
    total = sum(m.numel() for m in masks)
    assert sum(int((~m).sum()) for m in masks) == round(0.8 * total)
    for layer, mask, start in zip(layers, masks, initial):
        assert torch.equal(layer.weight_mask.bool(), mask)
        assert torch.equal(layer.weight_orig[mask], start[mask])  # survivors rewound
        assert (layer.weight[~mask] == 0).all()


def test_errors():
    x = torch.randn(4, 8)
    cases = [
        (lambda: fastmask.magnitude_masks([], 0.5), "tensors"),
        (lambda: fastmask.magnitude_masks(x, 0.5), "tensors"),
        (lambda: fastmask.magnitude_masks([x, 3], 0.5), r"tensors\[1\]"),
        (lambda: fastmask.magnitude_masks([x.int()], 0.5), "floating"),
        (lambda: fastmask.magnitude_masks([x, x.double()], 0.5), r"tensors\[1\]"),
        (lambda: fastmask.magnitude_masks([x], 1.5), "sparsity"),
        (lambda: fastmask.magnitude_masks([x], None), "sparsity"),
        (lambda: fastmask.magnitude_masks([x], float("nan")), "sparsity"),
        (lambda: fastmask.magnitude_masks([x], 0.5, scope="row"), "scope"),
        (lambda: fastmask.magnitude_masks([x], pattern="2-4"), "pattern"),
        (lambda: fastmask.magnitude_masks([x], pattern="5:4"), "pattern"),
        (lambda: fastmask.magnitude_masks([x], pattern="2:3"), "divisible"),
        (lambda: fastmask.magnitude_masks([x], 0.3, pattern="2:4"), "sparsity"),
        (lambda: fastmask.magnitude_masks([x], 0.5, scores=[x[:2]]), "scores"),
        (lambda: fastmask.magnitude_masks([x], 0.5, backend="gpu"), "backend"),
        (lambda: fastmask.lottery_ticket([torch.nn.Linear(2, 2)], lambda: None, 0.5, rounds=0), "rounds"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()


def test_meta_and_opcheck(backend):
    meta = fastmask.magnitude_masks([torch.empty(3, 4, device="meta"), torch.empty(5, device="meta")], 0.5)
    assert [(m.device.type, m.dtype, tuple(m.shape)) for m in meta] == [("meta", torch.bool, (3, 4)), ("meta", torch.bool, (5,))]
    device = device_for(backend)
    tensors = [t.to(device) for t in weights(torch.float32)[:2]]
    args = op_arguments(lambda: fastmask.magnitude_masks(tensors, 0.5, backend=backend))
    torch.library.opcheck(torch.ops.fastmask.magnitude_masks.default, args)
    args = op_arguments(lambda: fastmask.magnitude_masks([tensors[0][:, :52]], pattern="2:4", backend=backend))
    torch.library.opcheck(torch.ops.fastmask.nm_mask.default, args)


def test_compile_fullgraph():
    tensors = [t.to(DEVICE) for t in weights(torch.float32)[:2]]
    fn = torch.compile(lambda a, b: fastmask.magnitude_masks([a, b], 0.4) + fastmask.magnitude_masks([a[:, :52]], pattern="2:4"),
                       fullgraph=True)
    expected = fastmask.magnitude_masks(tensors, 0.4) + fastmask.magnitude_masks([tensors[0][:, :52]], pattern="2:4")
    assert all(torch.equal(a, b) for a, b in zip(fn(*tensors), expected))


def test_thread_count_does_not_change_the_masks():
    tensors = [torch.randn(3000, 700), torch.randint(-2, 3, (1500, 1000)).float()]  # > 1 MiB chunks, many ties
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(fastmask.magnitude_masks(tensors, 0.5, backend="cpp")
                           + fastmask.magnitude_masks(tensors, 0.3, scope="layer", backend="cpp")
                           + fastmask.magnitude_masks(tensors, pattern="2:4", backend="cpp"))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*results))
    check_pinned_order(tensors, results[0][:2], round(0.5 * sum(t.numel() for t in tensors)))
