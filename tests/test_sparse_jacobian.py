"""lagrad.jacobian(fn, sparse=True): pattern from the program, coloured
multi-right-hand-side solves, checked against the dense Jacobian (1e-12) and
central differences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import lagrad
from lagrad.errors import NonFiniteError, OptionError
from lagrad.solve.colouring import greedy_colouring, recover, seed_matrix
from lagrad.solve.sparsejac import sparse_jacobian

MODES = ["auto", "forward", "reverse"]


def _differences(fn: Callable[..., Any], args: list[Any], k: int, h: float = 1e-6
                 ) -> np.ndarray:
    """d fn / d args[k] by central differences, (output.size, args[k].size)."""
    x = np.asarray(args[k], dtype=float)
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = h
        up = [*args[:k], (x.ravel() + e).reshape(x.shape), *args[k + 1:]]
        down = [*args[:k], (x.ravel() - e).reshape(x.shape), *args[k + 1:]]
        cols.append((np.ravel(fn(*up)) - np.ravel(fn(*down))) / (2 * h))
    return np.array(cols).T


def _check(fn: Callable[..., Any], args: list[Any], argnums: Any = 0, mode: str = "auto",
           nnz: int | None = None) -> tuple[sp.csr_matrix, ...]:
    """Sparse equals dense (1e-12) and differences (1e-6); returns the blocks."""
    got = lagrad.jacobian(fn, argnums, mode=mode, sparse=True)(*args)
    dense = lagrad.jacobian(fn, argnums)(*args)
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    got_t = (got,) if isinstance(argnums, int) else got
    dense_t = (dense,) if isinstance(argnums, int) else dense
    for k, g, d in zip(nums, got_t, dense_t):
        assert sp.issparse(g) and g.format == "csr"
        d = np.asarray(d).reshape(g.shape)
        np.testing.assert_allclose(g.toarray(), d, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g.toarray(), _differences(fn, args, k), rtol=1e-6,
                                   atol=1e-6)
        assert np.all(g.toarray()[d != 0] != 0)  # the pattern covers every non-zero
    if nnz is not None:
        assert sum(g.nnz for g in got_t) == nnz  # and nothing structurally zero
    return got_t


@pytest.mark.parametrize("mode", MODES)
def test_diagonal(mode: str) -> None:
    x = np.linspace(0.1, 2.0, 40)
    (jac,) = _check(lambda x: lagrad.sin(x) * x + x ** 2, [x], mode=mode, nnz=40)
    np.testing.assert_allclose(jac.diagonal(), np.cos(x) * x + np.sin(x) + 2 * x, rtol=1e-14)


@pytest.mark.parametrize("mode", MODES)
def test_banded(mode: str) -> None:
    def f(x: Any) -> Any:
        return x[2:] - 2.0 * lagrad.sin(x[1:-1]) + x[:-2] ** 3
    (jac,) = _check(f, [np.linspace(-1.0, 1.0, 30)], mode=mode, nnz=3 * 28)
    assert jac.shape == (28, 30)
    assert sparse_jacobian(lagrad.trace(f, np.ones(30)).solve(np.ones(30)), mode).colours == 3


@pytest.mark.parametrize("mode", MODES)
def test_block_sparse(mode: str) -> None:
    a = np.random.default_rng(0).normal(size=(4, 4))

    def f(x: Any) -> Any:  # each row of 4 entries mixes only within itself
        return lagrad.tanh(lagrad.reshape(x, (6, 4)) @ a)
    x = np.random.default_rng(1).normal(size=24)
    _check(f, [x], mode=mode, nnz=6 * 16)
    sol = lagrad.trace(f, x).solve(x)
    assert sparse_jacobian(sol, mode).colours == 4


@pytest.mark.parametrize("mode", MODES)
def test_through_an_elementwise_fixed_point(mode: str) -> None:
    def f(x: Any) -> Any:
        z = lagrad.fixed_point(lambda z, x: 0.5 * lagrad.cos(z) + x, np.zeros(x.shape), x)
        return z * z + x[::-1]
    x = np.linspace(0.0, 1.0, 10)
    _check(f, [x], mode=mode, nnz=20)  # the diagonal and the anti-diagonal


@pytest.mark.parametrize("mode", MODES)
def test_through_a_coupled_cyclic_block(mode: str) -> None:
    w = 0.3 * np.random.default_rng(2).normal(size=(3, 3)) / 3

    def f(x: Any, y: Any) -> Any:  # z couples its 3 entries; x's 3 blocks do not mix
        z = lagrad.fixed_point(lambda z, y: lagrad.tanh(w @ z + y), np.zeros(3), y)
        return lagrad.reshape(x, (3, 3)) * z
    x, y = np.linspace(0.5, 1.5, 9), np.array([0.1, -0.2, 0.3])
    jx, jy = _check(f, [x, y], argnums=(0, 1), mode=mode)
    assert jx.nnz == 9 and jy.nnz == 27


def test_several_arguments_and_a_scalar_output() -> None:
    def f(x: Any, c: Any, y: Any) -> Any:
        return lagrad.sum(lagrad.exp(x) * y[:3]) * c
    args = [np.array([0.1, 0.2, 0.3]), 2.0, np.array([1.0, 2.0, 3.0, 4.0])]
    jx, jy = _check(f, args, argnums=(0, 2), nnz=6)
    assert jx.shape == (1, 3) and jy.shape == (1, 4)
    sol = lagrad.trace(f, *args).solve(*args)
    assert sparse_jacobian(sol).colours == 1  # one row: one adjoint solve


def test_a_tuple_argument_gives_a_tuple_of_matrices() -> None:
    def f(pair: Any) -> Any:
        a, b = pair
        return a * b + lagrad.sin(a)
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    ja, jb = lagrad.jacobian(f, sparse=True)((a, b))
    np.testing.assert_allclose(ja.toarray(), np.diag(b + np.cos(a)), rtol=1e-14)
    np.testing.assert_allclose(jb.toarray(), np.diag(a), rtol=1e-14)


def test_an_output_that_is_an_input() -> None:
    jac = lagrad.jacobian(lambda x: x, sparse=True)(np.ones(3))
    np.testing.assert_array_equal(jac.toarray(), np.eye(3))


def test_the_sweep_solves_the_colours_at_once() -> None:
    """One splu per cyclic block and one product per pair of levels, for every
    colour: the result equals the dense Jacobian on a 400-entry band."""
    def f(x: Any) -> Any:
        return lagrad.tanh(x[1:] * x[:-1]) + x[1:]
    x = np.linspace(-1, 1, 400)
    sol = lagrad.trace(f, x).solve(x)
    jac = sparse_jacobian(sol, "forward")
    assert jac.colours == 2
    np.testing.assert_allclose(jac.matrix.toarray(), lagrad.jacobian(f)(x), rtol=1e-12,
                               atol=1e-15)


def test_errors() -> None:
    with pytest.raises(OptionError, match="unknown mode"):
        lagrad.jacobian(lambda x: x, mode="sideways", sparse=True)
    with pytest.raises(NonFiniteError, match="sqrt"):
        lagrad.jacobian(lambda x: lagrad.sqrt(x), sparse=True)(np.array([1.0, 0.0]))


def test_colouring_is_valid_and_recovers_random_patterns() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        j = sp.random(30, 25, density=0.08, random_state=rng, format="csr")
        colours = greedy_colouring(j)
        p = (j != 0).astype(int).toarray()
        for c in np.unique(colours):  # no row holds two columns of one colour
            assert p[:, colours == c].sum(axis=1).max(initial=0) <= 1
        np.testing.assert_array_equal(recover(j, j @ seed_matrix(colours), colours).toarray(),
                                      j.toarray())
        rows = greedy_colouring(j.T)
        np.testing.assert_array_equal(
            recover(j, (seed_matrix(rows).T @ j).T, rows, by_rows=True).toarray(), j.toarray())


def test_a_deep_chain_of_scalars_and_empty_sides() -> None:
    """Hundreds of levels with one scalar equation each (the pattern sweep
    runs level by level), scalar arguments, and empty inputs or outputs."""
    def chain(a: Any, b: Any, c: Any, d: Any) -> Any:
        xs = [a, b, c, d]
        for k in range(120):
            i = k % 3  # d never mixes in: its column is zero but for itself
            xs[i] = lagrad.sin(xs[i]) * 0.9 + 0.1 * xs[i + 1 if i < 2 else 0]
        return lagrad.stack(xs)
    args = [0.1, 0.4, 0.7, 1.0]
    blocks = _check(chain, args, argnums=(0, 1, 2, 3))
    assert [m.shape for m in blocks] == [(4, 1)] * 4
    assert blocks[3].nnz == 1
    assert lagrad.jacobian(lambda x: x[:0] * 2.0, sparse=True)(np.ones(3)).shape == (0, 3)
    assert lagrad.jacobian(lambda x: lagrad.sum(x) + 1.0, sparse=True)(np.ones(0)).shape == (1, 0)
