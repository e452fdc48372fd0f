"""T5 span corruption with sentinels and UL2 mixtures of denoisers (docs/t5.md): argument checks,
the host-side integer plan (counts, choice thresholds, output widths), backend choice."""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional

import torch

from . import _library
from ._backend import check_backend, resolve_backend
from ._rng import TWO_32, count, probability_threshold
from ._seed import check_keys, resolve_seed
from ._validate import check_id_rows, check_ids_in_range, check_int

__all__ = ["UL2_DENOISERS", "UL2Denoised", "t5_chunks", "t5_lengths", "t5_output_lengths", "t5_span_corruption", "ul2_denoise"]

_INT_IDS = (torch.int64, torch.int32)
_MAX_LENGTH = 1 << 31

# The seven denoisers of UL2's final mixture (Tay et al., 2023): R (3, 0.15), (8, 0.15);
# X (3, 0.5), (8, 0.5), (64, 0.15), (64, 0.5); S (prefix LM, 25% of the row on average).
UL2_DENOISERS = ((3.0, 0.15), (8.0, 0.15), (3.0, 0.5), (8.0, 0.5), (64.0, 0.15), (64.0, 0.5), ("S", 0.25))


class UL2Denoised(NamedTuple):
    """ul2_denoise's result: padded inputs and targets, and per row their lengths and the denoiser index."""

    inputs: torch.Tensor
    targets: torch.Tensor
    input_lengths: torch.Tensor
    target_lengths: torch.Tensor
    denoiser: torch.Tensor


# --- host-side integers ------------------------------------------------------------------------


def _check_density(name: str, p) -> float:
    if type(p) is float and 0.0 < p < 1.0:  # the common case, without the numbers.Real check
        return p
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or not 0.0 < p < 1.0:
        raise ValueError(f"{name}: expected a number in (0, 1), got {p!r}")
    return float(p)


def _check_mean(name: str, mu) -> float:
    if type(mu) is float and 1.0 <= mu < math.inf:
        return mu
    if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not math.isfinite(mu) or not mu >= 1.0:
        raise ValueError(f"{name}: expected a number >= 1, got {mu!r}")
    return float(mu)


def span_count(noise: int, mean: float) -> int:
    """round(noise / mean), ties to even, exactly: mean = a / b (a float is a binary fraction), so
    noise / mean = q + r / a with q, r = divmod(noise * b, a). Python's round(noise / mean), numpy's
    and T5's give the same (they round ties to even too)."""
    numerator, denominator = mean.as_integer_ratio()  # exact, and traceable (Dynamo cannot trace Fraction)
    q, r = divmod(noise * denominator, numerator)
    twice = 2 * r
    return q + (twice > numerator or (twice == numerator and q % 2 == 1))


def _span_counts(length: int, density: float, mean: float) -> tuple[int, int]:
    """(N noise tokens, K noise spans) of a row of `length` tokens (docs/t5.md)."""
    noise = max(1, count(probability_threshold(density), length))
    return noise, max(1, span_count(noise, mean))


