"""Image and patch masking (docs/image.md): BEiT block-wise masks, SimMIM, MAE random masking with
gather / restore, video tubes. Argument checks, the host-built block-shape table, backend choice."""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional

import numpy as np
import torch

from . import _library
from ._backend import check_backend, has_memory, resolve_backend
from ._rng import TWO_32, count, probability_threshold
from ._seed import check_keys, resolve_seed
from ._validate import check_int, check_memory, check_tensor

__all__ = ["BlockTable", "PatchMask", "block_mask", "block_table", "gather_kept", "random_patch_mask", "restore",
           "simmim_mask", "tube_mask"]

_MAX_PATCHES = 1 << 31
_MAX_SIDE = 1 << 15
_QUADRATURE = 128  # midpoints per axis of BEiT's (area, log aspect) draw


class PatchMask(NamedTuple):
    """random_patch_mask's result (MAE): mask bool [B, L] (True = removed), ids_keep int64 [B, L_keep]
    in shuffle order, ids_restore int64 [B, L] (the inverse permutation of the shuffle)."""

    mask: torch.Tensor
    ids_keep: torch.Tensor
    ids_restore: torch.Tensor


class BlockTable(NamedTuple):
    """The host-built shape table of block_mask (docs/image.md): shapes ((h, w), ...) with (0, 0) a
    failed attempt; cum[M - 1] the cumulative uint32 thresholds over the shapes for blocks that may
    add M patches (last 2^32); weights[M - 1] the integer weights they come from."""

    shapes: tuple
    cum: tuple
    weights: tuple


# --- argument checks -----------------------------------------------------------------------------


def _check_ratio(name, p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1), got {p!r}")
    return float(p)


def _check_positive_real(name, x) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or not x > 0:
        raise ValueError(f"{name}: expected a positive number, got {x!r}")
    return float(x)


def _device_of(device, seed, keys) -> torch.device:
    if device is not None:
        try:
            device = torch.device(device)
        except (TypeError, RuntimeError) as error:
            raise ValueError(f"device: expected a torch.device or a device string, got {device!r} ({error})") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: {device} requested, but CUDA is not available")
        if device.type == "cuda" and device.index is None:  # "cuda" is the current GPU, as tensors report it
            device = torch.device("cuda", torch.cuda.current_device())
        return device
    if isinstance(keys, torch.Tensor):
        return keys.device
    if isinstance(seed, torch.Tensor):
        return seed.device
    return torch.device("cpu")


def _masked_count(mask_ratio, patches, name="mask_ratio") -> int:
    """(patches masked): count(threshold(mask_ratio), patches); at least one patch must stay."""
    masked = count(probability_threshold(mask_ratio), patches)
    if masked >= patches and patches > 0:
        raise ValueError(
            f"{name}: masking {mask_ratio} of {patches} patches keeps none (L_keep = 0); lower the ratio or use more patches")
    return masked


# --- BEiT's block shapes as a table of integers ------------------------------------------------------


def _block_weights(limits: np.ndarray, min_patches: float, low: float, high: float) -> np.ndarray:
    """[len(limits), hmax + 1, wmax + 1] int64: quadrature counts of BEiT's rounded (h, w) for each M."""
    q = (np.arange(_QUADRATURE) + 0.5) / _QUADRATURE
    lo = np.minimum(min_patches, limits)[:, None]
    hi = np.maximum(min_patches, limits)[:, None]
    root_area = np.sqrt(lo + (hi - lo) * q[None, :])[:, :, None]  # [M, Q, 1]
    root_aspect = np.sqrt(np.exp(math.log(low) + (math.log(high) - math.log(low)) * q))[None, None, :]  # [1, 1, Q]
    h = np.rint(root_area * root_aspect)  # sqrt(area * aspect), ties to even as Python's round
    w = np.rint(root_area / root_aspect)
    hmax, wmax = int(h.max()), int(w.max())
    index = np.int32 if len(limits) * (hmax + 1) * (wmax + 1) < 1 << 31 else np.int64
    h, w = h.astype(index), w.astype(index)
    h *= wmax + 1
    h += w
    h += (np.arange(len(limits), dtype=index) * ((hmax + 1) * (wmax + 1)))[:, None, None]
    counts = np.bincount(h.ravel(), minlength=len(limits) * (hmax + 1) * (wmax + 1))
    return counts.reshape(len(limits), hmax + 1, wmax + 1)


