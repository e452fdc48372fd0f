"""The public ops: argument checks, defaults and backend choice, then the custom ops of _library."""
from __future__ import annotations

import warnings
from typing import NamedTuple, Optional

import torch

from . import _library
from ._backend import autocast_dtype, check_backend, has_memory, resolve_backend
from ._rng import TWO_32
from ._seed import check_keys, resolve_seed
from ._args import (
    _INT_IDS, _MASK_DTYPES, _MAX_LENGTH, _check_word_table, _constant, _replacements, _rows, _special_ids,
    _word_source,
)
from ._validate import (check_id_rows, check_ids_in_range, check_int, check_memory, check_probability, check_same_shape,
                        check_tensor)
from ._accumulation import accumulation_dtype, kept_rows

__all__ = ["MaskedTokens", "mask_tokens", "masked_cross_entropy", "masked_lm_loss", "pad_sequences", "random_words"]

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
    return _library.random_words(seed, keys, length, purpose, backend)


_PAD_DTYPES = (torch.int64, torch.int32, torch.uint8)


def pad_sequences(rows, length: int, *, pad_value: int = 0, left: bool = False, dtype=torch.int64, width: int = 1,
                  name: str = "input_ids", backend: str = "auto") -> torch.Tensor:
    """Rows of ids (lists, tuples, numpy arrays or tensors) as one padded CPU tensor: [len(rows),
    length], or [len(rows), length, width] for rows of `width`-tuples (offset pairs). Row b's values
    come first (last when `left`), pad_value fills the rest. Errors name `name`, the feature and the
    position. "auto" reads lists and tuples in C++ and anything else through torch (the reference).
    """
    check_backend(backend)
    if backend == "triton":
        raise ValueError("backend: padding reads Python objects on the host; use 'auto', 'cpp' or 'reference'")
    length = check_int("length", length, 0, _MAX_LENGTH)
    width = check_int("width", width, 1, 1 << 16)
    if dtype not in _PAD_DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(str(d) for d in _PAD_DTYPES)}, got {dtype}")
    rows = list(rows)
    chosen = resolve_backend(backend, torch.device("cpu"))
    if backend == "auto" and not all(isinstance(r, (list, tuple)) for r in rows):
        chosen = "reference"  # the C++ kernel reads Python lists and tuples; torch copies arrays and tensors
    return _library.implementation("padding", chosen).pad_sequences(rows, length, pad_value, bool(left), name, dtype, width)


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
    pad_token_id: Optional[int] = None,
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
    docs/masking.md defines every argument and the algorithm. Padding is found from attention_mask,
    lengths, or pad_token_id (a special id: without any of them, pad tokens can be selected).

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
    if pad_token_id is not None:  # padding by id, as HF's collator finds it: never selected, never in labels
        specials = tuple(sorted({*specials, check_int("pad_token_id", pad_token_id, 0, vocab_size or id_limit)}))
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
    # The resolved backend: the op need not resolve "auto" again (a few microseconds of a small call).
    arguments = (ids, seed, keys, thresholds, special_tensor, special_mask, attention, lengths, words, replace_table,
                 replace_count, mask_token_id, views, exact)
    out_ids, labels, positions = _library.mask_tokens(*arguments, max_predictions or 0, ignore_index, vocab_size or 0, chosen)
    if max_predictions and device.type == "cpu" and not torch.compiler.is_compiling():
        _count_dropped(labels, positions, ignore_index, max_predictions,
                       lambda: _library.mask_tokens(*arguments, 0, ignore_index, vocab_size or 0, chosen)[1])
    if one_row and views == 1:
        out_ids, labels, positions = out_ids[0], labels[0], positions[0]
    return MaskedTokens(out_ids, labels, positions if max_predictions else None)


_dropped = {"positions": 0, "warned": False}


def dropped_predictions() -> int:
    """Labelled positions that mask_tokens' max_predictions has dropped in this process (CPU calls;
    counted where a row fills its capacity, by masking the batch again without the cap)."""
    return _dropped["positions"]


