"""The public ops: argument checks, defaults and backend choice, then the custom ops of _library."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from . import _library
from .cpp import masking as _cpp_masking
from ._backend import check_backend, has_memory, resolve_backend
from ._rng import TWO_32
from ._seed import check_keys, resolve_seed
from ._validate import (check_id_rows, check_ids_in_range, check_int, check_memory, check_probability, check_same_shape,
                        check_tensor)
from .reference.cross_entropy import accumulation_dtype, kept_rows

__all__ = ["MaskedTokens", "mask_tokens", "masked_cross_entropy", "masked_lm_loss", "random_words"]

_MAX_LENGTH = 1 << 31  # positions are one uint32 counter word; index math elsewhere assumes < 2^31
_INT_IDS = (torch.int64, torch.int32)
_MASK_DTYPES = (torch.bool, torch.uint8, torch.int32, torch.int64)
_ID_LIMITS = {dtype: torch.iinfo(dtype).max + 1 for dtype in _INT_IDS}


def random_words(seed, keys, length, purpose=0, backend="auto") -> torch.Tensor:
    """The raw random stream: Philox4x32-10 words for every (row, position).

    Args:
        seed: None (a fresh seed per call, from torch's default CPU generator), an int, or an int64
            tensor with one element (use a tensor under torch.compile: it never recompiles).
        keys: the sample keys, int64 (or int32) of shape [R]; a row's words depend only on its key.
        length: positions per row, in [0, 2^31).
        purpose: the counter word c1, in [0, 2^32); see fastmask._rng.Purpose.
        backend: "auto", "reference", "cpp" or "triton".

    Returns:
        int64 [R, length, 4] with values in [0, 2^32), on keys' device. Word j of position i in row
        r is word j of Philox4x32-10(key=(seed lo, seed hi), counter=(i, purpose, key lo, key hi)).
    """
    check_backend(backend)
    if keys is None:
        raise ValueError("keys: expected the sample keys, int64 [R], got None")
    keys = check_keys(keys, None, None)
    check_int("length", length, 0, _MAX_LENGTH)
    check_int("purpose", purpose, 0, TWO_32)
    check_memory("length", keys.shape[0] * length * 32, lambda: f"the words of {keys.shape[0]} rows of {length} positions (int64 x 4)",
                 keys.device)
    seed = resolve_seed(seed, keys.device)
    return _library.call(torch.ops.fastmask.random_words, _library.random_words_impl, seed, keys, length, purpose, backend)


class MaskedTokens(NamedTuple):
    """mask_tokens' result. `positions` is None unless max_predictions was given."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    positions: Optional[torch.Tensor]


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    seed=None,
    keys=None,
    mask_token_id: int,
    vocab_size: Optional[int] = None,
    replace_ids=None,
    special_ids=None,
    special_tokens_mask: Optional[torch.Tensor] = None,
    attention_mask: Optional[torch.Tensor] = None,
    lengths: Optional[torch.Tensor] = None,
    word_ids: Optional[torch.Tensor] = None,
    offset_mapping: Optional[torch.Tensor] = None,
    word_table: Optional[torch.Tensor] = None,
    mlm_probability=0.15,
    mask_replace_prob=0.8,
    random_replace_prob=0.1,
    prediction_probability=None,
    views: int = 1,
    exact: bool = False,
    max_predictions: Optional[int] = None,
    ignore_index: int = -100,
    validate: bool = False,
    backend: str = "auto",
) -> MaskedTokens:
    """BERT/RoBERTa masked-LM corruption with labels, as HF's DataCollatorForLanguageModeling, plus
    exact counts, a prediction set apart from the corrupted set, views and a fixed capacity.
    docs/masking.md defines every argument and the algorithm.

    Whole-word masking: pass one word source, `word_ids` ([B, L], runs of equal ids, negative for
    no word), `offset_mapping` ([B, L, 2], HF's rule) or `word_table` ([vocab_size] "starts a
    word", from fastmask.word_start_table); words are then selected, corrupted, predicted, split
    into views and counted as wholes (docs/masking.md#whole-word-masking).

    Returns MaskedTokens(input_ids, labels, positions): new tensors of input_ids' dtype, shape
    [B * views, L] ordered by (row, view) ([L] for 1-D input and one view); positions int64
    [B * views, max_predictions] padded with -1, or None.
    """
    check_backend(backend)
    ids, one_row = check_id_rows(input_ids, _INT_IDS, _MAX_LENGTH)
    batch, length = ids.shape
    device = ids.device
    id_limit = _ID_LIMITS[ids.dtype]

    if vocab_size is not None:
        vocab_size = check_int("vocab_size", vocab_size, 1, min(id_limit, _MAX_LENGTH))  # (w * V) >> 32 in int64
    if word_table is not None:
        vocab_size = _check_word_table(word_table, vocab_size, device, min(id_limit, _MAX_LENGTH))
    mask_token_id = check_int("mask_token_id", mask_token_id, 0, vocab_size or id_limit)
    ignore_index = check_int("ignore_index", ignore_index, -id_limit, id_limit)
    views = check_int("views", views, 1, 1 << 16)
    if max_predictions is not None:
        max_predictions = check_int("max_predictions", max_predictions, 1, _MAX_LENGTH)
    if not isinstance(exact, bool):
        raise ValueError(f"exact: expected a bool, got {type(exact).__name__}")
    rows = batch * views
    check_memory("max_predictions" if max_predictions else "views",
                 rows * (2 * length * ids.element_size() + 8 * (max_predictions or 0)),
                 lambda: f"the outputs of {rows} rows (input_ids, labels of {length} tokens"
                 f"{f', {max_predictions} positions' if max_predictions else ''})", device)

    specials = _special_ids(special_ids, mask_token_id, vocab_size)
    for name, mask in (("special_tokens_mask", special_tokens_mask), ("attention_mask", attention_mask)):
        if mask is not None:
            check_same_shape(name, mask.unsqueeze(0) if one_row else mask, ids, dtypes=_MASK_DTYPES)
    special_mask = _rows(special_tokens_mask, one_row)
    attention = _rows(attention_mask, one_row)
    if lengths is not None:
        lengths = torch.as_tensor(lengths).reshape(-1) if one_row else lengths
        check_tensor("lengths", lengths, dtypes=_INT_IDS, ndim=1)
        if lengths.shape[0] != batch or lengths.device != device:
            raise ValueError(f"lengths: expected {batch} lengths on {device}, got {tuple(lengths.shape)} on {lengths.device}")
    if keys is not None:
        keys = check_keys(keys, batch, device)  # None: the row index, supplied by the backend
    words = _word_source(ids, one_row, word_ids, offset_mapping, word_table)

    thresholds = _thresholds(mlm_probability, prediction_probability, mask_replace_prob, random_replace_prob, device, validate)
    replace_table, replace_count = _replacements(replace_ids, specials, vocab_size, random_replace_prob, device, validate)

    chosen = resolve_backend(backend, device)
    if vocab_size is not None and (validate or (device.type == "cpu" and chosen != "cpp" and not torch.compiler.is_compiling())):
        check_ids_in_range("input_ids", ids, vocab_size)  # the C++ kernel checks inside; GPUs only under validate

    seed = resolve_seed(seed, device)
    special_tensor = _constant(specials, device)
    # Eager C++ skips mask_tokens_impl's second backend resolution (a few microseconds of a small call).
    impl = _cpp_mask_tokens if chosen == "cpp" else _library.mask_tokens_impl
    out_ids, labels, positions = _library.call(
        torch.ops.fastmask.mask_tokens, impl,
        ids, seed, keys, thresholds, special_tensor, special_mask, attention, lengths, words, replace_table, replace_count,
        mask_token_id, views, exact, max_predictions or 0, ignore_index, vocab_size or 0, backend,
    )
    if one_row and views == 1:
        out_ids, labels, positions = out_ids[0], labels[0], positions[0]
    return MaskedTokens(out_ids, labels, positions if max_predictions else None)