@_library.eager_cache
def block_table(height: int, width: int, num_masking_patches: int, min_num_patches: float, max_num_patches: int,
                min_aspect: float, max_aspect: float) -> BlockTable:
    """The shapes and integer weights of BEiT's block draw for M = 1..min(num_masking_patches,
    max_num_patches) (docs/image.md), and the cumulative thresholds the kernels compare words with."""
    most = max(1, min(num_masking_patches, max_num_patches))
    # Bounded before building: [M, Q, Q] draws and [M, hmax + 1, wmax + 1] counts (a 30000 x 30000 grid
    # asked for a 366 GiB table; min_aspect = 1e-300, blocks 1e150 patches high).
    area = max(min_num_patches, most)
    sides = (math.sqrt(area * max_aspect) + 2) * (math.sqrt(area / min_aspect) + 2)
    check_memory("num_masking_patches, min_num_patches, min_aspect, max_aspect",
                 most * (_QUADRATURE**2 * 24 + sides * 16),
                 lambda: f"BEiT's block table (block sizes 1 to {most}, areas up to {area:.3g}, aspect ratios in "
                 f"[{min_aspect:.3g}, {max_aspect:.3g}])", torch.device("cpu"))
    limits = np.arange(1, most + 1, dtype=np.float64)
    weights = _block_weights(limits, min_num_patches, min_aspect, max_aspect)
    hs, ws = np.meshgrid(np.arange(weights.shape[1]), np.arange(weights.shape[2]), indexing="ij")
    ratio = hs / np.maximum(ws, 1)
    allowed = (ws > 0) & (hs > 0) & (ratio >= min_aspect * (1 - 1e-12)) & (ratio <= max_aspect * (1 + 1e-12))
    fits = allowed & (hs < height) & (ws < width)
    fail = (weights * (allowed & ~fits)).sum(axis=(1, 2))
    present = np.argwhere(fits & (weights.sum(0) > 0))
    shapes = ((0, 0),) + tuple((int(h), int(w)) for h, w in present)
    table_weights = np.concatenate([fail[:, None], weights[:, present[:, 0], present[:, 1]]], axis=1)
    cum, rows = [], []
    for row in table_weights:
        total = int(row.sum())
        running, thresholds = 0, []
        for value in row.tolist():
            running += value
            thresholds.append(running * TWO_32 // total if total else TWO_32)
        thresholds[-1] = TWO_32
        cum.append(tuple(thresholds))
        rows.append(tuple(int(v) for v in row))
    return BlockTable(shapes, tuple(cum), tuple(rows))


@torch.compiler.assume_constant_result
def _block_table_values(height, width, num_masking_patches, min_num_patches, max_num_patches, min_aspect, max_aspect):
    """Under torch.compile the table is a constant of the graph, built once at trace time."""
    table = block_table(height, width, num_masking_patches, min_num_patches, max_num_patches, min_aspect, max_aspect)
    return tuple(v for s in table.shapes for v in s), tuple(v for row in table.cum for v in row)


@_library.eager_cache
def _block_tensors(height, width, target, min_patches, most, low, high, device):
    """(shapes int64 [S, 2], cum int64 [Mmax, S]) on device; cached in eager mode, constants when compiled."""
    shapes, cum = _block_table_values(height, width, target, min_patches, most, low, high)
    shapes = torch.tensor(shapes, dtype=torch.int64).reshape(-1, 2)
    return shapes.to(device), torch.tensor(cum, dtype=torch.int64).reshape(-1, shapes.shape[0]).to(device)


def block_mask(
    batch: int,
    height: int = 14,
    width: Optional[int] = None,
    *,
    num_masking_patches: int = 75,
    min_num_patches: int = 16,
    max_num_patches: Optional[int] = None,
    min_aspect: float = 0.3,
    max_aspect: Optional[float] = None,
    max_attempts: int = 10,
    exact: bool = False,
    seed=None,
    keys=None,
    backend: str = "auto",
    device=None,
) -> torch.Tensor:
    """BEiT's block-wise masking (docs/image.md): bool [batch, height, width], True = masked.

    Blocks of BEiT's shapes (area drawn in [min_num_patches, M], aspect h / w in [min_aspect,
    max_aspect], from a host-built table of integer weights) are placed at random until
    num_masking_patches patches are masked or max_attempts attempts in a row fail. exact=True tops up
    with single patches to exactly num_masking_patches.
    """
    check_backend(backend)
    batch = check_int("batch", batch, 0, _MAX_PATCHES)
    height = check_int("height", height, 1, _MAX_SIDE)
    width = height if width is None else check_int("width", width, 1, _MAX_SIDE)
    cells = height * width
    target = check_int("num_masking_patches", num_masking_patches, 0, cells + 1)
    min_patches = _check_positive_real("min_num_patches", min_num_patches)
    most = target if max_num_patches is None else check_int("max_num_patches", max_num_patches, 1, _MAX_PATCHES)
    low = _check_positive_real("min_aspect", min_aspect)
    high = 1.0 / low if max_aspect is None else _check_positive_real("max_aspect", max_aspect)
    if not low <= high:
        raise ValueError(f"max_aspect: expected a number >= min_aspect = {low}, got {high}")
    attempts = check_int("max_attempts", max_attempts, 1, 1 << 20)
    device = _device_of(device, seed, keys)
    # The output, and the reference's working set (cell indices, int64 keys per cell) where it runs.
    work = 0 if resolve_backend(backend, device) == "cpp" else 16 * cells * (batch + 1) * (batch > 0)
    check_memory("batch, height, width", batch * cells + work, lambda: f"{batch} masks of {height}x{width}", device)
    if not torch.compiler.is_compiling() and target > 0:
        table = block_table(height, width, target, min_patches, most, low, high)
        top = table.weights[-1]
        if sum(top[1:]) == 0:
            raise ValueError(
                f"height, width: a {height}x{width} grid cannot hold a block of the requested size (about "
                f"{min(min_patches, most)} to {most} patches, aspect in [{low:.3g}, {high:.3g}]; BEiT needs h < height, w < width)")
    shapes_t, cum_t = _block_tensors(height, width, target, min_patches, most, low, high, device)
    keys = check_keys(keys, batch, device)
    seed = resolve_seed(seed, device)
    return _library.block_mask(seed, keys, cum_t, shapes_t, batch, height, width, target, attempts, bool(exact), backend)


# --- MAE, SimMIM, tubes: one shuffle of the patches ---------------------------------------------------


def _shuffle(batch, patches, masked, seed, keys, backend, device, name="batch", out_cells=0) -> PatchMask:
    """MAE's shuffle; out_cells: the caller's output cells per row (bool), counted in the memory check."""
    check_memory(name, batch * (patches * 17 + (patches - masked) * 8 + out_cells),
                 lambda: f"the shuffles of {batch} rows of {patches} patches", device)
    keys = check_keys(keys, batch, device)
    seed = resolve_seed(seed, device)
    out = _library.patch_shuffle(seed, keys, batch, patches, patches - masked, backend)
    return PatchMask(*out)


def random_patch_mask(batch: int, num_patches: int, mask_ratio: float, *, seed=None, keys=None, backend: str = "auto",
                      device=None) -> PatchMask:
    """MAE's random masking (docs/image.md): (mask bool [B, L], ids_keep int64 [B, L_keep],
    ids_restore int64 [B, L]) with L_keep = L - count(mask_ratio, L) (MAE: int(L * (1 - ratio)))."""
    check_backend(backend)
    batch = check_int("batch", batch, 0, _MAX_PATCHES)
    patches = check_int("num_patches", num_patches, 1, _MAX_PATCHES)
    ratio = _check_ratio("mask_ratio", mask_ratio)
    masked = _masked_count(ratio, patches)
    return _shuffle(batch, patches, masked, seed, keys, backend, _device_of(device, seed, keys))


def gather_kept(x: torch.Tensor, ids_keep: torch.Tensor, *, validate: bool = False) -> torch.Tensor:
    """MAE's x_masked: x [B, L, ...] -> [B, L_keep, ...], x[b, ids_keep[b, i]]. Differentiable.
    ids_keep must lie in [0, L): checked on a CPU, on a GPU only under validate=True (it syncs)."""
    check_tensor("ids_keep", ids_keep, dtypes=(torch.int64,), ndim=2)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] != ids_keep.shape[0]:
        raise ValueError(f"x: expected a tensor [B, L, ...] with B = {ids_keep.shape[0]}, got {getattr(x, 'shape', x)}")
    _check_index("ids_keep", ids_keep, x.shape[1], x.device, validate)
    index = ids_keep.reshape(*ids_keep.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, index)


