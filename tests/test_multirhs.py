"""Sweeps with a block of seeds (lagrad.solve.multirhs) and the Jacobians built
on them: every column equals the single-seed solve of the same system, each
path of a cyclic block (Newton's LU reused, a new LU, the reduced dense LU, the
block Neumann series, column by column) is taken and checked, and jacobian /
jacrev / jacfwd agree with the row-by-row Jacobian of a named method, with
finite differences and with autograd."""

from __future__ import annotations

from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.sparse as sp

import lagrad
from lagrad.errors import NonFiniteError, SingularSystemError
from lagrad.ir import primitives as P
from lagrad.solve import multirhs
from lagrad.solve.linsolve import solve_system
from lagrad.solve.multirhs import pullback_many, pushforward_many, substitute_many, unit_solves
from lagrad.solve.system import ADJOINT, TANGENT

ROW_BY_ROW = {"adjoint_method": "splu"}  # a named method: one solve per row or column


def _fd_jacobian(f: Any, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    cols = [(np.asarray(f(x + h * e)) - np.asarray(f(x - h * e))).ravel() / (2 * h)
            for e in np.eye(x.size)]
    return np.stack(cols, axis=-1)


def _rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _per_column(sol: lagrad.Solution, kind: str, rhs: np.ndarray) -> np.ndarray:
    """Column j: the single right-hand-side solve of the default method."""
    cols = []
    for j in range(rhs.shape[1]):
        system = lagrad.System(sol.schedule, sol.z, kind, rhs[:, j].copy(), sol.diagnostics)
        cols.append(solve_system(system, compute_residual=False).x)
    return np.stack(cols, axis=1)


# ------------------------------------------------------------ one primitive

@pytest.mark.parametrize("prim", P.ELEMENTWISE + P.STRUCTURAL, ids=lambda p: p.name)
def test_many_seeds_equal_one_seed_at_a_time_for_every_primitive(prim: P.Primitive) -> None:
    cases = _cases(prim)
    assert cases, f"give {prim.name} sample arguments in _cases"
    rng = np.random.default_rng(1)
    for (args, params), unit in [(c, u) for c in cases for u in (False, True)]:
        ans = np.asarray(prim.value(*args, **params), dtype=float)
        seeds = 3
        g = rng.standard_normal((seeds,) + ans.shape)
        if unit:  # unit seeds, as a Jacobian's (mostly zeros: sparse products)
            seeds = min(ans.size, 64)
            g = np.eye(seeds, ans.size).reshape((seeds,) + ans.shape)
        for k in range(len(args)):
            got = pullback_many(prim, k, g, ans, args, params)
            want = [prim.pullback(k, g[j], ans, args, params) for j in range(seeds)]
            assert np.allclose(got, np.reshape(want, got.shape), rtol=1e-12, atol=1e-12)
            t = rng.standard_normal((seeds,) + np.shape(args[k]))
            ts: list[Any] = [None] * len(args)
            ts[k] = t
            got = pushforward_many(prim, ts, ans, args, params)
            want = [prim.pushforward([t[j] if i == k else None for i in range(len(args))],
                                     ans, args, params) for j in range(seeds)]
            assert np.allclose(got, np.reshape(want, got.shape), rtol=1e-12, atol=1e-12)


def _cases(prim: P.Primitive) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.5, 1.5, (3, 4)), rng.uniform(0.5, 1.5, (4,))
    big = rng.standard_normal((70, 80))  # 5600 entries: unit seeds multiply sparsely
    if prim.name in ("add", "sub", "mul", "div", "pow", "maximum", "minimum"):
        return [((a, b), {}), ((b, a), {})]  # broadcasting either way
    if prim.elementwise and prim.name not in ("where", "weighted_sum"):
        return [((a,), {}), ((b,), {})]
    table: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {
        "matmul": [((a, rng.standard_normal((4, 2))), {}), ((a, b), {}),
                   ((big, big[0]), {}), ((big[:, :70], big), {}), ((big[0, :70], big), {}),
                   ((b, rng.standard_normal((4, 5))), {}), ((b, b), {})],
        "sum": [((a,), {"axis": (1,), "keepdims": False}),
                ((a,), {"axis": None, "keepdims": False})],
        "reshape": [((a,), {"shape": (2, 6)})],
        "transpose": [((a,), {"axes": (1, 0)})],
        "getitem": [((a,), {"index": (slice(0, 2), 1)}), ((b,), {"index": np.array([0, 0, 3])})],
        "logsumexp": [((a,), {"axis": (1,), "keepdims": True})],
        "concatenate": [((a, a[:1]), {"axis": 0})],
        "where": [((a, b), {"condition": a > 1.0}), ((b, a), {"condition": b < 1.0})],
        "weighted_sum": [((a, b, a), {"weights": np.array([0.5, -2.0, 3.0])}),
                         ((b,), {"weights": np.array([1.5])})],
        "sparse_matmul": [((b,), {"matrix": sp.random(5, 4, density=0.5, random_state=0)}),
                          ((a.T,), {"matrix": sp.random(5, 4, density=0.5, random_state=1)})],
    }
    return table.get(prim.name, [])


