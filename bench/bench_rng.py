"""pytest-benchmark over the "rng" family, at one thread as the CLI's default:
python -m pytest bench/bench_rng.py --benchmark-only"""
import pytest
import torch

from fastmask.bench.cases import FAMILIES

PARAMS = [
    pytest.param(case, provider, id=f"{case.shape}-{provider}")
    for case in FAMILIES["rng"]("cpu", False)
    for provider in case.providers
]


@pytest.fixture(autouse=True)
def one_thread():
    # The C++ kernel reads torch's thread count, so this pins both it and torch.randint to one thread.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize(("case", "provider"), PARAMS)
def test_rng(benchmark, case, provider):
    benchmark.group = f"{case.name}/1t {case.shape}"  # providers of one shape side by side
    benchmark.extra_info.update(work=case.work, unit=case.unit, baseline=case.baseline)
    benchmark(case.providers[provider])
