"""fastmask.permutation_lm and PLMCollator (docs/permutation.md): backends bit-identical, HF's structure,
statistics against HF's DataCollatorForPermutationLanguageModeling, keys across workers and restarts,
errors, the custom op."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmask
from fastmask.collators import IndexedDataset, PLMCollator, sample_keys

from .conftest import BACKENDS, device_for, op_arguments

transformers = pytest.importorskip("transformers")

MASK, PAD, CLS, SEP = 4, 0, 1, 2
SPECIALS = [1, 2, 3, 4]


def rows(batch, length, seed=0, pad_from=None):
    """Ids in [5, 1000) framed by CLS ... SEP, the second half of row 1 padding."""
    ids = torch.randint(5, 1000, (batch, length), generator=torch.Generator().manual_seed(seed))
    ids[:, 0], ids[:, -1] = CLS, SEP
    if pad_from is not None and batch > 1:
        ids[1, pad_from:] = PAD
    return ids


def run(ids, backend, **kwargs):
    kwargs = {"mask_token_id": MASK, "special_ids": SPECIALS, "pad_token_id": PAD, "seed": 7, **kwargs}
    device = device_for(backend)
    if isinstance(kwargs.get("keys"), torch.Tensor):
        kwargs["keys"] = kwargs["keys"].to(device)
    out = fastmask.permutation_lm(ids.to(device), backend=backend, **kwargs)
    return fastmask.PermutationLM(*(t.cpu() for t in out))


# --- backends: one answer ------------------------------------------------------------------------------


@settings(max_examples=12)  # the Triton interpreter is slow
@given(batch=st.integers(0, 3), half=st.integers(0, 40), p=st.sampled_from([1 / 6, 0.5, 1.0, 0.05]),
       span=st.integers(1, 7), seed=st.integers(-(2**63), 2**64 - 1), int32=st.booleans())
def test_backends_equal(batch, half, p, span, seed, int32):
    length = 2 * half
    ids = rows(batch, length, pad_from=length // 2) if length else torch.zeros((batch, 0), dtype=torch.int64)
    if int32:
        ids = ids.to(torch.int32)
    keys = torch.arange(batch) * 977 - 3
    outs = [run(ids, backend, seed=seed, keys=keys, plm_probability=p, max_span_length=span) for backend in BACKENDS]
    for out in outs[1:]:
        for a, b in zip(outs[0], out):
            assert a.dtype == b.dtype and torch.equal(a, b)


def test_backends_equal_when_spans_take_several_blocks():
    """p = 1 draws a span per token: 400 spans, several of the Triton kernel's blocks of 128 (a cursor
    carried across blocks); p = 1 also makes every non-functional token a target."""
    ids = rows(2, 400, pad_from=300)
    outs = [run(ids, backend, plm_probability=1.0, max_span_length=3, dtype=torch.bool) for backend in BACKENDS]
    for out in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outs[0], out))
    functional = torch.isin(ids, torch.tensor(SPECIALS + [PAD]))
    assert torch.equal(outs[0].labels != -100, ~functional)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool, torch.bfloat16, torch.float16, torch.float64, torch.uint8,
                                   torch.int64])
def test_backends_equal_in_every_perm_dtype(dtype):
    ids = rows(2, 64, pad_from=40)
    strided = torch.empty((2, 128), dtype=torch.int64)[:, ::2]
    strided.copy_(ids)
    outs = [run(strided, backend, dtype=dtype) for backend in BACKENDS]
    for out in outs:
        assert out.perm_mask.dtype == dtype and out.target_mapping.dtype == torch.float32
        for a, b in zip(outs[0], out):
            assert torch.equal(a, b)


def test_golden_hash():
    """The stream is pinned (docs/rng.md): a change of these bits needs a new STREAM_VERSION."""
    import hashlib

    ids = torch.arange(64, dtype=torch.int64).reshape(2, 32) * 37 % 1000 + 5
    ids[:, 0], ids[1, 20:] = CLS, PAD
    for backend in BACKENDS:
        out = run(ids, backend, seed=2**40 + 3, keys=torch.tensor([7, -1]), dtype=torch.bool)
        data = out.perm_mask.numpy().tobytes() + out.labels.numpy().tobytes() + out.input_ids.numpy().tobytes()
        assert hashlib.sha256(data).hexdigest() == "66412f02ac6e82992c7a4b2e240acec7ccc49878fee910517895d01c4a35661d"


# --- HF's structure ------------------------------------------------------------------------------------


def test_structure_of_hf_outputs():
    ids = rows(4, 256, pad_from=100)
    out = run(ids, "cpp")
    targets = out.labels != -100
    functional = torch.isin(ids, torch.tensor(SPECIALS + [PAD]))
    assert not bool((targets & functional).any())
    assert torch.equal(out.input_ids, torch.where(targets, MASK, ids))
    assert torch.equal(out.labels[targets], ids[targets])
    assert torch.equal(out.target_mapping, torch.eye(256).expand(4, 256, 256))
    perm = out.perm_mask.bool()
    assert not bool((perm & ~targets[:, None, :]).any())  # only targets are hidden
    free = ~targets & ~functional
    assert torch.equal(perm[free], targets[:, None, :].expand_as(perm)[free])  # free tokens see no target
    assert torch.equal(perm.diagonal(dim1=1, dim2=2), targets)  # a target never sees itself
    for b in range(4):  # targets: a strict order, each half permuted alike, the lower half first
        t = targets[b].nonzero().flatten()
        sub = perm[b][t][:, t]
        off = ~torch.eye(len(t), dtype=torch.bool)
        assert torch.equal((sub | sub.T)[off], torch.ones_like(sub)[off]) and not bool((sub & sub.T)[off].any())
        low, high = t[t < 128], t[t >= 128]
        assert bool(perm[b][low][:, high].all())
        shifted = [(int(i), int(j)) for i in low for j in low if i != j and int(i) + 128 in high and int(j) + 128 in high]
        for i, j in shifted:  # the upper half repeats the lower half's order
            assert bool(perm[b, i, j]) == bool(perm[b, i + 128, j + 128])


def hf_batch(tok, ids, plm_probability=1 / 6, max_span_length=5):
    collator = transformers.DataCollatorForPermutationLanguageModeling(tok, plm_probability, max_span_length)
    return collator([row.tolist() for row in ids])


def run_lengths(targets):
    """Histogram of the lengths of runs of targets."""
    counts = {}
    for row in targets.tolist():
        n = 0
        for value in row + [False]:
            if value:
                n += 1
            elif n:
                counts[n] = counts.get(n, 0) + 1
                n = 0
    return counts


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("".join(t + "\n" for t in ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] + [f"w{i}" for i in range(995)]))
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(vocab_file):
    tok = transformers.BertTokenizer(vocab_file)
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (PAD, CLS, SEP, MASK)
    return tok


@pytest.mark.parametrize("p, span", [(1 / 6, 5), (0.5, 3)])
def test_statistics_match_hf(tokenizer, p, span):
    """Fraction of targets (per row) and lengths of target runs: within 6 sigma of HF's collator."""
    ids = rows(64, 256, seed=1)
    torch.manual_seed(0)
    theirs = hf_batch(tokenizer, ids, p, span)["labels"] != -100
    ours = run(ids, "cpp", plm_probability=p, max_span_length=span, keys=torch.arange(64)).labels != -100
    a, b = theirs.float().mean(1), ours.float().mean(1)
    assert abs(float(a.mean() - b.mean())) <= 6 * float((a.var() / 64 + b.var() / 64).sqrt())
    hist_a, hist_b = run_lengths(theirs), run_lengths(ours)
    for n in set(hist_a) | set(hist_b):
        x, y = hist_a.get(n, 0), hist_b.get(n, 0)
        assert abs(x - y) <= 6 * (x + y) ** 0.5 + 2, (n, x, y)
    assert max(hist_b) <= 2 * span  # two spans meet at most at a context's end


