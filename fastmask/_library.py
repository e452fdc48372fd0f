"""The torch.library custom ops (namespace fastmask::): schemas, fake kernels, backend dispatch.

Each op is registered by `op`, which returns an eager callable: under torch.compile it calls the
registered op (one node of the graph), in eager mode the implementation itself, which saves the
dispatcher's tens of microseconds per call (quack's torch_library_op does the same). Each op takes
its backend name as an argument, so forcing "reference", "cpp" or "triton" still goes through the op
(and so through torch.compile); `implementation` picks the module that runs.
"""
from __future__ import annotations

import functools
import importlib
from typing import Callable, Optional

import torch

from ._accumulation import accumulation_dtype
from ._backend import making_fake_tensors, needs_dispatcher, resolve_backend
from .words import word_codes


def call(op, implementation, *args):
    """Run `op` under torch.compile (so it traces as one node) and on meta or fake tensors (its fake
    kernel), and `implementation` directly otherwise, which saves the dispatcher's tens of
    microseconds per call. The first tensor argument (or list of tensors) anchors the op's device."""
    if needs_dispatcher(_anchor(args)):
        return op(*args)
    return implementation(*args)


def _anchor(args) -> torch.Tensor:
    for arg in args:
        if isinstance(arg, torch.Tensor):
            return arg
        if isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], torch.Tensor):
            return arg[0]
    raise TypeError("a fastmask op needs a tensor argument to anchor its device")


def op(name: str, *, fake: Callable, mutates_args=()) -> Callable[[Callable], Callable]:
    """Decorator: register the annotated function as the custom op fastmask::<name> (its body runs
    for every device) with `fake` as its fake (meta) kernel, and return the eager callable that
    `call`s it. The registered op stays reachable as torch.ops.fastmask.<name> (opcheck, autograd
    registration); the callable's `.op` is its CustomOpDef."""

    def register(implementation: Callable) -> Callable:
        custom = torch.library.custom_op(f"fastmask::{name}", mutates_args=mutates_args)(implementation)
        custom.register_fake(fake)
        registered = getattr(torch.ops.fastmask, name)

        @functools.wraps(implementation)
        def eager_or_op(*args):
            return call(registered, implementation, *args)

        eager_or_op.op = custom
        return eager_or_op

    return register


_IMPLEMENTATIONS: dict[tuple[str, str], object] = {}


def implementation(family: str, chosen: str):
    """The module of `family` for a resolved backend: fastmask.{reference,cpp,triton}.<family>,
    imported on first use (triton only when a Triton op first runs)."""
    module = _IMPLEMENTATIONS.get((family, chosen))
    if module is None:
        module = importlib.import_module(f"fastmask.{chosen}.{family}")
        _IMPLEMENTATIONS[(family, chosen)] = module
    return module


def default_keys(keys: Optional[torch.Tensor], rows: int, device: torch.device, chosen: str) -> Optional[torch.Tensor]:
    """Sample keys: the row index when none are given. The C++ kernels use the row index themselves
    (no tensor to allocate), so None stays None for them."""
    if keys is None and chosen != "cpp":
        return torch.arange(rows, device=device)
    return keys


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


def _random_words_fake(seed, keys, length, purpose, backend):
    return keys.new_empty((keys.shape[0], length, 4), dtype=torch.int64)


@op("random_words", fake=_random_words_fake)
def random_words(seed: torch.Tensor, keys: torch.Tensor, length: int, purpose: int, backend: str) -> torch.Tensor:
    chosen = resolve_backend(backend, keys.device)
    return implementation("rng", chosen).random_words(seed, keys, length, purpose)


# --- mask_tokens -----------------------------------------------------------------------------


def _mask_tokens_fake(ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, words,
                      replace_table, replace_count, mask_token_id, views, exact, max_predictions, ignore_index,
                      vocab_size, backend):
    rows, length = ids.shape[0] * views, ids.shape[1]
    return ids.new_empty(rows, length), ids.new_empty(rows, length), ids.new_empty(rows, max_predictions, dtype=torch.int64)


