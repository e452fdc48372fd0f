"""pytest-benchmark over the "distillation" family at one thread:
python -m pytest bench/bench_distillation.py --benchmark-only"""
import pytest

from fastmask.bench.pytest_cases import params, run


@pytest.mark.parametrize(("case", "provider"), params("distillation"))
def test_distillation(benchmark, case, provider):
    run(benchmark, case, provider)
