"""fastmask-bench: time every case's providers, print a table and append the rows to the CSV.

    python -m fastmask.bench --quick                  # CPU, one thread, small shapes
    python -m fastmask.bench --only masking --threads 2
    python -m fastmask.bench --device cuda --csv out.csv --plots out/
    python -m fastmask.bench --compare old.csv new.csv   # exit status 1 on a regression
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Column, Table

from . import results
from .cases import FAMILIES, Case
from .memory import peak_bytes
from .timing import Timing, copy_bandwidth, time_cpu, time_gpu, time_interleaved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastmask-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the small shapes")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--only", choices=sorted(FAMILIES), help="run one family")
    parser.add_argument("--csv", help="results file (default: bench/results/<device>.csv)")
    parser.add_argument("--plots", help="folder for the PNG plots (default: plots/ beside the CSV)")
    parser.add_argument("--no-plots", action="store_true", help="write no plots")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the C++ "
                        "kernels are compared with torch on one thread)")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two results files "
                        "instead of running; exit status 1 when a case regressed beyond its p20-p80 spread, 2 when no case "
                        "matches or a file is missing")
    args = parser.parse_args(argv)
    # A table wrapped to 80 columns in a log file is unreadable; a terminal keeps its own width.
    console = Console(width=None if sys.stdout.isatty() else 132)
    if args.compare:
        return _compare(console, *args.compare)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    if args.threads < 1:
        parser.error(f"--threads: expected at least 1, got {args.threads}")

    env = results.environment(args.device)
    path = Path(args.csv or results.default_csv_path(env["device"]))
    bandwidth = copy_bandwidth() if args.device == "cuda" else None
    columns = [Column("case", no_wrap=True), "shape", "provider", "median", "p20-p80", "throughput", "vs baseline",
               "peak memory (workspace)"] + (["GB/s (% of copy)"] if bandwidth else [])
    title = f"{env['device']}, torch {env['torch']}, triton {env['triton']}, commit {env['commit']}"
    if bandwidth:
        title += f", copy {bandwidth / 1e9:.0f} GB/s"
    table = Table(*columns, title=title)
    rows: list[results.Row] = []
    families: dict[str, str] = {}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # also the C++ kernels' thread count: they read torch's
    try:
        with Progress(console=console, transient=True) as progress:
            chosen = [args.only] if args.only else sorted(FAMILIES)
            task = progress.add_task("families", total=len(chosen))
            for family in chosen:
                progress.update(task, description=f"{family}: building cases")
                for case in FAMILIES[family](args.device, args.quick):
                    # Threads only matter on the CPU; they go in the case name so 1t and 8t rows never mix.
                    name = case.name if args.device == "cuda" else f"{case.name}/{args.threads}t"
                    progress.update(task, description=f"{family}: {name} {case.shape}")
                    case = _runnable(case)  # a peer that raises is reported, not fatal
                    if case.interleave and args.device == "cpu":
                        timings = time_interleaved(case.providers, repeats=case.repeats)
                    else:
                        timings = {p: _time(fn, args.device, case.repeats) for p, fn in case.providers.items()}
                    memory = {p: peak_bytes(fn, args.device) for p, fn in case.providers.items()} if case.memory else {}
                    rows += _rows(case, name, timings, memory, env, bandwidth)
                    families[name] = family
                    _add_to_table(table, case, name, timings, memory, bandwidth)
                progress.advance(task)
    finally:
        torch.set_num_threads(previous_threads)
    console.print(table)
    results.append_rows(path, rows)
    console.print(f"appended {len(rows)} rows to {path}", soft_wrap=True, markup=False)
    if not args.no_plots:
        _plots(console, rows, families, Path(args.plots) if args.plots else path.parent / "plots" / path.stem)
    return 0


def _plots(console: Console, rows, families, folder: Path) -> None:
    try:
        from .plots import write_plots

        written = write_plots(rows, families, folder)
    except ImportError as error:
        warnings.warn(f"no plots: matplotlib is not importable ({error}); pip install 'fastmask[bench]'", stacklevel=2)
        return
    console.print(f"wrote {len(written)} plots to {folder}", soft_wrap=True, markup=False)


def _compare(console: Console, old: str, new: str) -> int:
    from .compare import compare

    try:
        changes = compare(old, new)
    except ValueError as error:
        console.print(f"fastmask-bench --compare: {error}", markup=False)
        return 2
    table = Table(Column("case", no_wrap=True), "shape", "provider", "device", "old median", "new median",
                  "new / old", "verdict", title=f"{old} -> {new}")
    for change in changes:
        case, shape, provider, device = change.key
        style = {"regression": "bold red", "improvement": "green"}.get(change.verdict)
        table.add_row(case, shape, provider, device, f"{change.old[0]:.3g} s", f"{change.new[0]:.3g} s",
                      f"{change.ratio:.2f}", change.verdict, style=style)
    console.print(table)
    regressions = sum(c.verdict == "regression" for c in changes)
    console.print(f"{len(changes)} cases compared, {regressions} regressed beyond their p20-p80 spread", markup=False)
    if not changes:
        return 2  # nothing compared is not a pass (compare() warned why)
    return 1 if regressions else 0


def _runnable(case: Case) -> Case:
    """The case without the providers whose first call raises (a peer's version that does not take
    these arguments, say): they move to `unavailable` with the error, so one peer cannot stop a run.
    A failing baseline, or fastmask itself, still raises."""
    failed = {}
    for provider, fn in case.providers.items():
        if provider == case.baseline or provider.startswith("fastmask"):
            continue
        try:
            fn()
        except Exception as error:  # noqa: BLE001  (any failure of a peer is reported the same way)
            failed[provider] = f"raised {type(error).__name__}: {error}"[:200]
    if not failed:
        return case
    providers = {p: fn for p, fn in case.providers.items() if p not in failed}
    return dataclasses.replace(case, providers=providers, unavailable={**case.unavailable, **failed})


def _time(fn, device: str, repeats: int) -> Timing:
    return time_gpu(fn) if device == "cuda" else time_cpu(fn, repeats=repeats, warmup=1 if repeats < 10 else 3)


def _rows(case: Case, name: str, timings: dict[str, Timing], memory: dict[str, int], env: dict[str, str],
          bandwidth: float | None = None) -> list[results.Row]:
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
        if bandwidth and case.bytes:
            rows.append(row("GB_per_s", case.bytes / t.median / 1e9, case.bytes / t.p80 / 1e9, case.bytes / t.p20 / 1e9))
        if provider in memory:
            rows.append(row("peak_bytes", memory[provider]))
            if case.memory_floor:
                rows.append(row("workspace_bytes", memory[provider] - case.memory_floor))
    for provider, why in case.unavailable.items():  # a peer that could not run here says so in the CSV
        rows.append(results.Row(name, case.shape, provider, f"unavailable: {why}", float("nan"), None, None, **env))
    return rows


def _add_to_table(table: Table, case: Case, name: str, timings: dict[str, Timing], memory: dict[str, int],
                  bandwidth: float | None = None) -> None:
    base = timings[case.baseline]
    for provider, t in timings.items():
        ratio = base.median / t.median
        versus = "baseline" if provider == case.baseline else (
            f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower")
        scale, unit = _time_unit(t.median)
        table.add_row(name, case.shape, provider, f"{t.median / scale:.3g} {unit}",
                      f"{t.p20 / scale:.3g}-{t.p80 / scale:.3g} {unit}", _rate(case.work / t.median, case.unit),
                      versus, _memory(memory.get(provider), case.memory_floor), *_roofline(case, t, bandwidth))
    for provider, why in case.unavailable.items():
        table.add_row(name, case.shape, provider, "-", "-", "-", f"not run: {why}", "", *([""] if bandwidth else []))
    table.add_section()


def _roofline(case: Case, t: Timing, bandwidth: float | None) -> list[str]:
    """GB/s and its share of the measured copy bandwidth, on a GPU (a column only there)."""
    if not bandwidth:
        return []
    if not case.bytes:
        return [""]
    rate = case.bytes / t.median
    return [f"{rate / 1e9:.0f} ({100 * rate / bandwidth:.0f}%)"]


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
    sys.exit(main())
