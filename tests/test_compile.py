"""random_words as a custom op: opcheck, torch.compile(fullgraph=True), no recompiles on new
seeds, dynamic shapes."""
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import fastmask

from .conftest import BACKENDS, device_for


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
