"""A block's I - J: identity_minus builds it in place of scipy's identity - J
(the same canonical CSC matrix, to the last bit: repeats summed, 1 - J_ii on
the diagonal, exact zeros dropped), dense_block_matrix densely for Newton's
steps on a small block, factorized by LAPACK."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import lagrad
from lagrad.compile.compiler import compile_program
from lagrad.compile.jacobian import block_matrix, dense_block_matrix, identity_minus
from lagrad.compile.schedule import CyclicBlock
from lagrad.solve import nonlinear


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


def _root_program(n: int) -> tuple[lagrad.Program, np.ndarray]:
    def f(a: np.ndarray) -> object:
        z = lagrad.root(lambda z, a: z * z * z + z * z + z - a, np.zeros(n), a)
        return lagrad.sum(lagrad.sin(z) * a)
    a = np.linspace(0.5, 2.0, n)
    return lagrad.trace(f, a), a


def test_dense_block_matrix_is_the_sparse_one() -> None:
    program, a = _root_program(4)
    sol = program.solve(a)
    [unit] = [s for s in compile_program(program).steps if isinstance(s, CyclicBlock)]
    dense = dense_block_matrix(unit, sol.z)
    np.testing.assert_array_equal(dense, block_matrix(unit, sol.z).toarray())
    assert dense.shape == (unit.s_index.size,) * 2


@pytest.mark.parametrize("n", [3, 40])
def test_newton_factorizes_small_blocks_densely(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A block of up to DENSE_NEWTON entries: LAPACK's LU, which the adjoint
    reuses; the same gradient as with SuperLU's, and as the analytic one."""
    program, a = _root_program(n)
    sol = program.solve(a, method="newton")
    [fwd] = sol.diagnostics.values()
    [unit] = [s for s in compile_program(program).steps if isinstance(s, CyclicBlock)]
    small = unit.s_index.size <= nonlinear.DENSE_NEWTON
    assert small == (n == 3)
    assert isinstance(fwd.factorization, nonlinear.DenseLU) == small
    g = sol.grad()
    [adj] = sol.adjoint_diagnostics
    assert adj.reused_factorization
    monkeypatch.setattr(nonlinear, "DENSE_NEWTON", -1)  # SuperLU for every block
    g_sparse = program.solve(a, method="newton").grad()
    np.testing.assert_allclose(g, g_sparse, rtol=1e-13, atol=1e-15)
    zs = np.asarray(sol.values[unit.unknowns[0]])
    # d/da of sum(sin(z) a) with z^3 + z^2 + z = a: sin z + a cos z / (3 z^2 + 2 z + 1)
    np.testing.assert_allclose(g, np.sin(zs) + a * np.cos(zs) / (3 * zs ** 2 + 2 * zs + 1),
                               rtol=1e-12)
