"""lagrad.numeric.scatter_add against numpy's add.at, bit for bit, on the
compiled path (int32 and int64 positions) and on every fallback."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lagrad import numeric
from lagrad.numeric import index_array, scatter_add


def _case(seed: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(n)
    at = rng.integers(0, n, m)  # repeats: they accumulate
    return y, at, rng.standard_normal(m), rng.standard_normal(m)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int16, np.uint32])
def test_equals_add_at_bit_for_bit(dtype: type) -> None:
    y, at, w, x = _case(0, 50, 400)
    expected = y.copy()
    np.add.at(expected, at, w * x)
    scatter_add(y, at.astype(dtype), w, x)
    assert np.array_equal(y, expected)


@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(0, 60))
@settings(max_examples=60, deadline=None)
def test_random_cases_equal_add_at(seed: int, n: int, m: int) -> None:
    y, at, w, x = _case(seed, n, m)
    x[::7] = np.inf  # non-finite values go through as add.at sends them
    expected = y.copy()
    with np.errstate(invalid="ignore"):  # inf - inf
        np.add.at(expected, at, w * x)
    scatter_add(y, index_array(at, n), w, x)
    assert np.array_equal(y, expected, equal_nan=True)


def test_strided_operands_and_a_view_of_the_target() -> None:
    y, at, w, x = _case(1, 100, 50)
    at = at % 50  # positions below 50: x may be y[50:]
    expected = y.copy()
    np.add.at(expected, at, w[::-1] * expected[50:])
    scatter_add(y, index_array(at, 100), w[::-1], y[50:])
    assert np.array_equal(y, expected)


def test_fallbacks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    y, at, w, x = _case(2, 30, 200)
    expected = y.copy()
    np.add.at(expected, at, w * x)
    monkeypatch.setattr(numeric, "_csc_matvec", None)  # a SciPy without the loop
    got = y.copy()
    scatter_add(got, index_array(at, 30), w, x)
    assert np.array_equal(got, expected)
    block = np.tile(y[:, None], (1, 3))  # 2-D: add.at broadcasts over columns
    want = block.copy()
    np.add.at(want, at, (w * x)[:, None])
    scatter_add(block, at, w[:, None], x[:, None])
    assert np.array_equal(block, want)


def test_index_array_picks_int32_when_positions_fit() -> None:
    assert index_array(np.arange(5), 10).dtype == np.int32
    assert index_array(np.arange(5), 2**31).dtype == np.int64
    assert index_array(np.arange(5)[::2], 10).flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_gather_form_equals_add_at_reading_the_target(dtype: type) -> None:
    """``x[gather]`` read from the vector written, as a level sweep does:
    positions gathered (50..99) are never written (0..49)."""
    y, at, w, _ = _case(3, 100, 300)
    at = at % 50
    gather = 50 + np.random.default_rng(4).integers(0, 50, 300)
    expected = y.copy()
    np.add.at(expected, at, w * expected[gather])
    scatter_add(y, at.astype(dtype), w, y, gather.astype(dtype))
    assert np.array_equal(y, expected)


def test_gather_form_falls_back_on_mixed_index_dtypes() -> None:
    y, at, w, x = _case(5, 40, 100)
    gather = np.random.default_rng(6).integers(0, 100, 100)
    expected = y.copy()
    np.add.at(expected, at, w * x[gather])
    scatter_add(y, at.astype(np.int32), w, x, gather.astype(np.int64))
    assert np.array_equal(y, expected)


def test_scipy_loops_pass_their_check_here() -> None:
    """On the SciPy this suite runs with, the compiled loops are found and
    agree with add.at (else every sweep would quietly take the slow path)."""
    assert numeric._csc_matvec is not None and numeric._coo_matvec is not None



def test_loops_that_disagree_with_add_at_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy.sparse import _sparsetools

    def wrong(n_row, n_col, starts, at, w, x, y):  # type: ignore[no-untyped-def]
        y[at] += w * x  # a repeated position counted once

    monkeypatch.setattr(_sparsetools, "csc_matvec", wrong)
    assert numeric._compiled_loops() == (None, None)
    monkeypatch.setattr(_sparsetools, "csc_matvec", None)  # not callable: an exception
    assert numeric._compiled_loops() == (None, None)
    monkeypatch.delattr("scipy.sparse._sparsetools")  # a SciPy without the module
    assert numeric._compiled_loops() == (None, None)


def test_operands_of_different_lengths_raise_as_add_at_does() -> None:
    """The compiled loop reads raw buffers: mismatched lengths must not reach it."""
    y, at, w, x = _case(8, 10, 20)
    at32 = index_array(at, 10)
    with pytest.raises(ValueError):
        scatter_add(y, at32, w[:-1], x)
    with pytest.raises(ValueError):
        scatter_add(y, at32, w, x[:-1])
    with pytest.raises(ValueError):
        scatter_add(y, at32, w, x, at32[:-1])


@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(0, 60),
       st.sampled_from([np.int32, np.int64]))
@settings(max_examples=60, deadline=None)
def test_compiled_scatter_equals_add_at(seed: int, n: int, m: int, dtype: type) -> None:
    """The loop bound to one index array (the bulk sweep's per level) is add.at
    bit for bit, and runs again on other operands."""
    y, at, w, x = _case(seed, n, m)
    run = numeric.compiled_scatter(at.astype(dtype))
    assert run is not None
    for _ in range(2):
        expected = y.copy()
        np.add.at(expected, at, w * x)
        run(y, w, x)
        assert np.array_equal(y, expected)
        w, x = x, w


@pytest.mark.parametrize("at", [np.arange(4, dtype=np.int16), np.arange(8)[::2],
                                np.zeros((2, 2), dtype=np.int32)])
def test_compiled_scatter_refuses_what_the_loop_cannot_read(at: np.ndarray) -> None:
    assert numeric.compiled_scatter(at) is None


def test_compiled_scatter_is_none_without_scipys_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numeric, "_csc_matvec", None)
    assert numeric.compiled_scatter(np.arange(3, dtype=np.int32)) is None