def _cpp_mask_tokens(ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, words, replace_table,
                     replace_count, mask_token_id, views, exact, max_predictions, ignore_index, vocab_size, backend):
    """_library.mask_tokens_impl for a backend already resolved to C++: the same call."""
    return _cpp_masking.mask_tokens(
        ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table, replace_count,
        mask_token_id, views, exact, max_predictions, ignore_index, vocab_size=vocab_size, words=words,
    )


_OFFSET_DTYPES = (torch.int64, torch.int32)
_TABLE_DTYPES = (torch.bool, torch.uint8, torch.int32, torch.int64)


def _check_word_table(table, vocab_size, device, id_limit) -> int:
    """The vocabulary size a word table implies: its length, which must equal vocab_size if given."""
    check_tensor("word_table", table, dtypes=_TABLE_DTYPES, ndim=1)
    if table.device != device:
        raise ValueError(f"word_table: expected a tensor on {device} like input_ids, got {table.device}")
    size = table.shape[0]
    if vocab_size is None:  # the table's length is the vocabulary: ids are checked against it
        if not 0 < size < id_limit:
            raise ValueError(f"word_table: expected one entry per token id, between 1 and {id_limit - 1}, got {size}")
        return size
    if size != vocab_size:
        raise ValueError(f"word_table: expected {vocab_size} entries (vocab_size), got {size}")
    return vocab_size