# ------------------------------------------------------------ whole sweeps

def _mlp(x: Any) -> Any:
    rng = np.random.default_rng(3)
    w1, w2 = rng.standard_normal((5, 7)), rng.standard_normal((7, 3))
    h = lagrad.tanh(x @ w1 + 0.1)
    return (lagrad.logsumexp(h @ w2, axis=1, keepdims=True) * h[:, :3]
            + lagrad.sin(h.T @ x[:, 0])[:3])


def _fixed(x: Any, method: str | None = None) -> Any:
    w = np.random.default_rng(4).standard_normal((6, 6)) * 0.25
    z = lagrad.fixed_point(lambda z, x: lagrad.tanh(w @ z + x), np.zeros(6), x, method=method)
    return z[:4] * z[1:5] + x[:4]


@pytest.mark.parametrize("kind", ["adjoint", "tangent"])
@pytest.mark.parametrize("case", ["mlp", "newton", "fixed_point", "scalars"])
def test_substitute_many_equals_each_column_solved_alone(case: str, kind: str) -> None:
    rng = np.random.default_rng(5)
    if case == "mlp":
        x = rng.standard_normal((4, 5))
        sol = lagrad.trace(_mlp, x).solve(x)
    elif case == "scalars":
        def scalars(x: Any) -> Any:
            y = [lagrad.sin(x[i]) * x[(i + 1) % 5] + x[i] ** 2 for i in range(5)]
            return y[0] * y[1] + lagrad.exp(y[2]) - y[3] / (1 + y[4] ** 2)
        sol = lagrad.trace(scalars, rng.standard_normal(5)).solve(rng.standard_normal(5))
    else:
        x = rng.standard_normal(6)
        sol = lagrad.trace(lambda x: _fixed(x, case), x).solve(x)
    rhs = rng.standard_normal((sol.z.size, 7))
    orientation = ADJOINT if kind == "adjoint" else TANGENT
    got = substitute_many(sol.schedule, sol.z, orientation, rhs, sol.diagnostics)
    assert got.shape == rhs.shape
    assert _rel(got, _per_column(sol, kind, rhs)) < 1e-10


