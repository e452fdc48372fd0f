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

import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np
import torch

from ._seed import as_keys, resolve_seed
from ._validate import check_int, check_probability
from .attention import FORMATS, attention_mask, unilm_objectives
from .functional import mask_tokens, pad_sequences

__all__ = ["DeviceMasker", "ImageMaskCollator", "IndexedDataset", "MLMCollator", "PLMCollator", "PackingCollator",
           "T5SpanCorruptionCollator", "UL2_MODE_TOKENS", "UniLMCollator", "sample_keys", "ul2_mode"]

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
    """[len(rows), length] (or [.., width] for rows of pairs, as offset_mapping): fastmask.functional.pad_sequences."""
    return pad_sequences(rows, length, pad_value=pad_value, left=left, dtype=dtype, width=width, name=name)


# Per-token keys padded as the tokenizer pads them; the value None means the tokenizer's own.
_TOKEN_KEYS = {"input_ids": None, "attention_mask": 0, "token_type_ids": None, "special_tokens_mask": 1, "word_ids": -1}


def _check_tokenizer(tokenizer) -> None:
    """A collator needs the tokenizer object (its vocabulary size, special and pad ids), not a name."""
    needed = ("all_special_ids", "pad_token_id", "__len__")
    if isinstance(tokenizer, (str, bytes, os.PathLike)) or not all(hasattr(tokenizer, a) for a in needed):
        named = isinstance(tokenizer, (str, os.PathLike))
        hint = " (load it with transformers.AutoTokenizer.from_pretrained(name))" if named else ""
        raise TypeError(f"tokenizer: expected a tokenizer object (a transformers PreTrainedTokenizerBase), got "
                        f"{type(tokenizer).__name__}{hint}")


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
        _check_tokenizer(tokenizer)
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
        self._counter = _CallCounter()

        self.vocab_size = len(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.special_ids = sorted({i for i in tokenizer.all_special_ids if 0 <= i < self.vocab_size})
        self.mask_token_id = tokenizer.mask_token_id if mlm else None
        self.model_max_length = getattr(tokenizer, "model_max_length", None)
        self._word_table = None
        self._warned_long = False
        # Random replacements draw from the tokenizer's non-special ids; a vocabulary of special tokens
        # only has none, and then draws from the whole vocabulary as HF does (a table, cached per device).
        self._replace_ids: dict[torch.device, torch.Tensor] = {}
        self._all_ids_fallback = (mlm and random_replace_prob > 0
                                  and len(set(self.special_ids) | {self.mask_token_id}) >= self.vocab_size)
        if self._all_ids_fallback:
            warnings.warn(f"MLMCollator: every id of this tokenizer ({self.vocab_size}) is a special token; random "
                          "replacements draw from the whole vocabulary, as HF's collator does", UserWarning, stacklevel=2)

    # -- HF's entry points ---------------------------------------------------------------------------

    def __call__(self, features: list, keys=None, return_tensors: Optional[str] = None) -> dict[str, Any]:
        """Collate and mask `features`. `keys` (int64 [B]) overrides the sample keys; by default they
        come from IndexedDataset (see sample_keys), else from the collator's call counter
        (docs/collators.md#reproducible-and-resumable)."""
        batch = self._collate(features)
        batch = self._mask(batch, _batch_keys(keys, len(features), self._counter))
        if (return_tensors or self.return_tensors) == "np":
            batch = {k: v.numpy() for k, v in batch.items()}
        return batch

    # -- DeviceMasker's protocol (Maskable) ---------------------------------------------------------

    batch_key = "input_ids"

    def pad(self, features: list) -> dict[str, torch.Tensor]:
        return self._collate(features)

    def mask_batch(self, batch: dict, keys: torch.Tensor, seed: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._mask(batch, keys, seed)

    def seed_tensor(self) -> torch.Tensor:
        return self._seed

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
        if (not self._warned_long and self.model_max_length is not None and length > self.model_max_length
                and max(lengths) > self.model_max_length):
            self._warned_long = True  # HF collates such rows too; the model will likely reject them
            longest = int(np.argmax(lengths))
            warnings.warn(f"input_ids: feature {longest} has {lengths[longest]} tokens, more than the model allows "
                          f"(tokenizer.model_max_length = {self.model_max_length}); tokenize with truncation=True "
                          "(warned once per collator)", UserWarning, stacklevel=3)
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
            ids, seed=self._seed if seed is None else seed, keys=keys, mask_token_id=self.mask_token_id, **self._vocabulary(ids),
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

    def _vocabulary(self, ids: torch.Tensor) -> dict:
        """vocab_size (random ids: the tokenizer's non-special ids, ids checked against it) or, for ids
        outside the tokenizer's range (the model's vocabulary may be larger; HF collates them) or a
        vocabulary of special tokens only, a table of the ids to draw from and no range check. Both
        draw the same id from the same word. Ids are inspected in eager mode on the CPU only (no device
        sync, no data-dependent branch in a compiled graph)."""
        outside = (ids.device.type == "cpu" and ids.numel() > 0 and not torch.compiler.is_compiling()
                   and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size))
        if not (outside or self._all_ids_fallback):
            return {"vocab_size": self.vocab_size}
        if ids.device not in self._replace_ids:
            specials = set() if self._all_ids_fallback else set(self.special_ids) | {self.mask_token_id}
            table = [i for i in range(self.vocab_size) if i not in specials]
            self._replace_ids[ids.device] = torch.tensor(table, dtype=torch.int64, device=ids.device)
        return {"replace_ids": self._replace_ids[ids.device]}

    def _table(self) -> torch.Tensor:
        if self._word_table is None:
            from .words import word_start_table

            self._word_table = word_start_table(self.tokenizer)
        return self._word_table


class PLMCollator:
    """HF's DataCollatorForPermutationLanguageModeling (XLNet), same arguments and outputs (input_ids,
    perm_mask, target_mapping, labels), by fastmask.permutation_lm (docs/permutation.md): padding in
    C++, one kernel instead of a Python loop per row, keys from IndexedDataset as for MLMCollator.

    Extras (keyword-only): seed, dtype (of perm_mask; HF: float32; XLNet takes bool alike, 4x less
    memory to write and move), backend. target_mapping is HF's float32 identity, as an expanded view."""

    def __init__(self, tokenizer, plm_probability: float = 1 / 6, max_span_length: int = 5, return_tensors: str = "pt",
                 *, seed: Optional[int] = None, dtype: torch.dtype = torch.float32, backend: str = "auto"):
        from .permutation import context_lengths

        _check_tokenizer(tokenizer)
        if getattr(tokenizer, "mask_token", None) is None:
            raise ValueError("This tokenizer does not have a mask token which is necessary for permutation language "
                             "modeling. Please add a mask token if you want to use this tokenizer.")
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors: expected 'pt' or 'np', got {return_tensors!r}")
        plm_probability = check_probability("plm_probability", plm_probability)
        if plm_probability == 0:
            raise ValueError("plm_probability: expected a probability in (0, 1], got 0.0")
        context_lengths(plm_probability, check_int("max_span_length", max_span_length, 1, 1 << 16))  # checks now
        self.tokenizer, self.plm_probability, self.max_span_length = tokenizer, plm_probability, max_span_length
        self.return_tensors, self.dtype, self.backend = return_tensors, dtype, backend
        self._seed = resolve_seed(seed, torch.device("cpu"))
        self.seed = int(self._seed) if seed is None else seed
        self._counter = _CallCounter()
        self.pad_token_id = tokenizer.pad_token_id
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.special_ids = sorted(i for i in set(tokenizer.all_special_ids) if i >= 0)

    def __call__(self, features: list, keys=None, return_tensors: Optional[str] = None) -> dict[str, Any]:
        from .permutation import permutation_lm

        if not isinstance(features, Sequence) or len(features) == 0:
            raise ValueError("features: expected a non-empty list of features")
        rows = [f["input_ids"] if isinstance(f, Mapping) else f for f in features]
        lengths = [len(row) for row in rows]
        length = max(lengths)
        if any(n != length for n in lengths) and self.pad_token_id is None:
            raise ValueError(f"You are attempting to pad samples but the tokenizer you are using "
                             f"({type(self.tokenizer).__name__}) does not have a pad token.")
        ids = _pad(rows, length, self.pad_token_id or 0, self.left, "input_ids")
        out = permutation_lm(ids, mask_token_id=self.tokenizer.mask_token_id, seed=self._seed,
                             keys=_batch_keys(keys, len(features), self._counter), plm_probability=self.plm_probability,
                             max_span_length=self.max_span_length, special_ids=self.special_ids,
                             pad_token_id=self.pad_token_id, dtype=self.dtype, backend=self.backend)
        batch = out._asdict()
        if (return_tensors or self.return_tensors) == "np":
            batch = {k: v.numpy() for k, v in batch.items()}
        return batch


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
    builds decoder_input_ids from the labels. Keys come from IndexedDataset as for MLMCollator.

    UL2 (denoisers=, e.g. fastmask.UL2_DENOISERS, the paper's seven denoisers, equal weights unless
    weights= says otherwise): mode_tokens={"R": id, "X": id, "S": id} puts the paradigm token of each
    row's denoiser family (ul2_mode; UL2's [NLU], [NLG], [S2S], see UL2_MODE_TOKENS) first in its
    inputs; return_denoiser=True adds batch["denoiser"], each row's index into denoisers (int64 [B]),
    which must be popped before model(**batch)."""

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
        mode_tokens: Optional[Mapping] = None,
        return_denoiser: bool = False,
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
        if (mode_tokens is not None or return_denoiser) and denoisers is None:
            raise ValueError("mode_tokens, return_denoiser: UL2 options; give denoisers= (e.g. fastmask.UL2_DENOISERS)")
        self.return_denoiser = return_denoiser
        self._modes = None if mode_tokens is None else _mode_table(denoisers, mode_tokens, self.vocab_size)

    def __call__(self, features: list, keys=None) -> dict[str, Any]:
        ids = _equal_length_ids(features)
        keys = _batch_keys(keys, len(features))
        batch = self.corrupt(ids, keys)
        if self.return_tensors == "np":
            batch = {k: v.numpy() for k, v in batch.items()}
        return batch

    # DeviceMasker's protocol (Maskable)
    batch_key = "input_ids"

    def pad(self, features: list) -> dict[str, torch.Tensor]:
        return {"input_ids": _equal_length_ids(features)}

    def mask_batch(self, batch: dict, keys: torch.Tensor, seed: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.corrupt(batch["input_ids"], keys, seed)

    def seed_tensor(self) -> torch.Tensor:
        return self._seed

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
        inputs, input_lengths = out.inputs, out.input_lengths
        if self._modes is not None:  # the paradigm token of each row's denoiser family, first in its inputs
            modes = self._modes.to(ids.device).to(inputs.dtype).index_select(0, out.denoiser)
            inputs, input_lengths = torch.cat([modes.reshape(-1, 1), inputs], 1), input_lengths + 1
        attention = torch.arange(inputs.shape[1], device=ids.device) < input_lengths.reshape(-1, 1)
        valid = torch.arange(out.targets.shape[1], device=ids.device) < out.target_lengths.reshape(-1, 1)
        batch = {"input_ids": inputs, "attention_mask": attention.to(inputs.dtype),
                 "labels": torch.where(valid, out.targets, -100)}
        if self.return_denoiser:
            batch["denoiser"] = out.denoiser  # an index into denoisers; remove it before model(**batch)
        return batch


# UL2's paradigm tokens (Tay et al., 2023): R (regular spans) -> [NLU], X (extreme: long spans or
# high density) -> [NLG], S (prefix LM) -> [S2S]. X is "spans of 12 tokens or more, or 30% noise or more".
UL2_MODE_TOKENS = {"R": "[NLU]", "X": "[NLG]", "S": "[S2S]"}


def ul2_mode(denoiser) -> str:
    """"R", "X" or "S": the UL2 paradigm of one denoiser ((mean_noise_span_length, noise_density) or ("S", density))."""
    if denoiser[0] == "S":
        return "S"
    mean, density = denoiser
    return "X" if mean >= 12 or density >= 0.3 else "R"


def _mode_table(denoisers, mode_tokens, vocab_size: int) -> torch.Tensor:
    """int64 [len(denoisers)]: the mode token id of each denoiser, from {"R": id, "X": id, "S": id}."""
    if not isinstance(mode_tokens, Mapping):
        raise ValueError(f"mode_tokens: expected a dict {{'R': id, 'X': id, 'S': id}}, got {type(mode_tokens).__name__}")
    ids = []
    for denoiser in denoisers:
        mode = ul2_mode(denoiser)
        if mode not in mode_tokens:
            raise ValueError(f"mode_tokens: no token for mode {mode!r} (denoiser {denoiser!r}); expected keys R, X, S "
                             f"(UL2 uses {UL2_MODE_TOKENS[mode]} for {mode})")
        ids.append(check_int(f"mode_tokens[{mode!r}]", mode_tokens[mode], 0, vocab_size))
    return torch.tensor(ids, dtype=torch.int64)


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


def _batch_keys(keys, count: int, counter: Optional["_CallCounter"] = None) -> torch.Tensor:
    """Explicit keys, else IndexedDataset's, else the counter's (or, without one, fresh random ones)
    (docs/collators.md)."""
    if keys is not None:
        keys = as_keys(keys).to(torch.int64).reshape(-1)
        if keys.shape[0] != count:
            raise ValueError(f"keys: expected {count} sample keys, got {keys.shape[0]}")
        return keys
    fetched = _take(count)
    if fetched is not None:
        return torch.tensor(fetched, dtype=torch.int64)
    if counter is not None:
        return counter.next_keys(count)
    return torch.randint(0, 1 << 62, (count,), dtype=torch.int64)


_COUNTER_ROW_BITS, _COUNTER_CALL_BITS, _COUNTER_WORKER_BITS = 20, 28, 15


class _CallCounter:
    """Sample keys without an index: ~((worker << 48) | (call << 20) | row), a pure function of the
    collating process's DataLoader worker (0 in the main process, id + 1 in worker id), the number of
    calls this process made before (modulo 2^28) and the row. No global random state, so the same
    seed gives the same batches in a fresh process, whatever torch's generator holds, as HF's own
    generator seeded with seed (+ worker id) does; the key is negative, never an IndexedDataset key.
    A new process (a forked or spawned worker) starts counting from 0, as HF's generator restarts."""

    def __init__(self):
        self._pid, self._calls = None, 0

    def __getstate__(self):
        return {"_pid": None, "_calls": 0}  # a pickled copy (a spawned worker) starts afresh

    def next_keys(self, count: int) -> torch.Tensor:
        if count >= 1 << _COUNTER_ROW_BITS:
            raise ValueError(f"features: {count} features in one batch; without IndexedDataset keys a batch holds at "
                             f"most {(1 << _COUNTER_ROW_BITS) - 1}")
        if self._pid != os.getpid():
            self._pid, self._calls = os.getpid(), 0
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else (info.id + 1) % (1 << _COUNTER_WORKER_BITS)
        call = self._calls % (1 << _COUNTER_CALL_BITS)
        self._calls += 1
        base = (worker << (_COUNTER_CALL_BITS + _COUNTER_ROW_BITS)) | (call << _COUNTER_ROW_BITS)
        return ~(base | torch.arange(count, dtype=torch.int64))


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
    stacked (e.g. labels).

    The patch grid (height/width, num_patches, input_size/model_patch_size, frames) can come from the
    model instead of by hand: `model_config=` (a HF config with patch_size and image_size; VideoMAE's
    also num_frames and tubelet_size) or `patch_size=` with `image_size=`; with `patch_size=` alone the
    grid is read from each batch's pixel_values ([B, C, H, W]; video [B, T, C, H, W]). Images whose
    grid differs from the model's, sizes not a multiple of the patch, or grid options that contradict
    it are ValueErrors."""

    def __init__(self, mode: str = "block", *, seed: Optional[int] = None, return_tensors: str = "pt",
                 backend: str = "auto", patch_size=None, image_size=None, model_config=None, **options):
        if mode not in _IMAGE_MODES:
            raise ValueError(f"mode: expected one of {', '.join(_IMAGE_MODES)}, got {mode!r}")
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors: expected 'pt' or 'np', got {return_tensors!r}")
        self.mode, self.options, self.return_tensors, self.backend = mode, options, return_tensors, backend
        self._geometry = _PatchGeometry.of(mode, patch_size, image_size, model_config, options)
        if self._geometry is not None and self._geometry.image_size is not None:
            self.options = self._geometry.options(options, *self._geometry.image_size, self._geometry.frames)
        self._seed = resolve_seed(seed, torch.device("cpu"))
        self.seed = int(self._seed) if seed is None else seed
        if self._geometry is None or self._geometry.image_size is not None:
            self.mask(torch.zeros(1, dtype=torch.int64), self._seed)  # checks the options now, not at the first batch

    def __call__(self, features: list, keys=None) -> dict[str, Any]:
        batch = _stack_images(features)
        options = self.options
        if self._geometry is not None:
            options = self._geometry.check_images(batch["pixel_values"], self.options)
        batch.update(self._mask(_batch_keys(keys, len(features)), self._seed, options))
        if self.return_tensors == "np":
            batch = {k: v.numpy() for k, v in batch.items()}
        return batch

    # DeviceMasker's protocol (Maskable)
    batch_key = "pixel_values"

    def pad(self, features: list) -> dict[str, torch.Tensor]:
        return _stack_images(features)

    def mask_batch(self, batch: dict, keys: torch.Tensor, seed: torch.Tensor) -> dict[str, torch.Tensor]:
        return {**batch, **self.mask(keys, seed)}

    def seed_tensor(self) -> torch.Tensor:
        return self._seed

    def mask(self, keys: torch.Tensor, seed: torch.Tensor) -> dict[str, torch.Tensor]:
        """The mask entries alone, on keys' device: what DeviceMasker runs inside the training step."""
        if self._geometry is not None and self._geometry.image_size is None:
            raise ValueError("ImageMaskCollator: the patch grid comes from each batch's pixel_values (patch_size without "
                             "image_size); give image_size= or model_config= to mask without them (DeviceMasker)")
        return self._mask(keys, seed, self.options)

    def _mask(self, keys: torch.Tensor, seed: torch.Tensor, options: dict) -> dict[str, torch.Tensor]:
        from . import image

        common = dict(seed=seed, keys=keys, backend=self.backend, device=keys.device)
        batch = keys.shape[0]
        if self.mode == "mae":
            shuffle = image.random_patch_mask(batch, **options, **common)
            return {"noise": shuffle.ids_restore.to(torch.float32)}  # argsort(noise) = fastmask's shuffle
        make = {"block": image.block_mask, "simmim": image.simmim_mask, "tube": image.tube_mask}[self.mode]
        return {"bool_masked_pos": make(batch, **options, **common).reshape(batch, -1)}


