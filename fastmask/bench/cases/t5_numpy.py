"""The peer of the "t5" family: T5 span corruption in numpy, written here from the published
algorithm (T5's `random_spans_noise_mask`, as HF's Flax example `run_t5_mlm_flax.py` applies it to
a batch: one mask per row from numpy's generator, then sentinels and filtering over the batch).
HF ships it only inside an example script, so it is re-implemented rather than imported.
"""
from __future__ import annotations

import numpy as np


def _segment_lengths(items: int, segments: int, rng: np.random.RandomState) -> np.ndarray:
    """A uniformly random composition of `items` into `segments` positive parts: mark segments - 1
    of the items - 1 boundaries at random, number the segments, count their members (with the
    operations the published algorithm uses: a legacy-generator shuffle, np.unique's counts)."""
    boundaries = np.arange(items - 1) < segments - 1
    rng.shuffle(boundaries)
    segment_of_item = np.cumsum(np.pad(boundaries, [[1, 0]]))
    return np.unique(segment_of_item, return_counts=True)[1]


def noise_mask(length: int, noise_density: float, mean_noise_span_length: float, rng: np.random.RandomState) -> np.ndarray:
    """bool [length]: T5's span mask; noise and non-noise spans alternate, starting with non-noise."""
    noise = min(max(int(np.round(length * noise_density)), 1), length - 1)
    spans = max(int(np.round(noise / mean_noise_span_length)), 1)
    noise_lengths = _segment_lengths(noise, spans, rng)
    plain_lengths = _segment_lengths(length - noise, spans, rng)
    run_lengths = np.column_stack((plain_lengths, noise_lengths)).ravel()
    span_starts = np.cumsum(run_lengths)[:-1]
    starts = np.zeros(length, dtype=np.int8)
    starts[span_starts] = 1
    return np.cumsum(starts) % 2 == 1


def _with_sentinels(ids: np.ndarray, mask: np.ndarray, vocab_size: int, eos: int) -> np.ndarray:
    """Each run of masked positions -> one sentinel (vocab_size - span number, numbered from 1 per
    row); the rest of the run dropped; EOS appended. ids, mask: [B, L]."""
    opens = mask & ~np.pad(mask[:, :-1], ((0, 0), (1, 0)))
    number = np.cumsum(opens, axis=1)
    replaced = np.where(opens, vocab_size - number, np.where(mask, -1, ids))
    kept = replaced[replaced >= 0].reshape(ids.shape[0], -1)
    return np.concatenate((kept, np.full((ids.shape[0], 1), eos, dtype=kept.dtype)), axis=1)


def t5_span_corruption(ids: np.ndarray, noise_density: float, mean_noise_span_length: float, vocab_size: int,
                       eos: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of int64 ids [B, L]."""
    batch, length = ids.shape
    mask = np.stack([noise_mask(length, noise_density, mean_noise_span_length, rng) for _ in range(batch)])
    return _with_sentinels(ids, mask, vocab_size, eos), _with_sentinels(ids, ~mask, vocab_size, eos)
