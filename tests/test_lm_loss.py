"""masked_lm_loss: the LM head plus cross-entropy on the predicted rows only, against Linear followed by
F.cross_entropy on every row (loss and the gradients of hidden, weight and bias); row selection by
positions, by max_rows and by default; options, edge cases, errors, compile and HF's BertForMaskedLM."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import fastmask

from .conftest import BACKENDS, device_for

IGNORE = -100


def make(batch, length, dim, vocab, *, labelled=0.3, dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, dim, generator=g, dtype=torch.float64)
    weight = torch.randn(vocab, dim, generator=g, dtype=torch.float64) / dim**0.5
    bias = torch.randn(vocab, generator=g, dtype=torch.float64)
    labels = torch.randint(0, vocab, (batch, length), generator=g)
    labels[torch.rand(batch, length, generator=g) >= labelled] = IGNORE
    return [t.to(dtype).to(device) for t in (hidden, weight, bias)] + [labels.to(device)]


def loss_and_grads(fn, hidden, weight, bias, labels, **kwargs):
    leaves = [t.detach().clone().requires_grad_(True) for t in (hidden, weight, bias)]
    loss = fn(*leaves, labels, **kwargs)
    grads = torch.autograd.grad(loss, leaves, torch.ones_like(loss))
    return (loss.detach(), *grads)


def dense(hidden, weight, bias, labels, reduction="mean", label_smoothing=0.0, **options):
    """Linear on every row, then the loss: torch's, or fastmask's reference for its extras."""
    logits = F.linear(hidden, weight, bias).reshape(-1, weight.shape[0])
    if options:
        return fastmask.masked_cross_entropy(logits, labels.reshape(-1), reduction=reduction,
                                             label_smoothing=label_smoothing, backend="reference", **options)
    loss = F.cross_entropy(logits, labels.reshape(-1), reduction=reduction, label_smoothing=label_smoothing)
    return torch.nan_to_num(loss, nan=0.0) if reduction == "mean" else loss  # every row ignored: 0, documented


def sparse(backend, **fixed):
    return lambda h, w, b, y, **kw: fastmask.masked_lm_loss(h, w, y, bias=b, backend=backend, **fixed, **kw)


def assert_all_close(got, expected, atol):
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        torch.testing.assert_close(g.double(), e.double(), atol=atol, rtol=atol)


def precision(backend):
    """fp64 where the backend has it (reference, C++), fp32 for Triton."""
    return (torch.float32, 2e-5) if backend == "triton" else (torch.float64, 1e-10)


# --- against Linear + F.cross_entropy --------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@given(
    batch=st.integers(1, 3), length=st.integers(1, 9), dim=st.integers(1, 6), vocab=st.integers(1, 40),
    labelled=st.sampled_from([0.0, 0.15, 0.5, 1.0]), chunk_size=st.sampled_from([None, 1, 3, 64]),
    reduction=st.sampled_from(["mean", "sum"]), seed=st.integers(0, 2**16),
)
def test_matches_dense_head(backend, batch, length, dim, vocab, labelled, chunk_size, reduction, seed):
    dtype, atol = precision(backend)
    inputs = make(batch, length, dim, vocab, labelled=labelled, dtype=dtype, seed=seed, device=device_for(backend))
    got = loss_and_grads(sparse(backend, chunk_size=chunk_size), *inputs, reduction=reduction)
    assert_all_close(got, loss_and_grads(dense, *inputs, reduction=reduction), atol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [dict(label_smoothing=0.1), dict(z_loss=1e-2), dict(softcap=3.0),
                                     dict(label_smoothing=0.2, z_loss=1e-3, softcap=5.0)])
def test_options_as_masked_cross_entropy(backend, options):
    dtype, atol = precision(backend)
    inputs = make(2, 8, 5, 33, dtype=dtype, seed=1, device=device_for(backend))
    got = loss_and_grads(sparse(backend, chunk_size=2), *inputs, **options)
    assert_all_close(got, loss_and_grads(dense, *inputs, **options), atol)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_normalizer_divides_the_sum(backend):
    inputs = make(2, 8, 5, 17, seed=2)
    got = loss_and_grads(sparse(backend), *inputs, normalizer=torch.tensor(7.0, dtype=torch.float64))
    expected = loss_and_grads(lambda *a: dense(*a, reduction="sum") / 7, *inputs)
    assert_all_close(got, expected, 1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reduction_none_is_per_row(backend):
    dtype, atol = precision(backend)
    hidden, weight, bias, labels = make(2, 6, 4, 19, dtype=dtype, seed=3, device=device_for(backend))
    got = loss_and_grads(sparse(backend, chunk_size=4), hidden, weight, bias, labels, reduction="none")
    expected = loss_and_grads(lambda *a: dense(*a, reduction="none").reshape(labels.shape), hidden, weight, bias, labels)
    assert got[0].shape == labels.shape
    assert_all_close(got, expected, atol)


def test_without_grad_and_with_a_frozen_weight():
    hidden, weight, bias, labels = make(2, 7, 5, 23, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(fastmask.masked_lm_loss(hidden, weight, labels, bias=bias), dense(hidden, weight, bias, labels))
    h = hidden.clone().requires_grad_(True)
    loss = fastmask.masked_lm_loss(h, weight, labels, bias=bias)
    loss.backward()
    h_dense = hidden.clone().requires_grad_(True)
    dense(h_dense, weight, bias, labels).backward()
    torch.testing.assert_close(h.grad, h_dense.grad)


def test_without_bias_and_flat_rows():
    hidden, weight, _, labels = make(3, 5, 4, 11, seed=5)
    flat_h, flat_y = hidden.reshape(-1, 4), labels.reshape(-1)
    leaves = [flat_h.clone().requires_grad_(True), weight.clone().requires_grad_(True)]
    loss = fastmask.masked_lm_loss(*leaves, flat_y, chunk_size=2)
    expected = F.cross_entropy(flat_h @ weight.T, flat_y)
    torch.testing.assert_close(loss, expected)
    for got, want in zip(torch.autograd.grad(loss, leaves), torch.autograd.grad(F.cross_entropy(leaves[0] @ leaves[1].T, flat_y), leaves)):
        torch.testing.assert_close(got, want)


def test_upstream_gradient_scales_every_gradient():
    inputs = make(2, 6, 4, 13, seed=6)
    got = loss_and_grads(lambda *a: 3.5 * fastmask.masked_lm_loss(a[0], a[1], a[3], bias=a[2]), *inputs)
    assert_all_close(got, loss_and_grads(lambda *a: 3.5 * dense(*a), *inputs), 1e-10)


def test_bfloat16_close_to_float32():
    hidden, weight, bias, labels = make(2, 16, 8, 64, dtype=torch.float32, seed=7)
    exact = loss_and_grads(dense, hidden, weight, bias, labels)
    low = loss_and_grads(sparse("cpp"), *(t.bfloat16() for t in (hidden, weight, bias)), labels)
    assert low[0].dtype == torch.float32  # the loss in fp32, the gradients in the inputs' dtype
    assert all(t.dtype == torch.bfloat16 for t in low[1:])
    assert_all_close(low, exact, 3e-2)


# --- which rows -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_positions_from_mask_tokens(backend):
    dtype, atol = precision(backend)
    device = device_for(backend)
    hidden, weight, bias, _ = make(3, 12, 5, 29, dtype=dtype, seed=8, device=device)
    ids = torch.randint(5, 29, (3, 12)).to(device)
    masked = fastmask.mask_tokens(ids, seed=3, mask_token_id=4, vocab_size=29, mlm_probability=0.4,
                                  max_predictions=12, backend=backend)
    assert (masked.positions == -1).any()  # empty slots exist and contribute nothing
    got = loss_and_grads(sparse(backend, positions=masked.positions, chunk_size=5), hidden, weight, bias, masked.labels)
    assert_all_close(got, loss_and_grads(dense, hidden, weight, bias, masked.labels), atol)
    per_slot = fastmask.masked_lm_loss(hidden, weight, masked.labels, bias=bias, positions=masked.positions,
                                       reduction="none", backend=backend)
    assert per_slot.shape == masked.positions.shape
    assert bool((per_slot[masked.positions < 0] == 0).all())


def test_positions_only_rows_named_count():
    """Labels at positions not named contribute nothing; -1 slots are empty."""
    hidden, weight, bias, labels = make(2, 6, 4, 9, labelled=1.0, seed=9)
    positions = torch.tensor([[0, 5, -1], [-1, -1, 2]])
    kept = torch.full_like(labels, IGNORE)
    kept[0, 0], kept[0, 5], kept[1, 2] = labels[0, 0], labels[0, 5], labels[1, 2]
    got = loss_and_grads(sparse("cpp", positions=positions), hidden, weight, bias, labels)
    assert_all_close(got, loss_and_grads(dense, hidden, weight, bias, kept), 1e-10)


@pytest.mark.parametrize("max_rows", [1, 4, 10, 100])
def test_max_rows_keeps_the_first_labelled_rows(max_rows):
    hidden, weight, bias, labels = make(2, 10, 4, 15, labelled=0.4, seed=10)
    flat = labels.reshape(-1)
    labelled = int((flat != IGNORE).sum())
    first = flat.clone()
    first[(flat != IGNORE).cumsum(0) > max_rows] = IGNORE
    loss, dropped = fastmask.masked_lm_loss(hidden, weight, labels, bias=bias, max_rows=max_rows, return_dropped=True)
    assert int(dropped) == max(labelled - max_rows, 0)
    got = loss_and_grads(sparse("cpp", max_rows=max_rows), hidden, weight, bias, labels)
    assert_all_close(got, loss_and_grads(dense, hidden, weight, bias, first.reshape(labels.shape)), 1e-10)
    assert fastmask.masked_lm_loss(hidden, weight, labels, bias=bias, max_rows=max_rows, reduction="none").shape == (max_rows,)
    if labelled > max_rows:
        with pytest.raises(ValueError, match="max_rows: .* exceed the capacity"):
            fastmask.masked_lm_loss(hidden, weight, labels, max_rows=max_rows, validate=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_row_ignored_gives_zero(backend):
    dtype, _ = precision(backend)
    hidden, weight, bias, labels = make(2, 4, 3, 7, labelled=0.0, dtype=dtype, device=device_for(backend))
    for kwargs in (dict(), dict(max_rows=3), dict(positions=torch.full((2, 2), -1, device=labels.device))):
        loss, *grads = loss_and_grads(sparse(backend, **kwargs), hidden, weight, bias, labels)
        assert float(loss) == 0.0
        assert all(bool((g == 0).all()) for g in grads)


# --- HF ---------------------------------------------------------------------------------------------


def test_bert_for_masked_lm_head_swapped():
    """The documented recipe: BertForMaskedLM's encoder, its head transform, its tied decoder."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=101, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(config).double().eval()  # eval: no dropout, so both passes agree
    ids = torch.randint(5, 101, (2, 12))
    masked = fastmask.mask_tokens(ids, seed=1, mask_token_id=4, vocab_size=101, mlm_probability=0.3, max_predictions=8)

    expected = model(input_ids=masked.input_ids, labels=masked.labels).loss
    expected_grads = torch.autograd.grad(expected, list(model.parameters()), allow_unused=True)

    head = model.cls.predictions
    hidden = head.transform(model.bert(input_ids=masked.input_ids).last_hidden_state)
    loss = fastmask.masked_lm_loss(hidden, head.decoder.weight, masked.labels, bias=head.decoder.bias,
                                   positions=masked.positions)
    torch.testing.assert_close(loss, expected)
    for got, want in zip(torch.autograd.grad(loss, list(model.parameters()), allow_unused=True), expected_grads):
        if want is None:
            assert got is None or bool((got == 0).all())
        else:
            torch.testing.assert_close(got, want)