def restore(x_kept: torch.Tensor, ids_restore: torch.Tensor, mask_token: torch.Tensor, *, validate: bool = False) -> torch.Tensor:
    """MAE's decoder input: x_kept [B, L_keep, D] and L - L_keep copies of mask_token ([D] or
    [1, 1, D]), unshuffled by ids_restore [B, L] -> [B, L, D]. Differentiable. ids_restore must
    lie in [0, L): checked on a CPU, on a GPU only under validate=True (it syncs)."""
    check_tensor("ids_restore", ids_restore, dtypes=(torch.int64,), ndim=2)
    if not isinstance(x_kept, torch.Tensor) or x_kept.dim() != 3 or x_kept.shape[0] != ids_restore.shape[0]:
        raise ValueError(f"x_kept: expected a tensor [B, L_keep, D] with B = {ids_restore.shape[0]}, got {getattr(x_kept, 'shape', x_kept)}")
    batch, kept, dim = x_kept.shape
    length = ids_restore.shape[1]
    if kept > length:
        raise ValueError(f"x_kept: {kept} kept patches, more than the {length} of ids_restore")
    if (not isinstance(mask_token, torch.Tensor) or mask_token.numel() != dim or mask_token.device != x_kept.device
            or mask_token.shape not in ((dim,), (1, 1, dim))):
        got = f"{tuple(mask_token.shape)} on {mask_token.device}" if isinstance(mask_token, torch.Tensor) else type(mask_token).__name__
        raise ValueError(f"mask_token: expected a tensor [{dim}] or [1, 1, {dim}] on {x_kept.device}, got {got}")
    _check_index("ids_restore", ids_restore, length, x_kept.device, validate)
    token = mask_token.reshape(1, 1, dim).to(x_kept.dtype)
    full = torch.cat([x_kept, token.expand(batch, length - kept, dim)], dim=1)
    return torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))


