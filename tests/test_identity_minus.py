"""identity_minus builds a block's I - J in place of scipy's identity - J:
the same canonical CSC matrix, to the last bit (repeats summed, 1 - J_ii on
the diagonal, exact zeros dropped)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from lagrad.compile.jacobian import identity_minus


def _scipys(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int) -> sp.csc_matrix:
    j = sp.csc_matrix((vals, (rows, cols)), shape=(n, n))
    return (sp.identity(n, format="csc") - j).tocsc()


def _assert_same(a: sp.csc_matrix, b: sp.csc_matrix) -> None:
    assert a.shape == b.shape and a.format == b.format == "csc"
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1),
                                   st.sampled_from([0.0, 1.0, -1.0, 0.5, 0.1, 0.2, 0.3, 2.0])),
                         max_size=12))))
def test_identity_minus_is_scipys(case: tuple[int, list[tuple[int, int, float]]]) -> None:
    n, entries = case
    rows = np.array([e[0] for e in entries], dtype=np.intp)
    cols = np.array([e[1] for e in entries], dtype=np.intp)
    vals = np.array([e[2] for e in entries], dtype=float)
    _assert_same(identity_minus(rows, cols, vals, n), _scipys(rows, cols, vals, n))


def test_cancellations_and_explicit_zeros_are_dropped() -> None:
    rows, cols = np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1])
    vals = np.array([1.0, 0.0, 0.25, 0.75])  # 1 - 1 on the diagonal; an explicit zero
    m = identity_minus(rows, cols, vals, 2)
    np.testing.assert_array_equal(m.toarray(), [[0.0, -0.75], [0.0, 0.75]])
    assert m.nnz == 2


@pytest.mark.parametrize("n", [0, 3])
def test_no_entries_is_the_identity(n: int) -> None:
    empty = np.zeros(0, dtype=np.intp)
    _assert_same(identity_minus(empty, empty, np.zeros(0), n), _scipys(empty, empty,
                                                                      np.zeros(0), n))
