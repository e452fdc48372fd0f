"""Data collators: drop-ins for Hugging Face's, padding in C++ and masking with fastmask's ops, with a
mask that depends only on (seed, sample index, epoch) (docs/collators.md).

    dataset = fastmask.collators.IndexedDataset(tokenized)      # carries each sample's index
    collator = fastmask.collators.MLMCollator(tokenizer, seed=0)
    loader = DataLoader(dataset, batch_size=32, collate_fn=collator, num_workers=2)
    for epoch in range(epochs):
        dataset.set_epoch(epoch)                                 # HF Trainer calls this itself
        for batch in loader: ...
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
import torch

from ._seed import as_keys, resolve_seed
from ._validate import check_int, check_probability
from .cpp import DTYPE_CODES, HAS_CPP, cpp
from .functional import mask_tokens

__all__ = ["DeviceMasker", "ImageMaskCollator", "IndexedDataset", "MLMCollator", "T5SpanCorruptionCollator", "sample_keys"]

INDEX_BITS = 40  # a sample key is (epoch << 40) | index: 10^12 samples, 2^23 epochs
_MAX_EPOCH = 1 << (63 - INDEX_BITS)


def sample_keys(indices, epoch: int = 0) -> torch.Tensor:
    """int64 keys (epoch << 40) | index: distinct for every (index, epoch), whatever the batch."""
    epoch = check_int("epoch", epoch, 0, _MAX_EPOCH)
    indices = as_keys(indices, "indices").to(torch.int64).reshape(-1)  # floats and huge ints refused, not truncated
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= 1 << INDEX_BITS):
        raise ValueError(f"indices: expected dataset indices in [0, 2^{INDEX_BITS}), got {indices.tolist()[:8]}")
    return indices | (epoch << INDEX_BITS)


# --- how a sample's index reaches the collator --------------------------------------------------
# A DataLoader (worker or main process) fetches a batch's samples and calls collate_fn on them in the
# same thread, with nothing in between. IndexedDataset records the keys of what it fetched here, and
# the collator takes them: they never enter the features, so neither HF Trainer's column removal nor
# model(**batch) ever sees them.
_fetched = threading.local()


def _record(keys: list[int], append: bool) -> None:
    if append and getattr(_fetched, "keys", None) is not None:
        _fetched.keys.extend(keys)
    else:
        _fetched.keys = list(keys)


def _take(count: int) -> Optional[list[int]]:
    keys, _fetched.keys = getattr(_fetched, "keys", None), None
    if keys is None or len(keys) < count:
        return None
    return keys[len(keys) - count:]  # the last `count` fetched: the batch being collated


class IndexedDataset(torch.utils.data.Dataset):
    """A map-style dataset that hands each sample's key, made of its index and the epoch, to the
    fastmask collator that collates it. The features themselves are returned unchanged.

    set_epoch(epoch) changes every key (a new mask per epoch); it is shared memory, so DataLoader
    workers, persistent ones included, see it at their next fetch: call it before iterating the
    epoch, as with DistributedSampler. HF Trainer (through accelerate) calls it for you."""

    def __init__(self, dataset, epoch: int = 0):
        self.dataset = dataset
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = check_int("epoch", epoch, 0, _MAX_EPOCH)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def __len__(self) -> int:
        return len(self.dataset)

    def _key(self, index) -> int:
        index = check_int("index", int(index) if isinstance(index, torch.Tensor) and not index.is_floating_point() else index,
                          0, 1 << INDEX_BITS)
        return index | (int(self._epoch[0]) << INDEX_BITS)

    def __getitem__(self, index):
        feature = self.dataset[index]
        _record([self._key(index)], append=True)
        return feature

    def __getitems__(self, indices: list) -> list:
        """A DataLoader's batched fetch: the keys of exactly this batch."""
        many = getattr(self.dataset, "__getitems__", None)
        features = many(indices) if many is not None else [self.dataset[i] for i in indices]
        _record([self._key(i) for i in indices], append=False)
        return features


# --- padding ---------------------------------------------------------------------------------------


def _id_row(i: int, row):
    """A feature's input_ids: a sized sequence (list, tuple, array, tensor), not None or a string."""
    if row is None or isinstance(row, (str, bytes, Mapping)) or not hasattr(row, "__len__"):
        raise ValueError(f"input_ids: feature {i} is {type(row).__name__}, not a sequence of token ids")
    return row