class _PatchGeometry:
    """A model's patching (patch size, image size, video frames per tubelet) and the grid options of
    each ImageMaskCollator mode that follow from an image size."""

    def __init__(self, mode, patch, image_size, frames, tubelet):
        self.mode, self.patch, self.image_size, self.frames, self.tubelet = mode, patch, image_size, frames, tubelet

    @classmethod
    def of(cls, mode, patch_size, image_size, config, options):
        frames, tubelet = None, 1
        if config is not None:
            if getattr(config, "patch_size", None) is None:
                raise ValueError(f"model_config: {type(config).__name__} has no patch_size")
            patch_size = config.patch_size if patch_size is None else patch_size
            image_size = getattr(config, "image_size", None) if image_size is None else image_size
            if mode == "tube":
                frames, tubelet = getattr(config, "num_frames", None), getattr(config, "tubelet_size", 1)
        if patch_size is None:
            if image_size is not None:
                raise ValueError("image_size: give patch_size (or model_config) with it")
            return None
        patch = _pair("patch_size", patch_size)
        size = None if image_size is None else _pair("image_size", image_size)
        if mode == "tube":
            tubelet = check_int("tubelet_size", options.pop("tubelet_size", tubelet), 1, 1 << 20)
        return cls(mode, patch, size, frames, tubelet)

    def grid(self, height: int, width: int, name: str) -> tuple[int, int]:
        if height % self.patch[0] or width % self.patch[1]:
            raise ValueError(f"{name}: {height}x{width} images are not a whole number of {self.patch[0]}x{self.patch[1]} "
                             "patches (patch_size)")
        return height // self.patch[0], width // self.patch[1]

    def options(self, given: dict, height: int, width: int, frames, name: str = "image_size") -> dict:
        """The mode's grid options for images of height x width (and `frames` video frames), merged with
        the given ones; a given option that contradicts them is a ValueError."""
        rows, cols = self.grid(height, width, name)
        if self.mode == "block":
            grid = {"height": rows, "width": cols}
        elif self.mode == "mae":
            grid = {"num_patches": rows * cols}
        elif self.mode == "simmim":
            grid = {"input_size": (height, width), "model_patch_size": self.patch[0]}
            if self.patch[0] != self.patch[1]:
                raise ValueError(f"patch_size: SimMIM masks square patches, got {self.patch}")
        elif frames is None:  # frames (tubelets) as given, or tube_mask's error for their absence
            grid = {"height": rows, "width": cols}
        else:
            if frames % self.tubelet:
                raise ValueError(f"{name}: {frames} frames are not a whole number of tubelets of {self.tubelet}")
            grid = {"frames": frames // self.tubelet, "height": rows, "width": cols}
        for key, value in grid.items():
            if key in given and _pair_or_int(given[key]) != _pair_or_int(value):
                raise ValueError(f"{key}: {given[key]!r} does not fit the model's patch grid ({name} {height}x{width}, "
                                 f"patch_size {self.patch[0]}x{self.patch[1]}: {key} = {value!r})")
        return {**given, **grid}

    def check_images(self, pixels: torch.Tensor, options: dict) -> dict:
        """The grid options for this batch's pixel_values; with a known image size they must match it."""
        video = self.mode == "tube"
        if pixels.dim() != (5 if video else 4):
            raise ValueError(f"pixel_values: expected [B, {'T, ' if video else ''}C, H, W], got {tuple(pixels.shape)}")
        height, width = pixels.shape[-2:]
        frames = pixels.shape[1] if video else None
        if self.image_size is None:
            return self.options(options, height, width, frames, "pixel_values")
        if (height, width) != self.image_size or (video and self.frames is not None and frames != self.frames):
            grid = self.grid(height, width, "pixel_values")
            raise ValueError(f"pixel_values: {height}x{width} images make a {grid[0]}x{grid[1]} patch grid, the model's "
                             f"is {self.image_size[0] // self.patch[0]}x{self.image_size[1] // self.patch[1]} "
                             f"(image_size {self.image_size[0]}x{self.image_size[1]}"
                             f"{f', {self.frames} frames' if video and self.frames else ''}); resize the images")
        return options


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return check_int(name, value[0], 1, 1 << 20), check_int(name, value[1], 1, 1 << 20)
    value = check_int(name, value, 1, 1 << 20)
    return value, value


def _pair_or_int(value):
    return tuple(value) if isinstance(value, (tuple, list)) else value


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


@runtime_checkable
class Maskable(Protocol):
    """What DeviceMasker needs of a collator configuration: split its call into the padding that
    DataLoader workers run and the masking that the training step runs on the batch's device."""

    batch_key: str  # the batch entry whose device the masking runs on

    def pad(self, features: list) -> dict[str, torch.Tensor]:
        """The batch without masking (what the collator returns before it masks)."""

    def mask_batch(self, batch: dict, keys: torch.Tensor, seed: torch.Tensor) -> dict[str, torch.Tensor]:
        """The masked batch, on the device of batch[batch_key], keys and seed; the collator's output."""

    def seed_tensor(self) -> torch.Tensor:
        """The collator's seed as an int64 0-d CPU tensor."""


class _PaddingCollator:
    """What DataLoader workers run under DeviceMasker: padding (C++) and the sample keys, no masking."""

    def __init__(self, config: Maskable):
        self.config = config

    def __call__(self, features: list, keys=None) -> dict[str, torch.Tensor]:
        batch = self.config.pad(features)
        batch[KEYS] = _batch_keys(keys, len(features))
        return batch


class DeviceMasker:
    """Masking moved into the training step, on the batch's device: wrap a collator's configuration
    (MLMCollator, T5SpanCorruptionCollator, ImageMaskCollator, or any Maskable), give DataLoader `masker.collator()` (it only pads and
    adds the sample keys as batch["sample_keys"]), then call `batch = masker(batch)` after moving the
    batch to the GPU. The masker removes the keys and masks in one kernel launch per op, with no host
    sync, so it runs under torch.compile and CUDA graph capture; model(**batch) sees only model inputs.
    Masks equal the wrapped collator's for the same keys (docs/collators.md)."""

    def __init__(self, config):
        if not isinstance(config, Maskable):
            raise ValueError("config: expected an MLMCollator, a T5SpanCorruptionCollator or an ImageMaskCollator "
                             f"(a fastmask.collators.Maskable), got {type(config).__name__}")
        self.config = config
        self._seeds: dict[torch.device, torch.Tensor] = {}

    def collator(self) -> _PaddingCollator:
        return _PaddingCollator(self.config)

    def _seed(self, device: torch.device) -> torch.Tensor:
        """The configuration's seed on `device`, copied once (a copy inside a captured graph would fail)."""
        if device not in self._seeds:
            self._seeds[device] = self.config.seed_tensor().to(device)
        return self._seeds[device]

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        if KEYS not in batch:
            raise ValueError(f"batch: no '{KEYS}'; collate with DeviceMasker.collator(), which adds each sample's key")
        batch = dict(batch)
        keys = batch.pop(KEYS)
        name = self.config.batch_key
        data = batch.get(name)
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"batch: expected '{name}' as a tensor (the padding collator's output), got "
                             f"{type(data).__name__ if name in batch else 'none'} (keys: {sorted(batch)})")
        if not isinstance(keys, torch.Tensor) or keys.device != data.device:
            where = keys.device if isinstance(keys, torch.Tensor) else type(keys).__name__
            raise ValueError(f"{KEYS}: expected the keys on the batch's device {data.device}, got {where}; move the "
                             "whole batch (keys included) to the device before masking")
        return self.config.mask_batch(batch, keys, self._seed(data.device))


