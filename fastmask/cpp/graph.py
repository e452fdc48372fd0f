"""C++ launchers of the graph masks (csrc/graph.cpp): CPU tensors in, views to fastmask._C. Arguments
arrive checked by fastmask.graph; seed and key are int64 0-d tensors."""
from __future__ import annotations

import torch

from . import cpp, int64, num_threads, view

_PURPOSE_FEATURES = 13  # fastmask._rng.Purpose.FEATURES


def _drops(seed, key, n, threshold, purpose):
    out = torch.empty(n, dtype=torch.bool)
    cpp().graph_drops(view(int64(seed)), view(int64(key)), n, threshold, purpose, view(out), num_threads())
    return out


def edge_mask(edge_index, seed, key, threshold, num_nodes):
    out = torch.empty(edge_index.shape[1], dtype=torch.bool)
    cpp().edge_mask(view(edge_index), view(int64(seed)), view(int64(key)), threshold, num_nodes, view(out),
                    num_threads())
    return out


def feature_drops(seed, key, n, threshold):
    return _drops(seed, key, n, threshold, _PURPOSE_FEATURES)


def path_mask(edge_index, seed, key, num_nodes, root_threshold, walk_length, walks_per_node):
    out = torch.empty(edge_index.shape[1], dtype=torch.bool)
    cpp().path_mask(view(edge_index), view(int64(seed)), view(int64(key)), num_nodes, root_threshold, walk_length,
                    walks_per_node, view(out), num_threads())
    return out


def split_edges(edge_index, masked, undirected):
    """(remaining, masked) edge lists: the columns in order, undirected ones followed by their flips."""
    counts = torch.zeros(2, dtype=torch.int64)
    args = (view(edge_index), view(masked), bool(undirected), view(counts))
    cpp().split_edges(*args, None, None, num_threads())  # counting only
    remaining = edge_index.new_empty((2, int(counts[0])))
    masked_out = edge_index.new_empty((2, int(counts[1])))
    cpp().split_edges(*args, view(remaining), view(masked_out), num_threads())
    return remaining, masked_out
