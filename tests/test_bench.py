"""The benchmark harness (fastmask.bench): timers, the CSV, the rng cases and the CLI. No timing asserts."""
import csv

import pytest
import torch

from fastmask.bench import __main__ as cli
from fastmask.bench import results
from fastmask.bench.cases import FAMILIES, rng
from fastmask.bench.timing import time_cpu


def test_time_cpu_percentiles_are_ordered_and_per_call():
    calls = 0

    def fn():
        nonlocal calls
        calls += 1

    t = time_cpu(fn, repeats=5, warmup=1, min_time=1e-4)
    assert 0 < t.p20 <= t.median <= t.p80
    assert t.n == 5
    assert calls > 2 * 5  # a trivial fn is looped within each repeat


def _row(**changes):
    fields = dict(case="c/1t", shape="2x3", provider="p", metric="seconds", median=1.5, p20=1.0, p80=2.0)
    fields.update(changes)
    return results.Row(**fields, **results.environment("cpu"))


def test_append_rows_writes_the_header_once_and_round_trips(tmp_path):
    path = tmp_path / "sub" / "out.csv"
    results.append_rows(path, [_row()])
    results.append_rows(path, [_row(provider="q", metric="speedup_vs_p", p20=None, p80=None)])
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(results.COLUMNS) and lines.count(lines[0]) == 1
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        got = list(reader)
    assert tuple(reader.fieldnames) == results.COLUMNS
    assert [r["provider"] for r in got] == ["p", "q"]
    assert float(got[0]["median"]) == 1.5 and float(got[0]["p80"]) == 2.0
    assert got[1]["p20"] == got[1]["p80"] == ""  # a ratio of medians has no spread
    assert got[0]["torch"] == torch.__version__


def test_append_rows_refuses_a_file_with_other_columns(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        results.append_rows(path, [_row()])


def test_environment_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = results.environment("cpu")
    assert env["commit"] == "unknown"
    assert env["device"] and env["triton"] and env["date"]
    assert results.default_csv_path("NVIDIA H100 80GB HBM3").as_posix() == "bench/results/nvidia-h100-80gb-hbm3.csv"


def test_rng_cases_run_and_give_the_right_shapes():
    for case in FAMILIES["rng"]("cpu", True):
        rows, length = map(int, case.shape.split("x"))
        assert case.baseline in case.providers and case.work == 4 * rows * length
        expected = {"torch.randint", "fastmask-cpp", "fastmask-reference"}
        if rows * length <= rng.DISPATCH_MAX_POSITIONS:
            expected.add("fastmask-cpp/torch.ops")
        assert set(case.providers) == expected
        for fn in case.providers.values():
            out = fn()
            assert out.shape == (rows, length, 4) and out.dtype == torch.int64


def test_rng_full_run_skips_the_reference_only_on_the_largest_shape():
    full = FAMILIES["rng"]("cpu", False)
    assert len(full) == len(rng.SHAPES)
    assert ["fastmask-reference" in case.providers for case in full] == [True] * (len(full) - 1) + [False]


def test_main_writes_rows_and_restores_threads(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rng, "QUICK_SHAPES", [(4, 64)])
    path = tmp_path / "out.csv"
    threads = torch.get_num_threads()
    cli.main(["--quick", "--only", "rng", "--csv", str(path)])
    assert torch.get_num_threads() == threads
    with path.open(newline="") as f:
        got = list(csv.DictReader(f))
    assert {r["case"] for r in got} == {"random_words/1t"} and {r["shape"] for r in got} == {"4x64"}
    metrics = {(r["provider"], r["metric"]) for r in got}
    assert ("fastmask-cpp", "seconds") in metrics and ("fastmask-cpp", "words_per_s") in metrics
    assert ("fastmask-cpp", "speedup_vs_torch.randint") in metrics
    assert ("torch.randint", "speedup_vs_torch.randint") not in metrics
    assert len(got) == 4 + 4 + 3  # seconds and throughput for 4 providers (torch.ops too at 4x64), speedups for 3
    assert str(path) in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_main_refuses_cuda_without_a_gpu(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["--device", "cuda", "--csv", str(tmp_path / "out.csv")])
