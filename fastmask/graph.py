"""Graph masks (docs/graph.md): MaskGAE's edge and path masking, PyG-style node-feature masking.

The kernels behind each function write a fixed-size mask (static shapes: they run under
torch.compile and on CUDA without a sync); the edge lists, whose sizes depend on the draws, are
compacted here, by one C++ pass on CPU tensors and by boolean indexing elsewhere."""
from __future__ import annotations

from typing import Optional

import torch

from . import _library
from ._backend import check_backend, resolve_backend
from ._rng import probability_threshold
from ._seed import resolve_seed
from ._validate import check_int, check_probability, check_tensor

__all__ = ["edge_mask", "mask_edges", "mask_features", "mask_paths", "path_mask"]

_MAX_EDGES = 1 << 31
_MAX_NODES = 1 << 31
_MAX_STEPS = (1 << 16) - 1  # walks_per_node * walk_length: the step counter's 16 bits of c1
_MAX_DECISIONS = 1 << 33  # four decisions per 32-bit position
_MODES = ("col", "row", "all")
_INT64_MIN, _UINT64_END = -(1 << 63), 1 << 64


def _key(key, device: torch.device) -> torch.Tensor:
    """The sample key as an int64 0-d tensor on `device` (an int is taken modulo 2^64)."""
    if isinstance(key, torch.Tensor):
        if key.dtype != torch.int64 or key.numel() != 1:
            raise ValueError(f"key: expected an int64 tensor with one element, got {key.dtype} of shape {tuple(key.shape)}")
        return key.reshape(()).to(device, non_blocking=True)
    if isinstance(key, bool) or not isinstance(key, int) or not _INT64_MIN <= key < _UINT64_END:
        raise ValueError(f"key: expected an integer in [-2**63, 2**64) or an int64 tensor, got {key!r}")
    return torch.tensor(key - (1 << 64) if key >= 1 << 63 else key, dtype=torch.int64, device=device)


def _edge_index(edge_index) -> torch.Tensor:
    check_tensor("edge_index", edge_index, dtypes=(torch.int64, torch.int32), ndim=2)
    if edge_index.shape[0] != 2:
        raise ValueError(f"edge_index: expected shape [2, E], got {tuple(edge_index.shape)}")
    check_int("number of edges", edge_index.shape[1], 0, _MAX_EDGES)
    return edge_index


def _split(edge_index: torch.Tensor, masked: torch.Tensor, undirected: bool, backend: str):
    """(remaining, masked) columns in order; undirected: the columns with row <= col, then their flips."""
    if edge_index.device.type == "meta":  # the lists' lengths depend on the draws: no meta shape exists
        raise ValueError("edge_index: on the meta device the edge lists have no size; use edge_mask / path_mask, "
                         "whose [E] masks have static shapes")
    if edge_index.device.type == "cpu" and resolve_backend(backend, edge_index.device) == "cpp" \
            and not torch.compiler.is_compiling():
        from .cpp import graph

        return graph.split_edges(edge_index, masked, undirected)
    if undirected:
        upper = edge_index[0] <= edge_index[1]
        parts = edge_index[:, ~masked & upper], edge_index[:, masked & upper]
        return tuple(torch.cat([part, part.flip(0)], dim=1) for part in parts)
    return edge_index[:, ~masked], edge_index[:, masked]


def edge_mask(edge_index: torch.Tensor, p: float, *, num_nodes: Optional[int] = None, seed=None, key=0,
              backend: str = "auto") -> torch.Tensor:
    """bool [E], True where mask_edges masks the edge (static shape: the op behind mask_edges)."""
    check_backend(backend)
    edge_index = _edge_index(edge_index)
    threshold = probability_threshold(check_probability("p", p))
    nodes = -1 if num_nodes is None else check_int("num_nodes", num_nodes, 0, _MAX_NODES)
    device = edge_index.device
    return _library.edge_mask(edge_index, resolve_seed(seed, device), _key(key, device), threshold, nodes, backend)


def mask_edges(edge_index: torch.Tensor, p: float, *, undirected: bool = False, num_nodes: Optional[int] = None,
               seed=None, key=0, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """MaskGAE's edge masking: (remaining_edge_index, masked_edge_index), each edge masked with
    probability p. undirected=True follows torch_geometric's dropout_edge(force_undirected=True):
    only edges with row <= col are drawn, and each output holds them followed by their flips."""
    masked = edge_mask(edge_index, p, num_nodes=num_nodes, seed=seed, key=key, backend=backend)
    return _split(edge_index, masked, bool(undirected), backend)


def path_mask(edge_index: torch.Tensor, num_nodes: int, *, root_p: float, walk_length: int, walks_per_node: int = 1,
              seed=None, key=0, backend: str = "auto") -> torch.Tensor:
    """bool [E], True on every edge that mask_paths' walks traverse (static shape)."""
    check_backend(backend)
    edge_index = _edge_index(edge_index)
    num_nodes = check_int("num_nodes", num_nodes, 0, _MAX_NODES)
    threshold = probability_threshold(check_probability("root_p", root_p))
    walk_length = check_int("walk_length", walk_length, 1, _MAX_STEPS + 1)
    walks_per_node = check_int("walks_per_node", walks_per_node, 1, _MAX_STEPS + 1)
    if walk_length * walks_per_node > _MAX_STEPS:
        raise ValueError(f"walks_per_node * walk_length: expected at most {_MAX_STEPS} steps per root, "
                         f"got {walks_per_node} * {walk_length}")
    device = edge_index.device
    return _library.path_mask(edge_index, resolve_seed(seed, device), _key(key, device), num_nodes, threshold, walk_length,
                            walks_per_node, backend)


def mask_paths(edge_index: torch.Tensor, num_nodes: int, *, root_p: float, walk_length: int, walks_per_node: int = 1,
               seed=None, key=0, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """MaskGAE's path masking: each node is a root with probability root_p; walks_per_node random
    walks of walk_length steps start at each root (a uniform out-edge per step, in edge_index
    order), and every edge walked is masked. Returns (remaining_edge_index, masked_edge_index)."""
    masked = path_mask(edge_index, num_nodes, root_p=root_p, walk_length=walk_length, walks_per_node=walks_per_node,
                       seed=seed, key=key, backend=backend)
    return _split(edge_index, masked, False, backend)


def mask_features(x: torch.Tensor, p: float, mode: str = "col", *, fill_value: float = 0.0, seed=None, key=0,
                  backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """torch_geometric's mask_feature: (x with the dropped entries set to fill_value, keep) where
    keep is [1, F] (mode="col"), [N, 1] ("row") or [N, F] ("all"), each entry dropped with
    probability p."""
    check_backend(backend)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 2:
        raise ValueError(f"x: expected a 2-D floating tensor [N, F], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
                         f"{' ' + str(x.dtype) if isinstance(x, torch.Tensor) else ''}")
    if mode not in _MODES:
        raise ValueError(f"mode: expected 'col', 'row' or 'all', got {mode!r}")
    threshold = probability_threshold(check_probability("p", p))
    rows, cols = x.shape
    shape = {"col": (1, cols), "row": (rows, 1), "all": (rows, cols)}[mode]
    n = check_int("decisions (N * F for mode='all')", shape[0] * shape[1], 0, _MAX_DECISIONS)
    device = x.device
    drops = _library.feature_drops(resolve_seed(seed, device), _key(key, device), n, threshold, backend)
    keep = ~drops.view(shape)
    return x.masked_fill(~keep, fill_value), keep
