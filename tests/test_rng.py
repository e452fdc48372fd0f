"""The random stream: three backends bit-identical, Philox known answers, golden hashes, uniformity."""
import hashlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fastmask
from fastmask.reference.rng import philox4x32_10

from .conftest import BACKENDS, device_for

SEEDS = st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from([0, 1, -1, 2**32, 2**32 - 1, 2**63 - 1]))
KEYS = st.lists(st.integers(-(2**63), 2**63 - 1), min_size=0, max_size=4)
LENGTHS = st.sampled_from([0, 1, 2, 3, 7, 64, 1023, 1024, 1025, 2500])
PURPOSES = st.integers(0, 2**32 - 1)


def words(seed, keys, length, purpose=0, backend="auto", device="cpu"):
    keys = torch.as_tensor(keys, dtype=torch.int64).to(device)
    return fastmask.random_words(seed, keys, length, purpose, backend=backend).cpu()


@given(seed=SEEDS, keys=KEYS, length=LENGTHS, purpose=PURPOSES)
def test_backends_bit_identical(seed, keys, length, purpose):
    expected = words(seed, keys, length, purpose, backend="reference")
    assert expected.shape == (len(keys), length, 4)
    for backend in ("cpp", "triton"):
        got = words(seed, keys, length, purpose, backend=backend, device=device_for(backend))
        assert got.dtype == torch.int64
        assert torch.equal(got, expected), backend