# --- packing and UniLM (docs/attention.md) ------------------------------------------------------------


class PackingCollator:
    """HF's DataCollatorWithFlattening (transformers 5.x), same arguments and outputs: the examples in
    one row [1, T] (input_ids; labels with separator_id at each example's first token; position_ids
    restarting per example; seq_idx; cu_seq_lens_q/k and max_length_q/k for flash-attention varlen).

    Extras (keyword-only): mlm=True with tokenizer (and MLMCollator's masking arguments) corrupts each
    example by fastmask.mask_tokens before packing, keyed by its own sample key (IndexedDataset), so
    its mask does not depend on its neighbours; return_attention_mask="document_causal" (or any kind
    of fastmask.attention_mask with segment ids) adds the packed row's mask in mask_format."""

    def __init__(
        self,
        return_position_ids: bool = True,
        separator_id: int = -100,
        return_flash_attn_kwargs: bool = False,
        return_seq_idx: bool = False,
        position_ids_start: int = 0,
        return_tensors: str = "pt",
        *,
        tokenizer=None,
        mlm: bool = False,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        seed: Optional[int] = None,
        return_attention_mask: Optional[str] = None,
        mask_format: str = "bool",
        backend: str = "auto",
    ):
        if return_tensors not in ("pt", "np"):
            raise ValueError(f'return_tensors must be one of ("pt", "np"), {return_tensors=} not supported')
        if return_attention_mask is not None and not str(return_attention_mask).startswith("document_"):
            raise ValueError(f"return_attention_mask: expected 'document_causal' or 'document_bidirectional', "
                             f"got {return_attention_mask!r}")
        if mask_format not in FORMATS:
            raise ValueError(f"mask_format: expected one of {', '.join(FORMATS)}, got {mask_format!r}")
        self.return_position_ids, self.separator_id = return_position_ids, separator_id
        self.return_flash_attn_kwargs, self.return_seq_idx = return_flash_attn_kwargs, return_seq_idx
        self.position_ids_start, self.return_tensors = position_ids_start, return_tensors
        self.return_attention_mask, self.mask_format, self.backend = return_attention_mask, mask_format, backend
        self._mlm = None
        if mlm:
            if tokenizer is None:
                raise ValueError("tokenizer: mlm=True needs the tokenizer (mask token, special tokens, vocabulary)")
            self._mlm = MLMCollator(tokenizer, mlm_probability=mlm_probability, mask_replace_prob=mask_replace_prob,
                                    random_replace_prob=random_replace_prob, seed=seed, backend=backend)

    def __call__(self, features: list, return_tensors: Optional[str] = None, separator_id: Optional[int] = None,
                 keys=None) -> dict[str, Any]:
        return_tensors = return_tensors or self.return_tensors
        separator_id = self.separator_id if separator_id is None else separator_id
        if not isinstance(features, Sequence) or len(features) == 0:
            raise ValueError("features: expected a non-empty list of features")
        keys = _batch_keys(keys, len(features)) if self._mlm is not None else None
        kept = [i for i, f in enumerate(features) if len(f["input_ids"]) > 0]
        if not kept:
            raise ValueError("DataCollatorWithFlattening received a batch where every example is empty.")
        features = [features[i] for i in kept]
        rows = [_as_list(f["input_ids"]) for f in features]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
        starts = torch.cumsum(lengths, 0) - lengths
        total = int(lengths.sum())
        if self._mlm is not None:
            ids, labels = self._masked(features, rows, lengths, keys[kept])
        else:
            ids = torch.tensor([t for r in rows for t in r], dtype=torch.int64)
            labels = ids.clone() if "labels" not in features[0] else torch.tensor(
                [t for f in features for t in _as_list(f["labels"])], dtype=torch.int64)
            labels[starts] = separator_id
        batch = {"input_ids": ids.unsqueeze(0), "labels": labels.unsqueeze(0)}
        seq_idx = torch.repeat_interleave(torch.arange(len(rows), dtype=torch.int32), lengths, output_size=total)
        if self.return_position_ids:
            offsets = torch.repeat_interleave(starts, lengths, output_size=total)
            batch["position_ids"] = (torch.arange(total) - offsets + self.position_ids_start).unsqueeze(0)
        if self.return_seq_idx:
            batch["seq_idx"] = seq_idx.unsqueeze(0)
        if self.return_flash_attn_kwargs:
            cu = torch.zeros(len(rows) + 1, dtype=torch.int32)
            torch.cumsum(lengths, 0, out=cu[1:])
            batch["cu_seq_lens_q"] = batch["cu_seq_lens_k"] = cu
            batch["max_length_q"] = batch["max_length_k"] = int(lengths.max())
        if self.return_attention_mask is not None:
            batch["attention_mask"] = attention_mask(segment_ids=seq_idx.unsqueeze(0), kind=self.return_attention_mask,
                                                     format=self.mask_format, backend=self.backend)
        if return_tensors == "np":
            batch = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return batch

    def _masked(self, features, rows, lengths, keys):
        """Each example masked alone (padded to the longest, keyed by its sample key), then packed."""
        padded = self._mlm._collate([{"input_ids": r, **({"special_tokens_mask": f["special_tokens_mask"]}
                                                          if "special_tokens_mask" in f else {})}
                                     for r, f in zip(rows, features)])
        length = padded["input_ids"].shape[1]
        positions = torch.arange(length)
        valid = (positions >= length - lengths[:, None]) if self._mlm.left else (positions < lengths[:, None])
        padded["attention_mask"] = valid.to(torch.int64)
        masked = self._mlm._mask(padded, keys)
        return masked["input_ids"][valid].to(torch.int64), masked["labels"][valid].to(torch.int64)


