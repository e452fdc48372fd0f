"""Guardrails found while using fastmask as a new user would: padding by id in mask_tokens, and the
helpers around T5 chunks, image grids and UL2 modes (each beside its family's own tests)."""
import pytest
import torch

import fastmask

BACKENDS = ["reference", "cpp", "triton"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_pad_token_id_keeps_padding_out_of_labels(backend):
    ids = torch.randint(5, 100, (4, 32))
    ids[:, 20:] = 0  # right padding, and no attention_mask, lengths or special ids to say so
    common = dict(seed=1, mask_token_id=4, vocab_size=100, mlm_probability=1.0, backend=backend)
    plain = fastmask.mask_tokens(ids, **common)
    assert (plain.labels[:, 20:] != -100).all()  # the trap: every pad is a prediction target
    out = fastmask.mask_tokens(ids, pad_token_id=0, **common)
    assert (out.labels[:, 20:] == -100).all() and torch.equal(out.input_ids[:, 20:], ids[:, 20:])
    assert (out.labels[:, :20] != -100).all()
    with pytest.raises(ValueError, match="pad_token_id"):
        fastmask.mask_tokens(ids, pad_token_id=100, **common)
