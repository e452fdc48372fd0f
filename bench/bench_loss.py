"""pytest-benchmark over the "loss" and "sparse_loss" families at one thread:
python -m pytest bench/bench_loss.py --benchmark-only"""
import pytest

from fastmask.bench.pytest_cases import params, run


@pytest.mark.parametrize(("case", "provider"), params("loss"))
def test_loss(benchmark, case, provider):
    run(benchmark, case, provider)


@pytest.mark.parametrize(("case", "provider"), params("sparse_loss"))
def test_sparse_loss(benchmark, case, provider):
    run(benchmark, case, provider)
