"""Family "permutation": XLNet's permutation-LM batch. On the CPU, "plm_collate": collating features
into input_ids, perm_mask, target_mapping and labels, fastmask's PLMCollator (perm_mask in HF's
float32, and in bool) against HF transformers' DataCollatorForPermutationLanguageModeling, same
features, same process. Features are fixed-length chunks of real English text (the whole_word
family's corpus through the BERT WordPiece tokenizer of all-MiniLM-L6-v2), as run_plm.py groups
texts into blocks. On CUDA, "permutation_lm": the op on a [B, L] batch on the device, Triton against
the pure-torch reference in eager mode. Work units are tokens."""
from __future__ import annotations

import warnings

import torch

from . import Case
from .masking import _missing_peer, tokenizer
from .words import corpus

SHAPES = [(32, 512)]
CUDA_SHAPES = [(32, 512), (64, 1024)]


def make_features(rows: int, length: int) -> list[dict]:
    """rows consecutive chunks of `length` tokens of the corpus (wrapping around)."""
    ids, _, _ = corpus()
    need = rows * length
    ids = ids.repeat(-(-need // ids.numel()))[:need].reshape(rows, length)
    return [{"input_ids": row} for row in ids.tolist()]


def cases(device: str, quick: bool) -> list[Case]:
    missing = _missing_peer()
    if missing is not None:
        warnings.warn(f"permutation benchmarks skipped: {missing}", stacklevel=2)
        return []
    if device.startswith("cuda"):
        return [_op_case(device, rows, length) for rows, length in CUDA_SHAPES]
    return [_collate_case(rows, length) for rows, length in SHAPES]


def _collate_case(rows: int, length: int) -> Case:
    from transformers import DataCollatorForPermutationLanguageModeling

    from ...collators import PLMCollator

    tok = tokenizer()
    features = make_features(rows, length)
    hf = DataCollatorForPermutationLanguageModeling(tok)
    ours = PLMCollator(tok, seed=0)
    ours_bool = PLMCollator(tok, seed=0, dtype=torch.bool)
    providers = {"hf.DataCollatorForPermutationLanguageModeling": lambda: hf(features),
                 "fastmask.PLMCollator": lambda: ours(features),
                 "fastmask.PLMCollator(dtype=bool)": lambda: ours_bool(features)}
    return Case("permutation", "plm_collate", f"{rows}x{length}", providers, "hf.DataCollatorForPermutationLanguageModeling",
                rows * length, "tokens", repeats=9)


def _op_case(device: str, rows: int, length: int) -> Case:
    from ...permutation import permutation_lm

    tok = tokenizer()
    ids = torch.tensor([f["input_ids"] for f in make_features(rows, length)], device=device)
    keys = torch.arange(rows, device=device)
    seed = torch.tensor(0, device=device)
    common = dict(mask_token_id=tok.mask_token_id, seed=seed, keys=keys, special_ids=tok.all_special_ids,
                  pad_token_id=tok.pad_token_id)
    providers = {"torch-reference": lambda: permutation_lm(ids, backend="reference", **common),
                 "fastmask.triton": lambda: permutation_lm(ids, backend="triton", **common),
                 "fastmask.triton(dtype=bool)": lambda: permutation_lm(ids, backend="triton", dtype=torch.bool, **common)}
    # written: perm_mask (float32) and the ids and labels; read: the ids
    moved = rows * length * length * 4 + 3 * rows * length * 8
    return Case("permutation", "permutation_lm", f"{rows}x{length}", providers, "torch-reference", rows * length, "tokens",
                bytes=moved)