@op("mask_tokens", fake=_mask_tokens_fake)
def mask_tokens(
    ids: torch.Tensor, seed: torch.Tensor, keys: Optional[torch.Tensor], thresholds: torch.Tensor, special_ids: torch.Tensor,
    special_mask: Optional[torch.Tensor], attention_mask: Optional[torch.Tensor], lengths: Optional[torch.Tensor],
    words: Optional[torch.Tensor], replace_table: Optional[torch.Tensor], replace_count: int, mask_token_id: int,
    views: int, exact: bool, max_predictions: int, ignore_index: int, vocab_size: int, backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """words: None (token masking) or one word source (whole-word masking): uint8 [B, L] codes, word ids
    [B, L], offsets [B, L, 2] or a [vocab] table, told apart by fastmask.words.word_codes."""
    chosen = resolve_backend(backend, ids.device)
    keys = default_keys(keys, ids.shape[0], ids.device, chosen)
    args = (ids, seed, keys, thresholds, special_ids, special_mask, attention_mask, lengths, replace_table,
            replace_count, mask_token_id, views, exact, max_predictions, ignore_index)
    if chosen == "cpp":  # reads any form of `words` in place
        return implementation("masking", chosen).mask_tokens(*args, vocab_size=vocab_size, words=words)
    if words is not None:
        words = word_codes(ids, words)
    return implementation("masking", chosen).mask_tokens(*args, words=words)


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
    grad_rows: torch.Tensor, grad_lse: Optional[torch.Tensor], ignore_index: int, label_smoothing: float, z_loss: float,
    softcap: float, backend: str,
) -> torch.Tensor:
    """d(sum_i grad_rows[i] * loss_i + grad_lse[i] * lse_i) / d logits, in logits' dtype, recomputed from
    the saved lse (grad_lse None: 0)."""
    return _ce_module(logits, backend).backward(
        logits, labels, weight, lse, grad_rows, grad_lse, ignore_index, label_smoothing, z_loss, softcap)


@ce_backward.register_fake
def _(logits, labels, weight, lse, grad_rows, grad_lse, ignore_index, label_smoothing, z_loss, softcap, backend):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


def _ce_setup_context(ctx, inputs, output):
    logits, labels, weight, ignore_index, label_smoothing, z_loss, softcap, backend = inputs
    ctx.save_for_backward(logits, labels, weight, output[1])
    ctx.options = (ignore_index, label_smoothing, z_loss, softcap, backend)


def _ce_autograd(ctx, grad_loss, grad_lse):
    """Both outputs are differentiable: the lse (d lse / d z = softmax) feeds a z-loss or a
    distillation term computed outside the op."""
    logits, labels, weight, lse = ctx.saved_tensors
    grad = torch.ops.fastmask.ce_backward(logits, labels, weight, lse, grad_loss, grad_lse, *ctx.options)
    return grad, None, None, None, None, None, None, None


ce_forward.register_autograd(_ce_autograd, setup_context=_ce_setup_context)


@torch.library.custom_op("fastmask::ce_forward_inplace", mutates_args=("logits",))
def ce_forward_inplace(
    logits: torch.Tensor, labels: torch.Tensor, weight: Optional[torch.Tensor], grad_scale: torch.Tensor,
    ignore_index: int, label_smoothing: float, z_loss: float, softcap: float, backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ce_forward that also overwrites logits with d(sum_i loss_i) / d logits, its cross-entropy and
    smoothing terms times grad_scale[0] and its z-loss term times grad_scale[1]."""
    return _ce_module(logits, backend).forward_inplace(
        logits, labels, weight, grad_scale, ignore_index, label_smoothing, z_loss, softcap)


@ce_forward_inplace.register_fake
def _(logits, labels, weight, grad_scale, ignore_index, label_smoothing, z_loss, softcap, backend):
    rows = logits.new_empty(logits.shape[0], dtype=accumulation_dtype(logits))
    return rows, torch.empty_like(rows)


@torch.library.custom_op("fastmask::ce_argmax", mutates_args=())
def ce_argmax(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, backend: str) -> torch.Tensor:
    """Each labelled row's argmax (torch.argmax's), ignore_index for ignored rows, which are not read:
    the token accuracy's predictions."""
    return _ce_module(logits, backend).argmax(logits, labels, ignore_index)


@ce_argmax.register_fake
def _(logits, labels, ignore_index, backend):
    return logits.new_empty(logits.shape[0], dtype=torch.int64)


@torch.library.custom_op("fastmask::scale_grad", mutates_args=("grad",))
def scale_grad(grad: torch.Tensor, scale: torch.Tensor, backend: str) -> None:
    """grad *= scale ([] or one per row), skipped on the device where scale is exactly 1: an
    in-place backward's upstream gradient is 1 unless a loss scale or an average changed it."""
    _ce_module(grad, backend).scale_grad(grad, scale)


@scale_grad.register_fake
def _(grad, scale, backend):
    return None


# --- T5 span corruption / UL2 (fastmask/t5.py, docs/t5.md) ------------------------------------


