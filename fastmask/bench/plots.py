"""PNG plots of the results: per family, throughput against problem size, one line per case and provider."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from . import results


def _size(shape: str) -> int:
    """A shape "32x512" as its number of elements, the x axis."""
    size = 1
    for part in re.findall(r"\d+", shape):
        size *= int(part)
    return size


def write_plots(rows: list[results.Row], families: dict[str, str], folder: str | Path) -> list[Path]:
    """One PNG per family (`families` maps a row's case to its family) into `folder`: one line per
    (case, provider). Needs matplotlib (the bench extra); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines: dict[str, dict[str, list[tuple[int, float, float, float]]]] = defaultdict(lambda: defaultdict(list))
    units: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if not row.metric.endswith("_per_s") or row.case not in families:
            continue
        family = families[row.case]
        lines[family][f"{row.case}: {row.provider}"].append(
            (_size(row.shape), row.median, row.p20 or row.median, row.p80 or row.median))
        units[family].add(row.metric.removesuffix("_per_s"))
    written = []
    for family, providers in sorted(lines.items()):
        figure, axis = plt.subplots(figsize=(7.5, 4.5))
        for label, points in sorted(providers.items()):
            points.sort()
            xs = [p[0] for p in points]
            axis.plot(xs, [p[1] for p in points], marker="o", label=label)
            axis.fill_between(xs, [p[2] for p in points], [p[3] for p in points], alpha=0.2)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("problem size (product of the shape)")
        axis.set_ylabel(f"{' / '.join(sorted(units[family]))} per second (p20-p80 shaded)")
        axis.set_title(f"{family} on {rows[0].device}", fontsize=9)
        axis.legend(fontsize=6)
        figure.tight_layout()
        path = folder / f"{family}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written