def _word_source(ids, one_row, word_ids, offset_mapping, word_table) -> Optional[torch.Tensor]:
    """The one word source given, checked, in the op's `words` form (fastmask.words.word_codes): word
    ids [B, L], offsets [B, L, 2] or the table [vocab]; or None. Passed as is: the C++ kernel reads it
    in place (no per-token codes), the other backends turn it into codes."""
    given = [name for name, value in (("word_ids", word_ids), ("offset_mapping", offset_mapping), ("word_table", word_table))
             if value is not None]
    if not given:
        return None
    if len(given) > 1:
        raise ValueError(f"{', '.join(given)}: pass one word source, got {len(given)}")
    if word_ids is not None:
        word_ids = _rows(word_ids, one_row)
        check_same_shape("word_ids", word_ids, ids, dtypes=_INT_IDS)
        return word_ids
    if offset_mapping is not None:
        check_tensor("offset_mapping", offset_mapping, dtypes=_OFFSET_DTYPES, ndim=2 if one_row else 3)
        offsets = offset_mapping.unsqueeze(0) if one_row else offset_mapping
        if offsets.shape != (*ids.shape, 2):
            raise ValueError(f"offset_mapping: expected shape {(*ids.shape, 2)[one_row:]} (input_ids' shape, then "
                             f"start and end), got {tuple(offset_mapping.shape)}")
        if offsets.device != ids.device:
            raise ValueError(f"offset_mapping: expected a tensor on {ids.device} like input_ids, got {offsets.device}")
        return offsets
    return word_table  # checked by _check_word_table


def _rows(mask, one_row):
    return mask.unsqueeze(0) if one_row and isinstance(mask, torch.Tensor) else mask


