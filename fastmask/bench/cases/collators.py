"""Family "collators": collating and masking a batch of tokenized features end to end, fastmask's
MLMCollator against HF transformers' DataCollatorForLanguageModeling, same features, same process.

Features are what a tokenized dataset yields: dicts of Python lists (input_ids, token_type_ids,
attention_mask; plus offset_mapping for whole-word masking), unpadded, from real English text (the
whole_word family's corpus: Python standard-library docstrings through the BERT WordPiece tokenizer
of all-MiniLM-L6-v2), rows of random length in [3/4 L, L]. Both collators pad and mask with the
defaults; the whole-word case gives both offset_mapping (HF's only source) and HF's forced
mask_replace_prob = 1. "t5_collate" runs T5 span corruption from fixed-length features against the
numpy implementation of the t5 family. "image_collate/block": stacking pixel_values and a BEiT
block mask per image (14 x 14 patches, 75 masked), ImageMaskCollator against torch.stack plus the
numpy BEiT generator of the image family, one mask per image as BEiT's data pipeline draws it. Work
units are tokens (padded batch size), or images.

On CUDA, "bert_step": one training step of a small BERT (2 layers, 256 wide, sparse head) with the
batch masked by the collator on the CPU then copied, against padded on the CPU, copied, and masked
on the GPU by DeviceMasker.
"""
from __future__ import annotations

import warnings

from . import Case
from .masking import _missing_peer, tokenizer
from .words import make_batch

SHAPES = [(32, 512), (256, 128)]
QUICK_SHAPES = SHAPES[:1]
T5_SHAPE = (256, 568)
STEP_SHAPE = (64, 128)
IMAGE_BATCH = 256  # 3 x 32 x 32 images: the collate cost, not the copy of the pixels, is what is compared  # T5's 512-token inputs come from 568-token chunks (fastmask.t5_lengths(512))


def make_features(rows: int, length: int, *, offsets: bool = False) -> list[dict]:
    """With offsets, every row has the shortest row's length: tokenizer.pad, which HF's collator calls,
    cannot pad offset_mapping, so HF's whole-word masking needs features of one length."""
    batch = make_batch(rows, length)
    shortest = int(batch["attention_mask"].sum(1).min())
    features = []
    for r in range(rows):
        n = shortest if offsets else int(batch["attention_mask"][r].sum())
        feature = {"input_ids": batch["input_ids"][r, :n].tolist(), "token_type_ids": [0] * n, "attention_mask": [1] * n}
        if offsets:
            feature["offset_mapping"] = [tuple(pair) for pair in batch["offset_mapping"][r, :n].tolist()]
        features.append(feature)
    return features


def cases(device: str, quick: bool) -> list[Case]:
    missing = _missing_peer()
    if missing is not None:
        warnings.warn(f"collator benchmarks skipped: {missing}", stacklevel=2)
        return []
    if device.startswith("cuda"):
        return [_step_case(device, *STEP_SHAPE)]
    shapes = QUICK_SHAPES if quick else SHAPES
    return [case for rows, length in shapes for case in _cases(rows, length)] + [_t5_case(*T5_SHAPE), _image_case(IMAGE_BATCH)]


