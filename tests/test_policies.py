"""The shared integer policies of docs/rng.md and docs/policies.md."""
from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fastmask._rng import TWO_32, choose, count, probability_threshold
from fastmask._validate import check_int, check_probability


@given(st.floats(0.0, 1.0))
def test_threshold_is_floor_of_p_times_2_32(p):
    t = probability_threshold(p)
    assert t == int(Fraction(p) * TWO_32) and 0 <= t <= TWO_32
    assert Fraction(t, TWO_32) <= Fraction(p) < Fraction(t + 1, TWO_32)


def test_threshold_edges():
    assert probability_threshold(0.0) == 0
    assert probability_threshold(1.0) == TWO_32  # every uint32 draw is below it
    assert probability_threshold(0.5) == 2**31


@given(st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_count_is_round_half_up_of_the_quantized_rate(p, n):
    t = probability_threshold(p)
    c = count(t, n)
    assert c == int(Fraction(t * n, TWO_32) + Fraction(1, 2))
    assert 0 <= c <= n
    assert abs(Fraction(c) - Fraction(p) * n) <= Fraction(1, 2) + Fraction(n, TWO_32)


def test_count_differs_from_round_only_near_half():
    """The documented difference: p = 0.15, n = 10 gives p*n = 1.5 in decimal, count 1."""
    assert count(probability_threshold(0.15), 10) == 1
    assert count(probability_threshold(0.15), 100) == 15
    assert count(probability_threshold(1.0), 7) == 7
    assert count(probability_threshold(0.5), 3) == 2  # exact ties round up


@given(st.integers(0, TWO_32 - 1), st.integers(1, 2**31 - 1))
def test_choose_is_in_range(bits, n):
    assert 0 <= choose(bits, n) < n


def test_choose_is_uniform_over_all_words():
    """Over all 2^32 words each of n choices gets floor or ceil of 2^32 / n (checked on a subsample grid)."""
    n = 10
    words = torch.arange(0, TWO_32, 4096, dtype=torch.int64)
    counts = torch.bincount((words * n) >> 32, minlength=n)
    assert (counts.max() - counts.min()).item() <= 1


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), float("inf"), "0.5", True, None])
def test_probability_rejected(p):
    with pytest.raises(ValueError, match="mlm_probability"):
        check_probability("mlm_probability", p)


def test_int_range_rejected():
    with pytest.raises(ValueError, match=r"length: expected an integer in \[0, 5\), got 5"):
        check_int("length", 5, 0, 5)
    with pytest.raises(ValueError, match="length: expected an integer, got float"):
        check_int("length", 2.0, 0, 5)
