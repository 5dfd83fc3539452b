"""lagrad.coo_matvec and its primitive csr_matvec (src/lagrad/sparse.py).

References: the value against scipy's own COO product; every derivative rule
(VJP, JVP, local Jacobian, with respect to the values ``data`` and to ``x``)
against central finite differences of the value and against each other (the
dot-product identity <J^T g, t> = <g, J t>); the local Jacobian with respect
to x against the dense matrix; gradients of recorded programs (acyclic, and a
fixed point whose matrix values depend on the unknown) against central
differences and forward mode; errors at the public boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import lagrad
from lagrad.examples import pagerank
from lagrad.ir.sparse import CSRPattern, csr_matvec

H = 1e-6  # central differences: error ~H^2 |f'''| + eps/H, far below the tolerances
RTOL, ATOL = 1e-7, 1e-9


def _random_pattern(rng: np.random.Generator, shape: tuple[int, int], nnz: int,
                    repeats: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random unsorted (row, col) pairs, the last ``repeats`` of them copies of earlier ones."""
    row = rng.integers(0, shape[0], nnz - repeats)
    col = rng.integers(0, shape[1], nnz - repeats)
    pick = rng.integers(0, nnz - repeats, repeats)
    return np.concatenate([row, row[pick]]), np.concatenate([col, col[pick]])


def _coo(data: np.ndarray, row: np.ndarray, col: np.ndarray,
         shape: tuple[int, int]) -> sp.coo_matrix:
    return sp.coo_matrix((data, (row, col)), shape=shape)  # sums repeated pairs on use


def _central(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """d f / d x as a dense (f.size, x.size) matrix by central differences."""
    cols = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = H
        e = e.reshape(x.shape)
        cols.append((np.ravel(f(x + e)) - np.ravel(f(x - e))) / (2 * H))
    return np.stack(cols, axis=1)


# ------------------------------------------------------------------ values

CASES = [  # (shape, nnz, repeated pairs, x trailing shape, transpose)
    ((5, 4), 12, 0, (), False),
    ((5, 4), 12, 4, (), False),
    ((5, 4), 12, 3, (3,), False),
    ((4, 6), 10, 2, (), True),
    ((4, 6), 10, 2, (2,), True),
    ((1, 7), 7, 0, (), False),
    ((6, 6), 1, 0, (2,), False),
]


def _case(rng: np.random.Generator, shape: tuple[int, int], nnz: int, repeats: int,
          trailing: tuple[int, ...], transpose: bool) -> tuple[Any, ...]:
    row, col = _random_pattern(rng, shape, nnz, repeats)
    data = rng.normal(size=nnz)
    x = rng.normal(size=(shape[0] if transpose else shape[1],) + trailing)
    return data, row, col, x


@pytest.mark.parametrize(("shape", "nnz", "repeats", "trailing", "transpose"), CASES)
def test_value_matches_scipy(rng: np.random.Generator, shape: tuple[int, int], nnz: int,
                             repeats: int, trailing: tuple[int, ...], transpose: bool) -> None:
    data, row, col, x = _case(rng, shape, nnz, repeats, trailing, transpose)
    a = _coo(data, row, col, shape)
    expected = (a.T if transpose else a) @ x
    got = lagrad.coo_matvec(data, row, col, x, shape=shape, transpose=transpose)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)


@settings(max_examples=40, deadline=None)
@given(n_rows=st.integers(1, 6), n_cols=st.integers(1, 6), nnz=st.integers(0, 20),
       seed=st.integers(0, 2**31))
def test_value_matches_dense_on_random_patterns(n_rows: int, n_cols: int, nnz: int,
                                                seed: int) -> None:
    rng = np.random.default_rng(seed)
    row, col = rng.integers(0, n_rows, nnz), rng.integers(0, n_cols, nnz)
    data, x = rng.normal(size=nnz), rng.normal(size=n_cols)
    dense = np.zeros((n_rows, n_cols))
    np.add.at(dense, (row, col), data)  # COO semantics: repeated pairs add up
    got = lagrad.coo_matvec(data, row, col, x, shape=(n_rows, n_cols))
    np.testing.assert_allclose(got, dense @ x, rtol=1e-12, atol=1e-12)


def test_repeated_entries_add_up() -> None:
    row, col = np.array([1, 0, 1, 1]), np.array([2, 0, 2, 2])
    data = np.array([1.0, 5.0, 2.0, 4.0])  # A[1, 2] = 1 + 2 + 4
    y = lagrad.coo_matvec(data, row, col, np.array([1.0, 0.0, 10.0]), shape=(2, 3))
    np.testing.assert_array_equal(y, [5.0, 70.0])
    # each copy of a pair gets the same derivative g[row] x[col]
    f = lambda d: lagrad.sum(lagrad.coo_matvec(d, row, col, np.array([1.0, 0.0, 10.0]),  # noqa: E731
                                               shape=(2, 3)) * np.array([3.0, 7.0]))
    np.testing.assert_array_equal(lagrad.grad(f)(data), [70.0, 3.0, 70.0, 70.0])


