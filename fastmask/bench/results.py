"""The results CSV, in long format (one row per case, shape, provider and metric), as Liger-Kernel's
benchmark/data/all_benchmark_data.csv: files from many machines and commits concatenate cleanly."""
from __future__ import annotations

import csv
import dataclasses
import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Iterable

import torch

COLUMNS = ("case", "shape", "provider", "metric", "median", "p20", "p80", "device", "torch", "triton", "commit", "date")


@dataclasses.dataclass(frozen=True)
class Row:
    case: str
    shape: str
    provider: str
    metric: str
    median: float
    p20: float | None  # None where the metric has no spread (a ratio of two medians)
    p80: float | None
    device: str
    torch: str
    triton: str
    commit: str
    date: str


def environment(device: str = "cpu") -> dict[str, str]:
    """The Row fields that describe where and when a benchmark ran on `device` ("cpu" or "cuda")."""
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "commit": _git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model and its logical CPU count (threads used go in the case name)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{_cpu_model()} ({os.cpu_count()} cpus)"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux
    return platform.processor() or platform.machine() or "unknown cpu"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)  # without importing it: importing triton is slow
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _git_commit() -> str:
    """The short hash of HEAD of the repository around the cwd; "unknown" outside one (or without git)."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def default_csv_path(device_name: str) -> Path:
    """bench/results/<slug of the device name>.csv, relative to the cwd."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "unknown"
    return Path("bench") / "results" / f"{slug}.csv"


def append_rows(path: str | os.PathLike, rows: Iterable[Row]) -> None:
    """Append rows to the CSV at `path`, creating it (and its folder) with the header if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if tuple(header) != COLUMNS:
            raise ValueError(f"{path}: header {header} differs from {list(COLUMNS)}; write to another file")
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(dataclasses.asdict(row) for row in rows)
