"""Launchers of the graph-mask kernels: fixed-size outputs, no host sync. mask_paths' CSR is built
with torch ops of static shape (a stable sort of the rows, searchsorted for the row pointers)."""
from __future__ import annotations

import torch
import triton

from .._rng import Purpose
from ..reference.graph import _check_ids
from . import on_device_of
from ._graph_kernels import drops_kernel, path_mask_kernel

DROPS_BLOCK = 256  # positions per program (4 decisions each)
PATHS_BLOCK = 128  # nodes per program


def _drops(seed, key, n, threshold, purpose):
    out = torch.empty(n, dtype=torch.bool, device=seed.device)
    if n:
        with on_device_of(seed):
            drops_kernel[(triton.cdiv(n, 4 * DROPS_BLOCK),)](seed, key, out.view(torch.int8), n, threshold, purpose,
                                                            BLOCK=DROPS_BLOCK)
    return out


def edge_mask(edge_index, seed, key, threshold, num_nodes):
    # Ids are read only in CPU memory (the interpreter), as the other backends do; on a GPU that would sync.
    _check_ids(edge_index, num_nodes)
    return _drops(seed, key, edge_index.shape[1], threshold, int(Purpose.EDGES))


def feature_drops(seed, key, n, threshold):
    return _drops(seed, key, n, threshold, int(Purpose.FEATURES))


def path_mask(edge_index, seed, key, num_nodes, root_threshold, walk_length, walks_per_node):
    _check_ids(edge_index, num_nodes)  # CPU memory only, as edge_mask
    edges = edge_index.shape[1]
    out = torch.zeros(edges, dtype=torch.bool, device=edge_index.device)
    if edges == 0 or num_nodes == 0:
        return out
    row, col = edge_index[0].to(torch.int64), edge_index[1].to(torch.int64)
    order = torch.sort(row, stable=True).indices
    rowptr = torch.searchsorted(row[order], torch.arange(num_nodes + 1, device=row.device))
    target = col[order]
    with on_device_of(edge_index):
        path_mask_kernel[(triton.cdiv(num_nodes, PATHS_BLOCK),)](
            seed, key, rowptr, order, target, out.view(torch.int8), num_nodes, root_threshold, walk_length,
            walks_per_node, int(Purpose.PATHS), BLOCK=PATHS_BLOCK)
    return out