def _span_corruption_fake(ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw, vocab_size,
                           backend):
    rows = ids.shape[0]
    lengths = [ids.new_empty(rows, dtype=torch.int64) for _ in range(3)]
    return (ids.new_empty(rows, input_length), ids.new_empty(rows, target_length), *lengths)


@op("span_corruption", fake=_span_corruption_fake)
def span_corruption(
    ids: torch.Tensor, seed: torch.Tensor, keys: Optional[torch.Tensor], table: torch.Tensor, sentinels: torch.Tensor,
    eos: int, pad: int, input_length: int, target_length: int, draw: bool, vocab_size: int, backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """vocab_size: 0, or the vocabulary the C++ kernel checks ids against (other backends: the caller)."""
    chosen = resolve_backend(backend, ids.device)
    keys = default_keys(keys, ids.shape[0], ids.device, chosen)
    if chosen == "cpp":
        return implementation("t5", chosen).span_corruption(
            ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw, vocab_size=vocab_size)
    return implementation("t5", chosen).span_corruption(
        ids, seed, keys, table, sentinels, eos, pad, input_length, target_length, draw)


# --- span / n-gram masking (fastmask/spans.py, docs/spans.md) ------------------------------------


def _mask_spans_fake(ids, seed, keys, thresholds, table, special_ids, special_mask, attention_mask, words, replace_table,
                     replace_count, mask_token_id, max_predictions, ignore_index, vocab_size, backend):
    rows, length = ids.shape
    return ids.new_empty(rows, length), ids.new_empty(rows, length), ids.new_empty(rows, max_predictions, dtype=torch.int64)


@op("mask_spans", fake=_mask_spans_fake)
def mask_spans(
    ids: torch.Tensor, seed: torch.Tensor, keys: Optional[torch.Tensor], thresholds: torch.Tensor, table: torch.Tensor,
    special_ids: torch.Tensor, special_mask: Optional[torch.Tensor], attention_mask: Optional[torch.Tensor],
    words: Optional[torch.Tensor], replace_table: Optional[torch.Tensor], replace_count: int, mask_token_id: int,
    max_predictions: int, ignore_index: int, vocab_size: int, backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """words: None (every token its own word) or one word source, as mask_tokens."""
    chosen = resolve_backend(backend, ids.device)
    keys = default_keys(keys, ids.shape[0], ids.device, chosen)
    if words is not None:
        words = word_codes(ids, words)
    args = (ids, seed, keys, thresholds, table, special_ids, special_mask, attention_mask, words, replace_table,
            replace_count, mask_token_id, max_predictions, ignore_index)
    if chosen == "cpp":
        return implementation("spans", chosen).mask_spans(*args, vocab_size=vocab_size)
    return implementation("spans", chosen).mask_spans(*args)


# --- image and patch masking (fastmask/image.py, docs/image.md) ------------------------------


def _block_mask_fake(seed, keys, cum, shapes, batch, height, width, target, max_attempts, exact, backend):
    return seed.new_empty((batch, height, width), dtype=torch.bool)


@op("block_mask", fake=_block_mask_fake)
def block_mask(
    seed: torch.Tensor, keys: Optional[torch.Tensor], cum: torch.Tensor, shapes: torch.Tensor, batch: int, height: int,
    width: int, target: int, max_attempts: int, exact: bool, backend: str,
) -> torch.Tensor:
    chosen = resolve_backend(backend, seed.device)
    keys = default_keys(keys, batch, seed.device, chosen)
    if chosen == "cpp":
        return implementation("image", chosen).block_mask(
            seed, keys, cum, shapes, batch, height, width, target, max_attempts, exact)
    return implementation("image", chosen).block_mask(seed, keys, cum, shapes, height, width, target, max_attempts, exact)


def _patch_shuffle_fake(seed, keys, batch, length, keep, backend):
    return (seed.new_empty((batch, length), dtype=torch.bool), seed.new_empty((batch, keep), dtype=torch.int64),
            seed.new_empty((batch, length), dtype=torch.int64))


@op("patch_shuffle", fake=_patch_shuffle_fake)
def patch_shuffle(
    seed: torch.Tensor, keys: Optional[torch.Tensor], batch: int, length: int, keep: int, backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    chosen = resolve_backend(backend, seed.device)
    keys = default_keys(keys, batch, seed.device, chosen)
    if chosen == "cpp":
        return implementation("image", chosen).patch_shuffle(seed, keys, batch, length, keep)
    return implementation("image", chosen).patch_shuffle(seed, keys, length, keep)


# --- fused LM-head cross-entropy (Triton only: CUDA, or CPU tensors under TRITON_INTERPRET=1) ----


def _fused_head():
    from .triton import lm_head  # imports triton: only on the first fused call

    return lm_head


@torch.library.custom_op("fastmask::lm_head_fused_forward", mutates_args=())
def lm_head_fused_forward(
    rows: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], labels: torch.Tensor, ignore_index: int,
    label_smoothing: float, z_loss: float, softcap: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss [R], lse [R], predicted ids [R]) of rows @ weight.T + bias, without the [R, V] logits."""
    return _fused_head().forward(rows, weight, bias, labels, ignore_index, label_smoothing, z_loss, softcap)


@lm_head_fused_forward.register_fake
def _(rows, weight, bias, labels, ignore_index, label_smoothing, z_loss, softcap):
    n = rows.shape[0]
    return rows.new_empty(n, dtype=torch.float32), rows.new_empty(n, dtype=torch.float32), rows.new_empty(n, dtype=torch.int64)


@torch.library.custom_op("fastmask::lm_head_fused_backward", mutates_args=())
def lm_head_fused_backward(
    rows: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], labels: torch.Tensor, lse: torch.Tensor,
    grad_loss: torch.Tensor, ignore_index: int, label_smoothing: float, z_loss: float, softcap: float, filter_eps: float,
    want_rows: bool, want_weight: bool, want_bias: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of (rows, weight, bias); an empty tensor for each one not wanted (schemas return no None)."""
    grads = _fused_head().backward(rows, weight, bias, labels, lse, grad_loss, ignore_index, label_smoothing, z_loss,
                                   softcap, filter_eps, (want_rows, want_weight, want_bias))
    return tuple(rows.new_empty(0) if grad is None else grad for grad in grads)


@lm_head_fused_backward.register_fake
def _(rows, weight, bias, labels, lse, grad_loss, ignore_index, label_smoothing, z_loss, softcap, filter_eps,
      want_rows, want_weight, want_bias):
    return (torch.empty_like(rows) if want_rows else rows.new_empty(0),
            torch.empty_like(weight) if want_weight else rows.new_empty(0),
            torch.empty_like(bias) if want_bias and bias is not None else rows.new_empty(0))


# --- pruning masks (fastmask/pruning.py, docs/pruning.md) ------------------------------------------


def _magnitude_masks_fake(scores, counts, backend):
    return [torch.empty_like(s, dtype=torch.bool, memory_format=torch.contiguous_format) for s in scores]


@op("magnitude_masks", fake=_magnitude_masks_fake)
def magnitude_masks(scores: list[torch.Tensor], counts: list[int], backend: str) -> list[torch.Tensor]:
    chosen = resolve_backend(backend, scores[0].device)
    return implementation("pruning", chosen).magnitude_masks(list(scores), list(counts))


def _nm_mask_fake(scores, n, m, backend):
    return torch.empty_like(scores, dtype=torch.bool, memory_format=torch.contiguous_format)


@op("nm_mask", fake=_nm_mask_fake)
def nm_mask(scores: torch.Tensor, n: int, m: int, backend: str) -> torch.Tensor:
    return implementation("pruning", resolve_backend(backend, scores.device)).nm_mask(scores, n, m)


# --- graph masks (fastmask/graph.py, docs/graph.md): fixed-size masks; the face compacts edge lists ----


def _edge_mask_fake(edge_index, seed, key, threshold, num_nodes, backend):
    return edge_index.new_empty(edge_index.shape[1], dtype=torch.bool)


@op("edge_mask", fake=_edge_mask_fake)
def edge_mask(edge_index: torch.Tensor, seed: torch.Tensor, key: torch.Tensor, threshold: int, num_nodes: int,
              backend: str) -> torch.Tensor:
    chosen = resolve_backend(backend, edge_index.device)
    return implementation("graph", chosen).edge_mask(edge_index, seed, key, threshold, num_nodes)


def _feature_drops_fake(seed, key, n, threshold, backend):
    return seed.new_empty(n, dtype=torch.bool)


@op("feature_drops", fake=_feature_drops_fake)
def feature_drops(seed: torch.Tensor, key: torch.Tensor, n: int, threshold: int, backend: str) -> torch.Tensor:
    return implementation("graph", resolve_backend(backend, seed.device)).feature_drops(seed, key, n, threshold)


def _path_mask_fake(edge_index, seed, key, num_nodes, root_threshold, walk_length, walks_per_node, backend):
    return edge_index.new_empty(edge_index.shape[1], dtype=torch.bool)


@op("path_mask", fake=_path_mask_fake)
def path_mask(edge_index: torch.Tensor, seed: torch.Tensor, key: torch.Tensor, num_nodes: int, root_threshold: int,
              walk_length: int, walks_per_node: int, backend: str) -> torch.Tensor:
    chosen = resolve_backend(backend, edge_index.device)
    return implementation("graph", chosen).path_mask(
        edge_index, seed, key, num_nodes, root_threshold, walk_length, walks_per_node)


# --- attention masks (fastmask/attention.py, docs/attention.md) ------------------------------------
# device_like (an empty tensor) carries the device when no other tensor does; it is the first tensor
# argument whenever segment_ids, prefix_lengths and lengths are all None.


def _attention_dense_fake(segment_ids, prefix_lengths, lengths, device_like, batch, length, causal, window, backend):
    return device_like.new_empty((batch, length, length), dtype=torch.bool)


@op("attention_dense", fake=_attention_dense_fake)
def attention_dense(
    segment_ids: Optional[torch.Tensor], prefix_lengths: Optional[torch.Tensor], lengths: Optional[torch.Tensor],
    device_like: torch.Tensor, batch: int, length: int, causal: bool, window: int, backend: str,
) -> torch.Tensor:
    """bool [batch, length, length]."""
    chosen = resolve_backend(backend, device_like.device)
    return implementation("attention", chosen).dense(
        segment_ids, prefix_lengths, lengths, device_like.device, batch, length, causal, window)


def _attention_blocks_fake(segment_ids, prefix_lengths, lengths, device_like, batch, length, causal, window, block,
                           backend):
    blocks = -(-length // block)
    return device_like.new_empty((batch, blocks, blocks), dtype=torch.int8)


@op("attention_blocks", fake=_attention_blocks_fake)
def attention_blocks(
    segment_ids: Optional[torch.Tensor], prefix_lengths: Optional[torch.Tensor], lengths: Optional[torch.Tensor],
    device_like: torch.Tensor, batch: int, length: int, causal: bool, window: int, block: int, backend: str,
) -> torch.Tensor:
    """int8 [batch, nQ, nK] block states: 0 empty, 1 partial, 2 full."""
    chosen = resolve_backend(backend, device_like.device)
    return implementation("attention", chosen).block_states(
        segment_ids, prefix_lengths, lengths, device_like.device, batch, length, causal, window, block)


# --- masked distillation (fastmask/_distillation.py, docs/distillation.md) -------------------------
# Called through torch.ops, as the cross-entropy ops: the chunk's two matmuls dwarf the dispatcher.


@torch.library.custom_op("fastmask::distill_chunk", mutates_args=("student",))
def distill_chunk(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, grad_scale: torch.Tensor, temperature: float,
    divergence: int, beta: float, hard_weight: float, ignore_index: int, write_grad: bool, backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (T^2 divergence, hard cross-entropy) of student/teacher logits [R, V] in fp32 (fp64 for
    fp64; ce 0 where hard_weight is 0); with write_grad, student overwritten with d(sum_i grad_scale_i (div_i + hard_weight ce_i)) / d student."""
    return implementation("distillation", resolve_backend(backend, student.device)).distill_chunk(
        student, teacher, labels, grad_scale, temperature, divergence, beta, hard_weight, ignore_index, write_grad)


@distill_chunk.register_fake
def _(student, teacher, labels, grad_scale, temperature, divergence, beta, hard_weight, ignore_index, write_grad, backend):
    rows = student.new_empty(student.shape[0], dtype=accumulation_dtype(student))
    return rows, torch.empty_like(rows)


# --- permutation language modeling (fastmask/permutation.py, docs/permutation.md) -------------------


def _permutation_lm_fake(ids, seed, keys, contexts, attempts, functional_ids, mask_token_id, ignore_index, dtype, backend):
    batch, length = ids.shape
    return ids.new_empty(batch, length), ids.new_empty((batch, length, length), dtype=dtype), ids.new_empty(batch, length)


@op("permutation_lm", fake=_permutation_lm_fake)
def permutation_lm(
    ids: torch.Tensor, seed: torch.Tensor, keys: torch.Tensor, contexts: torch.Tensor, attempts: int,
    functional_ids: torch.Tensor, mask_token_id: int, ignore_index: int, dtype: torch.dtype, backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return implementation("permutation", resolve_backend(backend, ids.device)).permutation_lm(
        ids, seed, keys, contexts, attempts, functional_ids, mask_token_id, ignore_index, dtype)