def _padded_length(lengths: list[int], multiple: Optional[int]) -> int:
    longest = max(lengths)
    if multiple and longest % multiple:
        longest += multiple - longest % multiple
    return longest


def _pad(rows: list, length: int, pad_value: int, left: bool, name: str, dtype=torch.int64, width: int = 1) -> torch.Tensor:
    """[len(rows), length] (or [.., width] for rows of pairs, as offset_mapping) from Python lists or
    tuples (C++), numpy arrays or tensors (torch copies)."""
    out = torch.empty((len(rows), length) + ((width,) if width > 1 else ()), dtype=dtype)
    if HAS_CPP and all(isinstance(r, (list, tuple)) for r in rows):
        cpp().pad_sequences(rows, out.data_ptr(), DTYPE_CODES[dtype], len(rows), length, width, length * width,
                            pad_value, left, name)
        return out
    out.fill_(pad_value)
    for b, row in enumerate(rows):
        try:
            values = torch.as_tensor(np.asarray(row) if width > 1 else row)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{name}: feature {b} is not a sequence of integers ({error})") from None
        shape_ok = values.dim() == 1 if width == 1 else (values.dim() == 2 and values.shape[1] == width)
        if not shape_ok or (values.numel() and (values.dtype.is_floating_point or values.dtype == torch.bool)):
            raise ValueError(f"{name}: feature {b}: expected integers of shape [n{'' if width == 1 else f', {width}'}], "
                             f"got {values.dtype} {tuple(values.shape)}")
        n = values.shape[0]
        if n:
            (out[b, length - n:] if left else out[b, :n]).copy_(values)
    return out


# Per-token keys padded as the tokenizer pads them; the value None means the tokenizer's own.
_TOKEN_KEYS = {"input_ids": None, "attention_mask": 0, "token_type_ids": None, "special_tokens_mask": 1, "word_ids": -1}