def _check_index(name, index, size, device, validate):
    """An index tensor on `device` with values in [0, size); contents read on a CPU (eager) or under validate."""
    if index.device != device:
        raise ValueError(f"{name}: expected a tensor on {device}, got {index.device}")
    if not has_memory(index) or not (validate or (device.type == "cpu" and not torch.compiler.is_compiling())):
        return
    bad = (index < 0) | (index >= size)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name}: index {int(index[where])} at {where} is outside [0, {size})")


def _pair(name, value):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair (height, width), got {value!r}")
        return check_int(name, value[0], 1, _MAX_PATCHES), check_int(name, value[1], 1, _MAX_PATCHES)
    value = check_int(name, value, 1, _MAX_PATCHES)
    return value, value


def simmim_mask(batch: int, input_size=192, mask_patch_size: int = 32, model_patch_size: int = 4,
                mask_ratio: float = 0.6, *, seed=None, keys=None, backend: str = "auto", device=None) -> torch.Tensor:
    """SimMIM's mask (docs/image.md): bool [B, H / model_patch_size, W / model_patch_size], exactly
    count(mask_ratio, cells) cells of the coarse (mask_patch_size) grid masked, each upsampled."""
    check_backend(backend)
    batch = check_int("batch", batch, 0, _MAX_PATCHES)
    size_h, size_w = _pair("input_size", input_size)
    mask_patch = check_int("mask_patch_size", mask_patch_size, 1, _MAX_PATCHES)
    model_patch = check_int("model_patch_size", model_patch_size, 1, _MAX_PATCHES)
    if size_h % mask_patch or size_w % mask_patch:
        raise ValueError(f"input_size: expected a multiple of mask_patch_size = {mask_patch}, got {input_size!r}")
    if mask_patch % model_patch:
        raise ValueError(f"mask_patch_size: expected a multiple of model_patch_size = {model_patch}, got {mask_patch}")
    ratio = _check_ratio("mask_ratio", mask_ratio)
    rows, cols, scale = size_h // mask_patch, size_w // mask_patch, mask_patch // model_patch
    masked = _masked_count(ratio, rows * cols)
    coarse = _shuffle(batch, rows * cols, masked, seed, keys, backend, _device_of(device, seed, keys),
                      out_cells=(size_h // model_patch) * (size_w // model_patch)).mask
    coarse = coarse.reshape(batch, rows, 1, cols, 1)
    return coarse.expand(batch, rows, scale, cols, scale).reshape(batch, rows * scale, cols * scale)


def tube_mask(batch: int, frames: int, height: int, width: int, mask_ratio: float = 0.9, *, seed=None, keys=None,
              backend: str = "auto", device=None) -> torch.Tensor:
    """VideoMAE's tube masking (docs/image.md): bool [B, frames * height * width], frame-major, one
    spatial mask (random_patch_mask's over height * width patches) repeated over the frames."""
    check_backend(backend)
    batch = check_int("batch", batch, 0, _MAX_PATCHES)
    frames = check_int("frames", frames, 1, _MAX_PATCHES)
    height = check_int("height", height, 1, _MAX_PATCHES)
    width = check_int("width", width, 1, _MAX_PATCHES)
    ratio = _check_ratio("mask_ratio", mask_ratio)
    patches = height * width
    masked = _masked_count(ratio, patches)
    spatial = _shuffle(batch, patches, masked, seed, keys, backend, _device_of(device, seed, keys),
                       out_cells=frames * patches).mask
    return spatial.unsqueeze(1).expand(batch, frames, patches).reshape(batch, frames * patches)