def _cases(rows: int, length: int) -> list[Case]:
    from transformers import DataCollatorForLanguageModeling

    from ...collators import MLMCollator

    tok = tokenizer()
    out = []
    for name, extra, whole in (("mlm_collate", {}, False), ("mlm_collate/whole-word", dict(mask_replace_prob=1.0, random_replace_prob=0.0), True)):
        features = make_features(rows, length, offsets=whole)
        hf = DataCollatorForLanguageModeling(tok, whole_word_mask=whole, seed=0, **extra)
        ours = MLMCollator(tok, whole_word_mask=whole, seed=0, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # HF warns that whole-word masking forces [MASK]
            hf(features[:2])
        providers = {"hf.DataCollatorForLanguageModeling": lambda hf=hf, f=features: hf(f),
                     "fastmask.MLMCollator": lambda ours=ours, f=features: ours(f)}
        tokens = rows * max(len(f["input_ids"]) for f in features)
        out.append(Case("collators", name, f"{rows}x{length}", providers, "hf.DataCollatorForLanguageModeling", tokens, "tokens",
                        repeats=15))
    return out


def _t5_case(rows: int, length: int) -> Case:
    """T5 span corruption end to end from features (lists of a fixed length): fastmask's collator
    against stacking them with numpy and the numpy implementation of the t5 family (HF's Flax
    example collates this way)."""
    import numpy as np

    from ...collators import T5SpanCorruptionCollator
    from . import t5, t5_numpy

    ids = t5.make_ids(rows, length)
    features = [{"input_ids": row} for row in ids.tolist()]
    ours = T5SpanCorruptionCollator(_T5Vocabulary(), seed=0)
    rng = np.random.RandomState(0)

    def numpy_collate():
        batch = np.array([f["input_ids"] for f in features], dtype=np.int64)
        return t5_numpy.t5_span_corruption(batch, t5.DENSITY, t5.MEAN, t5.VOCAB, t5.EOS, rng)

    providers = {"numpy-t5 collate": numpy_collate, "fastmask.T5SpanCorruptionCollator": lambda: ours(features)}
    return Case("collators", "t5_collate", f"{rows}x{length}", providers, "numpy-t5 collate", rows * length, "tokens",
                repeats=15)


class _T5Vocabulary:
    """What the T5 collator reads from a tokenizer, for T5's vocabulary (32100 ids, EOS 1, pad 0):
    no T5 tokenizer ships offline."""

    eos_token_id, pad_token_id = 1, 0

    def __len__(self) -> int:
        return 32100


def _step_case(device: str, rows: int, length: int) -> Case:
    import torch
    import transformers

    from ...collators import DeviceMasker, MLMCollator
    from ...functional import masked_lm_loss

    tok = tokenizer()
    features = make_features(rows, length)
    config = MLMCollator(tok, seed=0, max_predictions=length // 4)
    masker = DeviceMasker(config)
    pad = masker.collator()
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(tok), hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024,
        max_position_embeddings=length)).to(device)
    head = model.cls.predictions

    def step(batch):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if "sample_keys" in batch:
            batch = masker(batch)
        labels, positions = batch.pop("labels"), batch.pop("masked_positions")
        hidden = model.bert(**batch).last_hidden_state
        loss = masked_lm_loss(head.transform(hidden), head.decoder.weight, labels, bias=head.decoder.bias, positions=positions)
        loss.backward()
        model.zero_grad(set_to_none=True)

    providers = {"cpu collator masking": lambda: step(config(features)), "DeviceMasker": lambda: step(pad(features))}
    return Case("collators", "bert_step", f"{rows}x{length}", providers, "cpu collator masking", rows * length, "tokens")


def _image_case(batch: int) -> Case:
    import torch

    from ...collators import ImageMaskCollator
    from .image_numpy import BlockMaskGenerator

    generator = torch.Generator().manual_seed(batch)
    features = [{"pixel_values": torch.randn(3, 32, 32, generator=generator)} for _ in range(batch)]
    ours = ImageMaskCollator("block", seed=0, height=14, num_masking_patches=75)
    beit = BlockMaskGenerator(14, num_masking_patches=75)

    def beit_collate():
        masks = torch.from_numpy(beit.batch(batch).reshape(batch, -1))
        return {"pixel_values": torch.stack([f["pixel_values"] for f in features]), "bool_masked_pos": masks.bool()}

    providers = {"torch.stack + numpy BEiT masks": beit_collate, "fastmask.ImageMaskCollator": lambda: ours(features)}
    return Case("collators", "image_collate/block", f"{batch}x3x32x32", providers, "torch.stack + numpy BEiT masks",
                batch, "images", repeats=15)
