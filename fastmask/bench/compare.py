"""fastmask-bench --compare OLD.csv NEW.csv: which cases got slower, beyond the noise.

Each file may hold many runs; the latest row (by date) of each (case, shape, provider, device) with
metric "seconds" is compared. A case regressed when the new run's p20 is above the old run's p80:
the middle 60% of the new samples lies entirely above the old ones' (medians alone would flag
noise); it improved in the mirror case; otherwise the change is within the spread.

A file that does not exist or holds no timings is a ValueError; two files without a case in common
(a 1-thread run against a 2-thread one: case names end in /1t, /2t) warn, and the CLI exits with 2.
"""
from __future__ import annotations

import csv
import dataclasses
import warnings
from pathlib import Path

Key = tuple[str, str, str, str]  # case, shape, provider, device


@dataclasses.dataclass(frozen=True)
class Change:
    key: Key
    old: tuple[float, float, float]  # median, p20, p80 in seconds
    new: tuple[float, float, float]
    verdict: str  # "regression", "improvement" or "within spread"

    @property
    def ratio(self) -> float:
        """new median / old median: above 1 is slower."""
        return self.new[0] / self.old[0]


def latest_timings(path: str | Path) -> dict[Key, tuple[float, float, float]]:
    latest: dict[Key, tuple[str, tuple[float, float, float]]] = {}
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such results file")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"case", "shape", "provider", "device", "metric", "median", "p20", "p80", "date"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a fastmask-bench results file (no column {', '.join(sorted(missing))})")
        for row in reader:
            if row["metric"] != "seconds" or not row["p20"] or not row["p80"]:
                continue
            key = (row["case"], row["shape"], row["provider"], row["device"])
            value = (float(row["median"]), float(row["p20"]), float(row["p80"]))
            if key not in latest or row["date"] >= latest[key][0]:
                latest[key] = (row["date"], value)
    return {key: value for key, (_, value) in latest.items()}


def compare(old_path: str | Path, new_path: str | Path) -> list[Change]:
    old, new = latest_timings(old_path), latest_timings(new_path)
    if not old.keys() & new.keys():
        warnings.warn(f"no case matches between {old_path} ({len(old)} timings, {_threads(old)}) and {new_path} "
                      f"({len(new)} timings, {_threads(new)}): compare runs of the same families, shapes, threads and device",
                      stacklevel=2)
    changes = []
    for key in sorted(old.keys() & new.keys()):
        (_, _, old_p80), (_, new_p20, _) = old[key], new[key]
        if new_p20 > old_p80:
            verdict = "regression"
        elif new[key][2] < old[key][1]:
            verdict = "improvement"
        else:
            verdict = "within spread"
        changes.append(Change(key, old[key], new[key], verdict))
    return changes


def _threads(timings) -> str:
    """The thread suffixes of a file's case names, e.g. "1t" (what most often differs between runs)."""
    suffixes = sorted({key[0].rsplit("/", 1)[-1] for key in timings if key[0].rsplit("/", 1)[-1].endswith("t")})
    return "threads " + ", ".join(suffixes) if suffixes else "no thread suffix"
