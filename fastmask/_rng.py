"""The integer policies of the random stream (docs/rng.md): version, purposes, thresholds, counts."""
from __future__ import annotations

import enum

# Bump when any op's bits change for the same (seed, key, position, purpose); the golden hashes in
# tests/test_rng.py pin version 1.
STREAM_VERSION = 1

TWO_32 = 1 << 32


class Purpose(enum.IntEnum):
    """The counter word c1: which decision a draw serves. Ops draw for distinct purposes so two
    decisions about one position never share bits. Append new purposes; never renumber."""

    RAW = 0  # fastmask.random_words' default
    MLM_TOKENS = 1  # mask_tokens: w0 select/predict, w1 corruption kind, w2 random id, w3 view
    WHOLE_WORD = 2  # mask_tokens with words: a word's w0 select/predict, w1 kind, w3 view at its first token; w2 random id per token
    SPANS = 3  # mask_spans, position = attempt: w0 start word, w1 length, w2 the span's kind; position = token: w3 random id (docs/spans.md)
    T5_SPANS = 4  # t5_span_corruption / ul2_denoise, position p = gaps 2p, 2p+1: w0/w1 noise cuts, w2/w3 non-noise cuts (docs/t5.md)
    UL2_DENOISER = 5  # ul2_denoise, position 0: w0 the row's denoiser, w1 the prefix-LM split (docs/t5.md)
    BLOCK_MASK = 6  # block_mask (BEiT), position = attempt: w0 block shape, w1 top, w2 left (docs/image.md)
    PATCH_SHUFFLE = 7  # random_patch_mask / simmim_mask / tube_mask, position = patch: w0 shuffle key (docs/image.md)
    BLOCK_TOP_UP = 8  # block_mask(exact=True), position = patch: w0 top-up key (docs/image.md)
    PERMUTATION = 9  # permutation_lm, position p: w0/w1 span p's length/start, w2 the order key of slot p (docs/permutation.md)
    UNILM_OBJECTIVE = 10  # unilm_objectives, position 0: w0 the row's objective (docs/attention.md)
    EDGES = 11  # mask_edges, position = edge // 4: word edge % 4 masks it (docs/graph.md)
    PATHS = 12  # mask_paths, position = node: w0 root; c1 = 12 + 2^16 t: walk step t (docs/graph.md)
    FEATURES = 13  # mask_features, position = d // 4 (column / row / element d): word d % 4 drops it (docs/graph.md)


def probability_threshold(p: float) -> int:
    """floor(p * 2^32) as a Python int in [0, 2^32]: a draw `bits < threshold` happens with
    probability exactly threshold / 2^32, so p = 1 selects everything and p = 0 nothing."""
    return int(p * TWO_32)  # p * 2^32 is exact in binary floating point; int() floors a non-negative value


def count(threshold: int, n: int) -> int:
    """The one count formula (docs/rng.md): round-half-up of n * threshold / 2^32, in integers.
    Every later op (exact masking, T5 noise, MAE keep) uses this, on the host or in a kernel."""
    return (n * threshold + (1 << 31)) >> 32


def choose(bits: int, n: int) -> int:
    """Pick one of n choices with a 32-bit word (Lemire): (bits * n) >> 32, in [0, n)."""
    return (bits * n) >> 32
