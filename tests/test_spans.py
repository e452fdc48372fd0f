"""Span and n-gram masking (docs/spans.md): three backends bit-identical, span-length draws against
their distribution (chi-square), budgets, whole words, one decision per span, capacity, errors,
compile, opcheck."""
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmask
from fastmask._rng import count, probability_threshold
from fastmask.spans import length_table

from .conftest import BACKENDS, device_for, op_arguments

VOCAB, MASK, SPECIALS = 100, 4, [0, 1, 2, 3]


def batch(rows, length, *, seed=0, word_sizes=(0.7, 0.2, 0.1)):
    """ids in [5, VOCAB), [CLS]=1 first and [SEP]=2 last, word ids (-1 on both) with words of 1..3 tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, length), generator=g)
    sizes = torch.multinomial(torch.tensor(word_sizes), max(1, rows * length), replacement=True, generator=g)[: rows * length].reshape(rows, length) + 1
    word_ids = torch.stack([torch.bucketize(torch.arange(length), torch.cumsum(s, 0), right=True) for s in sizes])
    if length >= 2:
        ids[:, 0], ids[:, -1] = 1, 2
        word_ids[:, 0], word_ids[:, -1] = -1, -1
    return ids, word_ids


def run(ids, backend, **kwargs):
    device = device_for(backend)
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    kwargs = dict(mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS) | moved
    out = fastmask.mask_spans(ids.to(device), backend=backend, **kwargs)
    return [None if t is None else t.cpu() for t in out]


def word_runs(word_ids_row):
    """[(start, end)] token ranges of the words of one row (word id >= 0)."""
    runs, i, w = [], 0, word_ids_row.tolist()
    while i < len(w):
        j = i + 1
        while j < len(w) and w[j] == w[i]:
            j += 1
        if w[i] >= 0:
            runs.append((i, j))
        i = j
    return runs


@settings(max_examples=20)
@given(
    rows=st.integers(1, 3), length=st.integers(0, 16), seed=st.integers(0, 2**64 - 1),
    p=st.sampled_from([0.15, 0.4, 1.0]), source=st.sampled_from(["none", "word_ids", "offsets", "table"]),
    ngram=st.booleans(), capacity=st.sampled_from([None, 1, 4]), replace=st.sampled_from(["skip", "table", "none"]),
    dtype=st.sampled_from([torch.int64, torch.int32]),
)
def test_backends_are_bit_identical(rows, length, seed, p, source, ngram, capacity, replace, dtype):
    ids, word_ids = batch(rows, length, seed=seed % 1000)
    ids = ids.to(dtype)
    kwargs = dict(seed=seed, mlm_probability=p, max_predictions=capacity,
                  attention_mask=(torch.arange(length) < length - 1).expand(rows, -1).to(torch.int64))
    if source == "word_ids":
        kwargs["word_ids"] = word_ids
    elif source == "offsets":
        starts = torch.arange(length).expand(rows, -1) * 2 - (word_ids == torch.roll(word_ids, 1, 1)).long().cumsum(1)
        kwargs["offset_mapping"] = torch.stack([starts, starts + 2], -1)
    elif source == "table":
        kwargs["word_table"] = torch.arange(VOCAB) % 3 != 0
    if ngram:
        kwargs["span_lengths"] = (0.4, 0.3, 0.2, 0.1)
    if replace == "table":
        kwargs["replace_ids"] = [7, 8, 9]
    elif replace == "none":
        kwargs.update(mask_replace_prob=0.5, random_replace_prob=0.0)
    outs = [run(ids, backend, **kwargs) for backend in BACKENDS]
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert (a is None and b is None) or torch.equal(a, b)


def test_length_table_is_the_truncated_geometric():
    table = length_table(geometric_p=0.2, max_span_length=10).tolist()
    weights = [0.2 * 0.8 ** k for k in range(10)]
    cdf = [sum(weights[: k + 1]) / sum(weights) for k in range(10)]
    assert table[-1] == 2**32
    assert all(abs(t - c * 2**32) <= 2 for t, c in zip(table, cdf))
    assert length_table(span_lengths=(0.0, 1.0)).tolist() == [0, 2**32]


@pytest.mark.parametrize("kwargs", [dict(geometric_p=0.2, max_span_length=10), dict(span_lengths=(0.4, 0.3, 0.2, 0.1)),
                                    dict(geometric_p=0.5, max_span_length=3)])
def test_drawn_span_lengths_follow_their_distribution(kwargs):
    """Chi-square over 40000 draws; threshold: the 0.999 quantile for up to 9 degrees of freedom (27.9)."""
    draws = fastmask.spans.draw_lengths(7, torch.arange(100), 400, **kwargs).reshape(-1)
    table = [0] + length_table(**kwargs).tolist()
    expected = [(table[k + 1] - table[k]) / 2**32 * draws.numel() for k in range(len(table) - 1)]
    observed = torch.bincount(draws - 1, minlength=len(expected)).tolist()
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected) if e > 0)
    assert chi2 < 27.9, (chi2, observed, expected)


def test_realized_spans_follow_the_lengths_when_nothing_cuts_them():
    """The first span of each row, in rows of one-token words with a budget of >= 10 words, is cut only
    by the row end: its length is then the drawn one (checked by chi-square, same threshold)."""
    rows, length = 3000, 64
    ids = torch.randint(5, VOCAB, (rows, length), generator=torch.Generator().manual_seed(3))
    out = run(ids, "cpp", seed=11, mlm_probability=0.25, mask_replace_prob=1.0, random_replace_prob=0.0)
    drawn = fastmask.spans.draw_lengths(11, torch.arange(rows), 1)[:, 0]
    words = fastmask.random_words(11, torch.arange(rows), 1, purpose=int(fastmask.Purpose.SPANS))[:, 0, 0]
    start = (words * length) >> 32
    masked = (out[1] != -100)
    ok = start + drawn <= length
    for r in torch.nonzero(ok).reshape(-1)[:300].tolist():
        s, l = int(start[r]), int(drawn[r])
        assert masked[r, s:s + l].all()


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_budget_is_met_whole_words_and_one_decision_per_span(backend):
    rows, length = 40 if backend == "cpp" else 6, 96
    ids, word_ids = batch(rows, length, seed=5)
    out_ids, labels, _ = run(ids, backend, seed=3, word_ids=word_ids)
    eligible = word_ids >= 0
    budget = [count(probability_threshold(0.15), int(n)) for n in eligible.sum(1)]
    met = 0
    for r in range(rows):
        predicted = labels[r] != -100
        assert int(predicted.sum()) <= budget[r]
        met += int(predicted.sum()) == budget[r]
        assert not predicted[~eligible[r]].any()
        for a, b in word_runs(word_ids[r]):  # whole words
            assert predicted[a:b].all() or not predicted[a:b].any()
        # Decisions: a masked token's whole run of masked tokens is masked or... per span, via kinds:
        kind = torch.where(out_ids[r] == MASK, 1, torch.where(out_ids[r] != ids[r], 2, 3))
        for a, b in word_runs(word_ids[r]):
            if predicted[a]:
                ks = set(kind[a:b].tolist())
                assert ks == {1} or 1 not in ks  # a word is all [MASK] or none of it
    assert met >= rows - 2  # the cap or the word sizes can leave a row short; rarely


def test_one_decision_per_span_with_single_token_words():
    """Every-token-its-own-word rows: spans are runs of words; each drawn span is wholly masked, wholly
    random or wholly kept (checked on the planned spans of the reference)."""
    from fastmask.reference.spans import KEEP, MASK as KIND_MASK, RANDOM, plan_row

    ids = torch.randint(5, VOCAB, (50, 80), generator=torch.Generator().manual_seed(9))
    out = run(ids, "cpp", seed=21, mlm_probability=0.5)
    words = fastmask.random_words(21, torch.arange(50), 4 * 40 + 16, purpose=int(fastmask.Purpose.SPANS))
    table = length_table().tolist()
    mask_t, random_t = probability_threshold(0.8), probability_threshold(0.1)
    kinds = []
    for r in range(50):
        w = words[r].tolist()
        spans = plan_row([1] * 80, 40, lambda a: w[a][:3], table, mask_t, random_t)
        assert sum(e - s for s, e, _ in spans) == 40
        for s, e, k in spans:
            kinds.append(k)
            replaced = out[0][r, s:e] != ids[r, s:e]
            if k == KIND_MASK:
                assert (out[0][r, s:e] == MASK).all()
            elif k == KEEP:
                assert not replaced.any()
            else:
                assert k == RANDOM and (out[0][r, s:e] != MASK).all()
            assert torch.equal(out[1][r, s:e], ids[r, s:e])
    n = len(kinds)
    for k, q in ((KIND_MASK, 0.8), (RANDOM, 0.1), (KEEP, 0.1)):
        assert abs(kinds.count(k) - q * n) <= 6 * math.sqrt(n * q * (1 - q))


def test_capacity_keeps_whole_words_and_agrees_with_labels():
    ids, word_ids = batch(20, 64, seed=1)
    out_ids, labels, positions = run(ids, "cpp", seed=4, word_ids=word_ids, mlm_probability=0.4, max_predictions=7)
    full = run(ids, "cpp", seed=4, word_ids=word_ids, mlm_probability=0.4)
    assert torch.equal(out_ids, full[0])
    for r in range(20):
        kept = positions[r][positions[r] >= 0]
        assert torch.equal(kept, torch.nonzero(labels[r] != -100).reshape(-1))
        for a, b in word_runs(word_ids[r]):
            lab = labels[r, a:b] != -100
            assert lab.all() or not lab.any()


def test_one_row_and_empty_batch():
    ids, _ = batch(1, 30)
    out = fastmask.mask_spans(ids[0], seed=1, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS)
    assert out.input_ids.shape == (30,) and out.positions is None
    empty = fastmask.mask_spans(torch.zeros(0, 8, dtype=torch.int64), seed=1, mask_token_id=MASK, vocab_size=VOCAB)
    assert empty.input_ids.shape == (0, 8)


@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(geometric_p=0.0), "geometric_p"), (dict(geometric_p=1.5), "geometric_p"), (dict(geometric_p=float("nan")), "geometric_p"),
    (dict(max_span_length=0), "max_span_length"), (dict(span_lengths=(0.5, 0.4)), "span_lengths"),
    (dict(span_lengths=()), "span_lengths"), (dict(span_lengths=(1.2, -0.2)), "span_lengths"),
    (dict(mlm_probability=1.5), "mlm_probability"), (dict(mask_replace_prob=0.95), "mask_replace_prob + random_replace_prob"),
    (dict(word_ids=torch.zeros(2, 8, dtype=torch.int64), word_table=torch.ones(VOCAB, dtype=torch.bool)), "word_ids, word_table"),
])
def test_errors_name_the_argument(kwargs, name):
    ids, _ = batch(2, 8)
    with pytest.raises(ValueError, match="^" + re.escape(name) + ":"):
        fastmask.mask_spans(ids, mask_token_id=MASK, vocab_size=VOCAB, **kwargs)


def test_geometric_p_one_and_sums_within_tolerance():
    assert length_table(geometric_p=1.0).tolist()[0] == 2**32
    length_table(span_lengths=(0.5, 0.5 - 1e-7))  # within 1e-6: normalized
    ids, _ = batch(2, 8)
    with pytest.raises(ValueError, match="input_ids: id"):
        fastmask.mask_spans(ids + 100, mask_token_id=MASK, vocab_size=VOCAB, backend="cpp")


def test_opcheck(backend):
    def run():
        ids, word_ids = batch(2, 12)
        device = device_for(backend)
        fastmask.mask_spans(ids.to(device), word_ids=word_ids.to(device), seed=3, mask_token_id=MASK, vocab_size=VOCAB,
                            special_ids=SPECIALS, max_predictions=3, backend=backend)

    torch.library.opcheck(torch.ops.fastmask.mask_spans.default, op_arguments(run))


def test_compile_fullgraph_matches_eager_without_recompiles():
    from torch._dynamo.testing import CompileCounterWithBackend

    ids, word_ids = batch(4, 32)

    def fn(x, w, s):
        return tuple(fastmask.mask_spans(x, word_ids=w, seed=s, mask_token_id=MASK, vocab_size=VOCAB,
                                         special_ids=SPECIALS, max_predictions=8))

    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True)
    for seed in (1, 2):
        for a, b in zip(compiled(ids, word_ids, torch.tensor(seed)), fn(ids, word_ids, seed)):
            assert torch.equal(a, b)
    assert counter.frame_count == 1


def test_python_peer_of_the_benchmark_masks_its_budget():
    import numpy as np

    from fastmask.bench.cases import spans_python

    ids, word_ids = batch(4, 64)
    rows = [r[1:-1] for r in ids.tolist()]
    words = [w[1:-1] for w in word_ids.tolist()]
    inputs, targets = spans_python.mask_batch(rows, words, np.random.RandomState(0), MASK, 5, VOCAB)
    for row, target in zip(rows, targets):
        assert sum(t != -100 for t in target) == math.ceil(len(row) * 0.15)
