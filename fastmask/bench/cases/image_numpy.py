"""The peer of the "image" family: BEiT's block-wise mask generator in numpy, written here from the
published algorithm (BEiT, Bao et al., ICLR 2022, section 2.5 and its released masking generator):
blocks of random area in [min_num_patches, patches still allowed] and random log-uniform aspect
ratio, rounded to (h, w), placed uniformly at random; a block counts only its newly masked patches,
must add some and no more than allowed; up to `max_attempts` tries per block, and the image is done
when a block fails every try or the count is reached. Scalar draws from Python's `random`, as the
published generator; the grid in numpy. Tests share it for the distribution checks.
"""
from __future__ import annotations

import math
import random
from typing import Optional

import numpy as np


class BlockMaskGenerator:
    def __init__(self, height: int = 14, width: Optional[int] = None, num_masking_patches: int = 75,
                 min_num_patches: int = 16, max_num_patches: Optional[int] = None, min_aspect: float = 0.3,
                 max_aspect: Optional[float] = None, max_attempts: int = 10, seed: int = 0):
        self.height = height
        self.width = height if width is None else width
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        high = 1 / min_aspect if max_aspect is None else max_aspect
        self.log_aspect = (math.log(min_aspect), math.log(high))
        self.max_attempts = max_attempts
        self.random = random.Random(seed)

    def _one_block(self, mask: np.ndarray, allowed: int, blocks: Optional[list]) -> int:
        """Try up to max_attempts blocks; returns the patches the placed one added (0: none placed)."""
        for _ in range(self.max_attempts):
            area = self.random.uniform(self.min_num_patches, allowed)
            aspect = math.exp(self.random.uniform(*self.log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if h < self.height and w < self.width:
                top = self.random.randint(0, self.height - h)
                left = self.random.randint(0, self.width - w)
                region = mask[top:top + h, left:left + w]
                added = h * w - int(region.sum())
                if 0 < added <= allowed:
                    region[...] = 1
                    if blocks is not None:
                        blocks.append((top, left, h, w))
                    return added
        return 0

    def __call__(self, blocks: Optional[list] = None) -> np.ndarray:
        """uint8 [height, width], 1 = masked; `blocks` (a list) receives (top, left, h, w) of each block."""
        mask = np.zeros((self.height, self.width), dtype=np.uint8)
        count = 0
        while count < self.num_masking_patches:
            allowed = min(self.num_masking_patches - count, self.max_num_patches)
            added = self._one_block(mask, allowed, blocks)
            if added == 0:
                break
            count += added
        return mask

    def batch(self, batch: int) -> np.ndarray:
        return np.stack([self() for _ in range(batch)])
