"""C++ launchers of the graph masks (csrc/graph.cpp): CPU tensors in, raw pointers out. Arguments
arrive checked by fastmask.graph; seed and key are int64 0-d tensors."""
from __future__ import annotations

import torch

from . import DTYPE_CODES, cpp, num_threads

_PURPOSE_FEATURES = 13  # fastmask._rng.Purpose.FEATURES


def _edges(edge_index: torch.Tensor) -> tuple:
    return (edge_index.data_ptr(), DTYPE_CODES[edge_index.dtype], edge_index.stride(0), edge_index.stride(1),
            edge_index.shape[1])


def _drops(seed, key, n, threshold, purpose):
    out = torch.empty(n, dtype=torch.bool)
    cpp().graph_drops(seed.data_ptr(), key.data_ptr(), n, threshold, purpose, out.data_ptr(), num_threads())
    return out


def edge_mask(edge_index, seed, key, threshold, num_nodes):
    out = torch.empty(edge_index.shape[1], dtype=torch.bool)
    cpp().edge_mask(*_edges(edge_index), seed.data_ptr(), key.data_ptr(), threshold, num_nodes, out.data_ptr(),
                    num_threads())
    return out


def feature_drops(seed, key, n, threshold):
    return _drops(seed, key, n, threshold, _PURPOSE_FEATURES)


def path_mask(edge_index, seed, key, num_nodes, root_threshold, walk_length, walks_per_node):
    out = torch.empty(edge_index.shape[1], dtype=torch.bool)
    cpp().path_mask(*_edges(edge_index), seed.data_ptr(), key.data_ptr(), num_nodes, root_threshold, walk_length,
                    walks_per_node, out.data_ptr(), num_threads())
    return out


def split_edges(edge_index, masked, undirected):
    """(remaining, masked) edge lists: the columns in order, undirected ones followed by their flips."""
    counts = torch.zeros(2, dtype=torch.int64)
    args = (*_edges(edge_index), masked.data_ptr(), bool(undirected), counts.data_ptr())
    cpp().split_edges(*args, 0, 0, num_threads())
    remaining = edge_index.new_empty((2, int(counts[0])))
    masked_out = edge_index.new_empty((2, int(counts[1])))
    cpp().split_edges(*args, remaining.data_ptr(), masked_out.data_ptr(), num_threads())
    return remaining, masked_out