@pytest.mark.parametrize("path", ["reduced_lu", "neumann", "columns"])
@pytest.mark.parametrize("orientation", [ADJOINT, TANGENT], ids=repr)
def test_each_way_of_solving_a_large_block(path: str, orientation: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A block too large for a sparse LU after a contracting forward iteration:
    the reduced dense LU, the block Neumann series, and (when the series gives
    up) the default solver column by column all give the single-seed answer."""
    n = 80  # more unknowns than the series' expected iterations: "auto" takes the series
    rng = np.random.default_rng(6)
    w = rng.standard_normal((n, n))
    w *= 0.5 / np.linalg.norm(w, 2)
    u = rng.standard_normal((n, 3))

    def f(x: Any) -> Any:
        z = lagrad.fixed_point(lambda z, x: lagrad.tanh(w @ z + u @ x), np.zeros(n), x,
                               method="fixed_point")
        return z[:5]
    x = rng.standard_normal(3)
    sol = lagrad.trace(f, x).solve(x)
    monkeypatch.setattr(multirhs, "DIRECT_LIMIT", 0)  # no sparse LU of the block
    if path != "reduced_lu":
        monkeypatch.setattr(multirhs, "DENSE_REDUCED_LIMIT", 0)
    if path == "columns":  # the series gives up at once
        monkeypatch.setattr(multirhs._Reduced, "neumann", lambda *a: None)
    called: list[str] = []
    for name in ("dense_lu", "neumann"):
        original = getattr(multirhs._Reduced, name)
        monkeypatch.setattr(multirhs._Reduced, name, lambda self, *a, _f=original, _n=name:
                            called.append(_n) or _f(self, *a))
    columns = multirhs.solve_auto
    monkeypatch.setattr(multirhs, "solve_auto", lambda *a: called.append("column") or columns(*a))
    # many columns: building the reduced matrix (n_U products) beats the series
    rhs = rng.standard_normal((sol.z.size, 40 if path == "reduced_lu" else 4))
    got = substitute_many(sol.schedule, sol.z, orientation, rhs, sol.diagnostics)
    assert called == {"reduced_lu": ["dense_lu"], "neumann": ["neumann"],
                      "columns": ["neumann"] + ["column"] * 4}[path]
    assert _rel(got, _per_column(sol, orientation.name, rhs)) < 1e-10


def test_the_reduced_matrix_is_built_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reduced LU's products with the identity take at most MAX_ENTRIES /
    z.size of its rows at a time (its scratch arrays span all of z), and the
    multipliers are the single-seed ones."""
    n = 80
    rng = np.random.default_rng(8)
    w = rng.standard_normal((n, n))
    w *= 0.5 / np.linalg.norm(w, 2)

    def f(x: Any) -> Any:
        return lagrad.fixed_point(lambda z, x: lagrad.tanh(w @ z + x), np.zeros(n), x,
                                  method="fixed_point")[:5]
    x = rng.standard_normal(n)
    sol = lagrad.trace(f, x).solve(x)
    monkeypatch.setattr(multirhs, "DIRECT_LIMIT", 0)  # no sparse LU of the block
    monkeypatch.setattr(multirhs, "MAX_ENTRIES", 7 * sol.z.size)
    rows: list[int] = []
    product = multirhs._Reduced.product
    monkeypatch.setattr(multirhs._Reduced, "product", lambda self, v, *a:
                        rows.append(v.shape[0]) or product(self, v, *a))
    rhs = rng.standard_normal((sol.z.size, 40))
    got = substitute_many(sol.schedule, sol.z, ADJOINT, rhs, sol.diagnostics)
    identity = [r for r in rows if r != 40]
    assert sum(identity) == n and max(identity) == 7 and len(identity) == 12
    assert _rel(got, _per_column(sol, "adjoint", rhs)) < 1e-10


def test_seeds_are_split_into_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(7).standard_normal((4, 5))
    sol = lagrad.trace(_mlp, x).solve(x)
    out = sol.schedule.index.positions([sol.schedule.output_variable])
    whole = unit_solves(sol.schedule, sol.z, ADJOINT, out, slice(0, 20))
    monkeypatch.setattr(multirhs, "MAX_ENTRIES", 3 * sol.z.size)  # 3 seeds per chunk
    assert np.array_equal(unit_solves(sol.schedule, sol.z, ADJOINT, out, slice(0, 20)), whole)


def test_rhs_of_the_wrong_shape_is_refused() -> None:
    sol = lagrad.trace(lambda x: x * x, np.ones(3)).solve(np.ones(3))
    with pytest.raises(ValueError, match=r"rhs must have shape \(6, k\)"):
        substitute_many(sol.schedule, sol.z, ADJOINT, np.ones(6))


@pytest.mark.parametrize("orientation", [ADJOINT, TANGENT], ids=repr)
def test_a_singular_block_is_named(orientation: Any) -> None:
    p = lagrad.Program("singular")
    x = p.input("x")
    z = p.unknown("z")
    p.define(z, 1.0 * z + 0.0 * x)  # gain 1: I - J is singular
    p.output(z + x)
    sol = p.solve(0.5, method="fixed_point")
    with pytest.raises(SingularSystemError, match=r"block \d+ \(z\).*singular"):
        substitute_many(sol.schedule, sol.z, orientation, np.ones((sol.z.size, 2)),
                        sol.diagnostics)


# ------------------------------------------------------------ the transforms

@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_equals_row_by_row_and_finite_differences(mode: str) -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 5))
    jac = lagrad.jacobian(_mlp, mode=mode)(x)
    ref = lagrad.jacobian(_mlp, mode=mode, solve_options=ROW_BY_ROW)(x)
    assert _rel(jac, ref) < 1e-12
    fd = _fd_jacobian(lambda v: lagrad.jit(_mlp)(v.reshape(4, 5)), x.ravel())
    assert _rel(np.reshape(jac, fd.shape), fd) < 1e-6

    x6 = rng.standard_normal(6)
    jac = lagrad.jacobian(_fixed, mode=mode)(x6)
    assert _rel(jac, lagrad.jacobian(_fixed, mode=mode, solve_options=ROW_BY_ROW)(x6)) < 1e-10
    assert _rel(jac, _fd_jacobian(lagrad.jit(_fixed), x6)) < 1e-6


