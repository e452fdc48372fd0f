"""fastmask-bench: time every case's providers, print a table and append the rows to the CSV.

    python -m fastmask.bench --quick                  # CPU, one thread, small shapes
    python -m fastmask.bench --device cuda --csv out.csv
"""
from __future__ import annotations

import argparse
import sys

import torch
from rich.console import Console
from rich.table import Column, Table

from . import results
from .cases import FAMILIES, Case
from .memory import peak_bytes
from .timing import Timing, time_cpu, time_gpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fastmask-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the small shapes")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--only", choices=sorted(FAMILIES), help="run one family")
    parser.add_argument("--csv", help="results file (default: bench/results/<device>.csv)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the C++ "
                        "kernels are compared with torch on one thread)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    if args.threads < 1:
        parser.error(f"--threads: expected at least 1, got {args.threads}")

    # A table wrapped to 80 columns in a log file is unreadable; a terminal keeps its own width.
    console = Console(width=None if sys.stdout.isatty() else 132)
    env = results.environment(args.device)
    path = args.csv or results.default_csv_path(env["device"])
    table = Table(Column("case", no_wrap=True), "shape", "provider", "median", "p20-p80", "throughput", "vs baseline", "peak memory (workspace)",
                  title=f"{env['device']}, torch {env['torch']}, triton {env['triton']}, commit {env['commit']}")
    rows: list[results.Row] = []
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # also the C++ kernels' thread count: they read torch's
    try:
        for family in [args.only] if args.only else sorted(FAMILIES):
            for case in FAMILIES[family](args.device, args.quick):
                # Threads only matter on the CPU; they go in the case name so 1t and 8t rows never mix.
                name = case.name if args.device == "cuda" else f"{case.name}/{args.threads}t"
                with console.status(f"{family}: {name} {case.shape}"):
                    timings = {p: _time(fn, args.device, case.repeats) for p, fn in case.providers.items()}
                    memory = {p: peak_bytes(fn, args.device) for p, fn in case.providers.items()} if case.memory else {}
                rows += _rows(case, name, timings, memory, env)
                _add_to_table(table, case, name, timings, memory)
    finally:
        torch.set_num_threads(previous_threads)
    console.print(table)
    results.append_rows(path, rows)
    console.print(f"appended {len(rows)} rows to {path}", soft_wrap=True, markup=False)


def _time(fn, device: str, repeats: int) -> Timing:
    return time_gpu(fn) if device == "cuda" else time_cpu(fn, repeats=repeats, warmup=1 if repeats < 10 else 3)


def _rows(case: Case, name: str, timings: dict[str, Timing], memory: dict[str, int], env: dict[str, str]) -> list[results.Row]:
    base = timings[case.baseline]
    rows = []
    for provider, t in timings.items():
        def row(metric, median, p20=None, p80=None):
            return results.Row(name, case.shape, provider, metric, median, p20, p80, **env)

        rows.append(row("seconds", t.median, t.p20, t.p80))
        # Throughput falls as time rises: its 20th percentile is work over the time's 80th.
        rows.append(row(f"{case.unit}_per_s", case.work / t.median, case.work / t.p80, case.work / t.p20))
        if provider != case.baseline:
            rows.append(row(f"speedup_vs_{case.baseline}", base.median / t.median))
        if provider in memory:
            rows.append(row("peak_bytes", memory[provider]))
            if case.memory_floor:
                rows.append(row("workspace_bytes", memory[provider] - case.memory_floor))
    for provider, why in case.unavailable.items():  # a peer that could not run here says so in the CSV
        rows.append(results.Row(name, case.shape, provider, f"unavailable: {why}", float("nan"), None, None, **env))
    return rows


def _add_to_table(table: Table, case: Case, name: str, timings: dict[str, Timing], memory: dict[str, int]) -> None:
    base = timings[case.baseline]
    for provider, t in timings.items():
        ratio = base.median / t.median
        versus = "baseline" if provider == case.baseline else (
            f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower")
        scale, unit = _time_unit(t.median)
        table.add_row(name, case.shape, provider, f"{t.median / scale:.3g} {unit}",
                      f"{t.p20 / scale:.3g}-{t.p80 / scale:.3g} {unit}", _rate(case.work / t.median, case.unit),
                      versus, _memory(memory.get(provider), case.memory_floor))
    for provider, why in case.unavailable.items():
        table.add_row(name, case.shape, provider, "-", "-", "-", f"not run: {why}", "")
    table.add_section()


def _memory(peak, floor) -> str:
    if peak is None:
        return ""
    text = f"{peak / 2**20:.1f} MiB"
    return f"{text} ({(peak - floor) / 2**20:.1f} MiB)" if floor else text


def _rate(per_second: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            return f"{per_second / scale:.3g} {prefix}{unit}/s"
    return f"{per_second:.3g} {unit}/s"


def _time_unit(seconds: float) -> tuple[float, str]:
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "us")):
        if seconds >= scale:
            return scale, unit
    return 1e-9, "ns"


if __name__ == "__main__":
    main()
