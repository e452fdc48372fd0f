"""Graph masks (docs/graph.md) in torch ops: the executable specification of the three backends.
Every function returns a fixed-size bool mask; the faces compact edge lists from it."""
from __future__ import annotations

import torch

from .rng import stream_words

_PURPOSE_EDGES, _PURPOSE_PATHS, _PURPOSE_FEATURES = 11, 12, 13  # fastmask._rng.Purpose
_STEP = 1 << 16  # c1 = PATHS + 2^16 * t for walk step t


def _check_ids(edge_index: torch.Tensor, num_nodes: int) -> None:
    """Ids in [0, num_nodes) (num_nodes < 0: only >= 0). Reads the tensor: CPU tensors only."""
    bad = (edge_index < 0) if num_nodes < 0 else (edge_index < 0) | (edge_index >= num_nodes)
    if edge_index.device.type == "cpu" and bool(bad.any()):
        i, e = (int(v) for v in bad.nonzero()[0])
        bound = "negative" if num_nodes < 0 else f"outside [0, num_nodes = {num_nodes})"
        raise ValueError(f"edge_index: node id {int(edge_index[i, e])} at [{i}, {e}] is {bound}")


def drops(seed: torch.Tensor, key: torch.Tensor, n: int, threshold: int, purpose: int) -> torch.Tensor:
    """bool [n]: decision d is True when word d % 4 of position d // 4 is below the threshold."""
    positions = torch.arange((n + 3) // 4, device=seed.device)
    words = stream_words(seed, key.reshape(1, 1), positions, purpose).reshape(-1)[:n]
    return words < threshold


def edge_mask(edge_index, seed, key, threshold, num_nodes):
    _check_ids(edge_index, num_nodes)
    return drops(seed, key, edge_index.shape[1], threshold, _PURPOSE_EDGES)


def feature_drops(seed, key, n, threshold):
    return drops(seed, key, n, threshold, _PURPOSE_FEATURES)


def _word(seed, key, nodes, c1):
    """w0 of (seed, key, position = node, c1) for int64 nodes [R]."""
    return stream_words(seed, key.reshape(1, 1), nodes, c1)[0, :, 0]


def path_mask(edge_index, seed, key, num_nodes, root_threshold, walk_length, walks_per_node):
    _check_ids(edge_index, num_nodes)
    row, col = edge_index[0].to(torch.int64), edge_index[1].to(torch.int64)
    order = torch.sort(row, stable=True).indices  # CSR: an edge's rank in its row is its edge_index order
    rowptr = torch.searchsorted(row[order], torch.arange(num_nodes + 1, device=row.device))
    masked = torch.zeros(row.shape[0], dtype=torch.bool, device=row.device)
    if row.shape[0] == 0:
        return masked
    nodes = torch.arange(num_nodes, device=row.device)
    roots = nodes[_word(seed, key, nodes, _PURPOSE_PATHS) < root_threshold]
    for w in range(walks_per_node):
        at, alive = roots.clone(), torch.ones_like(roots, dtype=torch.bool)
        for s in range(walk_length):
            draw = _word(seed, key, roots, _PURPOSE_PATHS + _STEP * (1 + w * walk_length + s))
            start, degree = rowptr[at], rowptr[at + 1] - rowptr[at]
            alive &= degree > 0
            edge = order[(start + ((draw * degree) >> 32)).clamp(max=row.shape[0] - 1)]
            masked[edge[alive]] = True
            at = torch.where(alive, col[edge], at)
    return masked
