"""The torch.library custom ops (namespace fastmask::): schemas, fake kernels, backend dispatch.

Each op takes its backend name as an argument, so forcing "reference", "cpp" or "triton" still goes
through the op (and so through torch.compile). Eager calls skip the dispatcher (see `call`).
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from ._backend import resolve_backend
from .cpp import rng as cpp_rng
from .reference import rng as reference_rng
from .reference.cross_entropy import accumulation_dtype


def _triton_rng():
    from .triton import rng  # imports triton: only on the first Triton call

    return rng


def call(op, implementation, *args):
    """Run `op` under torch.compile (so it traces as one node) and `implementation` directly in
    eager mode, which saves the dispatcher's tens of microseconds per call."""
    if torch.compiler.is_compiling():
        return op(*args)
    return implementation(*args)


def eager_cache(fn):
    """lru_cache for host-side helpers of pure values, in eager mode only: under torch.compile the
    plain function is traced (Dynamo would ignore the cache anyway, with a warning)."""
    cached = functools.lru_cache(maxsize=256)(fn)

    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args) if torch.compiler.is_compiling() else cached(*args)

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
    ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table, replace_count,
    mask_token_id, views, exact, max_predictions, ignore_index, vocab_size, backend,
):
    chosen = resolve_backend(backend, ids.device)
    if keys is None and chosen != "cpp":  # the C++ kernel uses the row index itself
        keys = torch.arange(ids.shape[0], device=ids.device)
    args = (ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table,
            replace_count, mask_token_id, views, exact, max_predictions, ignore_index)
    if chosen == "cpp":
        return _masking_module(chosen).mask_tokens(*args, vocab_size=vocab_size)
    return _masking_module(chosen).mask_tokens(*args)


@torch.library.custom_op("fastmask::mask_tokens", mutates_args=())
def mask_tokens(
    ids: torch.Tensor, seed: torch.Tensor, keys: Optional[torch.Tensor], thresholds: torch.Tensor, special_ids: torch.Tensor,
    special_mask: Optional[torch.Tensor], attention_mask: Optional[torch.Tensor], lengths: Optional[torch.Tensor],
    replace_table: Optional[torch.Tensor], replace_count: int, mask_token_id: int, views: int, exact: bool,
    max_predictions: int, ignore_index: int, vocab_size: int, backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return mask_tokens_impl(
        ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table, replace_count,
        mask_token_id, views, exact, max_predictions, ignore_index, vocab_size, backend,
    )


@mask_tokens.register_fake
def _(ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table, replace_count,
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