# --- the module, compile, errors --------------------------------------------------------------------


def test_module_matches_functional_and_counts_dropped_rows():
    hidden, weight, bias, labels = make(2, 8, 4, 13, labelled=0.5, seed=11)
    module = fastmask.nn.MaskedLMLoss(max_rows=3, label_smoothing=0.1)
    loss = module(hidden, weight, labels, bias=bias)
    expected, dropped = fastmask.masked_lm_loss(hidden, weight, labels, bias=bias, max_rows=3, label_smoothing=0.1,
                                                return_dropped=True)
    torch.testing.assert_close(loss, expected)
    assert int(module.dropped_rows) == int(dropped) > 0


@pytest.mark.parametrize("kwargs", [dict(max_rows=6), dict(positions="from mask_tokens")])
def test_compile_fullgraph_static_shapes(kwargs):
    hidden, weight, bias, labels = make(2, 8, 4, 13, labelled=0.4, dtype=torch.float32, seed=12)
    if "positions" in kwargs:
        ids = torch.randint(5, 13, (2, 8))
        masked = fastmask.mask_tokens(ids, seed=2, mask_token_id=4, vocab_size=13, mlm_probability=0.4, max_predictions=5)
        kwargs, labels = dict(positions=masked.positions), masked.labels

    def step(h, w, b, y):
        return fastmask.masked_lm_loss(h, w, y, bias=b, chunk_size=4, **kwargs)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    got = loss_and_grads(compiled, hidden, weight, bias, labels)
    assert_all_close(got, loss_and_grads(step, hidden, weight, bias, labels), 1e-5)
    assert_all_close(got, loss_and_grads(dense, hidden, weight, bias, torch.where(
        _selected(labels, kwargs), labels, IGNORE)), 1e-5)