@_library.eager_cache
def _constant(values: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A small int64 tensor of host values on `device`, made once per (values, device): ops only
    read it, and building it costs more than a small batch's kernel."""
    return torch.tensor(values, dtype=torch.int64).to(device)


def _special_ids(special_ids, mask_token_id, vocab_size) -> tuple[int, ...]:
    """Sorted, unique special ids on the host, with the mask token always among them."""
    if special_ids is None:
        special_ids = ()
    elif isinstance(special_ids, torch.Tensor):
        if special_ids.dim() != 1 or special_ids.dtype not in _INT_IDS:
            raise ValueError(f"special_ids: expected a 1-D integer tensor or a sequence of ints, got {special_ids.dtype} {tuple(special_ids.shape)}")
        special_ids = special_ids.tolist()  # a small host-side list; pass a list to avoid a device read
    return _sorted_specials(tuple(special_ids), mask_token_id, vocab_size)


@_library.eager_cache
def _sorted_specials(special_ids: tuple, mask_token_id: int, vocab_size) -> tuple[int, ...]:
    ids = {check_int("special_ids", value, 0, vocab_size or _MAX_LENGTH) for value in special_ids}
    return tuple(sorted(ids | {mask_token_id}))


def _thresholds(select, predict, mask, random, device, validate) -> torch.Tensor:
    """int64 [4] = floor(p * 2^32) of (select, predict, mask, random) on `device`.

    Python floats are checked and converted on the host; 0-d tensors are converted on their device
    (in float64) so a compiled graph takes new values without recompiling, and checked only under
    validate=True (which reads them)."""
    predict = select if predict is None else predict
    if not any(isinstance(p, torch.Tensor) for p in (select, predict, mask, random)):
        return _host_thresholds(select, predict, mask, random, device)
    parts = []
    for name, p in zip(_PROBABILITY_NAMES, (select, predict, mask, random)):
        if isinstance(p, torch.Tensor):
            if p.numel() != 1 or not p.dtype.is_floating_point:
                raise ValueError(f"{name}: expected a float or a floating tensor with one element, got {p.dtype} {tuple(p.shape)}")
            p = p.reshape(()).to(device=device, dtype=torch.float64)
            if validate and not bool((p >= 0) & (p <= 1)):
                raise ValueError(f"{name}: expected a probability in [0, 1], got {float(p)}")
        else:
            p = torch.tensor(check_probability(name, p), dtype=torch.float64, device=device)
        parts.append(p)
    if validate and bool(parts[2] + parts[3] > 1):
        raise ValueError("mask_replace_prob + random_replace_prob: expected at most 1")
    # Clamped, so an unchecked tensor outside [0, 1] still means the same to every backend.
    return torch.floor(torch.stack(parts) * TWO_32).clamp(0, TWO_32).to(torch.int64)


_PROBABILITY_NAMES = ("mlm_probability", "prediction_probability", "mask_replace_prob", "random_replace_prob")


@_library.eager_cache
def _host_thresholds(select, predict, mask, random, device) -> torch.Tensor:
    for name, p in zip(_PROBABILITY_NAMES, (select, predict, mask, random)):
        check_probability(name, p)
    if mask + random > 1:
        raise ValueError(f"mask_replace_prob + random_replace_prob: expected at most 1, got {mask} + {random}")
    return _constant(tuple(int(p * TWO_32) for p in (select, predict, mask, random)), device)


def _replacements(replace_ids, specials, vocab_size, random_replace_prob, device, validate):
    """(table or None, number of choices) for random replacements."""
    if replace_ids is not None:
        table = replace_ids if isinstance(replace_ids, torch.Tensor) else torch.as_tensor(replace_ids, dtype=torch.int64)
        check_tensor("replace_ids", table, dtypes=_INT_IDS, ndim=1)
        table = table.to(device)
        if vocab_size is not None and (validate or table.device.type == "cpu"):
            check_ids_in_range("replace_ids", table, vocab_size)
        count = table.shape[0]
    elif vocab_size is not None:
        table, count = None, _vocabulary_choices(specials, vocab_size)
    else:
        table, count = None, 0
    if count == 0 and (isinstance(random_replace_prob, torch.Tensor) or random_replace_prob > 0):
        what = "vocab_size or replace_ids" if replace_ids is None and vocab_size is None else "replace_ids"
        raise ValueError(f"{what}: random_replace_prob > 0 needs a non-empty replacement set")
    return table, count


@_library.eager_cache
def _vocabulary_choices(specials: tuple[int, ...], vocab_size: int) -> int:
    """Replacement ids without a table: the vocabulary less its special ids."""
    return vocab_size - sum(1 for s in specials if s < vocab_size)


_REDUCTIONS = ("mean", "sum", "none")
_FLOATS = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def masked_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    weight: Optional[torch.Tensor] = None,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    normalizer=None,
    return_lse: bool = False,
    inplace_backward: bool = False,
    validate: bool = False,
    backend: str = "auto",
):
    """Cross-entropy over rows whose label is not ignore_index, as torch.nn.functional.cross_entropy,
    plus z-loss, softcapping and a given normalizer; docs/loss.md has the formulas.

    logits [N, V] or [B, L, V] (fp32, bf16, fp16; fp64 for the reference and C++), labels [N] or
    [B, L]. Ignored rows cost nothing and get zero gradient; with every row ignored the "mean" is 0
    (torch gives NaN). `normalizer` (a tensor or number) divides the summed loss instead of the
    number (or weight) of labelled rows, e.g. HF Trainer's num_items_in_batch. With
    inplace_backward=True the forward overwrites `logits` with its gradient (logits must not be
    needed afterwards). Returns the loss, and the per-row log-sum-exp (fp32, not differentiable,
    0 for ignored rows) with return_lse=True.
    """
    check_backend(backend)
    check_tensor("logits", logits, dtypes=_FLOATS, ndim=logits.dim() if logits.dim() in (2, 3) else 2)
    check_tensor("labels", labels, dtypes=_INT_IDS, ndim=logits.dim() - 1)
    if labels.shape != logits.shape[:-1] or labels.device != logits.device:
        raise ValueError(f"labels: expected shape {tuple(logits.shape[:-1])} on {logits.device} to match logits, got {tuple(labels.shape)} on {labels.device}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
    ignore_index = check_int("ignore_index", ignore_index, -(1 << 63), 1 << 63)
    label_smoothing = _check_float("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
    z_loss = _check_float("z_loss", z_loss, 0.0, float("inf"))
    softcap = 0.0 if softcap is None else _check_float("softcap", softcap, 0.0, float("inf"), low_open=True)
    if normalizer is not None and reduction == "none":
        raise ValueError("normalizer: divides a summed loss; use it with reduction 'mean' or 'sum', not 'none'")
    shape = labels.shape
    vocab = logits.shape[-1]
    if vocab == 0:
        raise ValueError(f"logits: expected at least one class, got shape {tuple(logits.shape)}")
    rows = logits.reshape(-1, vocab)
    if rows.shape[0] > 0 and rows.stride(1) != 1:
        rows = rows.contiguous()  # kernels walk a row contiguously; rows may be strided
    flat_labels = labels.reshape(-1)
    if weight is not None:
        check_tensor("weight", weight, dtypes=_FLOATS, ndim=1)
        if weight.shape[0] != vocab or weight.device != logits.device:
            raise ValueError(f"weight: expected {vocab} class weights on {logits.device}, got {tuple(weight.shape)} on {weight.device}")
    chosen = resolve_backend(backend, logits.device)
    if validate or (logits.device.type == "cpu" and chosen != "cpp" and not torch.compiler.is_compiling()):
        _check_labels(flat_labels, ignore_index, vocab)  # the C++ kernel checks inside; GPUs only under validate

    options = (ignore_index, label_smoothing, z_loss, softcap, backend)
    row_weight = _row_weights(flat_labels, weight, ignore_index, vocab, rows)
    if inplace_backward:
        loss, lse = _InplaceCrossEntropy.apply(rows, flat_labels, weight, row_weight, reduction, normalizer, options)
    else:
        loss_rows, lse = torch.ops.fastmask.ce_forward(rows, flat_labels, weight, *options)
        loss = _reduce(loss_rows, row_weight, reduction, normalizer)
    loss = loss.to(logits.dtype)
    if reduction == "none":
        loss = loss.reshape(shape)
    return (loss, lse.detach().reshape(shape)) if return_lse else loss


def _check_float(name, value, low, high, *, low_open=False, high_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number, got {type(value).__name__}")
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


def _check_labels(labels, ignore_index, vocab):
    if not has_memory(labels):  # meta or fake: no contents
        return
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= vocab))
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"labels: label {int(labels[row])} at row {row} is outside [0, {vocab}) and not ignore_index")


