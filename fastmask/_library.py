"""The torch.library custom ops (namespace fastmask::): schemas, fake kernels, backend dispatch.

Each op takes its backend name as an argument, so forcing "reference", "cpp" or "triton" still goes
through the op (and so through torch.compile). Eager calls skip the dispatcher (see `call`).
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from ._backend import making_fake_tensors, needs_dispatcher, resolve_backend
from .cpp import rng as cpp_rng
from .reference import rng as reference_rng
from .reference.cross_entropy import accumulation_dtype
from .words import word_codes


def _triton_rng():
    from .triton import rng  # imports triton: only on the first Triton call

    return rng


def call(op, implementation, *args):
    """Run `op` under torch.compile (so it traces as one node) and on meta or fake tensors (its fake
    kernel), and `implementation` directly otherwise, which saves the dispatcher's tens of
    microseconds per call. args[0] is a tensor on the op's device (ids, or the seed)."""
    if needs_dispatcher(args[0]):
        return op(*args)
    return implementation(*args)


def eager_cache(fn):
    """lru_cache for host-side helpers of pure values, in eager mode only: under torch.compile the
    plain function is traced (Dynamo would ignore the cache anyway, with a warning), and under a
    FakeTensorMode the tensors it makes are fake (cached, they would leak into later real calls)."""
    cached = functools.lru_cache(maxsize=256)(fn)

    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args) if torch.compiler.is_compiling() or making_fake_tensors() else cached(*args)

    return wrapper


# --- random_words ----------------------------------------------------------------------------


def random_words_impl(seed: torch.Tensor, keys: torch.Tensor, length: int, purpose: int, backend: str) -> torch.Tensor:
    chosen = resolve_backend(backend, keys.device)
    if chosen == "cpp":
        return cpp_rng.random_words(seed, keys, length, purpose)
    if chosen == "triton":
        return _triton_rng().random_words(seed, keys, length, purpose)
    return reference_rng.random_words(seed, keys, length, purpose)


@torch.library.custom_op("fastmask::random_words", mutates_args=())
def random_words(seed: torch.Tensor, keys: torch.Tensor, length: int, purpose: int, backend: str) -> torch.Tensor:
    return random_words_impl(seed, keys, length, purpose, backend)


@random_words.register_fake
def _(seed, keys, length, purpose, backend):
    return keys.new_empty((keys.shape[0], length, 4), dtype=torch.int64)


# --- mask_tokens -----------------------------------------------------------------------------


def _masking_module(chosen: str):
    if chosen == "cpp":
        from .cpp import masking
    elif chosen == "triton":
        from .triton import masking
    else:
        from .reference import masking
    return masking


def mask_tokens_impl(
    ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, words, replace_table, replace_count,
    mask_token_id, views, exact, max_predictions, ignore_index, vocab_size, backend,
):
    chosen = resolve_backend(backend, ids.device)
    if keys is None and chosen != "cpp":  # the C++ kernel uses the row index itself
        keys = torch.arange(ids.shape[0], device=ids.device)
    args = (ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table,
            replace_count, mask_token_id, views, exact, max_predictions, ignore_index)
    if chosen == "cpp":  # reads any form of `words` in place
        return _masking_module(chosen).mask_tokens(*args, vocab_size=vocab_size, words=words)
    if words is not None:
        words = word_codes(ids, words)
    return _masking_module(chosen).mask_tokens(*args, words=words)


