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
    repeats: int = 25  # timed samples per provider on a CPU; fewer for seconds-long calls
    memory: bool = False  # also record each provider's peak memory (metric "peak_bytes")
    # Bytes every provider must allocate whatever it does (e.g. the gradients it returns): with it,
    # the "workspace_bytes" metric is the peak above it, the memory a provider could have saved.
    memory_floor: int = 0
    bytes: int = 0  # bytes a call must move at least (read + written): GB/s against the copy roofline on a GPU
    unavailable: dict[str, str] = dataclasses.field(default_factory=dict)  # peer -> why it did not run here
    # Seconds-long calls on a shared machine: time one call of every provider per round (on a CPU), so a
    # change of load hits them all alike instead of whichever provider ran at that time.
    interleave: bool = False


# Imported after Case, which the family modules use.
from . import attention, collators, distillation, graph, image, loss, masking, permutation, pruning, rng, sparse_loss, spans, t5, train_step, words  # noqa: E402

FAMILIES: dict[str, Callable[[str, bool], list[Case]]] = {
    "attention": attention.cases,
    "collators": collators.cases,
    "distillation": distillation.cases,
    "graph": graph.cases,
    "image": image.cases,
    "loss": loss.cases,
    "masking": masking.cases,
    "permutation": permutation.cases,
    "pruning": pruning.cases,
    "rng": rng.cases,
    "sparse_loss": sparse_loss.cases,
    "spans": spans.cases,
    "t5": t5.cases,
    "train_step": train_step.cases,
    "whole_word": words.cases,
}
