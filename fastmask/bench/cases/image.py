"""Family "image": fastmask's image masks against their peers (docs/image.md).

- block_mask: fastmask.block_mask (BEiT's defaults: 14 x 14 grid, 75 patches) against BEiT's
  generator in numpy (image_numpy.py, one image at a time, as BEiT's data pipeline calls it).
- random_patch_mask: MAE's masking, [B, 196] at ratio 0.75: fastmask.random_patch_mask against
  torch's rand + argsort + argsort + gather (MAE's `random_masking`, producing the same three outputs).

Work units are images (block_mask) and patches (random_patch_mask). On CUDA both sides run as CUDA
graphs (captured here, replayed by the timer), the Triton kernels against the torch ops on the GPU.
"""
from __future__ import annotations

import torch

import fastmask

from . import Case
from .image_numpy import BlockMaskGenerator

BLOCK_SHAPES = [(256, 14)]
MAE_SHAPES = [(256, 196)]
CUDA_BLOCK_SHAPES = [(256, 14), (4096, 14)]
CUDA_MAE_SHAPES = [(256, 196), (4096, 196)]
NUM_MASKING, MASK_RATIO = 75, 0.75


def cases(device: str, quick: bool) -> list[Case]:
    if device.startswith("cuda"):
        return ([_block_case(device, b, s) for b, s in CUDA_BLOCK_SHAPES]
                + [_mae_case(device, b, n) for b, n in CUDA_MAE_SHAPES])
    return [_block_case(device, b, s) for b, s in BLOCK_SHAPES] + [_mae_case(device, b, n) for b, n in MAE_SHAPES]


def torch_random_masking(batch: int, length: int, mask_ratio: float, device) -> tuple:
    """MAE's random_masking without the gather of x: (mask [B, L] float 0/1, ids_keep, ids_restore)."""
    keep = int(length * (1 - mask_ratio))
    noise = torch.rand(batch, length, device=device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    mask = torch.ones(batch, length, device=device)
    mask[:, :keep] = 0
    return torch.gather(mask, 1, ids_restore), ids_keep, ids_restore


def _graphed(fn):
    """A zero-argument callable replaying a CUDA graph of fn (so launch overhead is not timed)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def _block_case(device: str, batch: int, side: int) -> Case:
    cuda = device.startswith("cuda")
    seed = torch.tensor(1234, dtype=torch.int64, device=device)
    keys = torch.arange(batch, device=device)

    def ours(backend):
        return lambda: fastmask.block_mask(batch, side, num_masking_patches=NUM_MASKING, seed=seed, keys=keys,
                                           backend=backend, device=device)

    ours("auto")()  # builds the shape table outside the timed calls
    providers = {}
    if cuda:
        baseline = "fastmask-reference"
        providers["fastmask-triton"] = _graphed(ours("triton"))
        providers[baseline] = ours("reference")
    else:
        baseline = "numpy-beit"
        generator = BlockMaskGenerator(side, num_masking_patches=NUM_MASKING, seed=0)
        providers[baseline] = lambda: generator.batch(batch)
        providers["fastmask-cpp"] = ours("cpp")
    return Case("image", "block_mask", f"{batch}x{side}x{side}", providers, baseline, batch, "images",
                repeats=25 if cuda else 9)


def _mae_case(device: str, batch: int, length: int) -> Case:
    cuda = device.startswith("cuda")
    seed = torch.tensor(1234, dtype=torch.int64, device=device)
    keys = torch.arange(batch, device=device)
    backend = "triton" if cuda else "cpp"

    def ours():
        return fastmask.random_patch_mask(batch, length, MASK_RATIO, seed=seed, keys=keys, backend=backend)

    def peer():
        return torch_random_masking(batch, length, MASK_RATIO, device)

    if cuda:
        providers = {"torch-rand-argsort": _graphed(peer), f"fastmask-{backend}": _graphed(ours)}
    else:
        providers = {"torch-rand-argsort": peer, f"fastmask-{backend}": ours}
    return Case("image", "random_patch_mask", f"{batch}x{length}", providers, "torch-rand-argsort", batch * length,
                "patches")