@pytest.mark.parametrize(
    "counter, key, expected",
    [  # Random123's known-answer vectors for philox4x32_10 (kat_vectors)
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((2**32 - 1,) * 4, (2**32 - 1,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ],
)
def test_philox_known_answers(counter, key, expected):
    got = philox4x32_10(*(torch.tensor(v) for v in counter), *(torch.tensor(v) for v in key))
    assert tuple(int(w) for w in got) == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_counter_layout(backend):
    """Word layout of docs/rng.md: counter = (position, purpose, key lo, key hi), Philox key = seed."""
    seed, key, position, purpose = 0x0123456789ABCDEF, 0x00000007_00000005, 3, 9
    got = words(seed, [key], position + 1, purpose, backend=backend, device=device_for(backend))[0, position]
    counter = (position, purpose, 5, 7)
    expected = philox4x32_10(*(torch.tensor(v) for v in counter), torch.tensor(0x89ABCDEF), torch.tensor(0x01234567))
    assert got.tolist() == [int(w) for w in expected]


# sha256 of the words as little-endian uint32, pinned for STREAM_VERSION 1 (docs/rng.md).
GOLDEN = [
    ((0, [0], 4, 0), "61a8239286bb494fae6caaf8640e5ba27bee2186ca3df04f0b873b6039a59b83"),
    ((2**63 + 5, [-1, 2**40, 12345], 33, 7), "1de58276915f7c4813e9202361f0e5d580270d84b3cab9759755dcde05fab75d"),
    ((-1, list(range(8)), 1000, 0), "a8c7286800bb2638d5284705e2663e5e9ffdd5440502fc4c728d9e3c21788d3b"),
]


def digest(w: torch.Tensor) -> str:
    return hashlib.sha256(w.numpy().astype("<u4").tobytes()).hexdigest()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("args, expected", GOLDEN, ids=["tiny", "wide-seed-and-keys", "long"])
def test_golden_hashes(backend, args, expected):
    assert fastmask.STREAM_VERSION == 1
    assert digest(words(*args, backend=backend, device=device_for(backend))) == expected


def test_uniformity():
    """Each of the 32 bits is set half the time, and the top byte fills 256 buckets evenly."""
    w = words(12345, torch.arange(64), 4096)  # 2^20 words
    n = w.numel()
    bits = (w.reshape(-1, 1) >> torch.arange(32)) & 1
    ones = bits.sum(0).double()
    assert ((ones - n / 2).abs() <= 6 * (n / 4) ** 0.5).all()  # 6 binomial standard deviations
    counts = torch.bincount((w >> 24).reshape(-1), minlength=256).double()
    chi2 = ((counts - n / 256) ** 2 / (n / 256)).sum().item()
    assert chi2 < 255 + 6 * (2 * 255) ** 0.5  # mean + 6 sd of chi-square with 255 dof (~390)


def test_row_depends_only_on_its_key():
    """Batch composition, order and size never change a row."""
    alone = words(7, [42], 100)
    in_batch = words(7, [1, 42, 3, 42], 100)
    assert torch.equal(in_batch[1], alone[0]) and torch.equal(in_batch[3], alone[0])
    assert torch.equal(words(7, [42], 40)[0], alone[0, :40])  # a prefix of a longer row


def test_seed_key_purpose_each_change_the_words():
    base = words(1, [0], 64, 0)
    for other in (words(2, [0], 64, 0), words(1, [1], 64, 0), words(1, [2**32], 64, 0), words(1, [0], 64, 1)):
        assert not torch.equal(other, base)
    assert not torch.equal(words(2**32, [0], 64), words(0, [0], 64))  # the seed's high word counts


def test_seed_forms_agree():
    assert torch.equal(words(2**64 - 1, [5], 9), words(-1, [5], 9))
    assert torch.equal(words(torch.tensor(-1), [5], 9), words(-1, [5], 9))
    assert torch.equal(words(torch.tensor([3]), [5], 9), words(3, [5], 9))


def test_default_seed_is_fresh_and_follows_manual_seed():
    keys = torch.arange(2)
    first, second = fastmask.random_words(None, keys, 16), fastmask.random_words(None, keys, 16)
    assert not torch.equal(first, second)
    torch.manual_seed(0)
    a = fastmask.random_words(None, keys, 16)
    torch.manual_seed(0)
    assert torch.equal(fastmask.random_words(None, keys, 16), a)


@pytest.mark.parametrize("backend", BACKENDS)
def test_key_dtypes_and_strides(backend):
    device = device_for(backend)
    keys = torch.tensor([5, -3, 7, 2**31 - 1], dtype=torch.int64, device=device)
    expected = fastmask.random_words(4, keys, 10, backend=backend)
    assert torch.equal(fastmask.random_words(4, keys.to(torch.int32), 10, backend=backend), expected)
    strided = torch.stack([keys, keys], dim=1)[:, 0]
    assert not strided.is_contiguous()
    assert torch.equal(fastmask.random_words(4, strided, 10, backend=backend), expected)
    assert torch.equal(fastmask.random_words(4, keys.tolist(), 10, backend="reference").to(device), expected)


@pytest.mark.gpu
def test_cuda_auto_is_triton_and_seed_on_device():
    keys = torch.arange(3, device="cuda")
    got = fastmask.random_words(torch.tensor(5), keys, 100)
    assert got.device == keys.device
    assert torch.equal(got.cpu(), words(5, [0, 1, 2], 100, backend="cpp"))


@given(seed=st.integers(0, 2**64 - 1), key=st.integers(0, 2**64 - 1), purpose=PURPOSES, first=st.integers(0, 2**31 - 32))
def test_cpp_block_philox_paths_agree(seed, key, purpose, first):
    """The C++ kernels draw 32 positions at a time (AVX2 where the CPU has it); both paths match the reference."""
    from fastmask import _C
    from fastmask.reference.rng import stream_words

    signed = lambda v: v - 2**64 if v >= 2**63 else v  # noqa: E731
    positions = torch.arange(first, first + 32)
    expected = stream_words(torch.tensor(signed(seed)), torch.tensor([[signed(key)]]), positions, purpose)
    expected = expected[0].T.reshape(-1).tolist()  # words[j][i]
    assert _C.philox_block(False, seed, key, purpose, first) == expected
    assert _C.philox_block(True, seed, key, purpose, first) == expected
