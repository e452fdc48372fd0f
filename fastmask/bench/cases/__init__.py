"""The benchmark cases: each runs fastmask and its peers on the same inputs, built once, outside
the timed callables. A family is a function (device, quick) -> list[Case]."""
from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Case:
    family: str
    name: str
    shape: str  # as written in the CSV's shape column
    providers: dict[str, Callable[[], object]]  # provider name -> zero-argument callable to time
    baseline: str  # the provider that speedups are measured against
    work: int  # units of work per call, for the throughput
    unit: str  # what `work` counts, e.g. "words" (metric "words_per_s")


# Imported after Case, which the family modules use.
from . import loss, masking, rng  # noqa: E402

FAMILIES: dict[str, Callable[[str, bool], list[Case]]] = {"loss": loss.cases, "masking": masking.cases, "rng": rng.cases}
