"""Attention masks (docs/attention.md): every kind equals its predicate on all backends, bit-identical;
the BlockMask equals create_block_mask's; flex_attention agrees with it; UniLM's objectives; errors,
opcheck, compile, meta."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

import fastmask
from fastmask.attention import KINDS, UNILM_OBJECTIVES, _mask_mod

from .conftest import device_for

BLOCK_FIELDS = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices", "q_num_blocks", "q_indices",
                "full_q_num_blocks", "full_q_indices")


def predicate(kind, segment_ids, prefix_lengths, lengths, length, window, b, i, j) -> bool:
    """docs/attention.md's table, one pair at a time (independent of the reference's broadcasting)."""
    if kind.startswith("document_") and segment_ids[b][i] != segment_ids[b][j]:
        return False
    if kind in ("causal", "document_causal") and j > i:
        return False
    if kind == "prefix_lm" and j > i and j >= prefix_lengths[b]:
        return False
    if window is not None and abs(i - j) >= window:
        return False
    return lengths is None or j < lengths[b]


@st.composite
def mask_inputs(draw, max_length=40):
    kind = draw(st.sampled_from(KINDS))
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(1, max_length))
    segment_ids = prefix = lengths = None
    if kind.startswith("document_"):
        if draw(st.booleans()):  # packed: sorted ids, one run per document
            cuts = sorted(draw(st.lists(st.integers(0, length), min_size=batch * 3, max_size=batch * 3)))
            segment_ids = torch.tensor([[sum(p >= c for c in cuts[3 * r:3 * r + 3]) for p in range(length)]
                                        for r in range(batch)])
        else:  # any ids, documents in several runs
            segment_ids = torch.tensor(draw(st.lists(st.lists(st.integers(-2, 2), min_size=length, max_size=length),
                                                     min_size=batch, max_size=batch)))
        segment_ids = segment_ids.to(draw(st.sampled_from([torch.int32, torch.int64])))
    if kind == "prefix_lm":
        prefix = torch.tensor(draw(st.lists(st.integers(0, length), min_size=batch, max_size=batch)))
    if draw(st.booleans()):
        lengths = torch.tensor(draw(st.lists(st.integers(0, length), min_size=batch, max_size=batch)), dtype=torch.int32)
    window = draw(st.one_of(st.none(), st.integers(1, length + 2)))
    return dict(kind=kind, segment_ids=segment_ids, prefix_lengths=prefix, lengths=lengths, length=length, window=window)


def on(backend, kwargs):
    device = device_for(backend)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


@given(mask_inputs())
@settings(max_examples=25)
def test_every_kind_equals_its_predicate_on_every_backend(kwargs):
    batch = next((v.shape[0] for v in (kwargs["segment_ids"], kwargs["prefix_lengths"], kwargs["lengths"]) if v is not None), 1)
    length = kwargs["length"]
    seg = None if kwargs["segment_ids"] is None else kwargs["segment_ids"].tolist()
    prefix = None if kwargs["prefix_lengths"] is None else kwargs["prefix_lengths"].tolist()
    lengths = None if kwargs["lengths"] is None else kwargs["lengths"].tolist()
    expected = torch.tensor([[[predicate(kwargs["kind"], seg, prefix, lengths, length, kwargs["window"], b, i, j)
                               for j in range(length)] for i in range(length)] for b in range(batch)])
    for backend in ("reference", "cpp", "triton"):
        mask = fastmask.attention_mask(**on(backend, kwargs), backend=backend)
        assert mask.dtype == torch.bool and torch.equal(mask.cpu(), expected), backend


@given(mask_inputs(max_length=70), st.sampled_from([5, 16, 32]))
@settings(max_examples=15)
def test_block_states_equal_on_every_backend_and_create_block_mask(kwargs, block):
    ours = {backend: fastmask.attention_mask(**on(backend, kwargs), format="flex", block_size=block, backend=backend)
            for backend in ("reference", "cpp", "triton")}
    dense = fastmask.attention_mask(**kwargs, backend="reference")
    batch, length = dense.shape[0], dense.shape[1]
    theirs = create_block_mask(lambda b, h, q, k: dense[b, q, k], batch, None, length, length, device="cpu",
                               BLOCK_SIZE=block)
    for backend, mask in ours.items():
        assert mask.shape == theirs.shape and mask.BLOCK_SIZE == theirs.BLOCK_SIZE and mask.seq_lengths == theirs.seq_lengths
        for field in BLOCK_FIELDS:
            assert torch.equal(getattr(mask, field).cpu(), getattr(theirs, field)), (backend, field)


@pytest.mark.parametrize("kind", KINDS)
def test_block_mask_equals_create_block_mask_with_the_same_mask_mod(kind):
    torch.manual_seed(1)
    batch, length, block = 2, 300, 64
    seg = torch.cumsum(torch.rand(batch, length) < 0.02, 1) if kind.startswith("document_") else None
    prefix = torch.tensor([0, 130]) if kind == "prefix_lm" else None
    lengths = torch.tensor([300, 217])
    ours = fastmask.attention_mask(segment_ids=seg, prefix_lengths=prefix, lengths=lengths, length=length, kind=kind,
                                   window=100, format="flex", block_size=block)
    mask_mod = _mask_mod(seg, prefix, lengths, kind in ("causal", "prefix_lm", "document_causal"), 100)
    theirs = create_block_mask(mask_mod, batch, None, length, length, device="cpu", BLOCK_SIZE=block)
    for field in BLOCK_FIELDS:
        assert torch.equal(getattr(ours, field), getattr(theirs, field)), field
    assert torch.equal(ours.to_dense(), theirs.to_dense())


@pytest.mark.parametrize("length", [256, 200])
def test_flex_attention_with_ours_equals_create_block_mask(length):
    torch.manual_seed(2)
    seg = torch.cumsum(torch.rand(1, length) < 0.03, 1)
    kwargs = dict(segment_ids=seg, kind="document_causal", window=64)
    ours = fastmask.attention_mask(**kwargs, format="flex", block_size=128)
    mask_mod = _mask_mod(seg, None, None, True, 64)
    theirs = create_block_mask(mask_mod, 1, None, length, length, device="cpu", BLOCK_SIZE=128)
    q, k, v = (torch.randn(1, 2, length, 16) for _ in range(3))
    try:
        expected = flex_attention(q, k, v, block_mask=theirs)
    except Exception as error:  # noqa: BLE001 - flex_attention's CPU path needs a compiler on some hosts
        pytest.skip(f"flex_attention does not run here: {error}")
    torch.testing.assert_close(flex_attention(q, k, v, block_mask=ours), expected, rtol=0, atol=0)
    dense = fastmask.attention_mask(**kwargs)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense.unsqueeze(1))
    torch.testing.assert_close(expected, sdpa, rtol=1e-5, atol=1e-5)


def test_additive_format_is_zero_or_the_dtype_minimum():
    seg = torch.tensor([[0, 0, 1, 1, 1]])
    mask = fastmask.attention_mask(segment_ids=seg, kind="document_causal")
    for dtype in (torch.float32, torch.bfloat16):
        additive = fastmask.attention_mask(segment_ids=seg, kind="document_causal", format="additive", dtype=dtype)
        assert additive.shape == (1, 1, 5, 5) and additive.dtype == dtype
        assert torch.equal(additive[:, 0] == 0, mask) and bool((additive[:, 0][~mask] == torch.finfo(dtype).min).all())


def test_prefix_lm_extremes_are_causal_and_bidirectional():
    causal = fastmask.attention_mask(length=9, kind="causal")
    prefix = fastmask.attention_mask(prefix_lengths=torch.tensor([0, 9]), length=9, kind="prefix_lm")
    assert torch.equal(prefix[0], causal[0]) and bool(prefix[1].all())


@pytest.mark.parametrize("call, message", [
    (lambda: fastmask.attention_mask(length=4, kind="sideways"), "kind"),
    (lambda: fastmask.attention_mask(length=4, format="dense"), "format"),
    (lambda: fastmask.attention_mask(length=4, kind="document_causal"), "segment_ids"),
    (lambda: fastmask.attention_mask(segment_ids=torch.zeros(1, 4, dtype=torch.int64), kind="causal"), "segment_ids"),
    (lambda: fastmask.attention_mask(length=4, kind="prefix_lm"), "prefix_lengths"),
    (lambda: fastmask.attention_mask(length=4, prefix_lengths=[1], kind="causal"), "prefix_lengths"),
    (lambda: fastmask.attention_mask(kind="causal"), "length"),
    (lambda: fastmask.attention_mask(segment_ids=torch.zeros(1, 4, dtype=torch.int64), length=5,
                                     kind="document_causal"), "length"),
    (lambda: fastmask.attention_mask(segment_ids=torch.zeros(1, 4), kind="document_causal"), "segment_ids"),
    (lambda: fastmask.attention_mask(length=4, window=0), "window"),
    (lambda: fastmask.attention_mask(length=4, format="flex", block_size=0), "block_size"),
    (lambda: fastmask.attention_mask(length=4, lengths=[1, 2], prefix_lengths=[1], kind="prefix_lm"), "rows"),
    (lambda: fastmask.attention_mask(length=4, lengths=[5], backend="cpp"), "lengths"),
    (lambda: fastmask.attention_mask(length=4, lengths=[-1], backend="reference"), "lengths"),
    (lambda: fastmask.attention_mask(length=4, prefix_lengths=[7], kind="prefix_lm", format="flex"), "prefix_lengths"),
    (lambda: fastmask.attention_mask(length=4, format="additive", dtype=torch.int64), "dtype"),
])
def test_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_opcheck(backend):
    if backend == "triton" and device_for(backend) == "cpu":
        pytest.skip("opcheck runs the op many times; the interpreter is covered above")
    device = device_for(backend)
    seg = torch.tensor([[0, 0, 1, 1, 1, 2]], device=device)
    lengths = torch.tensor([5], device=device)
    like = torch.empty(0, device=device)
    torch.library.opcheck(torch.ops.fastmask.attention_dense.default, (seg, None, lengths, like, 1, 6, True, 3, backend))
    torch.library.opcheck(torch.ops.fastmask.attention_blocks.default, (seg, None, lengths, like, 1, 6, True, 3, 2, backend))


def test_compile_fullgraph_matches_eager():
    def fn(seg, prefix):
        return (fastmask.attention_mask(segment_ids=seg, kind="document_causal", window=5),
                fastmask.attention_mask(prefix_lengths=prefix, length=seg.shape[1], kind="prefix_lm", format="additive"),
                fastmask.attention_mask(segment_ids=seg, kind="document_bidirectional", format="flex", block_size=4).kv_indices)

    seg = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2, 3]])
    prefix = torch.tensor([4])
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    for a, b in zip(compiled(seg, prefix), fn(seg, prefix)):
        assert torch.equal(a, b)


def test_meta_device_gives_shapes():
    seg = torch.zeros(2, 300, dtype=torch.int64, device="meta")
    assert fastmask.attention_mask(segment_ids=seg, kind="document_causal").shape == (2, 300, 300)
    block_mask = fastmask.attention_mask(segment_ids=seg, kind="document_causal", format="flex")
    assert block_mask.kv_indices.shape == (2, 1, 3, 3) and block_mask.kv_indices.device.type == "meta"


# --- UniLM --------------------------------------------------------------------------------------------


def test_unilm_objectives_equal_on_every_backend(backend):
    device = device_for(backend)
    source = torch.randint(1, 32, (64,))
    out = fastmask.unilm_objectives(length=32, source_lengths=source.to(device), seed=5, keys=torch.arange(64, device=device),
                                    backend=backend)
    reference = fastmask.unilm_objectives(length=32, source_lengths=source, seed=5, backend="reference")
    assert torch.equal(out.objective.cpu(), reference.objective) and torch.equal(out.prefix_lengths.cpu(), reference.prefix_lengths)


def test_unilm_objectives_follow_the_weights_and_give_prefixes():
    batch, length = 3000, 32
    source = torch.randint(1, length, (batch,))
    out = fastmask.unilm_objectives(length=length, source_lengths=source, weights=(1, 2, 1), seed=5)
    counts = torch.bincount(out.objective, minlength=3).tolist()
    for count, p in zip(counts, (0.25, 0.5, 0.25)):
        assert abs(count - p * batch) < 6 * (batch * p * (1 - p)) ** 0.5
    expected = torch.where(out.objective == 0, length, torch.where(out.objective == 2, source, 0))
    assert torch.equal(out.prefix_lengths, expected)
    assert UNILM_OBJECTIVES == ("bidirectional", "left_to_right", "seq2seq")


def test_unilm_objective_depends_on_the_key_only():
    a = fastmask.unilm_objectives(length=8, weights=(1, 1, 0), seed=3, keys=torch.tensor([10, 11, 12, 13]))
    b = fastmask.unilm_objectives(length=8, weights=(1, 1, 0), seed=3, keys=torch.tensor([13, 12]))
    assert a.objective[[3, 2]].tolist() == b.objective.tolist()
    with pytest.raises(ValueError, match="source_lengths"):
        fastmask.unilm_objectives(length=8, seed=3, keys=torch.tensor([1]))


# --- PackingCollator against HF's DataCollatorWithFlattening, side by side -----------------------------

HF_FEATURES = [{"input_ids": [10, 11, 12]}, {"input_ids": [20, 21, 22, 23, 24, 25]}, {"input_ids": [30, 31, 32, 33, 34, 35, 36]}]


def assert_same_batch(ours, theirs):
    import numpy as np

    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        mine = ours[key]
        if isinstance(value, torch.Tensor):
            assert mine.dtype == value.dtype and torch.equal(mine, value), key
        elif isinstance(value, np.ndarray):
            assert mine.dtype == value.dtype and np.array_equal(mine, value), key
        else:
            assert type(mine) is type(value) and mine == value, key


@pytest.mark.parametrize("options", [
    {},
    {"return_flash_attn_kwargs": True},
    {"return_seq_idx": True},
    {"return_flash_attn_kwargs": True, "return_seq_idx": True, "return_position_ids": False},
    {"separator_id": -1, "position_ids_start": 2},
    {"return_tensors": "np", "return_flash_attn_kwargs": True, "return_seq_idx": True},
])
@pytest.mark.parametrize("labels", [False, True])
def test_packing_collator_equals_hf_on_hf_cases(options, labels):
    from transformers import DataCollatorWithFlattening

    features = [dict(f, labels=[t + 100 for t in f["input_ids"]]) if labels else dict(f) for f in HF_FEATURES]
    theirs = DataCollatorWithFlattening(**options)(features)
    ours = fastmask.collators.PackingCollator(**options)(features)
    assert_same_batch(ours, theirs)
    if not labels and not options:  # HF's own expectations
        assert ours["input_ids"][0].tolist() == [10, 11, 12, 20, 21, 22, 23, 24, 25, 30, 31, 32, 33, 34, 35, 36]
        assert ours["position_ids"][0].tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6]
        assert "attention_mask" not in ours


@given(st.lists(st.lists(st.integers(0, 1000), max_size=9), min_size=1, max_size=6), st.booleans())
@settings(max_examples=25)
def test_packing_collator_equals_hf_on_random_batches(rows, tensors):
    from transformers import DataCollatorWithFlattening

    features = [{"input_ids": torch.tensor(r, dtype=torch.int64) if tensors else r} for r in rows]
    options = {"return_flash_attn_kwargs": True, "return_seq_idx": True}
    try:
        theirs = DataCollatorWithFlattening(**options)(features)
    except ValueError as error:
        with pytest.raises(ValueError, match=str(error)):
            fastmask.collators.PackingCollator(**options)(features)
        return
    assert_same_batch(fastmask.collators.PackingCollator(**options)(features), theirs)


def test_packing_collator_attention_mask_and_mlm_per_example(tmp_path):
    from transformers import BertTokenizerFast

    collator = fastmask.collators.PackingCollator(return_seq_idx=True, return_attention_mask="document_causal")
    batch = collator(HF_FEATURES)
    assert torch.equal(batch["attention_mask"], fastmask.attention_mask(segment_ids=batch["seq_idx"], kind="document_causal"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(200)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(str(tmp_path / "vocab.txt"))
    rows = [[2] + [5 + (7 * i + j) % 200 for j in range(n)] + [3] for i, n in enumerate((30, 12, 45))]
    packer = fastmask.collators.PackingCollator(tokenizer=tokenizer, mlm=True, mlm_probability=0.3, seed=4)
    alone = [packer([{"input_ids": r}], keys=[k]) for r, k in zip(rows, (7, 8, 9))]
    together = packer([{"input_ids": r} for r in rows], keys=[7, 8, 9])
    assert torch.equal(together["input_ids"], torch.cat([a["input_ids"] for a in alone], 1))
    assert torch.equal(together["labels"], torch.cat([a["labels"] for a in alone], 1))
    assert bool((together["labels"] != -100).any())


def test_unilm_collator_masks_like_mlm_collator_and_gives_prefix_masks(tmp_path):
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(50)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(str(tmp_path / "vocab.txt"))
    features = []
    for source, target in ((4, 6), (7, 2), (3, 3), (5, 9)):
        ids = [2] + [5 + (s * 3) % 50 for s in range(source)] + [3] + [5 + (t * 7) % 50 for t in range(target)] + [3]
        features.append({"input_ids": ids, "token_type_ids": [0] * (source + 2) + [1] * (target + 1)})
    keys = torch.tensor([11, 12, 13, 14])
    batch = fastmask.collators.UniLMCollator(tokenizer, seed=3, mask_format="bool")(features, keys=keys)
    plain = fastmask.collators.MLMCollator(tokenizer, seed=3)(features, keys=keys)
    assert torch.equal(batch["input_ids"], plain["input_ids"]) and torch.equal(batch["labels"], plain["labels"])
    lengths = torch.tensor([len(f["input_ids"]) for f in features])
    source = torch.tensor([sum(t == 0 for t in f["token_type_ids"]) for f in features])
    length = batch["input_ids"].shape[1]
    drawn = fastmask.unilm_objectives(length=length, source_lengths=source, seed=3, keys=keys)
    assert torch.equal(batch["objective"], drawn.objective) and torch.equal(batch["prefix_lengths"], drawn.prefix_lengths)
    expected = fastmask.attention_mask(prefix_lengths=drawn.prefix_lengths, lengths=lengths, length=length, kind="prefix_lm")
    assert torch.equal(batch["attention_mask"], expected)
