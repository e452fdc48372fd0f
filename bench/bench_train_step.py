"""pytest-benchmark over the "train_step" family at one thread (a whole BERT-small MLM step per call):
python -m pytest bench/bench_train_step.py --benchmark-only"""
import pytest

from fastmask.bench.pytest_cases import params, run


@pytest.mark.parametrize(("case", "provider"), params("train_step"))
def test_train_step(benchmark, case, provider):
    run(benchmark, case, provider)