class MLMCollator:
    """HF's DataCollatorForLanguageModeling (transformers 5.x), same arguments and outputs, with
    padding in C++ and masking by fastmask.mask_tokens, reproducible per sample (docs/collators.md).

    Extras (keyword-only): exact, prediction_probability, views, max_predictions (the batch then
    carries "masked_positions" [B * views, K] for fastmask.masked_lm_loss), backend.
    """

    def __init__(
        self,
        tokenizer,
        mlm: bool = True,
        whole_word_mask: bool = False,
        mlm_probability: Optional[float] = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        pad_to_multiple_of: Optional[int] = None,
        return_tensors: str = "pt",
        seed: Optional[int] = None,
        *,
        exact: bool = False,
        prediction_probability: Optional[float] = None,
        views: int = 1,
        max_predictions: Optional[int] = None,
        backend: str = "auto",
    ):
        self.tokenizer = tokenizer
        self.mlm, self.whole_word_mask = mlm, whole_word_mask
        if mlm:
            if getattr(tokenizer, "mask_token", None) is None:
                raise ValueError("This tokenizer does not have a mask token which is necessary for masked language "
                                 "modeling. You should pass `mlm=False` to train on causal language modeling instead.")
            if mlm_probability is None:
                raise ValueError("mlm_probability should be between 0 and 1.")
            check_probability("mlm_probability", mlm_probability)
        elif whole_word_mask:
            raise ValueError("Whole word masking can only be used with mlm=True. If you want to use whole word "
                             "masking, please set mlm=True.")
        check_probability("mask_replace_prob", mask_replace_prob)
        check_probability("random_replace_prob", random_replace_prob)
        if mask_replace_prob + random_replace_prob > 1:
            raise ValueError("The sum of mask_replace_prob and random_replace_prob should not exceed 1")
        if prediction_probability is not None:
            check_probability("prediction_probability", prediction_probability)
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors: expected 'pt' or 'np', got {return_tensors!r}")
        if pad_to_multiple_of is not None:
            check_int("pad_to_multiple_of", pad_to_multiple_of, 1, 1 << 31)
        self.mlm_probability, self.mask_replace_prob, self.random_replace_prob = mlm_probability, mask_replace_prob, random_replace_prob
        self.prediction_probability, self.exact, self.views, self.max_predictions = prediction_probability, exact, views, max_predictions
        self.pad_to_multiple_of, self.return_tensors, self.backend = pad_to_multiple_of, return_tensors, backend
        # One seed for the collator's life, so every worker's copy masks a sample alike. None draws it
        # now from torch's default generator (torch.manual_seed governs it, as HF's global RNG).
        self._seed = resolve_seed(seed, torch.device("cpu"))
        self.seed = int(self._seed) if seed is None else seed

        self.vocab_size = len(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.special_ids = sorted({i for i in tokenizer.all_special_ids if 0 <= i < self.vocab_size})
        self.mask_token_id = tokenizer.mask_token_id if mlm else None
        self.model_max_length = getattr(tokenizer, "model_max_length", None)
        self._word_table = None

    # -- HF's entry points ---------------------------------------------------------------------------

    def __call__(self, features: list, keys=None, return_tensors: Optional[str] = None) -> dict[str, Any]:
        """Collate and mask `features`. `keys` (int64 [B]) overrides the sample keys; by default they
        come from IndexedDataset (see sample_keys), else are drawn at random per call."""
        batch = self._collate(features)
        batch = self._mask(batch, _batch_keys(keys, len(features)))
        if (return_tensors or self.return_tensors) == "np":
            batch = {k: v.numpy() for k, v in batch.items()}
        return batch

    # -- padding ------------------------------------------------------------------------------------

    def _collate(self, features: list) -> dict[str, torch.Tensor]:
        if not isinstance(features, Sequence) or len(features) == 0:
            raise ValueError("features: expected a non-empty list of features")
        mappings = [isinstance(f, Mapping) for f in features]
        if any(mappings) and not all(mappings):
            raise ValueError("features: mixed feature types; expected all dicts (with input_ids) or all sequences of ids")
        if not mappings[0]:
            features = [{"input_ids": f} for f in features]
        for i, feature in enumerate(features):
            if "input_ids" not in feature:
                raise ValueError(f"features: feature {i} has no 'input_ids' (keys: {sorted(feature.keys())}); "
                                 "the collator needs tokenized input_ids")
        ids_rows = [_id_row(i, f["input_ids"]) for i, f in enumerate(features)]
        lengths = [len(row) for row in ids_rows]
        length = _padded_length(lengths, self.pad_to_multiple_of)
        if self.model_max_length is not None and length > self.model_max_length and max(lengths) > self.model_max_length:
            longest = int(np.argmax(lengths))
            raise ValueError(f"input_ids: feature {longest} has {lengths[longest]} tokens, more than the model allows "
                             f"(tokenizer.model_max_length = {self.model_max_length}); tokenize with truncation=True")
        if any(n != length for n in lengths) and self.pad_token_id is None:
            raise ValueError(f"You are attempting to pad samples but the tokenizer you are using "
                             f"({type(self.tokenizer).__name__}) does not have a pad token.")

        batch = {}
        keys = list(features[0].keys())
        for key in keys:
            values = [f.get(key) for f in features]
            if any(v is None for v in values):
                raise ValueError(f"features: '{key}' is missing from some features")
            if key in _TOKEN_KEYS:
                pad = _TOKEN_KEYS[key]
                if pad is None:
                    pad = self.pad_token_id if key == "input_ids" else getattr(self.tokenizer, "pad_token_type_id", 0)
                batch[key] = _pad(values, length, pad if pad is not None else 0, self.left, key)
            elif key == "offset_mapping":  # (0, 0) in padding, as the tokenizer writes it
                batch[key] = _pad(values, length, 0, self.left, key, width=2)
            elif key == "labels" and self.mlm:
                continue  # replaced by the masked-LM labels, as HF does
            else:
                batch[key] = _stack(key, values)
        if mappings[0] and "attention_mask" not in batch and "attention_mask" in getattr(self.tokenizer, "model_input_names", ()):
            positions = torch.arange(length)
            starts = torch.tensor([length - n if self.left else 0 for n in lengths]).reshape(-1, 1)
            ends = torch.tensor([length if self.left else n for n in lengths]).reshape(-1, 1)
            batch["attention_mask"] = ((positions >= starts) & (positions < ends)).to(torch.int64)
        return batch

    # -- masking ------------------------------------------------------------------------------------

    def _mask(self, batch: dict, keys: torch.Tensor, seed: Optional[torch.Tensor] = None) -> dict:
        special = batch.pop("special_tokens_mask", None)
        offsets = batch.pop("offset_mapping", None)
        word_ids = batch.pop("word_ids", None)
        ids = batch["input_ids"]
        if not self.mlm:
            labels = ids.clone()
            if self.pad_token_id is not None:
                labels[labels == self.pad_token_id] = -100  # HF's rule: by id
            batch["labels"] = labels
            return batch
        words = {}
        if self.whole_word_mask:
            if word_ids is not None:
                words["word_ids"] = word_ids
            elif offsets is not None:
                words["offset_mapping"] = offsets
            else:
                words["word_table"] = self._table()
        out = mask_tokens(
            ids, seed=self._seed if seed is None else seed, keys=keys, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
            special_ids=self.special_ids, special_tokens_mask=special, attention_mask=batch.get("attention_mask"),
            mlm_probability=self.mlm_probability, mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob, prediction_probability=self.prediction_probability,
            views=self.views, exact=self.exact, max_predictions=self.max_predictions, backend=self.backend, **words,
        )
        if self.views > 1:
            batch = {k: v.repeat_interleave(self.views, dim=0) for k, v in batch.items()}
        batch["input_ids"], batch["labels"] = out.input_ids, out.labels
        if out.positions is not None:
            batch["masked_positions"] = out.positions
        return batch

    def _table(self) -> torch.Tensor:
        if self._word_table is None:
            from .words import word_start_table

            self._word_table = word_start_table(self.tokenizer)
        return self._word_table


def _stack(key: str, values: list) -> torch.Tensor:
    """A per-sample value other than the token keys: numbers, or arrays of one shape."""
    try:
        tensors = [torch.as_tensor(v) for v in values]
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"features: '{key}' cannot become a tensor ({error}); remove it before collating") from None
    if any(t.shape != tensors[0].shape for t in tensors):
        shapes = sorted({tuple(t.shape) for t in tensors})
        raise ValueError(f"features: '{key}' has different shapes across features {shapes[:4]}; fastmask pads only "
                         f"{', '.join(sorted(_TOKEN_KEYS))} and offset_mapping")
    return torch.stack(tensors)


