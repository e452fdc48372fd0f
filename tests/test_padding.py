"""fastmask.functional.pad_sequences, the padding the collators call: C++ (lists and tuples) and
the torch reference give one answer, and bad rows raise ValueError naming the feature."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fastmask import cpp
from fastmask.functional import pad_sequences

ROWS = st.lists(st.lists(st.integers(0, 250), max_size=9), min_size=1, max_size=5)
needs_cpp = pytest.mark.skipif(not cpp.HAS_CPP, reason="needs the C++ extension")


def expected(rows, length, pad, left):
    out = torch.full((len(rows), length), pad, dtype=torch.int64)
    for b, row in enumerate(rows):
        n = len(row)
        if n:
            (out[b, length - n:] if left else out[b, :n]).copy_(torch.tensor(row))
    return out


@needs_cpp
@given(rows=ROWS, extra=st.integers(0, 3), pad=st.integers(-100, 255), left=st.booleans(),
       dtype=st.sampled_from([torch.int64, torch.int32]))
def test_backends_agree_with_the_definition(rows, extra, pad, left, dtype):
    length = max(len(r) for r in rows) + extra
    want = expected(rows, length, pad, left).to(dtype)
    for backend in ("cpp", "reference", "auto"):
        got = pad_sequences(rows, length, pad_value=pad, left=left, dtype=dtype, backend=backend)
        assert got.dtype == dtype and torch.equal(got, want), backend
    # auto reads arrays and tensors through the reference
    arrays = [np.asarray(r, dtype=np.int64) for r in rows]
    assert torch.equal(pad_sequences(arrays, length, pad_value=pad, left=left, dtype=dtype), want)


@needs_cpp
def test_pairs():
    rows = [[(0, 1), (1, 3)], [(0, 2)]]
    for backend in ("cpp", "reference"):
        out = pad_sequences(rows, 3, width=2, name="offset_mapping", backend=backend)
        assert out.tolist() == [[[0, 1], [1, 3], [0, 0]], [[0, 2], [0, 0], [0, 0]]]


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpp", marks=needs_cpp)])
def test_bad_rows_name_the_feature(backend):
    with pytest.raises(ValueError, match="input_ids: feature 1"):
        pad_sequences([[1, 2], [3, 1.5]], 2, backend=backend)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        pad_sequences([[1]], 1, backend="triton")
    with pytest.raises(ValueError, match="dtype"):
        pad_sequences([[1]], 1, dtype=torch.float32)
    with pytest.raises(ValueError, match="length"):
        pad_sequences([[1]], -1)
