"""random_words as a custom op: opcheck, torch.compile(fullgraph=True), no recompiles on new
seeds, dynamic shapes."""
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import fastmask

from .conftest import BACKENDS, device_for, op_arguments


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    keys = torch.tensor([3, -1, 2**40], device=device_for(backend))
    seed = torch.tensor(11, device=keys.device)
    torch.library.opcheck(torch.ops.fastmask.random_words.default, (seed, keys, 37, 5, backend))


def test_inductor_fullgraph_matches_eager():
    def step(seed, keys):
        return fastmask.random_words(seed, keys, 33, 2), fastmask.random_words(None, keys, 8)

    compiled = torch.compile(step, fullgraph=True)
    keys = torch.arange(4)
    seeded, fresh = compiled(torch.tensor(7), keys)
    assert torch.equal(seeded, fastmask.random_words(7, keys, 33, 2))
    _, fresh_again = compiled(torch.tensor(7), keys)
    assert fresh.shape == (4, 8, 4) and not torch.equal(fresh, fresh_again)  # seed=None: a new seed per call


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_seed_does_not_recompile(backend):
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(lambda s, k: fastmask.random_words(s, k, 16, backend=backend), backend=counter, fullgraph=True)
    keys = torch.arange(3, device=device_for(backend))
    for seed in (1, 2, 2**40, -5):
        assert torch.equal(compiled(torch.tensor(seed, device=keys.device), keys), fastmask.random_words(seed, keys, 16))
    assert counter.frame_count == 1


def test_dynamic_shapes():
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(lambda s, k, n: fastmask.random_words(s, k, n), backend=counter, fullgraph=True, dynamic=True)
    seed = torch.tensor(3)
    for rows, length in ((2, 5), (3, 9), (5, 17)):
        keys = torch.arange(rows)
        assert torch.equal(compiled(seed, keys, length), fastmask.random_words(3, keys, length))
    assert counter.frame_count == 1


# --- mask_tokens -------------------------------------------------------------------------------

MASKING = dict(mask_token_id=3, vocab_size=100, special_ids=[0, 1, 2, 3])


def masking_batch(device="cpu"):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 100, (3, 40), generator=g)
    ids[:, 0] = 1
    return ids.to(device)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [dict(), dict(exact=True, views=2, max_predictions=6, prediction_probability=0.3)])
def test_mask_tokens_opcheck(backend, options):
    ids = masking_batch(device_for(backend))
    args = op_arguments(lambda: fastmask.mask_tokens(ids, seed=1, backend=backend, attention_mask=torch.ones_like(ids),
                                                     **MASKING, **options))
    torch.library.opcheck(torch.ops.fastmask.mask_tokens.default, args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_tokens_probabilities_as_tensors_do_not_recompile(backend):
    counter = CompileCounterWithBackend("aot_eager")

    def step(ids, seed, p, q):
        return fastmask.mask_tokens(ids, seed=seed, mlm_probability=p, prediction_probability=q, backend=backend, **MASKING)

    compiled = torch.compile(step, backend=counter, fullgraph=True)
    ids = masking_batch(device_for(backend))
    compiles = []
    for p, q in ((0.15, 0.15), (0.4, 0.2), (1.0, 0.5)):
        got = compiled(ids, torch.tensor(5, device=ids.device), torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64))
        expected = fastmask.mask_tokens(ids, seed=5, mlm_probability=p, prediction_probability=q, backend="reference", **MASKING)
        assert torch.equal(got.input_ids, expected.input_ids) and torch.equal(got.labels, expected.labels)
        compiles.append(counter.frame_count)
    assert compiles[0] >= 1 and compiles[-1] == compiles[0]  # (dynamo may restart its first analysis once)


def test_mask_tokens_inductor_fullgraph():
    ids = masking_batch()
    compiled = torch.compile(lambda x, s: fastmask.mask_tokens(x, seed=s, max_predictions=8, **MASKING), fullgraph=True)
    got = compiled(ids, torch.tensor(9))
    expected = fastmask.mask_tokens(ids, seed=9, max_predictions=8, **MASKING)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