def _row_weights(labels, weight, ignore_index, vocab, rows):
    """Each row's weight in a "mean": w[label], 1 without class weights, 0 when ignored."""
    acc = accumulation_dtype(rows)
    kept = kept_rows(labels, ignore_index, vocab)
    if weight is None:
        return kept.to(acc)
    return torch.where(kept, weight.to(acc)[torch.where(kept, labels, 0)], 0)


def _denominator(reduction, normalizer, row_weight):
    """What the summed loss is divided by (1 for "sum"); never 0, so nothing turns into NaN."""
    if normalizer is not None:
        return torch.as_tensor(normalizer, device=row_weight.device).to(row_weight.dtype)
    if reduction == "sum":
        return torch.ones((), dtype=row_weight.dtype, device=row_weight.device)
    total = row_weight.sum()
    return torch.where(total > 0, total, 1)  # every row ignored: the summed loss is 0, and so is the mean


def _reduce(loss_rows, row_weight, reduction, normalizer):
    if reduction == "none":
        return loss_rows
    return loss_rows.sum() / _denominator(reduction, normalizer, row_weight)


class _InplaceCrossEntropy(torch.autograd.Function):
    """The loss with its reduction; the forward writes the gradient for an upstream gradient of 1
    into the logits buffer, and backward rescales it there by the upstream gradient, on the device,
    only where that is not 1 (no host sync)."""

    @staticmethod
    def forward(ctx, rows, labels, weight, row_weight, reduction, normalizer, options):
        if reduction == "none":
            scale = torch.ones((), dtype=row_weight.dtype, device=row_weight.device)
        else:
            scale = 1 / _denominator(reduction, normalizer, row_weight)
        loss_rows, lse = torch.ops.fastmask.ce_forward_inplace(rows, labels, weight, scale, *options)
        ctx.save_for_backward(rows)
        ctx.backend = options[-1]
        ctx.mark_non_differentiable(lse)
        return (loss_rows if reduction == "none" else loss_rows.sum() * scale), lse

    @staticmethod
    def backward(ctx, grad_loss, grad_lse):
        (rows,) = ctx.saved_tensors
        torch.ops.fastmask.scale_grad(rows, grad_loss, ctx.backend)
        return rows, None, None, None, None, None, None