def t5_output_lengths(length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """(inputs length, targets length) of t5_span_corruption on rows of `length` tokens:
    (L - N + K + 1, N + K + 1)."""
    length = check_int("length", length, 1, _MAX_LENGTH)
    density = _check_density("noise_density", noise_density)
    mean = _check_mean("mean_noise_span_length", mean_noise_span_length)
    noise, spans = _span_counts(length, density, mean)
    _check_fits(length, noise, spans, density, mean, "length")
    return length - noise + spans + 1, noise + spans + 1


def t5_lengths(inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """(tokens_length, targets_length) as HF's `compute_input_and_target_lengths`: the longest rows
    (below 2^31, the ops' limit) whose corrupted inputs fit in `inputs_length` tokens, and their
    targets length. Feed rows of tokens_length to t5_span_corruption (e.g. 568 for inputs of 512 at
    0.15 / 3)."""
    inputs_length = check_int("inputs_length", inputs_length, 1, _MAX_LENGTH)
    density = _check_density("noise_density", noise_density)
    mean = _check_mean("mean_noise_span_length", mean_noise_span_length)

    def sizes(tokens):
        noise, spans = _span_counts(tokens, density, mean)
        return tokens - noise + spans + 1, noise + spans + 1

    # The inputs length L - N + K + 1 never decreases with L (N and K grow by at most one per token,
    # and K with N), so a binary search finds the last L that fits: O(log L) evaluations.
    if sizes(1)[0] > inputs_length:
        raise ValueError(f"inputs_length: even one-token rows make {sizes(1)[0]} input tokens, more than {inputs_length}")
    fits, beyond = 1, min(2 * inputs_length + 2, _MAX_LENGTH)  # a first bound, doubled while it still fits
    while beyond < _MAX_LENGTH and sizes(beyond)[0] <= inputs_length:
        fits, beyond = beyond, min(2 * beyond, _MAX_LENGTH)
    while beyond - fits > 1:
        middle = (fits + beyond) // 2
        if sizes(middle)[0] <= inputs_length:
            fits = middle
        else:
            beyond = middle
    tokens = fits
    targets = sizes(tokens)[1]
    if density == 0.5 and targets > inputs_length:  # HF's adjustment: targets no longer than inputs
        tokens -= 1
        targets = sizes(tokens)[1]
    noise, spans = _span_counts(tokens, density, mean)
    _check_fits(tokens, noise, spans, density, mean, "inputs_length")
    return tokens, targets


def _check_fits(length, noise, spans, density, mean, name="input_ids"):
    if length - noise < spans:
        raise ValueError(
            f"{name}: rows of {length} tokens are too short for noise_density={density}, "
            f"mean_noise_span_length={mean}: {noise} noise tokens in {spans} spans leave {length - noise} "
            f"other tokens, fewer than the {spans} non-noise spans"
        )


def _normalize_denoisers(denoisers) -> tuple:
    """(("span", mean, density) | ("S", density), ...) from the user's list."""
    if isinstance(denoisers, (str, bytes)) or not hasattr(denoisers, "__iter__"):
        raise ValueError(f"denoisers: expected a sequence of (mean_noise_span_length, noise_density) or ('S', density), got {denoisers!r}")
    out = []
    for item in denoisers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"denoisers: expected (mean_noise_span_length, noise_density) or ('S', density), got {item!r}")
        if item[0] == "S":
            out.append(("S", _check_density("denoisers: S noise_density", item[1])))
        else:
            out.append(("span", _check_mean("denoisers: mean_noise_span_length", item[0]),
                        _check_density("denoisers: noise_density", item[1])))
    if not out:
        raise ValueError("denoisers: expected at least one denoiser")
    return tuple(out)


def _choice_thresholds(weights, count_denoisers) -> tuple[int, ...]:
    if weights is None:
        weights = (1,) * count_denoisers
    weights = tuple(weights)
    if len(weights) != count_denoisers:
        raise ValueError(f"weights: expected {count_denoisers} weights, one per denoiser, got {len(weights)}")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            raise ValueError(f"weights: expected finite numbers >= 0, got {w!r}")
    # Exact: each weight a / b over one common denominator, in integers (no Fraction: Dynamo traces this).
    ratios = [w.as_integer_ratio() for w in weights]
    common = math.lcm(*(b for _, b in ratios))
    numerators = [a * (common // b) for a, b in ratios]
    total = sum(numerators)
    if total == 0:
        raise ValueError("weights: expected a positive total")
    thresholds, running = [], 0
    for numerator in numerators:
        running += numerator
        thresholds.append(running * TWO_32 // total)  # floor(running / total * 2^32), exactly
    thresholds[-1] = TWO_32
    return tuple(thresholds)


class _Plan(NamedTuple):
    table: tuple  # ((threshold, n, k, d, sentinels), ...)
    sentinels_needed: int
    input_length: int
    target_length: int
    draw: bool


@_library.eager_cache
def _plan(length: int, denoisers: tuple, weights) -> _Plan:
    thresholds = _choice_thresholds(weights, len(denoisers))
    table, needed, widest_in, widest_tgt = [], 0, 0, 0
    for threshold, denoiser in zip(thresholds, denoisers):
        if denoiser[0] == "S":
            center = max(1, count(probability_threshold(denoiser[1]), length))
            if center > length - 1:
                raise ValueError(
                    f"input_ids: rows of {length} tokens are too short for the prefix-LM denoiser "
                    f"('S', {denoiser[1]}): its suffix of {center} tokens leaves no prefix"
                )
            half = min(center - 1, length - 1 - center)
            table.append((threshold, center, 1, half, 0))
            widest_in = max(widest_in, length - (center - half) + 1)
            widest_tgt = max(widest_tgt, center + half + 1)
        else:
            _, mean, density = denoiser
            noise, spans = _span_counts(length, density, mean)
            _check_fits(length, noise, spans, density, mean)
            table.append((threshold, noise, spans, 0, 1))
            needed = max(needed, spans)
            widest_in = max(widest_in, length - noise + spans + 1)
            widest_tgt = max(widest_tgt, noise + spans + 1)
    draw = len(table) > 1 or any(row[3] > 0 for row in table)
    return _Plan(tuple(table), needed, widest_in, widest_tgt, draw)


@_library.eager_cache
def _default_sentinels(vocab_size: int, needed: int) -> tuple[int, ...]:
    if vocab_size < needed:
        raise ValueError(
            f"vocab_size: the default sentinels vocab_size - 1 - i for {needed} spans need vocab_size >= {needed}, got {vocab_size}"
        )
    return tuple(vocab_size - 1 - i for i in range(needed)) if needed else (0,)


def _sentinels(sentinel_ids, vocab_size, needed: int, id_limit: int) -> tuple[int, ...]:
    """Span i's sentinel; ids in [0, vocab_size), or of the ids' dtype (id_limit) without it."""
    if sentinel_ids is None:
        if vocab_size is None:
            if needed == 0:
                return (0,)
            raise ValueError("sentinel_ids: give sentinel_ids, or vocab_size for T5's vocab_size - 1 - i")
        return _default_sentinels(vocab_size, needed)
    if isinstance(sentinel_ids, torch.Tensor):
        if sentinel_ids.dim() != 1 or sentinel_ids.dtype not in _INT_IDS:
            raise ValueError(f"sentinel_ids: expected a 1-D integer tensor or a sequence of ints, got {sentinel_ids.dtype} {tuple(sentinel_ids.shape)}")
        sentinel_ids = sentinel_ids.tolist()  # a host-side list; pass a list to avoid a device read
    sentinel_ids = tuple(sentinel_ids)
    if len(sentinel_ids) < needed:
        raise ValueError(f"sentinel_ids: expected at least {needed} ids, one per noise span, got {len(sentinel_ids)}")
    for value in sentinel_ids[:needed]:
        check_int("sentinel_ids", value, 0, vocab_size or id_limit)
    return tuple(sentinel_ids[:needed]) if needed else (0,)


@_library.eager_cache
def _constant(values: tuple, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64).to(device)


# --- the public ops ------------------------------------------------------------------------------


def _arguments(length, denoisers, weights, sentinel_ids, vocab_size, eos_token_id, pad_token_id, dtype, device):
    """The op's host-side arguments after the row shape: (table, sentinels, eos, pad, input_length,
    target_length, draw). Every id written (sentinels, eos, pad) lies in [0, vocab_size), or is a
    non-negative id of the ids' dtype without vocab_size."""
    id_limit = torch.iinfo(dtype).max + 1
    if vocab_size is not None:
        vocab_size = check_int("vocab_size", vocab_size, 1, id_limit)
    eos = check_int("eos_token_id", eos_token_id, 0, vocab_size or id_limit)
    pad = check_int("pad_token_id", pad_token_id, 0, vocab_size or id_limit)
    plan = _plan(length, denoisers, weights)
    sentinels = _sentinels(sentinel_ids, vocab_size, plan.sentinels_needed, id_limit)
    return (_constant(plan.table, device), _constant(sentinels, device), eos, pad,
            plan.input_length, plan.target_length, plan.draw)


# The same, one cache lookup per call, for the usual arguments (plain ints, default sentinels).
_cached_arguments = _library.eager_cache(_arguments)


def _run(input_ids, denoisers, weights, sentinel_ids, vocab_size, eos_token_id, pad_token_id, seed, keys, validate,
         backend):
    check_backend(backend)
    ids, one_row = check_id_rows(input_ids, _INT_IDS, _MAX_LENGTH)
    batch, length = ids.shape
    device = ids.device
    plain_ints = (sentinel_ids is None and type(eos_token_id) is int and type(pad_token_id) is int
                  and (vocab_size is None or type(vocab_size) is int))
    arguments = (_cached_arguments if plain_ints else _arguments)(
        length, denoisers, weights, sentinel_ids, vocab_size, eos_token_id, pad_token_id, ids.dtype, device)
    keys = check_keys(keys, batch, device)
    chosen = resolve_backend(backend, device)
    if vocab_size is not None and (validate or (device.type == "cpu" and chosen != "cpp" and not torch.compiler.is_compiling())):
        check_ids_in_range("input_ids", ids, vocab_size)  # the C++ kernel checks inside; GPUs only under validate
    seed = resolve_seed(seed, device)
    out = _library.span_corruption(ids, seed, keys, *arguments, vocab_size or 0, backend)
    if one_row:
        out = tuple(t[0] for t in out)
    return out


def t5_span_corruption(
    input_ids: torch.Tensor,
    *,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    sentinel_ids=None,
    vocab_size: Optional[int] = None,
    eos_token_id: int,
    seed=None,
    keys=None,
    validate: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 span corruption (docs/t5.md): returns (inputs, targets) of input_ids' dtype,
    [B, L - N + K + 1] and [B, N + K + 1] ([.] for 1-D input), N = max(1, count(noise_density, L))
    noise tokens in K = max(1, round(N / mean_noise_span_length)) spans, each span replaced by its
    sentinel in the inputs, and the targets the sentinels each followed by its span; both end in EOS.

    Span i gets sentinel_ids[i]; by default vocab_size - 1 - i (T5's <extra_id_i>, vocab_size =
    len(tokenizer)). With vocab_size, input ids, sentinels and eos must lie in [0, vocab_size)
    (ValueError otherwise; ids on a GPU are read only under validate=True, which syncs).
    seed, keys: the random stream (docs/rng.md); keys default to the row index.
    Every row of the batch has the same length L (fixed chunks, as HF's Flax example); see
    t5_lengths for the L that gives inputs of a chosen length.
    """
    denoisers = (("span", _check_mean("mean_noise_span_length", mean_noise_span_length),
                  _check_density("noise_density", noise_density)),)
    inputs, targets, _, _, _ = _run(input_ids, denoisers, None, sentinel_ids, vocab_size, eos_token_id, 0, seed, keys,
                                    validate, backend)
    return inputs, targets


def ul2_denoise(
    input_ids: torch.Tensor,
    *,
    denoisers=UL2_DENOISERS,
    weights=None,
    sentinel_ids=None,
    vocab_size: Optional[int] = None,
    eos_token_id: int,
    pad_token_id: int = 0,
    seed=None,
    keys=None,
    validate: bool = False,
    backend: str = "auto",
) -> UL2Denoised:
    """UL2's mixture of denoisers (docs/t5.md): each row gets one denoiser, chosen from the stream
    with probabilities proportional to `weights` (default equal): (mean_noise_span_length,
    noise_density) for T5 span corruption, ("S", density) for a prefix LM (inputs = prefix + EOS,
    targets = suffix + EOS, suffix length uniform around density * L). Inputs and targets are padded
    with pad_token_id to the largest lengths over the mixture; the result also holds each row's
    lengths and denoiser index (int64 [B]). Ids are checked as t5_span_corruption's (pad_token_id too)."""
    denoisers = _normalize_denoisers(denoisers)
    if weights is not None:
        weights = tuple(weights.tolist() if isinstance(weights, torch.Tensor) else weights)
    return UL2Denoised(*_run(input_ids, denoisers, weights, sentinel_ids, vocab_size, eos_token_id, pad_token_id, seed, keys,
                             validate, backend))


def t5_chunks(texts, length: int, *, eos_token_id: Optional[int] = None) -> torch.Tensor:
    """Tokenized texts concatenated and cut into rows of `length` tokens, as T5 pre-trains on C4 (HF's
    run_t5_mlm_flax.py groups texts this way): int64 [N, length], the tail shorter than a row dropped.
    `texts` is a sequence of token-id sequences (lists, numpy arrays or 1-D tensors), e.g. a batch of
    a tokenized dataset's input_ids; eos_token_id, when given, is appended to each text that does
    not already end with it. Take length from t5_lengths: rows of t5_lengths(512)[0] = 568 tokens
    corrupt into inputs of 512.

        dataset.map(lambda b: {"input_ids": t5_chunks(b["input_ids"], 568).tolist()}, batched=True,
                    remove_columns=dataset.column_names)
    """
    length = check_int("length", length, 1, _MAX_LENGTH)
    if isinstance(texts, (str, bytes, torch.Tensor)) or not hasattr(texts, "__iter__"):
        raise ValueError(f"texts: expected a sequence of token-id sequences, got {type(texts).__name__}")
    if eos_token_id is not None:
        eos_token_id = check_int("eos_token_id", eos_token_id, 0, 1 << 63)
    pieces = []
    for i, text in enumerate(texts):
        try:
            ids = torch.as_tensor(text)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"texts: text {i} is not a sequence of token ids ({error})") from None
        if ids.numel() and (ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool):
            raise ValueError(f"texts: text {i}: expected a 1-D sequence of integer ids, got {ids.dtype} {tuple(ids.shape)}")
        ids = ids.reshape(-1).to(torch.int64)
        if eos_token_id is not None and (ids.numel() == 0 or int(ids[-1]) != eos_token_id):
            ids = torch.cat([ids, ids.new_full((1,), eos_token_id)])
        pieces.append(ids)
    stream = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.int64)
    rows = stream.numel() // length
    return stream[: rows * length].reshape(rows, length)
