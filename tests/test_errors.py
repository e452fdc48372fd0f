"""Every documented bad input of random_words raises ValueError naming the argument."""
import pytest
import torch

import fastmask

KEYS = torch.arange(3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seed=2**64), r"seed: expected an integer in \[-2\*\*63, 2\*\*64\)"),
        (dict(seed=-(2**63) - 1), "seed: expected an integer"),
        (dict(seed=1.5), "seed: expected None, an int or an int64 tensor, got float"),
        (dict(seed=torch.tensor(1, dtype=torch.int32)), "seed: expected an int64 tensor"),
        (dict(seed=torch.tensor([1, 2])), "seed: expected an int64 tensor with one element"),
        (dict(keys=torch.zeros(3)), "keys: expected dtype int64, int32, got float32"),
        (dict(keys=torch.zeros(2, 2, dtype=torch.int64)), r"keys: expected 1 dimension\(s\), got shape \(2, 2\)"),
        (dict(length=-1), r"length: expected an integer in \[0, 2147483648\), got -1"),
        (dict(length=2**31), "length: expected an integer in"),
        (dict(length=3.0), "length: expected an integer, got float"),
        (dict(purpose=2**32), r"purpose: expected an integer in \[0, 4294967296\)"),
        (dict(purpose=-1), "purpose: expected an integer in"),
        (dict(backend="cuda"), "backend: expected one of auto, reference, cpp, triton, got 'cuda'"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = dict(seed=0, keys=KEYS, length=4) | kwargs
    with pytest.raises(ValueError, match=message):
        fastmask.random_words(**args)


@pytest.mark.gpu
def test_cpp_backend_rejects_cuda_tensors():
    with pytest.raises(ValueError, match="backend: 'cpp' runs on CPU tensors"):
        fastmask.random_words(0, KEYS.cuda(), 4, backend="cpp")