def _count_dropped(labels, positions, ignore_index, capacity, uncapped) -> None:
    """Warn once per process, and count, when a capacity drops labels (docs/masking.md#capacity). Only
    rows that fill all their slots can have dropped any: the batch is masked again without the cap
    (the same draws) only then."""
    if not bool((positions[:, -1] >= 0).any()):
        return
    dropped = int((uncapped() != ignore_index).sum()) - int((labels != ignore_index).sum())
    if dropped <= 0:
        return
    _dropped["positions"] += dropped
    if not _dropped["warned"]:
        _dropped["warned"] = True
        warnings.warn(f"mask_tokens: max_predictions={capacity} dropped {dropped} labelled positions in this batch "
                      f"(they stay corrupted, without labels); raise max_predictions. Warned once; "
                      "fastmask.functional.dropped_predictions() counts them all", stacklevel=3)


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


_LM_IMPLS = ("chunked", "fused")
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
    logit_scale: Optional[float] = None,
    normalizer=None,
    shift: bool = False,
    return_lse: bool = False,
    return_z_loss: bool = False,
    return_accuracy: bool = False,
    return_predictions: bool = False,
    inplace_backward: bool = False,
    process_group=None,
    validate: bool = False,
    backend: str = "auto",
):
    """Cross-entropy over rows whose label is not ignore_index, as torch.nn.functional.cross_entropy,
    plus z-loss, softcapping, a logit scale and a given normalizer; docs/loss.md has the formulas.

    logits [N, V] or [B, L, V] (fp32, bf16, fp16, fp64), labels [N] or [B, L]. Ignored rows cost
    nothing and get zero gradient; with every row ignored the "mean" is 0 (torch gives NaN). The loss
    is fp32 (fp64 for fp64 logits) for every reduction; the gradient has the logits' dtype.
    `normalizer` (a tensor or number) divides the summed loss instead of the number (or weight) of
    labelled rows, e.g. HF Trainer's num_items_in_batch. shift=True is the causal-LM loss: row t of
    each sequence predicts label t + 1 (no copy of the logits; "none" gives [B, L - 1]). With
    inplace_backward=True the forward overwrites `logits` with its gradient (logits must not be
    needed afterwards). process_group: the logits hold this rank's shard of the vocabulary
    (docs/distributed.md).

    Returns the loss, followed by, in this order and only when asked: the per-row log-sum-exp
    (return_lse; differentiable unless inplace_backward, 0 for ignored rows), the z-loss term
    (return_z_loss; reduced like the loss, not differentiable), the token accuracy (return_accuracy:
    the fraction of labelled rows whose largest logit is the label's, a 0-d fp32 tensor) and the
    predicted ids (return_predictions; ignore_index for ignored rows).
    """
    check_backend(backend)
    check_tensor("logits", logits, dtypes=_FLOATS, ndim=logits.dim() if logits.dim() in (2, 3) else 2)
    check_tensor("labels", labels, dtypes=_INT_IDS, ndim=logits.dim() - 1)
    if labels.shape != logits.shape[:-1] or labels.device != logits.device:
        raise ValueError(f"labels: expected shape {tuple(logits.shape[:-1])} on {logits.device} to match logits, got {tuple(labels.shape)} on {labels.device}")
    options = _loss_options(reduction, ignore_index, label_smoothing, z_loss, softcap, logit_scale, normalizer)
    ignore_index, label_smoothing, z_loss, softcap, logit_scale = options
    vocab = logits.shape[-1]
    if vocab == 0:
        raise ValueError(f"logits: expected at least one class, got shape {tuple(logits.shape)}")
    if weight is not None:
        check_tensor("weight", weight, dtypes=_FLOATS, ndim=1)
        if weight.shape[0] != vocab or weight.device != logits.device:
            raise ValueError(f"weight: expected {vocab} class weights on {logits.device}, got {tuple(weight.shape)} on {weight.device}")
    if process_group is not None:
        from . import _vocab_parallel
        _vocab_parallel.check_group(process_group, weight=weight, inplace_backward=inplace_backward)
    shape = labels.shape
    if shift:
        labels = _shifted(labels, ignore_index)
    rows = logits.reshape(-1, vocab)
    if rows.shape[0] > 0 and rows.stride(1) != 1:
        rows = rows.contiguous()  # kernels walk a row contiguously; rows may be strided
    if inplace_backward and rows.shape[0] > 1 and rows.stride(0) < vocab:
        raise ValueError(
            f"logits: inplace_backward=True writes each row's gradient over the row, but these rows share memory "
            f"(row stride {rows.stride(0)} < {vocab} classes, e.g. an expanded tensor); pass logits.contiguous()")
    flat_labels = labels.reshape(-1)
    chosen = resolve_backend(backend, logits.device)
    if process_group is not None:
        if validate or (logits.device.type == "cpu" and not torch.compiler.is_compiling()):
            _check_labels(flat_labels, ignore_index, _vocab_parallel.layout(vocab, process_group, logits.device)[1])
    elif validate or (logits.device.type == "cpu" and chosen != "cpp" and not torch.compiler.is_compiling()):
        _check_labels(flat_labels, ignore_index, vocab)  # the C++ kernel checks inside; GPUs only under validate

    with _autocast_off(logits.device):
        kept = flat_labels != ignore_index
        predictions = None
        if return_accuracy or return_predictions:  # before an in-place forward overwrites the logits
            predictions = _predictions(rows, flat_labels, ignore_index, process_group, backend)
        if logit_scale is not None:
            rows = rows * logit_scale
        ce = (ignore_index, label_smoothing, z_loss, softcap, backend)
        if process_group is not None:
            loss_rows, lse = _vocab_parallel.cross_entropy_rows(rows, flat_labels, ce, process_group)
        else:
            loss_rows, lse = None, None
        row_weight = _row_weights(flat_labels, weight, ignore_index, vocab, rows) if process_group is None else kept.to(accumulation_dtype(rows))
        scale = _scales(reduction, normalizer, row_weight, kept, z_loss > 0)
        if loss_rows is None and inplace_backward:
            loss, lse = _InplaceCrossEntropy.apply(rows, flat_labels, weight, reduction, scale, ce)
        else:
            if loss_rows is None:
                loss_rows, lse = torch.ops.fastmask.ce_forward(rows, flat_labels, weight, *ce)
            loss = _reduced(loss_rows, lse, reduction, scale, z_loss)
        extras = []
        if return_lse:
            extras.append(_row_output(lse, shape, shift))
        if return_z_loss:
            z_rows = (z_loss * lse * lse).detach()
            extras.append(_row_output(z_rows, shape, shift) if reduction == "none" else z_rows.sum() * scale[1])
        if return_accuracy:
            extras.append(_accuracy(predictions, flat_labels, kept))
        if return_predictions:
            extras.append(_row_output(predictions, shape, shift))
    if reduction == "none":
        loss = _row_output(loss, shape, shift)
    return (loss, *extras) if extras else loss


