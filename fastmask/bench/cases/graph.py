"""Family "graph": MaskGAE's masks (docs/graph.md) on a random graph of 1M nodes and 10M edges.

- mask_edges: fastmask.mask_edges(p=0.7), both edge lists, against
  torch_geometric.utils.dropout_edge(p=0.7), which draws torch.rand and compacts the retained
  edges only (so the peer does less: one list, not two); also fastmask.edge_mask, the fixed-size
  mask alone, and MaskGAE's own masking in torch ops (bernoulli, then both lists), the same outputs.
- mask_paths: fastmask.mask_paths (roots with p=0.3, 1 walk of 3 steps, both edge lists) against
  the same walks in torch ops (fastmask's reference backend: a stable sort for the CSR, one
  vectorised step per walk step), since torch_geometric's dropout_path needs the compiled
  torch_cluster.

--quick: 100K edges. Work units are edges.
"""
from __future__ import annotations

import torch

import fastmask

from . import Case

NODES, EDGES = 1_000_000, 10_000_000
EDGE_P, ROOT_P, WALK_LENGTH = 0.7, 0.3, 3


def cases(device: str, quick: bool) -> list[Case]:
    nodes, edges = (10_000, 100_000) if quick else (NODES, EDGES)
    g = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, nodes, (2, edges), generator=g).to(device)
    ours = "fastmask-triton" if device.startswith("cuda") else "fastmask-cpp"
    backend = ours.removeprefix("fastmask-")
    seed = torch.tensor(5, dtype=torch.int64, device=device)
    return [_edges_case(edge_index, seed, ours, backend), _paths_case(edge_index, nodes, seed, ours, backend)]


def torch_mask_edge(edge_index: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MaskGAE's edge masking in torch ops, as the paper's code does it: a Bernoulli draw per edge,
    then both edge lists by boolean indexing (the same outputs as fastmask.mask_edges)."""
    masked = torch.bernoulli(torch.full((edge_index.shape[1],), p, device=edge_index.device)).to(torch.bool)
    return edge_index[:, ~masked], edge_index[:, masked]


def _edges_case(edge_index, seed, ours, backend) -> Case:
    providers = {ours: lambda: fastmask.mask_edges(edge_index, EDGE_P, seed=seed, backend=backend),
                 # the fixed-size mask alone (what runs under torch.compile), without the two edge lists
                 f"{ours}-edge_mask": lambda: fastmask.edge_mask(edge_index, EDGE_P, seed=seed, backend=backend),
                 "torch-maskgae-mask_edge": lambda: torch_mask_edge(edge_index, EDGE_P)}
    unavailable = {}
    try:
        from torch_geometric.utils import dropout_edge
    except ImportError as error:
        unavailable["torch_geometric-dropout_edge"] = str(error)
        baseline = ours
    else:
        baseline = "torch_geometric-dropout_edge"
        providers[baseline] = lambda: dropout_edge(edge_index, p=EDGE_P)
    edges = edge_index.shape[1]
    return Case("graph", "mask_edges", f"{edges}-edges", providers, baseline, edges, "edges", repeats=5,
                unavailable=unavailable)


def _paths_case(edge_index, nodes, seed, ours, backend) -> Case:
    def run(which):
        return lambda: fastmask.mask_paths(edge_index, nodes, root_p=ROOT_P, walk_length=WALK_LENGTH, seed=seed,
                                           backend=which)

    providers = {"torch-reference": run("reference"), ours: run(backend)}
    edges = edge_index.shape[1]
    return Case("graph", "mask_paths", f"{edges}-edges-{nodes}-nodes", providers, "torch-reference", edges, "edges",
                repeats=3)