# --- T5 span corruption ------------------------------------------------------------------------------


class T5SpanCorruptionCollator:
    """T5's span corruption as a collator (the PyTorch counterpart of the collator in HF's Flax
    example run_t5_mlm_flax.py), or UL2's mixture of denoisers with `denoisers=` (docs/t5.md).

    Features hold input_ids of one length L (fixed chunks of a concatenated corpus, as T5 trains;
    fastmask.t5_lengths gives the L whose inputs have a chosen length). The batch has input_ids,
    attention_mask and labels (the targets, -100 in padding) for T5ForConditionalGeneration, which
    builds decoder_input_ids from the labels. Keys come from IndexedDataset as for MLMCollator."""

    def __init__(
        self,
        tokenizer,
        noise_density: float = 0.15,
        mean_noise_span_length: float = 3.0,
        *,
        denoisers=None,
        weights=None,
        sentinel_ids=None,
        seed: Optional[int] = None,
        return_tensors: str = "pt",
        backend: str = "auto",
    ):
        if getattr(tokenizer, "eos_token_id", None) is None:
            raise ValueError("T5 span corruption ends inputs and targets with EOS: this tokenizer has no eos token")
        if denoisers is not None and getattr(tokenizer, "pad_token_id", None) is None:
            raise ValueError("UL2 pads its outputs to the longest denoiser: this tokenizer has no pad token")
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors: expected 'pt' or 'np', got {return_tensors!r}")
        self.tokenizer, self.noise_density, self.mean_noise_span_length = tokenizer, noise_density, mean_noise_span_length
        self.denoisers, self.weights, self.sentinel_ids = denoisers, weights, sentinel_ids
        self.return_tensors, self.backend = return_tensors, backend
        self._seed = resolve_seed(seed, torch.device("cpu"))
        self.seed = int(self._seed) if seed is None else seed
        self.vocab_size = len(tokenizer)

    def __call__(self, features: list, keys=None) -> dict[str, Any]:
        ids = _equal_length_ids(features)
        keys = _batch_keys(keys, len(features))
        batch = self.corrupt(ids, keys)
        if self.return_tensors == "np":
            batch = {k: v.numpy() for k, v in batch.items()}
        return batch

    def corrupt(self, ids: torch.Tensor, keys: torch.Tensor, seed: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """The masking alone, on ids' device: what DeviceMasker runs inside the training step."""
        from .t5 import t5_span_corruption, ul2_denoise

        tok = self.tokenizer
        common = dict(sentinel_ids=self.sentinel_ids, vocab_size=self.vocab_size, eos_token_id=tok.eos_token_id,
                      seed=self._seed if seed is None else seed, keys=keys, backend=self.backend)
        if self.denoisers is None:
            inputs, targets = t5_span_corruption(ids, noise_density=self.noise_density,
                                                 mean_noise_span_length=self.mean_noise_span_length, **common)
            return {"input_ids": inputs, "attention_mask": torch.ones_like(inputs), "labels": targets}
        out = ul2_denoise(ids, denoisers=self.denoisers, weights=self.weights, pad_token_id=tok.pad_token_id, **common)
        attention = torch.arange(out.inputs.shape[1], device=ids.device) < out.input_lengths.reshape(-1, 1)
        valid = torch.arange(out.targets.shape[1], device=ids.device) < out.target_lengths.reshape(-1, 1)
        return {"input_ids": out.inputs, "attention_mask": attention.to(out.inputs.dtype),
                "labels": torch.where(valid, out.targets, -100)}


def _equal_length_ids(features: list) -> torch.Tensor:
    if not isinstance(features, Sequence) or len(features) == 0:
        raise ValueError("features: expected a non-empty list of features")
    rows = []
    for i, feature in enumerate(features):
        if isinstance(feature, Mapping):
            if "input_ids" not in feature:
                raise ValueError(f"features: feature {i} has no 'input_ids' (keys: {sorted(feature.keys())})")
            feature = feature["input_ids"]
        rows.append(_id_row(i, feature))
    lengths = {len(row) for row in rows}
    if len(lengths) != 1:
        raise ValueError(f"input_ids: span corruption needs rows of one length (fixed chunks of the corpus), got lengths "
                         f"{sorted(lengths)[:4]}; see fastmask.t5_lengths")
    return _pad(rows, lengths.pop(), 0, False, "input_ids")


def _batch_keys(keys, count: int) -> torch.Tensor:
    """Explicit keys, else IndexedDataset's, else fresh random ones (docs/collators.md)."""
    if keys is not None:
        keys = as_keys(keys).to(torch.int64).reshape(-1)
        if keys.shape[0] != count:
            raise ValueError(f"keys: expected {count} sample keys, got {keys.shape[0]}")
        return keys
    fetched = _take(count)
    if fetched is not None:
        return torch.tensor(fetched, dtype=torch.int64)
    return torch.randint(0, 1 << 62, (count,), dtype=torch.int64)


# --- images and video ---------------------------------------------------------------------------------

_IMAGE_MODES = ("block", "simmim", "mae", "tube")


class ImageMaskCollator:
    """Stacks pixel_values and adds a patch mask per image (docs/image.md), reproducible per sample
    like MLMCollator. `mode` and its options, each passed to the fastmask op of that name:

    - "block" (BEiT, fastmask.block_mask): height, width, num_masking_patches, min_num_patches, ...
    - "simmim" (fastmask.simmim_mask): input_size, mask_patch_size, model_patch_size, mask_ratio
    - "tube" (VideoMAE, fastmask.tube_mask): frames, height, width, mask_ratio
      -> "bool_masked_pos" [B, patches] (True = masked), the argument of BeitForMaskedImageModeling,
      ViTForMaskedImageModeling and VideoMAEForPreTraining;
    - "mae" (fastmask.random_patch_mask): num_patches, mask_ratio -> "noise" [B, patches], the argument
      of ViTMAEForPreTraining, whose argsort is fastmask's shuffle (so the model keeps exactly the
      patches fastmask keeps).

    Features are dicts with "pixel_values" (tensors or numpy arrays of one shape); other keys are
    stacked (e.g. labels)."""

    def __init__(self, mode: str = "block", *, seed: Optional[int] = None, return_tensors: str = "pt",
                 backend: str = "auto", **options):
        if mode not in _IMAGE_MODES:
            raise ValueError(f"mode: expected one of {', '.join(_IMAGE_MODES)}, got {mode!r}")
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors: expected 'pt' or 'np', got {return_tensors!r}")
        self.mode, self.options, self.return_tensors, self.backend = mode, options, return_tensors, backend
        self._seed = resolve_seed(seed, torch.device("cpu"))
        self.seed = int(self._seed) if seed is None else seed
        self.mask(torch.zeros(1, dtype=torch.int64), self._seed)  # checks the options now, not at the first batch

    def __call__(self, features: list, keys=None) -> dict[str, Any]:
        batch = _stack_images(features)
        batch.update(self.mask(_batch_keys(keys, len(features)), self._seed))
        if self.return_tensors == "np":
            batch = {k: v.numpy() for k, v in batch.items()}
        return batch

    def mask(self, keys: torch.Tensor, seed: torch.Tensor) -> dict[str, torch.Tensor]:
        """The mask entries alone, on keys' device: what DeviceMasker runs inside the training step."""
        from . import image

        common = dict(seed=seed, keys=keys, backend=self.backend, device=keys.device)
        batch = keys.shape[0]
        if self.mode == "mae":
            shuffle = image.random_patch_mask(batch, **self.options, **common)
            return {"noise": shuffle.ids_restore.to(torch.float32)}  # argsort(noise) = fastmask's shuffle
        make = {"block": image.block_mask, "simmim": image.simmim_mask, "tube": image.tube_mask}[self.mode]
        return {"bool_masked_pos": make(batch, **self.options, **common).reshape(batch, -1)}


def _stack_images(features: list) -> dict[str, torch.Tensor]:
    if not isinstance(features, Sequence) or len(features) == 0:
        raise ValueError("features: expected a non-empty list of features")
    for i, feature in enumerate(features):
        if not isinstance(feature, Mapping):
            raise ValueError(f"features: feature {i} is a {type(feature).__name__}; expected dicts with 'pixel_values'")
        if "pixel_values" not in feature:
            raise ValueError(f"features: feature {i} has no 'pixel_values' (keys: {sorted(feature.keys())})")
    return {key: _stack(key, [f.get(key) for f in features]) for key in features[0]}


# --- masking on the device, inside the training step ---------------------------------------------------

KEYS = "sample_keys"  # the batch entry that carries the keys from the padding collator to the masker


class _PaddingCollator:
    """What DataLoader workers run under DeviceMasker: padding (C++) and the sample keys, no masking."""

    def __init__(self, config):
        self.config = config

    def __call__(self, features: list, keys=None) -> dict[str, torch.Tensor]:
        if isinstance(self.config, MLMCollator):
            batch = self.config._collate(features)
        elif isinstance(self.config, ImageMaskCollator):
            batch = _stack_images(features)
        else:
            batch = {"input_ids": _equal_length_ids(features)}
        batch[KEYS] = _batch_keys(keys, len(features))
        return batch


class DeviceMasker:
    """Masking moved into the training step, on the batch's device: wrap a collator's configuration
    (MLMCollator, T5SpanCorruptionCollator or ImageMaskCollator), give DataLoader `masker.collator()` (it only pads and
    adds the sample keys as batch["sample_keys"]), then call `batch = masker(batch)` after moving the
    batch to the GPU. The masker removes the keys and masks in one kernel launch per op, with no host
    sync, so it runs under torch.compile and CUDA graph capture; model(**batch) sees only model inputs.
    Masks equal the wrapped collator's for the same keys (docs/collators.md)."""

    def __init__(self, config):
        if not isinstance(config, (MLMCollator, T5SpanCorruptionCollator, ImageMaskCollator)):
            raise ValueError("config: expected an MLMCollator, a T5SpanCorruptionCollator or an ImageMaskCollator, "
                             f"got {type(config).__name__}")
        self.config = config
        self._seeds: dict[torch.device, torch.Tensor] = {}

    def collator(self) -> _PaddingCollator:
        return _PaddingCollator(self.config)

    def _seed(self, device: torch.device) -> torch.Tensor:
        """The configuration's seed on `device`, copied once (a copy inside a captured graph would fail)."""
        if device not in self._seeds:
            self._seeds[device] = self.config._seed.to(device)
        return self._seeds[device]

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        if KEYS not in batch:
            raise ValueError(f"batch: no '{KEYS}'; collate with DeviceMasker.collator(), which adds each sample's key")
        batch = dict(batch)
        keys = batch.pop(KEYS)
        name = "pixel_values" if isinstance(self.config, ImageMaskCollator) else "input_ids"
        data = batch.get(name)
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"batch: expected '{name}' as a tensor (the padding collator's output), got "
                             f"{type(data).__name__ if name in batch else 'none'} (keys: {sorted(batch)})")
        if not isinstance(keys, torch.Tensor) or keys.device != data.device:
            where = keys.device if isinstance(keys, torch.Tensor) else type(keys).__name__
            raise ValueError(f"{KEYS}: expected the keys on the batch's device {data.device}, got {where}; move the "
                             "whole batch (keys included) to the device before masking")
        seed = self._seed(data.device)
        if isinstance(self.config, MLMCollator):
            return self.config._mask(batch, keys, seed)
        if isinstance(self.config, ImageMaskCollator):
            return {**batch, **self.config.mask(keys, seed)}
        return self.config.corrupt(data, keys, seed)