def _as_list(values) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


class UniLMCollator(MLMCollator):
    """UniLM's pre-training batches (docs/attention.md#unilm-a-mixture-of-objectives): MLMCollator's
    padding and token corruption, and per row an objective (bidirectional, left-to-right, seq2seq)
    drawn from (seed, sample key) with `weights`, given as attention_mask ([B, 1, L, L] additive by
    default; mask_format "bool" or "flex" for the other forms), prefix_lengths and objective. The
    seq2seq source is segment A: the tokens with token_type_ids 0. Rows are padded on the right."""

    def __init__(self, tokenizer, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                 random_replace_prob: float = 0.1, pad_to_multiple_of: Optional[int] = None, return_tensors: str = "pt",
                 seed: Optional[int] = None, *, weights=None, mask_format: str = "additive", backend: str = "auto"):
        super().__init__(tokenizer, mlm=True, mlm_probability=mlm_probability, mask_replace_prob=mask_replace_prob,
                         random_replace_prob=random_replace_prob, pad_to_multiple_of=pad_to_multiple_of,
                         return_tensors=return_tensors, seed=seed, backend=backend)
        if self.left:
            raise ValueError("tokenizer: UniLMCollator pads on the right (a prefix is the start of a row); "
                             "set tokenizer.padding_side = 'right'")
        if mask_format not in FORMATS:
            raise ValueError(f"mask_format: expected one of {', '.join(FORMATS)}, got {mask_format!r}")
        self.weights, self.mask_format = weights, mask_format

    def __call__(self, features: list, keys=None, return_tensors: Optional[str] = None) -> dict[str, Any]:
        keys = _batch_keys(keys, len(features))
        batch = self._collate(features)
        ids = batch["input_ids"]
        lengths = torch.tensor([len(f["input_ids"] if isinstance(f, Mapping) else f) for f in features])
        types = batch.get("token_type_ids")
        source = None
        if types is not None:
            source = ((types == 0) & (torch.arange(ids.shape[1]) < lengths[:, None])).sum(1)
        objectives = unilm_objectives(ids.shape[0], length=ids.shape[1], source_lengths=source, weights=self.weights,
                                      seed=self._seed, keys=keys, backend=self.backend)
        batch = self._mask(batch, keys)
        batch["attention_mask"] = attention_mask(prefix_lengths=objectives.prefix_lengths, lengths=lengths,
                                                 length=ids.shape[1], kind="prefix_lm", format=self.mask_format,
                                                 backend=self.backend)
        batch["prefix_lengths"], batch["objective"] = objectives.prefix_lengths, objectives.objective
        if (return_tensors or self.return_tensors) == "np":
            batch = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return batch
