"""What the pytest-benchmark entry points in bench/ share: one parameter per (case, provider) of a
family, timed at one thread (bench/conftest.py pins it), grouped so providers of a shape sit side by side."""
from __future__ import annotations

import pytest

from .cases import FAMILIES, Case


def params(family: str) -> list:
    return [
        pytest.param(case, provider, id=f"{case.name}-{case.shape}-{provider}")
        for case in FAMILIES[family]("cpu", False)
        for provider in case.providers
    ]


def run(benchmark, case: Case, provider: str) -> None:
    benchmark.group = f"{case.name}/1t {case.shape}"
    benchmark.extra_info.update(work=case.work, unit=case.unit, baseline=case.baseline)
    benchmark(case.providers[provider])
