"""Every documented bad input of random_words raises ValueError naming the argument."""
import pytest
import torch

import fastmask

KEYS = torch.arange(3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seed=2**64), r"seed: expected an integer in \[-2\*\*63, 2\*\*64\)"),
        (dict(seed=-(2**63) - 1), "seed: expected an integer"),
        (dict(seed=1.5), "seed: expected None, an int or an int64 tensor, got float"),
        (dict(seed=torch.tensor(1, dtype=torch.int32)), "seed: expected an int64 tensor"),
        (dict(seed=torch.tensor([1, 2])), "seed: expected an int64 tensor with one element"),
        (dict(keys=torch.zeros(3)), "keys: expected integers, got float32"),
        (dict(keys=torch.zeros(2, 2, dtype=torch.int64)), r"keys: expected 1 dimension\(s\), got shape \(2, 2\)"),
        (dict(length=-1), r"length: expected an integer in \[0, 2147483648\), got -1"),
        (dict(length=2**31), "length: expected an integer in"),
        (dict(length=3.0), "length: expected an integer, got float"),
        (dict(purpose=2**32), r"purpose: expected an integer in \[0, 4294967296\)"),
        (dict(purpose=-1), "purpose: expected an integer in"),
        (dict(backend="cuda"), "backend: expected one of auto, reference, cpp, triton, got 'cuda'"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = dict(seed=0, keys=KEYS, length=4) | kwargs
    with pytest.raises(ValueError, match=message):
        fastmask.random_words(**args)


@pytest.mark.gpu
def test_cpp_backend_rejects_cuda_tensors():
    with pytest.raises(ValueError, match="backend: 'cpp' runs on CPU tensors"):
        fastmask.random_words(0, KEYS.cuda(), 4, backend="cpp")


# --- meta tensors: every op, every backend, meta outputs of the documented shapes (issue 17) ------

META = torch.device("meta")


class _Tokenizer:
    """The few tokenizer attributes the collators read: a 100-token vocabulary."""

    mask_token, mask_token_id, pad_token_id, eos_token_id = "[MASK]", 4, 0, 1
    all_special_ids = [0, 1, 4]
    padding_side, model_max_length = "right", 512

    def __len__(self):
        return 100


def _meta_cases():
    ids = torch.zeros(3, 64, dtype=torch.int64, device=META)
    one = torch.zeros(64, dtype=torch.int32, device=META)
    words = torch.zeros(3, 64, dtype=torch.int64, device=META)
    table = torch.zeros(100, dtype=torch.bool, device=META)
    return {
        "random_words": (lambda b: fastmask.random_words(1, torch.arange(4, device=META), 8, backend=b), [(4, 8, 4)]),
        "mask_tokens": (lambda b: fastmask.mask_tokens(ids, mask_token_id=4, vocab_size=100, max_predictions=9,
                                                       validate=True, backend=b), [(3, 64), (3, 64), (3, 9)]),
        "mask_tokens_1d_views": (lambda b: fastmask.mask_tokens(one, mask_token_id=4, vocab_size=100, views=2, backend=b),
                                 [(2, 64), (2, 64)]),
        "whole_word_ids": (lambda b: fastmask.mask_tokens(ids, mask_token_id=4, vocab_size=100, word_ids=words, backend=b),
                           [(3, 64), (3, 64)]),
        "whole_word_table": (lambda b: fastmask.mask_tokens(ids, mask_token_id=4, word_table=table, backend=b),
                             [(3, 64), (3, 64)]),
        "mask_spans": (lambda b: fastmask.mask_spans(ids, mask_token_id=4, vocab_size=100, max_predictions=5, backend=b),
                       [(3, 64), (3, 64), (3, 5)]),
        "t5_span_corruption": (lambda b: fastmask.t5_span_corruption(ids, vocab_size=100, eos_token_id=1, backend=b),
                               [(3, 64 - 10 + 3 + 1), (3, 10 + 3 + 1)]),
        "ul2_denoise": (lambda b: fastmask.ul2_denoise(ids, denoisers=[(3.0, 0.15), ("S", 0.25)], vocab_size=100,
                                                       eos_token_id=1, backend=b), None),
        "block_mask_keys": (lambda b: fastmask.block_mask(2, keys=torch.arange(2, device=META), backend=b), [(2, 14, 14)]),
        "block_mask_device": (lambda b: fastmask.block_mask(2, device="meta", backend=b), [(2, 14, 14)]),
        "random_patch_mask": (lambda b: fastmask.random_patch_mask(2, 16, 0.75, device="meta", backend=b),
                              [(2, 16), (2, 4), (2, 16)]),
        "simmim_mask": (lambda b: fastmask.simmim_mask(2, device="meta", backend=b), [(2, 48, 48)]),
        "tube_mask": (lambda b: fastmask.tube_mask(2, 2, 4, 4, device="meta", backend=b), [(2, 32)]),
        "masked_cross_entropy": (lambda b: fastmask.masked_cross_entropy(
            torch.zeros(4, 10, device=META), torch.zeros(4, dtype=torch.int64, device=META), validate=True,
            inplace_backward=True, backend=b), [()]),
        "masked_lm_loss": (lambda b: fastmask.masked_lm_loss(
            torch.zeros(2, 5, 8, device=META), torch.zeros(30, 8, device=META), torch.zeros(2, 5, dtype=torch.int64, device=META),
            positions=torch.zeros(2, 3, dtype=torch.int64, device=META), reduction="none", validate=True, backend=b), [(2, 3)]),
        "masked_lm_loss_max_rows": (lambda b: fastmask.masked_lm_loss(
            torch.zeros(10, 8, device=META), torch.zeros(30, 8, device=META), torch.zeros(10, dtype=torch.int64, device=META),
            max_rows=4, validate=True, backend=b), [()]),
    }


@pytest.mark.parametrize("backend", ["auto", "reference", "cpp", "triton"])
@pytest.mark.parametrize("case", sorted(_meta_cases()))
def test_meta_inputs_give_meta_outputs(case, backend):
    """Meta tensors never reach a kernel (C++ read their null pointers: 9 segfaults in issue 17):
    every backend returns meta outputs of the documented shapes, through the fake kernels."""
    run, shapes = _meta_cases()[case]
    out = run(backend)
    outputs = [t for t in (out if isinstance(out, tuple) else (out,)) if t is not None]
    assert all(t.device.type == "meta" for t in outputs)
    if shapes is not None:
        assert [tuple(t.shape) for t in outputs] == shapes


@pytest.mark.parametrize("config", ["mlm", "t5", "block"])
def test_device_masker_on_a_meta_batch(config):
    from fastmask.collators import DeviceMasker, ImageMaskCollator, MLMCollator, T5SpanCorruptionCollator

    made = {"mlm": lambda: MLMCollator(_Tokenizer(), seed=1, max_predictions=6),
            "t5": lambda: T5SpanCorruptionCollator(_Tokenizer(), seed=1),
            "block": lambda: ImageMaskCollator("block", seed=1)}[config]()
    batch = {"input_ids": torch.zeros(2, 40, dtype=torch.int64, device=META),
             "pixel_values": torch.zeros(2, 3, 8, 8, device=META),
             "sample_keys": torch.arange(2, device=META)}
    out = DeviceMasker(made)(batch)
    assert out and all(v.device.type == "meta" for v in out.values() if isinstance(v, torch.Tensor))


def test_fake_tensors_reach_the_fake_kernels():
    """Under FakeTensorMode (CPU-looking tensors without memory) the eager fast path is skipped."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        ids = torch.zeros(2, 32, dtype=torch.int64)
        out = fastmask.mask_tokens(ids, mask_token_id=4, vocab_size=100, seed=1, backend="cpp")
        inputs, targets = fastmask.t5_span_corruption(ids, vocab_size=100, eos_token_id=1, seed=1)
    assert out.input_ids.shape == (2, 32) and inputs.shape[0] == targets.shape[0] == 2
    # Host caches kept no fake tensor: the same call on real tensors gives real outputs.
    real = fastmask.mask_tokens(torch.zeros(2, 32, dtype=torch.int64), mask_token_id=4, vocab_size=100, seed=1, backend="cpp")
    assert type(real.input_ids) is torch.Tensor and type(real.labels) is torch.Tensor


# --- T5 / UL2: every id written is a token; t5_lengths exact and O(log L) (issue 17) -----------------

T5_BACKENDS = ("reference", "cpp", "triton")


def _t5_rows():
    return torch.arange(40).reshape(2, 20) + 60  # ids 60..99 of a 100-token vocabulary


@pytest.mark.parametrize("backend", T5_BACKENDS)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sentinel_ids=[-5]), r"sentinel_ids: expected an integer in \[0, 100\), got -5"),
        (dict(sentinel_ids=[105]), r"sentinel_ids: expected an integer in \[0, 100\), got 105"),
        (dict(sentinel_ids=[2**40]), r"sentinel_ids: expected an integer in \[0, 100\)"),
        (dict(eos_token_id=-1), r"eos_token_id: expected an integer in \[0, 100\), got -1"),
        (dict(eos_token_id=100), r"eos_token_id: expected an integer in \[0, 100\), got 100"),
        (dict(ids=_t5_rows() + 1), r"input_ids: id 100 at position \(1, 19\) is outside the vocabulary \[0, 100\)"),
        (dict(ids=_t5_rows() - 61), r"input_ids: id -1 at position \(0, 0\) is outside the vocabulary \[0, 100\)"),
        (dict(ids=_t5_rows().int() + 1), r"input_ids: id 100 at position \(1, 19\) is outside"),
        (dict(ids=(_t5_rows() + 2)[:, ::2]), r"input_ids: id 100 at position \(1, 9\)"),  # strided rows
        (dict(vocab_size=None, sentinel_ids=[-5]), r"sentinel_ids: expected an integer in \[0, 9223372036854775808\)"),
        (dict(vocab_size=None, sentinel_ids=[7], eos_token_id=-1), r"eos_token_id: expected an integer in \[0, "),
    ],
)
def test_t5_ids_outside_the_vocabulary(backend, kwargs, message):
    """Sentinels, eos and input ids outside the vocabulary were copied into the outputs on every backend."""
    kwargs = dict(kwargs)
    ids = kwargs.pop("ids", _t5_rows())
    args = dict(vocab_size=100, eos_token_id=1, seed=3, backend=backend) | kwargs
    with pytest.raises(ValueError, match=message):
        fastmask.t5_span_corruption(ids, **args)


@pytest.mark.parametrize("backend", T5_BACKENDS)
def test_ul2_ids_outside_the_vocabulary(backend):
    ids = _t5_rows()
    common = dict(denoisers=[(3.0, 0.15), ("S", 0.25)], vocab_size=100, eos_token_id=1, seed=3, backend=backend)
    with pytest.raises(ValueError, match=r"pad_token_id: expected an integer in \[0, 100\), got 100"):
        fastmask.ul2_denoise(ids, **common, pad_token_id=100)
    with pytest.raises(ValueError, match=r"pad_token_id: expected an integer in \[0, 100\), got -100"):
        fastmask.ul2_denoise(ids, **common, pad_token_id=-100)
    with pytest.raises(ValueError, match=r"input_ids: id 100 at position \(1, 19\)"):
        fastmask.ul2_denoise(ids + 1, **common)
    out = fastmask.ul2_denoise(ids, **common, validate=True)  # in range: validate only reads
    assert int(out.inputs.max()) < 100 and int(out.targets.min()) >= 0


def test_t5_cpp_kernel_checks_ids_itself():
    """Defence in depth: the C++ kernel refuses ids, sentinels, eos and pad outside vocab_size even
    when called without the host checks."""
    from fastmask.cpp import t5 as cpp_t5

    ids, seed = _t5_rows(), torch.tensor(3)
    table = torch.tensor([[1 << 32, 3, 1, 0, 1]])
    good = dict(eos=1, pad=0, input_length=19, target_length=5)
    with pytest.raises(ValueError, match=r"input_ids: id 100 at position \(1, 19\) is outside the vocabulary \[0, 100\)"):
        cpp_t5.span_corruption(ids + 1, seed, None, table, torch.tensor([99]), **good, vocab_size=100)
    with pytest.raises(ValueError, match=r"sentinel_ids: id 105 is outside the vocabulary \[0, 100\)"):
        cpp_t5.span_corruption(ids, seed, None, table, torch.tensor([105]), **good, vocab_size=100)
    with pytest.raises(ValueError, match=r"eos_token_id: id -1 is outside"):
        cpp_t5.span_corruption(ids, seed, None, table, torch.tensor([99]), **(good | dict(eos=-1)), vocab_size=100)


def _t5_inputs_length(tokens, density, mean):
    return fastmask.t5_output_lengths(tokens, density, mean)[0]


@pytest.mark.parametrize("density, mean", [(0.15, 3.0), (0.5, 3.0), (0.3, 8.0), (0.8, 1.0), (0.05, 64.0)])
def test_t5_lengths_is_the_longest_fitting_row(density, mean):
    """Exact for every length: the returned rows' inputs fit, one token more does not."""
    for inputs_length in range(3, 400):
        try:
            tokens, targets = fastmask.t5_lengths(inputs_length, density, mean)
        except ValueError as error:
            assert "inputs_length" in str(error)
            continue
        assert _t5_inputs_length(tokens, density, mean) <= inputs_length
        step = 2 if density == 0.5 else 1  # HF's adjustment at density 0.5 may step one token back
        try:
            assert _t5_inputs_length(tokens + step, density, mean) > inputs_length, inputs_length
        except ValueError:
            pass  # longer rows are too short for their spans: tokens is still the longest usable
        assert targets == fastmask.t5_output_lengths(tokens, density, mean)[1]
    assert fastmask.t5_lengths(3) == (2, 3)  # was (3, 3), whose inputs are 4 tokens


def test_t5_lengths_of_huge_inputs_returns_at_once():
    """t5_lengths(2^31 - 1) searched one token at a time (a hang); now O(log L), capped below 2^31."""
    tokens, targets = fastmask.t5_lengths(2**31 - 1)
    assert tokens == 2**31 - 1 and _t5_inputs_length(tokens, 0.15, 3.0) <= 2**31 - 1
    tokens, _ = fastmask.t5_lengths(10**9, 0.5, 3.0)
    assert _t5_inputs_length(tokens, 0.5, 3.0) <= 10**9 < _t5_inputs_length(tokens + 2, 0.5, 3.0)
    with pytest.raises(ValueError, match="inputs_length"):
        fastmask.t5_lengths(1)


# --- keys, sizes, image and collator errors (issue 17) -------------------------------------------------


@pytest.mark.parametrize(
    "keys, message",
    [
        ([1.7, 2.2], "keys: expected integers, got float32 values"),
        (torch.tensor([1.5]), "keys: expected integers, got float32"),
        ("ab", "keys: expected integers, got a str"),
        (["a"], "keys: expected integers in"),
        ([True, False], "keys: expected integers, got bool"),
        ([2**63], r"keys: expected integers in \[-2\*\*63, 2\*\*63\)"),
        ([-(2**63) - 1], r"keys: expected integers in \[-2\*\*63, 2\*\*63\)"),
        ([None], "keys: expected integers in"),
    ],
)
def test_keys_are_integers_never_truncated(keys, message):
    for run in (lambda: fastmask.random_words(0, keys, 4),
                lambda: fastmask.mask_tokens(torch.zeros(len(keys), 8, dtype=torch.int64), keys=keys, mask_token_id=4),
                lambda: fastmask.random_patch_mask(len(keys), 16, 0.5, keys=keys)):
        with pytest.raises(ValueError, match=message):
            run()


def test_sample_keys_refuse_floats_and_huge_indices():
    from fastmask.collators import sample_keys

    with pytest.raises(ValueError, match="indices: expected integers, got float32"):
        sample_keys([1.7, 2.2])  # was [1, 2]
    with pytest.raises(ValueError, match=r"indices: expected integers in \[-2\*\*63, 2\*\*63\)"):
        sample_keys([2**63])
    assert sample_keys([3, 4], epoch=1).tolist() == [(1 << 40) | 3, (1 << 40) | 4]
    assert sample_keys([]).shape == (0,)


def test_huge_sizes_name_the_argument_and_the_memory():
    ids = torch.zeros(2, 8, dtype=torch.int64)
    gib = r"would take [0-9.]+ GiB, more than the [0-9.]+ GiB of cpu memory available"
    cases = [
        (lambda: fastmask.mask_tokens(ids, mask_token_id=4, max_predictions=2**31 - 1), "max_predictions: .* " + gib),
        (lambda: fastmask.mask_spans(ids, mask_token_id=4, vocab_size=100, max_predictions=2**31 - 1), "max_predictions: "),
        (lambda: fastmask.random_words(0, [1, 2], 2**31 - 1), "length: the words of 2 rows .* " + gib),
        (lambda: fastmask.block_mask(1, 30000, num_masking_patches=10**8), "num_masking_patches, min_num_patches.*" + gib),
        (lambda: fastmask.block_mask(1, 14, min_num_patches=1e9), "min_num_patches.*BEiT's block table"),  # was OverflowError
        (lambda: fastmask.block_mask(1, 14, min_aspect=1e-300), "min_aspect.*BEiT's block table"),  # was OverflowError
        (lambda: fastmask.block_mask(2**30, 1000, num_masking_patches=1), "batch, height, width: .* " + gib),
        (lambda: fastmask.random_patch_mask(2**30, 2**20, 0.5), "batch: the shuffles"),
        (lambda: fastmask.tube_mask(1000, 2**20, 1000, 1000), "batch: the shuffles"),
    ]
    for run, message in cases:
        with pytest.raises(ValueError, match=message):
            run()
    # Meta tensors allocate nothing: no bound.
    meta = fastmask.random_words(0, torch.arange(2, device="meta"), 2**31 - 1)
    assert meta.shape == (2, 2**31 - 1, 4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_device_without_cuda():
    for run in (lambda: fastmask.block_mask(1, device="cuda"), lambda: fastmask.random_patch_mask(1, 16, 0.5, device="cuda")):
        with pytest.raises(ValueError, match="device: cuda requested, but CUDA is not available"):
            run()


def test_gather_kept_and_restore_errors():
    x, ids = torch.zeros(2, 4, 3), torch.tensor([[0, 3], [1, 2]])
    with pytest.raises(ValueError, match=r"ids_keep: index 7 at \(0, 0\) is outside \[0, 4\)"):
        fastmask.gather_kept(x, torch.full((2, 2), 7))
    with pytest.raises(ValueError, match=r"ids_keep: index -1 at \(1, 1\)"):
        fastmask.gather_kept(x, torch.tensor([[0, 1], [2, -1]]))
    with pytest.raises(ValueError, match="ids_keep: expected dtype int64"):
        fastmask.gather_kept(x, ids.int())
    with pytest.raises(ValueError, match="x: expected a tensor"):
        fastmask.gather_kept(x[:1], ids)
    kept, restore = torch.zeros(2, 2, 3), torch.tensor([[0, 2, 1, 3], [3, 2, 1, 0]])
    with pytest.raises(ValueError, match=r"mask_token: expected a tensor \[3\] or \[1, 1, 3\] on cpu, got float"):
        fastmask.restore(kept, restore, 1.0)
    with pytest.raises(ValueError, match=r"mask_token: expected a tensor \[3\] or \[1, 1, 3\] on cpu, got \(4,\)"):
        fastmask.restore(kept, restore, torch.zeros(4))
    with pytest.raises(ValueError, match=r"ids_restore: index 4 at \(1, 0\) is outside \[0, 4\)"):
        fastmask.restore(kept, restore + torch.tensor([[0], [1]]), torch.zeros(3))
    with pytest.raises(ValueError, match="x_kept: 2 kept patches, more than the 1"):
        fastmask.restore(kept, restore[:, :1], torch.zeros(3))
    assert fastmask.restore(kept, restore, torch.ones(1, 1, 3)).shape == (2, 4, 3)


def test_collators_name_none_features_and_missing_input_ids():
    from fastmask.collators import DeviceMasker, MLMCollator, T5SpanCorruptionCollator

    mlm, t5 = MLMCollator(_Tokenizer(), seed=1), T5SpanCorruptionCollator(_Tokenizer(), seed=1)
    for collate, features, message in [
        (mlm, [None], "input_ids: feature 0 is NoneType, not a sequence of token ids"),
        (mlm, [{"input_ids": [5, 6]}, {"input_ids": None}], "input_ids: feature 1 is NoneType"),
        (mlm, ["some text"], "input_ids: feature 0 is str"),
        (t5, [{"input_ids": [5] * 20}, None], "input_ids: feature 1 is NoneType"),
        (t5, [{"input_ids": None}], "input_ids: feature 0 is NoneType"),
    ]:
        with pytest.raises(ValueError, match=message):
            collate(features)
    with pytest.raises(ValueError, match=r"batch: expected 'input_ids' as a tensor .* got none \(keys: \['labels'\]\)"):
        DeviceMasker(mlm)({"sample_keys": torch.arange(2), "labels": torch.zeros(2, 3)})
