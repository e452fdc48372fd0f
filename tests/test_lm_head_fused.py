"""masked_lm_loss(impl="fused"): the Triton LM-head kernels (logit tiles on chip) against the chunked
path and Linear + F.cross_entropy, for the loss and every gradient; options, row selections, gradient
filtering, compile and CUDA graphs. Without a GPU the kernels run in Triton's interpreter."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmask

from .conftest import DEVICE
from .test_lm_loss import IGNORE, assert_all_close, dense, loss_and_grads, make

pytest.importorskip("triton")


def fused(**fixed):
    return lambda h, w, b, y, **kw: fastmask.masked_lm_loss(h, w, y, bias=b, impl="fused", **fixed, **kw)


def chunked(**fixed):
    return lambda h, w, b, y, **kw: fastmask.masked_lm_loss(h, w, y, bias=b, backend="reference", **fixed, **kw)


@given(
    batch=st.integers(1, 3), length=st.integers(1, 19), dim=st.integers(1, 40), vocab=st.integers(1, 50),
    reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**16),
)
@settings(max_examples=15)  # the interpreter runs a tile at a time
def test_fused_equals_linear_then_cross_entropy(batch, length, dim, vocab, reduction, seed):
    """Shapes that cross every tile edge of the interpreter's 16 x 16 x 16 tiles, fp32 against fp64."""
    tensors = make(batch, length, dim, vocab, dtype=torch.float32, seed=seed, device=DEVICE)
    expected = loss_and_grads(dense, *[t.double() if t.is_floating_point() else t for t in tensors], reduction=reduction)
    got = loss_and_grads(fused(), *tensors, reduction=reduction)
    if reduction == "none":  # the selection's rows: every position of labels, ignored ones 0
        expected = (expected[0].reshape(got[0].shape), *expected[1:])
    assert_all_close(got, expected, atol=2e-5)


@pytest.mark.parametrize("options", [
    {"label_smoothing": 0.1}, {"z_loss": 1e-3}, {"softcap": 4.0},
    {"label_smoothing": 0.2, "z_loss": 1e-2, "softcap": 3.0},
])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fused_options_equal_the_chunked_path(options, reduction):
    tensors = make(2, 23, 33, 45, dtype=torch.float32, seed=3, device=DEVICE)
    expected = loss_and_grads(chunked(), *tensors, reduction=reduction, **options)
    got = loss_and_grads(fused(), *tensors, reduction=reduction, **options)
    assert_all_close(got, expected, atol=2e-5)


def test_fused_bf16_within_the_chunked_paths_error():
    """bf16 inputs: both paths against fp64; the fused error no larger than twice the chunked one + atol."""
    tensors = make(2, 31, 48, 70, seed=5, labelled=0.5, device=DEVICE)
    exact = loss_and_grads(dense, *tensors)
    low = [t.to(torch.bfloat16) if t.is_floating_point() else t for t in tensors]
    got = loss_and_grads(fused(), *low)
    base = loss_and_grads(chunked(), *low)
    for g, b, e in zip(got, base, exact):
        assert g.dtype == b.dtype
        error = (g.double() - e).abs().max().item()
        assert error <= 2 * (b.double() - e).abs().max().item() + 1e-2


def test_fused_row_selections():
    hidden, weight, bias, labels = make(3, 17, 24, 40, dtype=torch.float32, seed=7, device=DEVICE)
    positions = torch.tensor([[0, 5, -1], [16, 2, 3], [-1, -1, 1]], device=DEVICE)
    for kwargs in ({"positions": positions}, {"max_rows": 6}, {}):
        for reduction in ("mean", "none"):
            got = loss_and_grads(fused(), hidden, weight, bias, labels, reduction=reduction, **kwargs)
            expected = loss_and_grads(chunked(), hidden, weight, bias, labels, reduction=reduction, **kwargs)
            assert_all_close(got, expected, atol=2e-5)


def test_fused_every_row_ignored_gives_zero_loss_and_gradients():
    hidden, weight, bias, labels = make(2, 9, 16, 30, dtype=torch.float32, device=DEVICE)
    labels.fill_(IGNORE)
    loss, *grads = loss_and_grads(fused(), hidden, weight, bias, labels)
    assert loss.item() == 0
    assert all(torch.count_nonzero(g) == 0 for g in grads)


