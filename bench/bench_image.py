"""pytest-benchmark over the "image" family at one thread: fastmask.block_mask (C++) against BEiT's
generator in numpy (fastmask/bench/cases/image_numpy.py), fastmask.random_patch_mask against MAE's
torch rand + argsort + gather:

    python -m pytest bench/bench_image.py --benchmark-only
"""
import pytest

from fastmask.bench.pytest_cases import params, run


@pytest.mark.parametrize(("case", "provider"), params("image"))
def test_image(benchmark, case, provider):
    run(benchmark, case, provider)