# ------------------------------------------------------------- primitive rules

@pytest.mark.parametrize(("shape", "nnz", "repeats", "trailing", "transpose"), CASES)
def test_rules_match_central_differences(rng: np.random.Generator, shape: tuple[int, int],
                                         nnz: int, repeats: int, trailing: tuple[int, ...],
                                         transpose: bool) -> None:
    data, row, col, x = _case(rng, shape, nnz, repeats, trailing, transpose)
    if transpose:
        row, col, shape = col, row, (shape[1], shape[0])
    pattern = CSRPattern.from_coo(row, col, shape)
    d = data if pattern.order is None else data[pattern.order]  # values in CSR order
    args = (d, x)
    ans = csr_matvec.value(d, x, pattern=pattern)
    params = {"pattern": pattern}
    for k in range(2):
        def f(a: np.ndarray, k: int = k) -> np.ndarray:
            moved = list(args)
            moved[k] = a
            return csr_matvec.value(*moved, pattern=pattern)
        fd = _central(f, args[k])
        jac = csr_matvec.local_jacobian(k, ans, args, params)
        assert sp.issparse(jac) and jac.shape == (ans.size, args[k].size)
        np.testing.assert_allclose(jac.toarray(), fd, rtol=RTOL, atol=ATOL)
        # VJP rows and JVP columns give the same matrix
        vjp_rows = np.stack([np.ravel(csr_matvec.pullback(k, e.reshape(ans.shape), ans, args,
                                                          params))
                             for e in np.eye(ans.size)])
        ts: list[Any] = [None, None]
        jvp_cols = []
        for e in np.eye(args[k].size):
            ts[k] = e.reshape(args[k].shape)
            jvp_cols.append(np.ravel(csr_matvec.pushforward(ts, ans, args, params)))
        np.testing.assert_allclose(vjp_rows, fd, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(np.stack(jvp_cols, axis=1), fd, rtol=RTOL, atol=ATOL)
        # dot-product identity between the VJP and the JVP at random vectors
        g, t = rng.normal(size=ans.shape), rng.normal(size=args[k].shape)
        ts[k] = t
        lhs = np.vdot(csr_matvec.pullback(k, g, ans, args, params), t)
        rhs = np.vdot(g, csr_matvec.pushforward(ts, ans, args, params))
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("trailing", [(), (3,)])
def test_local_jacobian_wrt_x_is_the_dense_matrix(rng: np.random.Generator,
                                                  trailing: tuple[int, ...]) -> None:
    shape = (5, 4)
    row, col = _random_pattern(rng, shape, 14, repeats=4)
    data, x = rng.normal(size=14), rng.normal(size=(4,) + trailing)
    pattern = CSRPattern.from_coo(row, col, shape)
    d = data[pattern.order] if pattern.order is not None else data
    ans = csr_matvec.value(d, x, pattern=pattern)
    jac = csr_matvec.local_jacobian(1, ans, (d, x), {"pattern": pattern}).toarray()
    dense = _coo(data, row, col, shape).toarray()
    expected = dense if not trailing else np.kron(dense, np.eye(trailing[0]))
    np.testing.assert_allclose(jac, expected, rtol=1e-14, atol=1e-14)


def test_pattern_keeps_sorted_input_in_place_and_sorts_the_rest() -> None:
    sorted_rows = CSRPattern.from_coo(np.array([0, 0, 2]), np.array([1, 0, 1]), (3, 2))
    assert sorted_rows.order is None
    np.testing.assert_array_equal(sorted_rows.indptr, [0, 2, 2, 3])
    shuffled = CSRPattern.from_coo(np.array([2, 0, 1, 0]), np.array([0, 1, 1, 0]), (3, 2))
    np.testing.assert_array_equal(shuffled.order, [1, 3, 2, 0])  # stable: ties keep order
    np.testing.assert_array_equal(shuffled.indices, [1, 0, 1, 0])
    assert repr(shuffled) == "CSRPattern(shape=(3, 2), nnz=4)"


# ------------------------------------------------------------ recorded programs

def _program_case(rng: np.random.Generator, trailing: tuple[int, ...]) -> tuple[Any, ...]:
    shape = (4, 5)
    row, col = _random_pattern(rng, shape, 11, repeats=3)
    data, x = rng.normal(size=11), rng.normal(size=(5,) + trailing)
    weights = rng.normal(size=(4,) + trailing)

    def f(d: Any, x: Any) -> Any:
        y = lagrad.coo_matvec(lagrad.sin(d), row, col, lagrad.tanh(x), shape=shape)
        return lagrad.sum(y * y * weights)
    return f, data, x


@pytest.mark.parametrize("trailing", [(), (2,)])
def test_gradient_matches_central_differences(rng: np.random.Generator,
                                              trailing: tuple[int, ...]) -> None:
    f, data, x = _program_case(rng, trailing)
    g_data, g_x = lagrad.grad(f, argnums=(0, 1))(data, x)

    def numeric(a: np.ndarray, b: np.ndarray) -> float:
        return float(lagrad.trace(f, a, b).solve(a, b).output)
    fd_data = _central(lambda a: np.array(numeric(a, x)), data).ravel()
    fd_x = _central(lambda b: np.array(numeric(data, b)), x).reshape(x.shape)
    np.testing.assert_allclose(g_data, fd_data, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(g_x, fd_x, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("trailing", [(), (2,)])
def test_forward_and_reverse_mode_agree(rng: np.random.Generator,
                                        trailing: tuple[int, ...]) -> None:
    f, data, x = _program_case(rng, trailing)
    t_data, t_x = rng.normal(size=data.shape), rng.normal(size=x.shape)
    _, tangent = lagrad.jvp(f, (data, x), (t_data, t_x))
    g_data, g_x = lagrad.grad(f, argnums=(0, 1))(data, x)
    expected = float(np.vdot(g_data, t_data) + np.vdot(g_x, t_x))
    assert float(tangent) == pytest.approx(expected, rel=1e-12)


def test_jacobian_modes_agree_on_a_vector_output(rng: np.random.Generator) -> None:
    row, col = _random_pattern(rng, (3, 4), 8, repeats=2)

    def f(d: Any, x: Any) -> Any:
        return lagrad.coo_matvec(d, row, col, x, shape=(3, 4))
    data, x = rng.normal(size=8), rng.normal(size=4)
    for argnum, arg in ((0, data), (1, x)):
        rev = lagrad.jacobian(f, argnums=argnum, mode="reverse")(data, x)
        fwd = lagrad.jacobian(f, argnums=argnum, mode="forward")(data, x)
        fd = _central(lambda a, k=argnum: f(a, x) if k == 0 else f(data, a), arg)
        np.testing.assert_allclose(rev, fd, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(fwd, rev, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(lagrad.jacobian(f, argnums=1)(data, x),
                               _coo(data, row, col, (3, 4)).toarray(), rtol=1e-14)


def _fixed_point(n: int, row: np.ndarray, col: np.ndarray) -> lagrad.Program:
    """z = 0.4 A(w * sigmoid(z)[row]) z + b: the matrix values depend on the unknown."""
    p = lagrad.Program("coo fixed point")
    w, b = p.input("w", (row.size,)), p.input("b", (n,))
    z = p.unknown("z", (n,))
    values = w * lagrad.sigmoid(z)[row]
    p.define(z, 0.4 * lagrad.coo_matvec(values, row, col, z, shape=(n, n)) + b)
    p.output(lagrad.sum(z * z))
    return p


def test_fixed_point_with_values_inside_the_cycle(rng: np.random.Generator) -> None:
    n = 6
    row, col = _random_pattern(rng, (n, n), 15, repeats=3)
    w = rng.uniform(-0.5, 0.5, row.size)  # |0.4 A| well below 1: a contraction
    b = rng.normal(size=n)
    p = _fixed_point(n, row, col)
    sol = p.solve(w, b, method="fixed_point", tol=1e-15)
    g_w, g_b = sol.grad()

    def out(w: np.ndarray, b: np.ndarray) -> float:
        return float(p.solve(w, b, method="newton", tol=1e-15).output)
    np.testing.assert_allclose(g_w, _central(lambda a: np.array(out(a, b)), w).ravel(),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g_b, _central(lambda a: np.array(out(w, a)), b).ravel(),
                               rtol=1e-6, atol=1e-8)
    t_w, t_b = rng.normal(size=w.shape), rng.normal(size=b.shape)
    tangent = sol.tangent((t_w, t_b))[p.output_variable]
    assert float(tangent) == pytest.approx(float(np.vdot(g_w, t_w) + np.vdot(g_b, t_b)),
                                           rel=1e-10)
    for method in ("splu", "gmres", "dense"):
        g_w2, g_b2 = sol.grad(method=method)
        np.testing.assert_allclose(g_w2, g_w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(g_b2, g_b, rtol=1e-9, atol=1e-12)


def test_recorded_equations(rng: np.random.Generator) -> None:
    p = lagrad.Program()
    d, x = p.input("d", (3,)), p.input("x", (2,))
    lagrad.coo_matvec(d, [0, 1, 1], [1, 0, 1], x, shape=(2, 2))  # rows sorted: no permutation
    lagrad.coo_matvec(d, [1, 0, 1], [1, 0, 1], x, shape=(2, 2))  # unsorted: one gather
    lagrad.coo_matvec(np.ones(3), [1, 0, 1], [1, 0, 1], x, shape=(2, 2))  # constant: permuted now
    assert [eq.primitive.name for eq in p.equations] == [
        "csr_matvec", "getitem", "csr_matvec", "csr_matvec"]
    np.testing.assert_array_equal(p.equations[1].params["index"], [1, 0, 2])
    np.testing.assert_array_equal(p.equations[3].args[0], np.ones(3))
    assert str(p).splitlines()[2] == "v2 = csr_matvec(d, x, pattern=sparse(2, 2))  # (2,)"


def test_pagerank_cycle_is_one_sparse_product() -> None:
    # the permutation into CSR order sits outside the cycle: each adjoint
    # product inside the block is one csr_matvec and O(n) work, no O(m) gather
    ex = pagerank(n_nodes=50, n_edges=300)
    sol = ex.solve()
    (unit,) = [s for s in sol.schedule.steps if hasattr(s, "inner_interior")]
    inner = [s.eq.primitive.name for s in unit.inner_interior + unit.inner_closing]
    assert inner.count("csr_matvec") == 1
    assert "getitem" not in inner
    assert ex.gradient_error(sol) <= 1e-10


# ------------------------------------------------------------------- errors

def _traced() -> tuple[lagrad.Program, Any, Any]:
    p = lagrad.Program()
    return p, p.input("d", (3,)), p.input("x", (2,))


ROW, COL = np.array([0, 1, 1]), np.array([1, 0, 1])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"shape": (2,)}, r"coo_matvec: shape=\(2,\) is not a matrix shape; give two"),
    ({"shape": (2, -1)}, r"coo_matvec: shape=\(2, -1\) is not a matrix shape"),
    ({"shape": (2.0, 2)}, r"coo_matvec: shape=\(2.0, 2\) is not a matrix shape"),
    ({"row": np.array([0, 2, 1])}, r"coo_matvec: row\[1\] = 2 is out of range for 2 rows "
                                   r"\(1 such entries\); indices must lie in \[0, 2\)"),
    ({"col": np.array([0, -1, 1])}, r"col\[1\] = -1 is out of range for 2 cols"),
    ({"row": np.array([0.0, 1.0, 1.0])}, r"row must be a 1-D array of integers, got float64"),
    ({"row": np.array([[0, 1, 1]])}, r"row must be a 1-D array of integers, got int64 of "
                                     r"shape \(1, 3\)"),
    ({"col": np.array([0, 1])}, r"row has 3 entries and col has 2; give one \(row, col\) pair"),
    ({"shape": (2, 3)}, r"A has shape \(2, 3\) and cannot multiply x of shape \(2,\); x must "
                        r"have shape \(3,\) or \(3, k\)"),
    ({"shape": (3, 2), "transpose": True},
     r"A.T has shape \(2, 3\) and cannot multiply x of shape \(2,\)"),
])
def test_bad_arguments_raise_program_error(kwargs: dict[str, Any], match: str) -> None:
    p, d, x = _traced()
    call = {"row": ROW, "col": COL, "shape": (2, 2), **kwargs}
    with pytest.raises(lagrad.ProgramError, match=match):
        lagrad.coo_matvec(d, call.pop("row"), call.pop("col"), x, **call)
    assert p.equations == []  # nothing half-recorded


def test_bad_values_and_operands_raise_program_error() -> None:
    p, d, x = _traced()
    with pytest.raises(lagrad.ProgramError, match=r"coo_matvec: data has shape \(2,\), the "
                                                  r"pattern has 3 \(row, col\) pairs"):
        lagrad.coo_matvec(x, ROW, COL, x, shape=(2, 2))
    with pytest.raises(lagrad.ProgramError, match=r"cannot multiply x of shape \(2, 2, 1\)"):
        lagrad.coo_matvec(np.ones(3), ROW, COL, np.ones((2, 2, 1)), shape=(2, 2))
    with pytest.raises(lagrad.ProgramError, match=r"coo_matvec: row is the traced variable "
                                                  r"'d'; the sparsity pattern must be constant"):
        lagrad.coo_matvec(d, d, COL, x, shape=(2, 2))
    other = lagrad.Program().input("y", (2,))
    with pytest.raises(lagrad.ProgramError, match=r"data 'd' and x 'y' belong to different "
                                                  "programs"):
        lagrad.coo_matvec(d, ROW[::-1], COL, other, shape=(2, 2))
    assert p.equations == []


def test_empty_pattern(rng: np.random.Generator) -> None:
    empty = np.zeros(0, dtype=int)
    y = lagrad.coo_matvec(np.zeros(0), empty, empty, rng.normal(size=3), shape=(2, 3))
    np.testing.assert_array_equal(y, np.zeros(2))