def masked_lm_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: Optional[torch.Tensor] = None,
    positions: Optional[torch.Tensor] = None,
    max_rows: Optional[int] = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    normalizer=None,
    chunk_size: Optional[int] = None,
    return_dropped: bool = False,
    validate: bool = False,
    backend: str = "auto",
):
    """The masked-LM head and its cross-entropy on the predicted rows only:
    masked_cross_entropy(hidden @ weight.T + bias, labels) without the [rows, V] logits, and without
    the matmul on ignored rows. docs/lm_loss.md has the details.

    hidden [B, L, D] or [N, D]; weight [V, D] (e.g. tied input embeddings); labels [B, L] or [N]
    (ignore_index where nothing is predicted); bias [V]. The rows come from, in this order:
    `positions` ([B, K] positions into L, or [K] rows of N; -1 = an empty slot), e.g.
    mask_tokens(max_predictions=K).positions; or the labelled rows compacted into a fixed capacity of
    `max_rows` (labelled rows beyond it, in row order, are dropped and counted: return_dropped=True
    returns that count as a device tensor; validate=True raises instead); or every labelled row.
    Shapes are static on a GPU and under torch.compile; on a CPU in eager mode the rows are compacted
    exactly (there is no device to sync with), which gives the same loss.

    Returns the loss (reduction "mean"/"sum": a scalar; "none": per row of the selection, shaped
    like positions, [max_rows], or labels), and the dropped count with return_dropped=True.
    """
    from . import _lm_head

    check_backend(backend)
    check_tensor("hidden", hidden, dtypes=_FLOATS, ndim=hidden.dim() if hidden.dim() in (2, 3) else 2)
    check_tensor("weight", weight, dtypes=(hidden.dtype,), ndim=2)
    check_tensor("labels", labels, dtypes=_INT_IDS, ndim=hidden.dim() - 1)
    dim = hidden.shape[-1]
    vocab = weight.shape[0]
    device = hidden.device
    if weight.shape[1] != dim or weight.device != device or vocab == 0:
        raise ValueError(f"weight: expected [V >= 1, {dim}] on {device} to match hidden, got {tuple(weight.shape)} on {weight.device}")
    if labels.shape != hidden.shape[:-1] or labels.device != device:
        raise ValueError(f"labels: expected shape {tuple(hidden.shape[:-1])} on {device} to match hidden, got {tuple(labels.shape)} on {labels.device}")
    if bias is not None:
        check_tensor("bias", bias, dtypes=(hidden.dtype,), ndim=1)
        if bias.shape[0] != vocab or bias.device != device:
            raise ValueError(f"bias: expected [{vocab}] on {device} to match weight, got {tuple(bias.shape)} on {bias.device}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
    if normalizer is not None and reduction == "none":
        raise ValueError("normalizer: divides a summed loss; use it with reduction 'mean' or 'sum', not 'none'")
    ignore_index = check_int("ignore_index", ignore_index, -(1 << 63), 1 << 63)
    label_smoothing = _check_float("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
    z_loss = _check_float("z_loss", z_loss, 0.0, float("inf"))
    softcap = 0.0 if softcap is None else _check_float("softcap", softcap, 0.0, float("inf"), low_open=True)
    chunk_size = _lm_head.default_chunk_size(vocab, device) if chunk_size is None else check_int("chunk_size", chunk_size, 1, _MAX_LENGTH)
    if max_rows is not None:
        max_rows = check_int("max_rows", max_rows, 1, _MAX_LENGTH)

    flat_hidden = hidden.reshape(-1, dim)
    flat_labels = labels.reshape(-1)
    # Exact compaction where it costs no sync (a CPU, eager) and the output shape does not show it.
    readable = has_memory(labels)  # meta or fake tensors have no contents to check or compact
    static = device.type != "cpu" or torch.compiler.is_compiling() or reduction == "none" or not readable
    validate = validate and readable
    host_checks = validate or (device.type == "cpu" and not torch.compiler.is_compiling() and readable)  # GPUs: validate only
    if host_checks:
        _check_labels(flat_labels, ignore_index, vocab)
    index, dropped = _lm_rows(flat_labels, labels.shape, positions, max_rows, ignore_index, validate, static, host_checks)
    safe = index.clamp(min=0)
    rows = flat_hidden.index_select(0, safe)
    row_labels = torch.where(index >= 0, flat_labels.index_select(0, safe), ignore_index)

    options = _lm_head.HeadOptions(ignore_index, label_smoothing, z_loss, softcap, backend, chunk_size)
    if reduction == "none" or not torch.is_grad_enabled():
        loss = _lm_head.RowHeadLoss.apply(rows, weight, bias, row_labels, options)
        if reduction == "none":
            loss = _lm_output_rows(loss, labels, positions, max_rows)
        else:
            loss = _reduce(loss, _row_weights(row_labels, None, ignore_index, vocab, rows), reduction, normalizer)
    else:
        row_weight = _row_weights(row_labels, None, ignore_index, vocab, rows)
        scale = 1 / _denominator(reduction, normalizer, row_weight)
        loss = _lm_head.SummedHeadLoss.apply(rows, weight, bias, row_labels, scale, options)
    loss = loss.to(hidden.dtype)
    return (loss, dropped) if return_dropped else loss


def _lm_rows(labels, shape, positions, max_rows, ignore_index, validate, static, host_checks):
    """(flat row index [R] with -1 for an empty slot, dropped-row count as an int64 0-d tensor)."""
    device = labels.device
    total = labels.shape[0]
    no_drop = torch.zeros((), dtype=torch.int64, device=device)
    if positions is not None:
        batched = len(shape) == 2
        check_tensor("positions", positions, dtypes=_INT_IDS, ndim=2 if batched else 1)
        rows = shape[0] if batched else 1
        span = shape[1] if batched else total
        if positions.device != device or (batched and positions.shape[0] != rows):
            raise ValueError(f"positions: expected [{rows}, K] positions on {device}, got {tuple(positions.shape)} on {positions.device}")
        if host_checks:
            bad = (positions < -1) | (positions >= span)
            if bool(bad.any()):
                raise ValueError(f"positions: expected positions in [0, {span}) or -1 for an empty slot, got {int(positions[bad][0])}")
        offsets = (torch.arange(rows, device=device) * span).reshape(-1, 1) if batched else 0
        positions = positions.to(torch.int64)
        # Outside [0, span) reads nothing (unchecked on a GPU without validate): an empty slot.
        index = torch.where((positions >= 0) & (positions < span), positions + offsets, -1).reshape(-1)
        if not static:  # exact on a CPU: only the labelled rows
            index = index[labels.index_select(0, index.clamp(min=0)).ne(ignore_index) & (index >= 0)]
        return index, no_drop
    kept = labels != ignore_index
    if not static:
        index = kept.nonzero().reshape(-1)
        if max_rows is None:
            return index, no_drop
        dropped = torch.tensor(max(index.shape[0] - max_rows, 0), device=device)
        if validate and int(dropped) > 0:
            raise ValueError(f"max_rows: {index.shape[0]} labelled rows exceed the capacity of {max_rows}")
        return index[:max_rows], dropped
    if max_rows is None:  # every row, labelled or not: a static shape
        return torch.arange(total, device=device), no_drop
    rank = kept.cumsum(0) - 1
    slots = torch.full((max_rows + 1,), -1, dtype=torch.int64, device=device)
    slots.scatter_(0, torch.where(kept & (rank < max_rows), rank, max_rows), torch.arange(total, device=device))
    dropped = (kept.sum() - max_rows).clamp(min=0)
    if validate and bool(dropped > 0):
        raise ValueError(f"max_rows: {int(kept.sum())} labelled rows exceed the capacity of {max_rows}")
    return slots[:max_rows], dropped


def _lm_output_rows(loss, labels, positions, max_rows):
    """Per-row losses of reduction "none" in the selection's static shape: like positions, [max_rows]
    or like labels."""
    if positions is not None:
        return loss.reshape(positions.shape)
    return loss if max_rows is not None else loss.reshape(labels.shape)