def _selected(labels, kwargs):
    if "positions" in kwargs:
        chosen = torch.zeros_like(labels, dtype=torch.bool)
        p = kwargs["positions"]
        rows = torch.arange(p.shape[0]).reshape(-1, 1).expand_as(p)
        chosen[rows[p >= 0], p[p >= 0]] = True
        return chosen
    return ((labels != IGNORE).reshape(-1).cumsum(0) <= kwargs["max_rows"]).reshape(labels.shape)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(max_rows=0), "max_rows: expected an integer in"),
    (dict(positions=torch.tensor([[0, 8], [1, 2]])), r"positions: expected positions in \[0, 8\)"),
    (dict(positions=torch.tensor([[0, -2], [1, 2]])), r"positions: expected positions in \[0, 8\)"),
    (dict(positions=torch.tensor([[0, 1]])), r"positions: expected \[2, K\] positions"),
    (dict(positions=torch.tensor([[0.0]])), "positions: expected dtype"),
    (dict(weight=torch.zeros(13, 5)), r"weight: expected \[V >= 1, 4\]"),
    (dict(weight=torch.zeros(13, 4, dtype=torch.float64)), "weight: expected dtype float32"),
    (dict(bias=torch.zeros(12)), r"bias: expected \[13\]"),
    (dict(labels=torch.zeros(2, 7, dtype=torch.int64)), r"labels: expected shape \(2, 8\)"),
    (dict(labels=torch.full((2, 8), 13)), r"labels: label 13 at row 0 is outside \[0, 13\)"),
    (dict(chunk_size=0), "chunk_size: expected an integer in"),
    (dict(reduction="avg"), "reduction: expected one of"),
    (dict(reduction="none", normalizer=2.0), "normalizer: divides a summed loss"),
])
def test_errors_name_the_argument(kwargs, message):
    hidden, weight, _, labels = make(2, 8, 4, 13, dtype=torch.float32)
    args = dict(hidden=hidden, weight=weight, labels=labels)
    args.update({k: kwargs.pop(k) for k in ("weight", "labels") if k in kwargs})
    with pytest.raises(ValueError, match=message):
        fastmask.masked_lm_loss(args["hidden"], args["weight"], args["labels"], **kwargs)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_no_rows_at_all_with_fixed_slots_gives_zero_losses(backend):
    """hidden [0, D] with max_rows or positions: every slot is empty (found by the fuzz: index_select
    on an empty tensor raised RuntimeError); the losses are 0 and the gradients exist, empty for hidden."""
    hidden = torch.zeros(0, 3, requires_grad=True)
    weight = torch.ones(5, 3, requires_grad=True)
    labels = torch.zeros(0, dtype=torch.int64)
    for kwargs in ({"max_rows": 2}, {"positions": torch.tensor([-1, -1])}):
        loss = fastmask.masked_lm_loss(hidden, weight, labels, reduction="none", backend=backend, **kwargs)
        assert torch.equal(loss, torch.zeros(2))
        grad_hidden, grad_weight = torch.autograd.grad(loss.sum(), [hidden, weight])
        assert grad_hidden.shape == (0, 3) and torch.count_nonzero(grad_weight) == 0