def test_jacrev_and_jacfwd_agree_with_autograd() -> None:
    rng = np.random.default_rng(9)
    w = rng.standard_normal((6, 4))

    def f(x: Any, np_: Any = lagrad) -> Any:
        h = np_.tanh(w @ x)
        return np_.exp(h) * x[0] + h ** 2

    def f_autograd(x: Any) -> Any:
        h = anp.tanh(anp.dot(w, x))
        return anp.exp(h) * x[0] + h ** 2
    x = rng.standard_normal(4)
    want = autograd.jacobian(f_autograd)(x)
    assert _rel(lagrad.jacrev(f)(x), want) < 1e-12
    assert _rel(lagrad.jacfwd(f)(x), want) < 1e-12


def test_jacobian_of_several_arguments_and_outputs() -> None:
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((3, 2)), rng.standard_normal(2)

    def f(a: Any, b: Any) -> Any:
        return {"y": a @ b, "s": lagrad.sum(lagrad.sin(a) * b)}
    for mode in ("reverse", "forward"):
        got = lagrad.jacobian(f, argnums=(0, 1), mode=mode)(a, b)
        ref = lagrad.jacobian(f, argnums=(0, 1), mode=mode, solve_options=ROW_BY_ROW)(a, b)
        for key in ("y", "s"):
            for g, r in zip(got[key], ref[key]):
                assert g.shape == r.shape and _rel(g, r) < 1e-12


def test_one_sweep_is_used_for_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = multirhs._sweep
    monkeypatch.setattr(multirhs, "_sweep", lambda *a: calls.append(a[3].shape) or original(*a))
    x = np.random.default_rng(11).standard_normal((4, 5))
    lagrad.jacrev(_mlp)(x)
    assert calls == [(12, lagrad.trace(_mlp, x).solve(x).z.size)]  # 12 rows, one sweep


def test_a_non_finite_jacobian_still_names_the_culprit() -> None:
    def f(x: Any) -> Any:
        return lagrad.sqrt(x) * 2.0
    with pytest.raises(NonFiniteError, match="sqrt"):
        lagrad.jacrev(f)(np.array([0.0, 1.0]))