@torch.library.custom_op("fastmask::mask_tokens", mutates_args=())
def mask_tokens(
    ids: torch.Tensor, seed: torch.Tensor, keys: Optional[torch.Tensor], thresholds: torch.Tensor, special_ids: torch.Tensor,
    special_mask: Optional[torch.Tensor], attention_mask: Optional[torch.Tensor], lengths: Optional[torch.Tensor],
    words: Optional[torch.Tensor], replace_table: Optional[torch.Tensor], replace_count: int, mask_token_id: int,
    views: int, exact: bool, max_predictions: int, ignore_index: int, vocab_size: int, backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """words: None (token masking) or one word source (whole-word masking): uint8 [B, L] codes, word ids
    [B, L], offsets [B, L, 2] or a [vocab] table, told apart by fastmask.words.word_codes."""
    return mask_tokens_impl(
        ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, words, replace_table,
        replace_count, mask_token_id, views, exact, max_predictions, ignore_index, vocab_size, backend,
    )


@mask_tokens.register_fake
def _(ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, words, replace_table, replace_count,
      mask_token_id, views, exact, max_predictions, ignore_index, vocab_size, backend):
    rows, length = ids.shape[0] * views, ids.shape[1]
    return ids.new_empty(rows, length), ids.new_empty(rows, length), ids.new_empty(rows, max_predictions, dtype=torch.int64)


# --- masked cross-entropy ------------------------------------------------------------------------
# Always called through torch.ops: autograd is registered on the op, and the loss's own cost dwarfs
# the dispatcher's.


def _ce_module(logits: torch.Tensor, backend: str):
    chosen = resolve_backend(backend, logits.device)
    if chosen == "cpp":
        from .cpp import cross_entropy
    elif chosen == "triton":
        from .triton import cross_entropy
    else:
        from .reference import cross_entropy
    return cross_entropy


@torch.library.custom_op("fastmask::ce_forward", mutates_args=())
def ce_forward(
    logits: torch.Tensor, labels: torch.Tensor, weight: Optional[torch.Tensor], ignore_index: int,
    label_smoothing: float, z_loss: float, softcap: float, backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (loss, lse) in fp32 (fp64 for fp64 logits); docs/loss.md."""
    return _ce_module(logits, backend).forward(logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap)


@ce_forward.register_fake
def _(logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap, backend):
    rows = logits.new_empty(logits.shape[0], dtype=accumulation_dtype(logits))
    return rows, torch.empty_like(rows)


@torch.library.custom_op("fastmask::ce_backward", mutates_args=())
def ce_backward(
    logits: torch.Tensor, labels: torch.Tensor, weight: Optional[torch.Tensor], lse: torch.Tensor,
    grad_rows: torch.Tensor, ignore_index: int, label_smoothing: float, z_loss: float, softcap: float, backend: str,
) -> torch.Tensor:
    """d(sum_i grad_rows[i] * loss_i) / d logits, in logits' dtype, recomputed from the saved lse."""
    return _ce_module(logits, backend).backward(
        logits, labels, weight, lse, grad_rows, ignore_index, label_smoothing, z_loss, softcap)


@ce_backward.register_fake
def _(logits, labels, weight, lse, grad_rows, ignore_index, label_smoothing, z_loss, softcap, backend):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


def _ce_setup_context(ctx, inputs, output):
    logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap, backend = inputs
    ctx.save_for_backward(logits, labels, weight, output[1])
    ctx.options = (ignore_index, label_smoothing, z_loss, softcap, backend)


def _ce_autograd(ctx, grad_loss, grad_lse):
    logits, labels, weight, lse = ctx.saved_tensors
    grad = torch.ops.fastmask.ce_backward(logits, labels, weight, lse, grad_loss, *ctx.options)
    return grad, None, None, None, None, None, None, None


ce_forward.register_autograd(_ce_autograd, setup_context=_ce_setup_context)


@torch.library.custom_op("fastmask::ce_forward_inplace", mutates_args=("logits",))
def ce_forward_inplace(
    logits: torch.Tensor, labels: torch.Tensor, weight: Optional[torch.Tensor], grad_scale: torch.Tensor,
    ignore_index: int, label_smoothing: float, z_loss: float, softcap: float, backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ce_forward that also overwrites logits with grad_scale * d(sum_i loss_i) / d logits."""
    return _ce_module(logits, backend).forward_inplace(
        logits, labels, weight, grad_scale, ignore_index, label_smoothing, z_loss, softcap)


@ce_forward_inplace.register_fake
def _(logits, labels, weight, grad_scale, ignore_index, label_smoothing, z_loss, softcap, backend):
    rows = logits.new_empty(logits.shape[0], dtype=accumulation_dtype(logits))
    return rows, torch.empty_like(rows)


@torch.library.custom_op("fastmask::scale_grad", mutates_args=("grad",))
def scale_grad(grad: torch.Tensor, scale: torch.Tensor, backend: str) -> None:
    """grad *= scale ([] or one per row), skipped on the device where scale is exactly 1: an
    in-place backward's upstream gradient is 1 unless a loss scale or an average changed it."""
    _ce_module(grad, backend).scale_grad(grad, scale)


@scale_grad.register_fake
def _(grad, scale, backend):
    return None


# --- T5 span corruption / UL2 (fastmask/t5.py, docs/t5.md) ------------------------------------


def _t5_module(chosen: str):
    if chosen == "cpp":
        from .cpp import t5
    elif chosen == "triton":
        from .triton import t5
    else:
        from .reference import t5
    return t5


def span_corruption_impl(ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw, vocab_size,
                         backend):
    chosen = resolve_backend(backend, ids.device)
    if chosen == "cpp":  # checks the ids against vocab_size (> 0) inside; keys None: the row index
        return _t5_module(chosen).span_corruption(
            ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw, vocab_size=vocab_size)
    if keys is None:
        keys = torch.arange(ids.shape[0], device=ids.device)
    return _t5_module(chosen).span_corruption(
        ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw)


@torch.library.custom_op("fastmask::span_corruption", mutates_args=())
def span_corruption(
    ids: torch.Tensor, seed: torch.Tensor, keys: Optional[torch.Tensor], table: torch.Tensor, sentinels: torch.Tensor,
    eos: int, pad: int, input_length: int, target_length: int, draw: bool, vocab_size: int, backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """vocab_size: 0, or the vocabulary the C++ kernel checks ids against (other backends: the caller)."""
    return span_corruption_impl(ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw,
                                vocab_size, backend)


@span_corruption.register_fake
def _(ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw, vocab_size, backend):
    rows = ids.shape[0]
    lengths = [ids.new_empty(rows, dtype=torch.int64) for _ in range(3)]
    return (ids.new_empty(rows, input_length), ids.new_empty(rows, target_length), *lengths)


# --- span / n-gram masking (fastmask/spans.py, docs/spans.md) ------------------------------------


def _spans_module(chosen: str):
    if chosen == "cpp":
        from .cpp import spans
    elif chosen == "triton":
        from .triton import spans
    else:
        from .reference import spans
    return spans


def mask_spans_impl(
    ids, seed, keys, thresholds, table, special_ids, special_mask, attention_mask, words, replace_table, replace_count,
    mask_token_id, max_predictions, ignore_index, vocab_size, backend,
):
    chosen = resolve_backend(backend, ids.device)
    if keys is None and chosen != "cpp":  # the C++ kernel uses the row index itself
        keys = torch.arange(ids.shape[0], device=ids.device)
    if words is not None:
        words = word_codes(ids, words)
    args = (ids, seed, keys, thresholds, table, special_ids, special_mask, attention_mask, words, replace_table,
            replace_count, mask_token_id, max_predictions, ignore_index)
    if chosen == "cpp":
        return _spans_module(chosen).mask_spans(*args, vocab_size=vocab_size)
    return _spans_module(chosen).mask_spans(*args)


@torch.library.custom_op("fastmask::mask_spans", mutates_args=())
def mask_spans(
    ids: torch.Tensor, seed: torch.Tensor, keys: Optional[torch.Tensor], thresholds: torch.Tensor, table: torch.Tensor,
    special_ids: torch.Tensor, special_mask: Optional[torch.Tensor], attention_mask: Optional[torch.Tensor],
    words: Optional[torch.Tensor], replace_table: Optional[torch.Tensor], replace_count: int, mask_token_id: int,
    max_predictions: int, ignore_index: int, vocab_size: int, backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """words: None (every token its own word) or one word source, as mask_tokens."""
    return mask_spans_impl(
        ids, seed, keys, thresholds, table, special_ids, special_mask, attention_mask, words, replace_table,
        replace_count, mask_token_id, max_predictions, ignore_index, vocab_size, backend,
    )


@mask_spans.register_fake
def _(ids, seed, keys, thresholds, table, special_ids, special_mask, attention_mask, words, replace_table, replace_count,
      mask_token_id, max_predictions, ignore_index, vocab_size, backend):
    rows, length = ids.shape
    return ids.new_empty(rows, length), ids.new_empty(rows, length), ids.new_empty(rows, max_predictions, dtype=torch.int64)


# --- image and patch masking (fastmask/image.py, docs/image.md) ------------------------------


def _image_module(chosen: str):
    if chosen == "cpp":
        from .cpp import image
    elif chosen == "triton":
        from .triton import image
    else:
        from .reference import image
    return image


def _image_keys(keys, batch, device, chosen):
    if keys is None and chosen != "cpp":  # the C++ kernel uses the row index itself
        return torch.arange(batch, device=device)
    return keys


def block_mask_impl(seed, keys, cum, shapes, batch, height, width, target, max_attempts, exact, backend):
    chosen = resolve_backend(backend, seed.device)
    keys = _image_keys(keys, batch, seed.device, chosen)
    if chosen == "cpp":
        from .cpp import image
        return image.block_mask(seed, keys, cum, shapes, batch, height, width, target, max_attempts, exact)
    return _image_module(chosen).block_mask(seed, keys, cum, shapes, height, width, target, max_attempts, exact)


@torch.library.custom_op("fastmask::block_mask", mutates_args=())
def block_mask(
    seed: torch.Tensor, keys: Optional[torch.Tensor], cum: torch.Tensor, shapes: torch.Tensor, batch: int, height: int,
    width: int, target: int, max_attempts: int, exact: bool, backend: str,
) -> torch.Tensor:
    return block_mask_impl(seed, keys, cum, shapes, batch, height, width, target, max_attempts, exact, backend)


@block_mask.register_fake
def _(seed, keys, cum, shapes, batch, height, width, target, max_attempts, exact, backend):
    return seed.new_empty((batch, height, width), dtype=torch.bool)


def patch_shuffle_impl(seed, keys, batch, length, keep, backend):
    chosen = resolve_backend(backend, seed.device)
    keys = _image_keys(keys, batch, seed.device, chosen)
    if chosen == "cpp":
        from .cpp import image
        return image.patch_shuffle(seed, keys, batch, length, keep)
    return _image_module(chosen).patch_shuffle(seed, keys, length, keep)


@torch.library.custom_op("fastmask::patch_shuffle", mutates_args=())
def patch_shuffle(
    seed: torch.Tensor, keys: Optional[torch.Tensor], batch: int, length: int, keep: int, backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return patch_shuffle_impl(seed, keys, batch, length, keep, backend)


@patch_shuffle.register_fake
def _(seed, keys, batch, length, keep, backend):
    return (seed.new_empty((batch, length), dtype=torch.bool), seed.new_empty((batch, keep), dtype=torch.int64),
            seed.new_empty((batch, length), dtype=torch.int64))
