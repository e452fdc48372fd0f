"""pytest-benchmark over the "rng" family at one thread: python -m pytest bench/bench_rng.py --benchmark-only"""
import pytest

from fastmask.bench.pytest_cases import params, run


@pytest.mark.parametrize(("case", "provider"), params("rng"))
def test_rng(benchmark, case, provider):
    run(benchmark, case, provider)
