"""The README's results table: the latest speedup of each (case, shape, provider) in a results CSV,
as markdown. python -m fastmask.bench.summary bench/results/<device>.csv"""
from __future__ import annotations

import csv
import sys
from pathlib import Path


_SECONDARY = ("reference", "torch.ops")  # the spec and the dispatcher path: in the CSV, not in the README


def latest_speedups(path: str | Path) -> list[dict[str, str]]:
    """Rows with metric speedup_vs_*, the newest per (case, shape, provider), in file order; without the
    reference backend and the torch.ops dispatcher rows."""
    latest: dict[tuple, dict[str, str]] = {}
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            if row["metric"].startswith("speedup_vs_") and not any(x in row["provider"] for x in _SECONDARY):
                key = (row["case"], row["shape"], row["provider"], row["device"])
                if key not in latest or row["date"] >= latest[key]["date"]:
                    latest.pop(key, None)
                    latest[key] = row
    return list(latest.values())


def markdown(path: str | Path) -> str:
    lines = ["| case | shape | fastmask | vs | speedup (median ratio) | device | commit |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in latest_speedups(path):
        baseline = row["metric"].removeprefix("speedup_vs_")
        lines.append(f"| {row['case']} | {row['shape']} | {row['provider']} | {baseline} | {float(row['median']):.2f}x "
                     f"| {row['device']} | {row['commit']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(sys.argv[1]))