def test_fused_frozen_weight_and_no_bias():
    hidden, weight, _, labels = make(2, 13, 20, 35, dtype=torch.float32, seed=2, device=DEVICE)
    h = hidden.clone().requires_grad_(True)
    loss = fastmask.masked_lm_loss(h, weight, labels, impl="fused")
    expected_h = hidden.clone().requires_grad_(True)
    expected = fastmask.masked_lm_loss(expected_h, weight, labels, backend="reference")
    torch.testing.assert_close(loss, expected, atol=2e-5, rtol=2e-5)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(h.grad, expected_h.grad, atol=2e-5, rtol=2e-5)


def test_gradient_filtering():
    """filter_eps drops only tiles whose gradient is all below it: a tiny one changes nothing; one
    above every non-label probability leaves exactly the label tiles' share."""
    hidden, weight, bias, labels = make(2, 15, 16, 64, dtype=torch.float32, seed=11, labelled=0.6, device=DEVICE)
    plain = loss_and_grads(fused(), hidden, weight, bias, labels)
    tiny = loss_and_grads(fused(filter_eps=1e-30), hidden, weight, bias, labels)
    assert_all_close(tiny, plain, atol=0)
    filtered = loss_and_grads(fused(filter_eps=0.9), hidden, weight, bias, labels)
    torch.testing.assert_close(filtered[0], plain[0])  # the loss is never filtered
    assert not torch.equal(filtered[2], plain[2])
    # the bias gradient of a class is nonzero only in tiles that some label falls into
    from fastmask.triton.lm_head import BLOCKS
    label_tiles = set((labels[labels != IGNORE] // BLOCKS["BLOCK_V"]).tolist())
    live_tiles = set((torch.nonzero(filtered[3]).reshape(-1) // BLOCKS["BLOCK_V"]).tolist())
    assert live_tiles <= label_tiles


def test_fused_errors():
    hidden, weight, bias, labels = make(1, 4, 8, 10, dtype=torch.float32, device=DEVICE)
    with pytest.raises(ValueError, match="impl"):
        fastmask.masked_lm_loss(hidden, weight, labels, impl="tiles")
    with pytest.raises(ValueError, match="filter_eps"):
        fastmask.masked_lm_loss(hidden, weight, labels, filter_eps=1e-3)
    with pytest.raises(ValueError, match="filter_eps"):
        fastmask.masked_lm_loss(hidden, weight, labels, impl="fused", filter_eps=-1.0)


def test_fused_under_compile():
    hidden, weight, bias, labels = make(2, 11, 16, 20, dtype=torch.float32, device=DEVICE)
    step = torch.compile(lambda h, w, b, y: fastmask.masked_lm_loss(h, w, y, bias=b, impl="fused"), fullgraph=True,
                         backend="aot_eager")
    got = loss_and_grads(step, hidden, weight, bias, labels)
    expected = loss_and_grads(fused(), hidden, weight, bias, labels)
    assert_all_close(got, expected, atol=1e-6)


@pytest.mark.gpu
def test_fused_and_chunked_paths_replay_in_a_cuda_graph():
    """Both LM-head paths and mask_tokens capture and replay in one CUDA graph (no host sync)."""
    hidden, weight, bias, labels = make(4, 64, 64, 1000, dtype=torch.float32, device="cuda")
    ids = torch.randint(5, 1000, (4, 64), device="cuda")
    seed = torch.tensor(1, device="cuda")
    static_hidden = hidden.clone().requires_grad_(True)
    results = {}

    def step():
        for impl in ("fused", "chunked"):
            results[impl] = fastmask.masked_lm_loss(static_hidden, weight, labels, bias=bias, impl=impl, max_rows=64)
        results["masked"] = fastmask.mask_tokens(ids, mask_token_id=4, vocab_size=1000, seed=seed)

    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        step()  # warm up: compile kernels, allocate
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    static_hidden.data.copy_(hidden * 2)
    graph.replay()
    torch.cuda.synchronize()
    expected = fastmask.masked_lm_loss(hidden * 2, weight, labels, bias=bias, max_rows=64)
    torch.testing.assert_close(results["fused"], expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(results["chunked"], expected, atol=1e-4, rtol=1e-4)
