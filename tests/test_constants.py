"""One source of truth: the constants the C++ kernels were compiled with (csrc/constants.h, exported
by fastmask._C) equal the Python side's, and a mismatch stops the import."""
import types

import pytest
import torch

import fastmask
from fastmask import cpp, words
from fastmask._rng import STREAM_VERSION, Purpose

needs_cpp = pytest.mark.skipif(not cpp.HAS_CPP, reason="needs the C++ extension")


@needs_cpp
def test_cpp_constants_equal_python():
    C = cpp._C
    assert C.STREAM_VERSION == STREAM_VERSION == fastmask.STREAM_VERSION
    for name, value in C.PURPOSES.items():
        assert Purpose[name] == value, name
    # Every purpose a C++ kernel draws for is exported (the families with C++ kernels).
    assert {"MLM_TOKENS", "WHOLE_WORD", "SPANS", "T5_SPANS", "UL2_DENOISER", "BLOCK_MASK", "PATCH_SHUFFLE",
            "BLOCK_TOP_UP"} <= set(C.PURPOSES)
    assert {getattr(torch, name): code for name, code in C.DTYPE_CODES.items()} == cpp.DTYPE_CODES
    assert dict(C.WORD_CODES) == {"CONTINUES": words.CONTINUES, "STARTS": words.STARTS, "NO_WORD": words.NO_WORD}
    assert sorted(C.WORD_SOURCES.values()) == [1, 2, 3, 4]  # 0: token mode


def test_triton_word_codes_equal_python():
    pytest.importorskip("triton")
    from fastmask.triton import _masking_kernels

    assert _masking_kernels.WORD_STARTS.value == words.STARTS
    assert _masking_kernels.NO_WORD.value == words.NO_WORD


def _module(**changes):
    values = {name: getattr(cpp._C, name) for name in ("STREAM_VERSION", "PURPOSES", "DTYPE_CODES", "WORD_CODES")}
    values.update(changes)
    return types.SimpleNamespace(**values)


@needs_cpp
def test_check_constants_accepts_the_build():
    cpp.check_constants(_module())


@needs_cpp
@pytest.mark.parametrize("changes, name", [
    ({"STREAM_VERSION": STREAM_VERSION + 1}, "STREAM_VERSION"),
    ({"PURPOSES": {**cpp._C.PURPOSES, "SPANS": 99}}, "PURPOSES"),
    ({"PURPOSES": {**cpp._C.PURPOSES, "NOT_A_PURPOSE": 50}}, "PURPOSES"),
    ({"DTYPE_CODES": {**cpp._C.DTYPE_CODES, "uint8": 9}}, "DTYPE_CODES"),
    ({"WORD_CODES": {**cpp._C.WORD_CODES, "NO_WORD": 3}}, "WORD_CODES"),
])
def test_check_constants_rejects_a_mismatch(changes, name):
    with pytest.raises(ImportError, match=f"built with {name}"):
        cpp.check_constants(_module(**changes))
