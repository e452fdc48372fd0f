"""Timers: wall clock for CPU callables, triton.testing for CUDA ones. Times are per call, in seconds."""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Timing:
    median: float
    p20: float
    p80: float
    n: int  # repeats the percentiles are taken over


def time_cpu(fn: Callable[[], object], *, repeats: int = 25, warmup: int = 3, min_time: float = 1e-3) -> Timing:
    """Time `fn` with time.perf_counter: `repeats` samples, each the mean over enough calls to last at
    least `min_time` (so timer resolution and loop overhead don't swamp a microsecond call)."""
    for _ in range(warmup):
        fn()
    number = 1
    while (elapsed := _run(fn, number)) < min_time:
        # Grow towards min_time from the last measurement, at least doubling, at most 100x per step.
        number *= int(min(100, max(2, 1.2 * min_time / max(elapsed, 1e-9))))
    samples = [_run(fn, number) / number for _ in range(repeats)]
    median, p20, p80 = np.percentile(samples, [50, 20, 80])
    return Timing(float(median), float(p20), float(p80), repeats)


def time_interleaved(fns: dict[str, Callable[[], object]], *, repeats: int = 5, warmup: int = 1) -> dict[str, Timing]:
    """Time seconds-long callables in rounds, one call of each per round: on a shared machine a change
    of load then falls on every callable alike, and their ratios stay meaningful."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(_run(fn, 1))
    timings = {}
    for name, values in samples.items():
        median, p20, p80 = np.percentile(values, [50, 20, 80])
        timings[name] = Timing(float(median), float(p20), float(p80), repeats)
    return timings


def _run(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - start


def time_gpu(fn: Callable[[], object], *, cudagraph: bool = False) -> Timing:
    """Time a CUDA callable with triton.testing (which flushes L2 and syncs around each sample)."""
    import triton.testing  # lazily: importing triton is slow and the CPU runs never need it

    bench = triton.testing.do_bench_cudagraph if cudagraph else triton.testing.do_bench
    median, p20, p80 = bench(fn, quantiles=[0.5, 0.2, 0.8])  # milliseconds
    # do_bench chooses its own repeat count and does not report it.
    return Timing(median * 1e-3, p20 * 1e-3, p80 * 1e-3, n=0)


def copy_bandwidth(size: int = 1 << 30) -> float:
    """The GPU's measured device-to-device copy bandwidth in bytes/s (read + write), the roofline
    that a memory-bound kernel's GB/s is compared with."""
    import torch

    source = torch.empty(size, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    seconds = time_gpu(lambda: target.copy_(source)).median
    return 2 * size / seconds