# --- keys: workers and restarts ------------------------------------------------------------------------


def test_same_seed_and_keys_same_batch_across_workers_and_restarts(tokenizer):
    data = IndexedDataset([r.tolist() for r in rows(8, 64, seed=2)])
    batches = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=False, num_workers=workers,
                                             collate_fn=PLMCollator(tokenizer, seed=5))
        batches.append(list(loader))
    restart = PLMCollator(tokenizer, seed=5)  # a new run: the same seed and keys give the same batch
    expected = restart([data.dataset[i] for i in (4, 5, 6, 7)], keys=sample_keys([4, 5, 6, 7]))
    for run_batches in batches:
        for key in expected:
            assert torch.equal(run_batches[1][key], expected[key])
    data.set_epoch(1)
    assert not torch.equal(next(iter(torch.utils.data.DataLoader(data, batch_size=4, collate_fn=restart)))["labels"],
                           batches[0][0]["labels"])


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(plm_probability=0.0), "plm_probability: expected a probability in (0, 1]"),
    (dict(plm_probability=1.5), "plm_probability: expected a probability in [0, 1]"),
    (dict(plm_probability=float("nan")), "plm_probability"),
    (dict(plm_probability=1e-12), "max_span_length / plm_probability must stay below 2^31"),
    (dict(max_span_length=0), "max_span_length"),
    (dict(dtype=torch.complex64), "dtype: expected one of"),
    (dict(mask_token_id=-1), "mask_token_id"),
    (dict(special_ids=[-3]), "special_ids"),
    (dict(backend="gpu"), "backend"),
])
def test_errors(kwargs, message):
    with pytest.raises(ValueError) as error:
        fastmask.permutation_lm(rows(2, 8), **{"mask_token_id": MASK, **kwargs})
    assert message in str(error.value)


