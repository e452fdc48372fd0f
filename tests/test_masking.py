"""mask_tokens: three backends bit-identical, the sets S and P, views, capacity, rates, errors."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fastmask
from fastmask._rng import count, probability_threshold

from .conftest import BACKENDS, device_for

MASK, VOCAB, SPECIALS = 3, 100, [0, 1, 2, 3]  # 0 pad, 1 cls, 2 sep, 3 mask
IGNORE = -100
FAST = "cpp"  # statistical tests need many masks


def batch(rows=4, length=64, *, pad=8, dtype=torch.int64, generator_seed=0):
    """[CLS] tokens [SEP] [PAD]...: random ids in [4, VOCAB) and an attention mask."""
    g = torch.Generator().manual_seed(generator_seed)
    ids = torch.randint(4, VOCAB, (rows, length), generator=g, dtype=dtype)
    attention = torch.ones(rows, length, dtype=torch.int64)
    if length == 0:
        return ids, attention
    ids[:, 0] = 1
    for r in range(rows):
        end = length - (r * pad) % max(length // 2, 1)
        ids[r, end - 1] = 2
        ids[r, end:] = 0
        attention[r, end:] = 0
    return ids, attention


def run(ids, backend="reference", **kwargs):
    args = dict(seed=7, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS) | kwargs
    device = device_for(backend)
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    out = fastmask.mask_tokens(ids.to(device), backend=backend, **moved)
    return [t.cpu() if t is not None else None for t in out]


# --- three backends, one answer ---------------------------------------------------------------

OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "exact": st.booleans(),
        "views": st.integers(1, 3),
        "max_predictions": st.sampled_from([1, 5, 100]),
        "prediction_probability": st.sampled_from([0.0, 0.05, 0.3, 1.0]),
        "mlm_probability": st.sampled_from([0.0, 0.15, 0.5, 1.0]),
        "mask_replace_prob": st.sampled_from([0.0, 0.8, 1.0]),
        "random_replace_prob": st.sampled_from([0.0]),
        "seed": st.integers(-(2**63), 2**63 - 1),
    },
)


@given(
    rows=st.integers(0, 4), length=st.sampled_from([0, 1, 7, 64, 130]), dtype=st.sampled_from([torch.int64, torch.int32]),
    options=OPTIONS, masks=st.sampled_from(["attention", "special", "lengths", "none"]),
    random_prob=st.sampled_from([0.0, 0.1]), table=st.booleans(), strided=st.booleans(),
)
def test_backends_bit_identical(rows, length, dtype, options, masks, random_prob, table, strided):
    ids, attention = batch(rows, length, dtype=dtype)
    if strided:
        ids = torch.stack([ids, ids], dim=-1)[..., 0]  # non-contiguous
    kwargs = dict(options)
    kwargs["random_replace_prob"] = min(random_prob, 1 - kwargs.get("mask_replace_prob", 0.8))
    kwargs["keys"] = torch.tensor([(2**40) * (r % 2) - r for r in range(rows)], dtype=torch.int64)
    if masks == "attention":
        kwargs["attention_mask"] = attention
    elif masks == "special":
        kwargs["special_tokens_mask"] = (ids <= 2).to(torch.bool)
    elif masks == "lengths":
        kwargs["lengths"] = attention.sum(1)
    if table:
        kwargs["replace_ids"] = torch.tensor([5, 9, 50, 99])
    expected = run(ids, "reference", **kwargs)
    for backend in ("cpp", "triton"):
        got = run(ids, backend, **kwargs)
        for name, a, b in zip(("input_ids", "labels", "positions"), got, expected):
            assert (a is None) == (b is None), name
            if a is not None:
                assert a.dtype == b.dtype and torch.equal(a, b), f"{backend}: {name}"


# --- the sets ---------------------------------------------------------------------------------


def test_labels_and_inputs_follow_hf_convention():
    ids, attention = batch(8, 128)
    out_ids, labels, positions = run(ids, attention_mask=attention)
    assert positions is None
    predicted = labels != IGNORE
    assert torch.equal(labels[predicted], ids[predicted])  # labels hold the original ids
    assert torch.equal(out_ids[~predicted], ids[~predicted])  # P = S: nothing else changes
    assert not predicted[(ids <= 3) | (attention == 0)].any()  # never special, never padding
    assert out_ids.dtype == ids.dtype and labels.dtype == ids.dtype


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_one_dimensional_input(dtype):
    ids, _ = batch(1, 40, dtype=dtype)
    out = run(ids[0], max_predictions=4)
    expected = run(ids, max_predictions=4)
    assert out[0].shape == (40,) and out[2].shape == (4,)
    for a, b in zip(out, expected):
        assert torch.equal(a, b[0])
    two_views = run(ids[0], views=2)
    assert two_views[0].shape == (2, 40)


def test_rows_with_nothing_eligible_mask_nothing():
    ids = torch.tensor([[1, 2, 0, 0], [1, 5, 6, 2]])
    out_ids, labels, _ = run(ids, mlm_probability=1.0, exact=True)
    assert torch.equal(out_ids[0], ids[0]) and (labels[0] == IGNORE).all()
    assert (labels[1, 1:3] != IGNORE).all()


def test_empty_batch():
    for shape in ((0, 16), (3, 0)):
        out_ids, labels, positions = run(torch.zeros(shape, dtype=torch.int64), max_predictions=2)
        assert out_ids.shape == shape and labels.shape == shape and positions.shape == (shape[0], 2)


@pytest.mark.parametrize("p", [0.0, 0.15, 0.4, 1.0])
def test_exact_counts_are_exact(p):
    ids, attention = batch(16, 96, pad=5)
    _, labels, _ = run(ids, attention_mask=attention, exact=True, mlm_probability=p, seed=3)
    eligible = ((ids > 3) & (attention == 1)).sum(1)
    expected = torch.tensor([count(probability_threshold(p), int(n)) for n in eligible])
    assert torch.equal((labels != IGNORE).sum(1), expected)


@pytest.mark.parametrize("exact", [False, True])
def test_prediction_set_below_and_above_the_corruption_rate(exact):
    ids, attention = batch(8, 128)
    common = dict(attention_mask=attention, exact=exact, mlm_probability=0.3, seed=11)
    base_ids, base_labels, _ = run(ids, **common)
    selected = base_labels != IGNORE
    low_ids, low_labels, _ = run(ids, prediction_probability=0.1, **common)
    assert torch.equal(low_ids, base_ids)  # corruption unchanged
    assert ((low_labels != IGNORE) <= selected).all()  # P is a subset of S
    high_ids, high_labels, _ = run(ids, prediction_probability=0.6, **common)
    assert torch.equal(high_ids, base_ids)
    predicted = high_labels != IGNORE
    assert (selected <= predicted).all() and predicted.sum() > selected.sum()
    assert torch.equal(high_labels[predicted], ids[predicted])  # P \ S: labelled, input kept
    if exact:
        eligible = ((ids > 3) & (attention == 1)).sum(1)
        for q, labels in ((0.1, low_labels), (0.6, high_labels)):
            expected = torch.tensor([count(probability_threshold(q), int(n)) for n in eligible])
            assert torch.equal((labels != IGNORE).sum(1), expected)


@pytest.mark.parametrize("views", [2, 3])
def test_views_split_the_selected_set(views):
    ids, attention = batch(4, 200)
    one_ids, one_labels, _ = run(ids, attention_mask=attention, mlm_probability=0.4)
    out_ids, labels, _ = run(ids, attention_mask=attention, mlm_probability=0.4, views=views)
    assert out_ids.shape == (4 * views, 200)
    labels = labels.reshape(4, views, 200)
    out_ids = out_ids.reshape(4, views, 200)
    predicted = labels != IGNORE
    assert (predicted.sum(1) <= 1).all()  # disjoint
    assert torch.equal(predicted.any(1), one_labels != IGNORE)  # together: S
    for j in range(views):  # each view corrupts its part exactly as one view would
        part = predicted[:, j]
        assert torch.equal(out_ids[:, j][part], one_ids[part])
        assert torch.equal(out_ids[:, j][~part], ids[~part])
    assert (predicted.sum((0, 2)) > 0).all()


def test_capacity_keeps_the_first_predictions_in_position_order():
    ids, attention = batch(6, 128)
    _, full_labels, _ = run(ids, attention_mask=attention, mlm_probability=0.5)
    _, labels, positions = run(ids, attention_mask=attention, mlm_probability=0.5, max_predictions=10)
    for r in range(6):
        wanted = (full_labels[r] != IGNORE).nonzero().flatten()[:10]
        assert torch.equal(positions[r, : len(wanted)], wanted)
        assert (positions[r, len(wanted):] == -1).all()
        kept = torch.zeros(128, dtype=torch.bool)
        kept[wanted] = True
        assert torch.equal(labels[r] != IGNORE, kept)


def test_a_row_depends_only_on_its_key():
    ids, attention = batch(5, 64)
    keys = torch.tensor([10, 11, 12, 13, 14])
    full = run(ids, attention_mask=attention, keys=keys)
    order = torch.tensor([3, 1])
    part = run(ids[order], attention_mask=attention[order], keys=keys[order])
    for a, b in zip(part[:2], full[:2]):
        assert torch.equal(a, b[order])


def test_default_seed_differs_per_call():
    ids, attention = batch(4, 256)
    first = run(ids, attention_mask=attention, seed=None)
    second = run(ids, attention_mask=attention, seed=None)
    assert not torch.equal(first[1], second[1])


# --- rates ------------------------------------------------------------------------------------


def within_6_sigma(hits: int, n: int, p: float) -> bool:
    return abs(hits - n * p) <= 6 * (n * p * (1 - p)) ** 0.5 + 1e-9


@pytest.mark.parametrize("p", [0.15, 0.4])
def test_selection_rate_and_80_10_10_split(p):
    ids, attention = batch(64, 512, pad=3)
    out_ids, labels, _ = run(ids, FAST, attention_mask=attention, mlm_probability=p, seed=5)
    eligible = (ids > 3) & (attention == 1)
    selected = labels != IGNORE
    n_sel = int(selected.sum())
    assert within_6_sigma(n_sel, int(eligible.sum()), p)
    masked = int((out_ids[selected] == MASK).sum())
    kept = int((out_ids[selected] == ids[selected]).sum())  # includes random draws of the same id (1/96)
    assert within_6_sigma(masked, n_sel, 0.8)
    assert within_6_sigma(kept, n_sel, 0.1 + 0.1 / (VOCAB - 4))
    assert within_6_sigma(n_sel - masked - kept, n_sel, 0.1 * (1 - 1 / (VOCAB - 4)))


def test_random_ids_are_uniform_and_never_special():
    ids, _ = batch(64, 512, pad=0)
    out_ids, labels, _ = run(ids, FAST, mlm_probability=1.0, mask_replace_prob=0.0, random_replace_prob=1.0, seed=9)
    drawn = out_ids[labels != IGNORE]
    assert not torch.isin(drawn, torch.tensor(SPECIALS)).any()
    counts = torch.bincount(drawn, minlength=VOCAB)[4:].double()
    expected = drawn.numel() / (VOCAB - 4)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = VOCAB - 5
    assert chi2 < dof + 6 * (2 * dof) ** 0.5


def test_random_ids_come_from_the_table():
    ids, _ = batch(16, 256, pad=0)
    table = torch.tensor([7, 8, 42])
    out_ids, labels, _ = run(ids, FAST, mlm_probability=1.0, mask_replace_prob=0.0, random_replace_prob=1.0, replace_ids=table)
    drawn = out_ids[labels != IGNORE]
    assert torch.isin(drawn, table).all() and len(drawn.unique()) == 3


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mlm_probability=1.5), r"mlm_probability: expected a probability in \[0, 1\], got 1.5"),
        (dict(prediction_probability=-0.1), "prediction_probability: expected a probability"),
        (dict(mask_replace_prob=0.95, random_replace_prob=0.1), "mask_replace_prob \\+ random_replace_prob: expected at most 1"),
        (dict(mask_token_id=VOCAB), r"mask_token_id: expected an integer in \[0, 100\), got 100"),
        (dict(vocab_size=0), "vocab_size: expected an integer in"),
        (dict(replace_ids=torch.tensor([5, 100])), r"replace_ids: id 100 at position \(1,\) is outside the vocabulary \[0, 100\)"),
        (dict(replace_ids=torch.tensor([], dtype=torch.int64)), "replace_ids: random_replace_prob > 0 needs a non-empty replacement set"),
        (dict(vocab_size=None), "vocab_size or replace_ids: random_replace_prob > 0 needs"),
        (dict(special_ids=[0, 100]), r"special_ids: expected an integer in \[0, 100\), got 100"),
        (dict(views=0), r"views: expected an integer in \[1, 65536\), got 0"),
        (dict(max_predictions=0), "max_predictions: expected an integer in"),
        (dict(attention_mask=torch.ones(2, 5)), "attention_mask: expected dtype bool, uint8, int32, int64, got float32"),
        (dict(attention_mask=torch.ones(2, 5, dtype=torch.int64)), r"attention_mask: expected shape \(2, 6\) like input_ids, got \(2, 5\)"),
        (dict(special_tokens_mask=torch.ones(6, dtype=torch.bool)), r"special_tokens_mask: expected 2 dimension\(s\)"),
        (dict(lengths=torch.tensor([1, 2, 3])), "lengths: expected 2 lengths"),
        (dict(keys=torch.tensor([1])), "keys: expected 2 keys"),
        (dict(exact=1), "exact: expected a bool"),
        (dict(ignore_index=2**63), "ignore_index: expected an integer in"),
    ],
)
def test_bad_arguments(kwargs, message):
    ids = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0]])
    args = dict(seed=0, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS) | kwargs
    with pytest.raises(ValueError, match=message):
        fastmask.mask_tokens(ids, **args)


@pytest.mark.parametrize(
    "backend, validate",
    [("reference", False), ("cpp", False), *[(b, True) for b in BACKENDS]],  # the CPU paths check always
)
def test_ids_outside_the_vocabulary(backend, validate):
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, VOCAB + 5, -1]], device=device_for(backend))
    with pytest.raises(ValueError, match=r"input_ids: id 105 at position \(1, 2\) is outside the vocabulary \[0, 100\)"):
        fastmask.mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, validate=validate, backend=backend)


def test_wrong_input_dtype_and_rank():
    with pytest.raises(ValueError, match="input_ids: expected dtype int64, int32, got float32"):
        fastmask.mask_tokens(torch.zeros(2, 3), mask_token_id=MASK)
    with pytest.raises(ValueError, match=r"input_ids: expected 2 dimension\(s\), got shape \(1, 2, 3\)"):
        fastmask.mask_tokens(torch.zeros(1, 2, 3, dtype=torch.int64), mask_token_id=MASK)