def _loss_options(reduction, ignore_index, label_smoothing, z_loss, softcap, logit_scale, normalizer):
    """The scalar options of both losses, checked: (ignore_index, label_smoothing, z_loss, softcap, logit_scale)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
    ignore_index = check_int("ignore_index", ignore_index, -(1 << 63), 1 << 63)
    label_smoothing = _check_float("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
    z_loss = _check_float("z_loss", z_loss, 0.0, float("inf"))
    softcap = 0.0 if softcap is None else _check_float("softcap", softcap, 0.0, float("inf"), low_open=True)
    if logit_scale is not None:
        logit_scale = _check_float("logit_scale", logit_scale, 0.0, float("inf"), low_open=True, high_open=True)
    if normalizer is not None:
        if reduction == "none":
            raise ValueError("normalizer: divides a summed loss; use it with reduction 'mean' or 'sum', not 'none'")
        if isinstance(normalizer, torch.Tensor):
            if normalizer.numel() != 1 or normalizer.dtype == torch.bool or normalizer.is_complex():
                raise ValueError(f"normalizer: expected a number or a one-element real tensor, got {normalizer.dtype} of shape {tuple(normalizer.shape)}")
        else:
            _check_float("normalizer", normalizer, 0.0, float("inf"), low_open=True, high_open=True)
    return ignore_index, label_smoothing, z_loss, softcap, logit_scale


class _autocast_off:
    """The losses choose their own precision (fp32 accumulation, the logits' dtype for gradients): under
    torch.autocast their torch ops run as outside it."""

    def __init__(self, device: torch.device):
        self.context = None if autocast_dtype(device) is None else torch.autocast(device.type, enabled=False)

    def __enter__(self):
        if self.context is not None:
            self.context.__enter__()

    def __exit__(self, *exc):
        if self.context is not None:
            self.context.__exit__(*exc)


def _shifted(labels, ignore_index):
    """labels[..., t + 1] at t, ignore_index at the last position: the causal-LM pairing without
    touching the logits or hidden states."""
    return torch.cat([labels[..., 1:], labels.new_full(labels.shape[:-1] + (1,), ignore_index)], dim=-1)


def _row_output(values, shape, shift):
    """Per-row values in the labels' shape, less the last position of each sequence with shift."""
    values = values.reshape(shape)
    return values[..., :-1] if shift else values


def _predictions(rows, labels, ignore_index, process_group, backend):
    """Each labelled row's argmax (the first on ties), ignore_index for ignored rows."""
    if process_group is None:  # a kernel that reads the labelled rows only
        return torch.ops.fastmask.ce_argmax(rows, labels, ignore_index, backend)
    from . import _vocab_parallel
    return torch.where(labels != ignore_index, _vocab_parallel.argmax(rows, process_group), ignore_index)


def _accuracy(predictions, labels, kept):
    """Fraction of labelled rows predicted right (0 without labelled rows), fp32, no host sync."""
    hits = ((predictions == labels) & kept).sum(dtype=torch.float32)
    return hits / kept.sum().clamp(min=1).to(torch.float32)


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


def _scales(reduction, normalizer, row_weight, kept, has_z_loss):
    """[2]: what multiplies the summed cross-entropy (and smoothing) terms and the summed z-loss term.
    They differ for a class-weighted "mean": the z-loss is a per-token term, averaged over the labelled
    rows (as Liger and PaLM), while the cross-entropy is averaged over their weights (as torch)."""
    if reduction == "none":
        return torch.ones(2, dtype=row_weight.dtype, device=row_weight.device)
    ce = 1 / _denominator(reduction, normalizer, row_weight)
    z = ce
    if has_z_loss and reduction == "mean" and normalizer is None:
        z = 1 / _denominator(reduction, None, kept.to(row_weight.dtype))
    return torch.stack([ce, z])


def _reduced(loss_rows, lse, reduction, scale, z_loss):
    if reduction == "none":
        return loss_rows
    total = loss_rows.sum() * scale[0]
    if z_loss > 0:  # the z-loss term's own scale (equal to scale[0] unless class weights average the rest)
        total = total + (z_loss * (lse * lse).sum()) * (scale[1] - scale[0])
    return total


class _InplaceCrossEntropy(torch.autograd.Function):
    """The loss with its reduction; the forward writes the gradient for an upstream gradient of 1
    into the logits buffer, and backward rescales it there by the upstream gradient, on the device,
    only where that is not 1 (no host sync)."""

    @staticmethod
    def forward(ctx, rows, labels, weight, reduction, scale, options):
        loss_rows, lse = torch.ops.fastmask.ce_forward_inplace(rows, labels, weight, scale, *options)
        ctx.save_for_backward(rows)
        ctx.backend = options[-1]
        ctx.mark_non_differentiable(lse)
        return _reduced(loss_rows, lse, reduction, scale, options[2]), lse

    @staticmethod
    def backward(ctx, grad_loss, grad_lse):
        (rows,) = ctx.saved_tensors
        torch.ops.fastmask.scale_grad(rows, grad_loss, ctx.backend)
        return rows, None, None, None, None, None


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
    logit_scale: Optional[float] = None,
    normalizer=None,
    shift: bool = False,
    chunk_size: Optional[int] = None,
    return_lse: bool = False,
    return_z_loss: bool = False,
    return_accuracy: bool = False,
    return_predictions: bool = False,
    return_dropped: bool = False,
    process_group=None,
    validate: bool = False,
    backend: str = "auto",
    impl: str = "chunked",
    filter_eps: Optional[float] = None,
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
    exactly (there is no device to sync with), which gives the same loss. shift=True is the causal-LM
    loss (hidden row t predicts label t + 1; positions name hidden rows). logit_scale multiplies the
    logits (applied to the selected hidden rows). Under torch.autocast the head runs in the autocast
    dtype, as hidden.to(dtype) @ weight.to(dtype).T would. process_group: weight (and bias) hold this
    rank's shard of the vocabulary (docs/distributed.md).

    impl: "chunked" (row chunks through torch's matmuls and the cross-entropy kernels; every
    backend) or "fused" (one Triton kernel pair computing logit tiles on chip, Cut Cross-Entropy's
    approach; CUDA, or CPU tensors under TRITON_INTERPRET=1). filter_eps (fused only): skip the
    gradient of logit tiles whose every |dloss/dlogit| is below it (CCE's filtering; off by default).

    Returns the loss (fp32; fp64 for fp64 inputs; reduction "mean"/"sum": a scalar; "none": per row
    of the selection, shaped like positions, [max_rows], or labels), followed by, in this order and
    only when asked: the per-row log-sum-exp (return_lse; shaped like "none"'s losses, 0 for empty or
    ignored rows, differentiable with reduction "none"), the z-loss term (return_z_loss; reduced like
    the loss), the token accuracy (return_accuracy; a 0-d fp32 tensor), the predicted ids
    (return_predictions; shaped like "none"'s losses, ignore_index for empty or ignored rows), and the
    dropped count (return_dropped).
    """
    from . import _lm_head

    device = hidden.device
    dtype = autocast_dtype(device)
    if dtype is not None:  # as autocast runs a matmul: its floating inputs (but fp64) in the autocast dtype
        cast = lambda t: t.to(dtype) if t is not None and t.is_floating_point() and t.dtype != torch.float64 else t  # noqa: E731
        with torch.autocast(device.type, enabled=False):
            return masked_lm_loss(
                cast(hidden), cast(weight), labels, bias=cast(bias), positions=positions, max_rows=max_rows,
                ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                softcap=softcap, logit_scale=logit_scale, normalizer=normalizer, shift=shift, chunk_size=chunk_size,
                return_lse=return_lse, return_z_loss=return_z_loss, return_accuracy=return_accuracy,
                return_predictions=return_predictions, return_dropped=return_dropped, process_group=process_group,
                validate=validate, backend=backend)
    check_backend(backend)
    check_tensor("hidden", hidden, dtypes=_FLOATS, ndim=hidden.dim() if hidden.dim() in (2, 3) else 2)
    check_tensor("weight", weight, dtypes=(hidden.dtype,), ndim=2)
    check_tensor("labels", labels, dtypes=_INT_IDS, ndim=hidden.dim() - 1)
    dim = hidden.shape[-1]
    vocab = weight.shape[0]
    if weight.shape[1] != dim or weight.device != device or vocab == 0:
        raise ValueError(f"weight: expected [V >= 1, {dim}] on {device} to match hidden, got {tuple(weight.shape)} on {weight.device}")
    if labels.shape != hidden.shape[:-1] or labels.device != device:
        raise ValueError(f"labels: expected shape {tuple(hidden.shape[:-1])} on {device} to match hidden, got {tuple(labels.shape)} on {labels.device}")
    if bias is not None:
        check_tensor("bias", bias, dtypes=(hidden.dtype,), ndim=1)
        if bias.shape[0] != vocab or bias.device != device:
            raise ValueError(f"bias: expected [{vocab}] on {device} to match weight, got {tuple(bias.shape)} on {bias.device}")
    ignore_index, label_smoothing, z_loss, softcap, logit_scale = _loss_options(
        reduction, ignore_index, label_smoothing, z_loss, softcap, logit_scale, normalizer)
    chunk_size = _lm_head.default_chunk_size(vocab, device) if chunk_size is None else check_int("chunk_size", chunk_size, 1, _MAX_LENGTH)
    if max_rows is not None:
        max_rows = check_int("max_rows", max_rows, 1, _MAX_LENGTH)
    if impl not in _LM_IMPLS:
        raise ValueError(f"impl: expected one of {', '.join(_LM_IMPLS)}, got {impl!r}")
    if filter_eps is not None and impl != "fused":
        raise ValueError("filter_eps: gradient filtering needs impl='fused'")
    filter_eps = 0.0 if filter_eps is None else _check_float("filter_eps", filter_eps, 0.0, 1.0)
    if process_group is not None:
        from . import _vocab_parallel
        _vocab_parallel.check_group(process_group)
    if impl == "fused" and process_group is not None:
        raise ValueError("process_group: the vocabulary-parallel head runs with impl='chunked'")

    flat_hidden = hidden.reshape(-1, dim)
    if shift:
        labels = _shifted(labels, ignore_index)
    flat_labels = labels.reshape(-1)
    per_row = reduction == "none" or return_lse or return_predictions
    # Exact compaction where it costs no sync (a CPU, eager) and no output shows it.
    readable = has_memory(labels)  # meta or fake tensors have no contents to check or compact
    static = device.type != "cpu" or torch.compiler.is_compiling() or per_row or not readable
    validate = validate and readable
    host_checks = validate or (device.type == "cpu" and not torch.compiler.is_compiling() and readable)  # GPUs: validate only
    if host_checks:  # against the whole vocabulary with a process group
        _check_labels(flat_labels, ignore_index, vocab if process_group is None else _vocab_parallel.layout(vocab, process_group, device)[1])
    index, dropped = _lm_rows(flat_labels, labels.shape, positions, max_rows, ignore_index, validate, static, host_checks)
    safe = index.clamp(min=0)
    rows = _gather_rows(flat_hidden, safe)
    if logit_scale is not None:
        rows = rows * logit_scale  # (s h) W^T = s (h W^T): the scale on D values a row, not V
    row_labels = torch.where(index >= 0, _gather_rows(flat_labels, safe), ignore_index)
    kept = row_labels != ignore_index
    row_weight = kept.to(accumulation_dtype(rows))
    scale = 1 / _denominator(reduction, normalizer, row_weight)

    options = _lm_head.HeadOptions(ignore_index, label_smoothing, z_loss, softcap, backend, chunk_size,
                                   return_accuracy or return_predictions)
    if process_group is not None:
        loss, lse, predicted = _vocab_parallel.lm_head_rows(rows, weight, bias, row_labels, options, process_group)
        if reduction != "none":
            loss = loss.sum() * scale
    elif impl == "fused":
        loss, lse, predicted = _lm_head.FusedHeadLoss.apply(rows, weight, bias, row_labels, options, filter_eps)
        if reduction != "none":
            loss = loss.sum() * scale
    elif reduction == "none" or not torch.is_grad_enabled():
        loss, lse, predicted = _lm_head.RowHeadLoss.apply(rows, weight, bias, row_labels, options)
        if reduction != "none":
            loss = loss.sum() * scale
    else:
        loss, lse, predicted = _lm_head.SummedHeadLoss.apply(rows, weight, bias, row_labels, scale, options)
    selection = (labels, positions, max_rows, shift)
    if reduction == "none":
        loss = _lm_output_rows(loss, *selection)
    extras = []
    if return_lse:
        extras.append(_lm_output_rows(lse, *selection))
    if return_z_loss:
        z_rows = (z_loss * lse * lse).detach()
        extras.append(_lm_output_rows(z_rows, *selection) if reduction == "none" else z_rows.sum() * scale)
    if return_accuracy:
        extras.append(_accuracy(predicted, row_labels, kept))
    if return_predictions:
        extras.append(_lm_output_rows(predicted, *selection))
    if return_dropped:
        extras.append(dropped)
    return (loss, *extras) if extras else loss


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


def _gather_rows(flat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """flat[index] along dim 0 (index clamped to >= 0). Without any row to read (0 positions, with
    max_rows or positions naming empty slots) each slot reads one zero row, still in the graph."""
    if flat.shape[0] == 0:
        flat = torch.cat([flat, flat.new_zeros((1, *flat.shape[1:]))])
    return flat.index_select(0, index)


def _lm_output_rows(values, labels, positions, max_rows, shift):
    """Per-row values of the selection in its static shape: like positions, [max_rows] or like labels
    (less each sequence's last position with shift)."""
    if positions is not None:
        return values.reshape(positions.shape)
    if max_rows is not None:
        return values
    return _row_output(values, labels.shape, shift)