def test_odd_lengths_and_collator_errors(tokenizer, vocab_file):
    with pytest.raises(ValueError, match="input_ids: permutation LM needs an even sequence length"):
        fastmask.permutation_lm(rows(2, 7), mask_token_id=MASK)
    with pytest.raises(ValueError, match="even sequence length"):
        PLMCollator(tokenizer)([[5, 6, 7]])
    with pytest.raises(ValueError, match="features: expected a non-empty list"):
        PLMCollator(tokenizer)([])
    no_pad = transformers.BertTokenizer(vocab_file)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="does not have a pad token"):
        PLMCollator(no_pad)([[5, 6], [5, 6, 7, 8]])
    no_mask = transformers.BertTokenizer(vocab_file)
    no_mask.mask_token = None
    with pytest.raises(ValueError, match="does not have a mask token"):
        PLMCollator(no_mask)
    with pytest.raises(ValueError, match="return_tensors"):
        PLMCollator(tokenizer, return_tensors="tf")


# --- the custom op -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    ids = rows(2, 16, pad_from=10).to(device_for(backend))
    args = op_arguments(lambda: fastmask.permutation_lm(ids, mask_token_id=MASK, special_ids=SPECIALS, pad_token_id=PAD,
                                                        seed=1, backend=backend))
    torch.library.opcheck(torch.ops.fastmask.permutation_lm.default, args)


def test_meta_and_compile_fullgraph():
    from torch._dynamo.testing import CompileCounterWithBackend

    meta = fastmask.permutation_lm(torch.empty((3, 10), dtype=torch.int64, device="meta"), mask_token_id=MASK,
                                   seed=torch.tensor(1, device="meta"), dtype=torch.bool)
    assert meta.perm_mask.shape == (3, 10, 10) and meta.perm_mask.dtype == torch.bool and meta.labels.device.type == "meta"

    def fn(ids, seed):
        return fastmask.permutation_lm(ids, mask_token_id=MASK, special_ids=SPECIALS, pad_token_id=PAD, seed=seed)

    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True)
    ids = rows(2, 32, pad_from=20)
    for s in (1, 2):
        for a, b in zip(compiled(ids, torch.tensor(s)), fn(ids, torch.tensor(s))):
            assert torch.equal(a, b)
    assert counter.frame_count == 1


def test_numpy_output_and_bool_perm_mask(tokenizer):
    batch = PLMCollator(tokenizer, return_tensors="np", dtype=torch.bool, seed=0)([list(range(5, 15))] * 2)
    assert batch["perm_mask"].dtype == np.bool_ and batch["target_mapping"].shape == (2, 10, 10)


def test_xlnet_trains_on_the_batch_in_either_perm_dtype(tokenizer):
    """A tiny XLNetLMHeadModel takes PLMCollator's batch as it takes HF's; a bool perm_mask gives the
    same loss as HF's float32 one."""
    config = transformers.XLNetConfig(vocab_size=len(tokenizer), d_model=32, n_layer=2, n_head=2, d_inner=64)
    torch.manual_seed(0)
    model = transformers.XLNetLMHeadModel(config).eval()
    features = [r.tolist() for r in rows(3, 24, seed=4)]
    losses = []
    for dtype in (torch.float32, torch.bool):
        batch = PLMCollator(tokenizer, seed=3, dtype=dtype)(features)
        with torch.no_grad():
            losses.append(model(**batch).loss)
    assert torch.isfinite(losses[0]) and torch.equal(losses[0], losses[1])
