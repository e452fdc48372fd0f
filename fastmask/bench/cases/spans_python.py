"""SpanBERT's span masking (Joshi et al., TACL 2020, section 3.1) in plain Python and numpy, one row at
a time: the peer of fastmask.mask_spans in the "spans" benchmark. Written from the paper's
description of the published scheme (not copied):

- the budget is ceil(15% of the row's tokens);
- repeat until the budget is reached: draw a span length in words from the geometric distribution
  p = 0.2 clipped to [1, 10] (np.random.choice over the renormalized probabilities), draw an anchor
  token uniformly over the row, skip it if already masked, move to the start of its word, then add
  whole words (token by token, stopping as soon as the budget is reached) until the span holds the
  drawn number of words or the row ends;
- one decision per span: 80% all [MASK], 10% each token a random id, 10% kept;
- targets: the original ids at masked positions, pad elsewhere.

Special tokens ([CLS], [SEP], padding) are outside the row given to the masker, as in the paper's
pipeline, which masks the text tokens only.
"""
from __future__ import annotations

import math



def length_distribution(p: float = 0.2, lower: int = 1, upper: int = 10):
    lengths = list(range(lower, upper + 1))
    weights = [p * (1 - p) ** (k - lower) for k in lengths]
    total = sum(weights)
    return lengths, [w / total for w in weights]


def word_ends(word_ids: list) -> list:
    """end[i] = one past the last token of the word holding token i."""
    n = len(word_ids)
    end = [n] * n
    for i in range(n - 2, -1, -1):
        end[i] = end[i + 1] if word_ids[i + 1] == word_ids[i] else i + 1
    return end


def word_starts(word_ids: list) -> list:
    start = [0] * len(word_ids)
    for i in range(1, len(word_ids)):
        start[i] = start[i - 1] if word_ids[i] == word_ids[i - 1] else i
    return start


def mask_row(tokens: list, word_ids: list, rng, lengths, probabilities, mask_id, vocab_low, vocab_high, pad,
             ratio: float = 0.15):
    n = len(tokens)
    budget = math.ceil(n * ratio)
    starts, ends = word_starts(word_ids), word_ends(word_ids)
    masked = set()
    spans = []
    while len(masked) < budget:
        span_words = rng.choice(lengths, p=probabilities)
        anchor = rng.choice(n)
        if anchor in masked:
            continue
        left = starts[anchor]
        span = [left, left]
        position, words = left, 0
        while words < span_words and position < n and len(masked) < budget:
            stop = ends[position]
            while position < stop and len(masked) < budget:
                masked.add(position)
                span[1] = position
                position += 1
            words += 1
        spans.append(span)
    out = list(tokens)
    targets = [pad] * n
    for left, right in spans:
        draw = rng.random_sample()
        for i in range(left, right + 1):
            targets[i] = tokens[i]
            if draw < 0.8:
                out[i] = mask_id
            elif draw < 0.9:
                out[i] = int(rng.randint(vocab_low, vocab_high))
    return out, targets


def mask_batch(rows, word_ids, rng, mask_id, vocab_low, vocab_high, pad=-100, p: float = 0.2, max_length: int = 10):
    """rows, word_ids: lists of per-row token lists (text tokens only). Returns (inputs, targets) lists."""
    lengths, probabilities = length_distribution(p, 1, max_length)
    results = [mask_row(r, w, rng, lengths, probabilities, mask_id, vocab_low, vocab_high, pad) for r, w in zip(rows, word_ids)]
    return [r[0] for r in results], [r[1] for r in results]
