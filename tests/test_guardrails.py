"""Guardrails found while using fastmask as a new user would: padding by id in mask_tokens, and the
helpers around T5 chunks, image grids and UL2 modes (each beside its family's own tests)."""
import pytest
import torch

import fastmask

BACKENDS = ["reference", "cpp", "triton"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_pad_token_id_keeps_padding_out_of_labels(backend):
    ids = torch.randint(5, 100, (4, 32))
    ids[:, 20:] = 0  # right padding, and no attention_mask, lengths or special ids to say so
    common = dict(seed=1, mask_token_id=4, vocab_size=100, mlm_probability=1.0, backend=backend)
    plain = fastmask.mask_tokens(ids, **common)
    assert (plain.labels[:, 20:] != -100).all()  # the trap: every pad is a prediction target
    out = fastmask.mask_tokens(ids, pad_token_id=0, **common)
    assert (out.labels[:, 20:] == -100).all() and torch.equal(out.input_ids[:, 20:], ids[:, 20:])
    assert (out.labels[:, :20] != -100).all()
    with pytest.raises(ValueError, match="pad_token_id"):
        fastmask.mask_tokens(ids, pad_token_id=100, **common)


def test_t5_chunks_concatenate_texts_and_cut_rows_of_t5_lengths():
    length, _ = fastmask.t5_lengths(20)
    texts = [list(range(100 + i, 100 + i + n)) for i, n in enumerate([7, 30, 1, 0, 55, 12])]
    stream = [t for text in texts for t in text]  # the grouping of HF's Flax T5 example, written out
    want = torch.tensor(stream[: len(stream) // length * length]).reshape(-1, length)
    got = fastmask.t5_chunks(texts, length)
    assert torch.equal(got, want) and got.dtype == torch.int64
    with_eos = fastmask.t5_chunks([[5, 6, 1], [7], torch.tensor([8, 9])], 3, eos_token_id=1)
    assert with_eos.tolist() == [[5, 6, 1], [7, 1, 8]]  # an EOS only where a text lacks it; the tail dropped
    inputs, _ = fastmask.t5_span_corruption(got, eos_token_id=1, vocab_size=32100, seed=0)
    assert inputs.shape == (got.shape[0], 20)
    assert fastmask.t5_chunks([[1, 2]], 5).shape == (0, 5)
    for bad, match in (("text", "texts"), ([[1.5, 2.0]], "integer ids"), ([[1, 2]], "length")):
        with pytest.raises(ValueError, match=match):
            fastmask.t5_chunks(bad, 0 if match == "length" else 4)


def images(count, size=(3, 64, 48)):
    return [{"pixel_values": torch.randn(*size), "labels": i} for i in range(count)]


def test_image_collator_takes_the_patch_grid_from_the_model_or_the_pixels():
    from fastmask.collators import DeviceMasker, ImageMaskCollator

    transformers = pytest.importorskip("transformers")
    keys = torch.arange(4)
    by_hand = ImageMaskCollator("block", seed=3, height=4, width=3, num_masking_patches=4, min_num_patches=2)(images(4), keys)
    from_pixels = ImageMaskCollator("block", seed=3, patch_size=16, num_masking_patches=4, min_num_patches=2)(images(4), keys)
    assert torch.equal(from_pixels["bool_masked_pos"], by_hand["bool_masked_pos"])
    assert from_pixels["bool_masked_pos"].shape == (4, 12)  # 64x48 pixels in 16-pixel patches, not 196 patches

    config = transformers.ViTMAEConfig(image_size=64, patch_size=16)
    mae = ImageMaskCollator("mae", seed=3, model_config=config, mask_ratio=0.75)
    assert mae(images(2, (3, 64, 64)))["noise"].shape == (2, 16)
    masker = DeviceMasker(mae)  # the grid is known without pixels: masking in the step works too
    batch = masker({"pixel_values": torch.randn(2, 3, 64, 64), "sample_keys": torch.arange(2)})
    assert batch["noise"].shape == (2, 16)
    with pytest.raises(ValueError, match=r"64x48 images make a 4x3 patch grid, the model's is 4x4"):
        mae(images(2))
    with pytest.raises(ValueError, match=r"num_patches: 196 does not fit the model's patch grid"):
        ImageMaskCollator("mae", model_config=config, num_patches=196, mask_ratio=0.75)
    with pytest.raises(ValueError, match="not a whole number of 16x16 patches"):
        ImageMaskCollator("block", patch_size=16)(images(1, (3, 60, 48)))
    with pytest.raises(ValueError, match="image_size= or model_config="):
        ImageMaskCollator("block", patch_size=16).mask(keys, torch.tensor(0))

    video = transformers.VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2)
    tube = ImageMaskCollator("tube", seed=1, model_config=video, mask_ratio=0.5)
    clip = tube(images(2, (4, 3, 32, 32)), keys=torch.arange(2))
    want = ImageMaskCollator("tube", seed=1, frames=2, height=2, width=2, mask_ratio=0.5)(images(2, (4, 3, 32, 32)), keys=torch.arange(2))
    assert torch.equal(clip["bool_masked_pos"], want["bool_masked_pos"]) and clip["bool_masked_pos"].shape == (2, 8)
    simmim = ImageMaskCollator("simmim", seed=0, patch_size=4, mask_patch_size=16, mask_ratio=0.5)(images(2))
    assert simmim["bool_masked_pos"].shape == (2, 16 * 12)


def test_ul2_collator_returns_denoisers_and_prepends_mode_tokens():
    from fastmask.collators import DeviceMasker, T5SpanCorruptionCollator, ul2_mode

    class Tokenizer:  # what the T5 collator reads from a tokenizer
        eos_token_id, pad_token_id = 1, 0

        def __len__(self):
            return 200

    assert [ul2_mode(d) for d in fastmask.UL2_DENOISERS] == ["R", "R", "X", "X", "X", "X", "S"]
    modes = {"R": 150, "X": 151, "S": 152}
    ids = torch.randint(2, 100, (8, 64))
    keys = torch.arange(8)
    plain = T5SpanCorruptionCollator(Tokenizer(), denoisers=fastmask.UL2_DENOISERS, seed=4, return_denoiser=True)(ids.tolist(), keys)
    moded = T5SpanCorruptionCollator(Tokenizer(), denoisers=fastmask.UL2_DENOISERS, seed=4, mode_tokens=modes,
                                     return_denoiser=True)(ids.tolist(), keys)
    want = fastmask.ul2_denoise(ids, seed=4, keys=keys, vocab_size=200, eos_token_id=1)
    assert torch.equal(plain["denoiser"], want.denoiser) and torch.equal(moded["denoiser"], want.denoiser)
    first = torch.tensor([modes[ul2_mode(fastmask.UL2_DENOISERS[d])] for d in want.denoiser.tolist()])
    assert torch.equal(moded["input_ids"][:, 0], first)
    assert torch.equal(moded["input_ids"][:, 1:], plain["input_ids"])
    assert torch.equal(moded["attention_mask"].sum(1), plain["attention_mask"].sum(1) + 1)
    assert torch.equal(moded["labels"], plain["labels"])
    masker = DeviceMasker(T5SpanCorruptionCollator(Tokenizer(), denoisers=fastmask.UL2_DENOISERS, seed=4, mode_tokens=modes))
    on_device = masker({"input_ids": ids, "sample_keys": keys})
    assert torch.equal(on_device["input_ids"], moded["input_ids"]) and "denoiser" not in on_device
    with pytest.raises(ValueError, match="no token for mode 'S'"):
        T5SpanCorruptionCollator(Tokenizer(), denoisers=fastmask.UL2_DENOISERS, mode_tokens={"R": 1, "X": 2})
    with pytest.raises(ValueError, match="give denoisers="):
        T5SpanCorruptionCollator(Tokenizer(), mode_tokens=modes)


def test_a_capacity_that_drops_labels_warns_once_and_counts_them(monkeypatch):
    from fastmask import functional

    monkeypatch.setitem(functional._dropped, "positions", 0)
    monkeypatch.setitem(functional._dropped, "warned", False)
    ids = torch.randint(5, 100, (6, 64))
    common = dict(seed=2, mask_token_id=4, vocab_size=100, mlm_probability=0.5)
    full = fastmask.mask_tokens(ids, **common)
    with pytest.warns(UserWarning, match="max_predictions=8 dropped"):
        capped = fastmask.mask_tokens(ids, max_predictions=8, **common)
    want = int((full.labels != -100).sum() - (capped.labels != -100).sum())
    assert want > 0 and functional.dropped_predictions() == want
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the second drop counts silently
        fastmask.mask_tokens(ids, max_predictions=8, **common)
        fastmask.mask_tokens(ids, max_predictions=64, **common)  # room for all: nothing dropped
    assert functional.dropped_predictions() == 2 * want
