"""Systems with a block of k right-hand sides: ``sol.adjoint_system(cotangents)``
with cotangents of shape (k, *output shape), ``sol.tangent_system(directions)``
with parts of shape (k, *input shape); solved in one sweep, each column equal
to the single right-hand side's solve and to analytic derivatives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import PROPERTY_SETTINGS, Case, cases

import lagrad
from lagrad.errors import NonFiniteError, OptionError, ProgramError

X0 = np.array([0.1, 0.2, 0.3, 0.4])


def f(x):  # noqa: ANN001, ANN201
    return lagrad.sin(x) * x[::-1]


def jacobian_of_f(x: np.ndarray) -> np.ndarray:
    """d (sin(x) * reversed(x)) / dx, by hand."""
    jac = np.diag(np.cos(x) * x[::-1])
    jac[np.arange(x.size), np.arange(x.size)[::-1]] += np.sin(x)
    return jac


def cyclic() -> tuple[lagrad.Program, lagrad.Solution]:
    """z = 0.5 sin(z) + A a, output z * z (a vector): a cyclic block."""
    p = lagrad.Program("cyclic")
    a = p.input("a", (3,))
    z = p.unknown("z", (3,))
    mix = np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.3], [0.1, 0.0, 1.0]])
    p.define(z, 0.5 * lagrad.sin(z) + mix @ a)
    p.output(z * z)
    return p, p.solve(np.array([0.3, -0.2, 0.5]))


def test_adjoint_block_rows_are_the_jacobian() -> None:
    sol = lagrad.trace(f, np.zeros(4)).solve(X0)
    system = sol.adjoint_system(np.eye(4))
    assert system.seeds == 4 and system.rhs.shape == (system.shape[0], 4)
    lam, info = system.solve()
    assert lam.shape == (system.shape[0], 4)
    rows = system.split(lam)[sol.program.inputs[0]]
    np.testing.assert_allclose(rows, jacobian_of_f(X0), rtol=1e-14, atol=1e-16)
    assert info.residual < 1e-14
    assert "4 right-hand sides" in info.notes


def test_each_column_is_the_single_solve() -> None:
    sol = lagrad.trace(f, np.zeros(4)).solve(X0)
    cotangents = np.random.default_rng(0).standard_normal((5, 4))
    lam, _ = sol.adjoint_system(cotangents).solve()
    for j, ct in enumerate(cotangents):
        single, _ = sol.adjoint_system(ct).solve()
        np.testing.assert_allclose(lam[:, j], single, rtol=1e-14, atol=1e-15)


def test_tangent_block_columns_are_the_jacobian() -> None:
    sol = lagrad.trace(f, np.zeros(4)).solve(X0)
    zdot, info = sol.tangent_system(np.eye(4)).solve()
    assert zdot.shape[1] == 4 and info.residual < 1e-14
    out = sol.tangent(np.eye(4))  # values (k, *shape): seed first
    np.testing.assert_allclose(out[sol.schedule.output_variable], jacobian_of_f(X0).T,
                               rtol=1e-14, atol=1e-16)


def test_cyclic_block_against_dense_and_single_solves() -> None:
    p, sol = cyclic()
    a = p.inputs[0]
    system = sol.adjoint_system(np.eye(3))
    lam, info = system.solve()
    dense, _ = system.solve("dense")
    np.testing.assert_allclose(lam, dense, rtol=1e-12, atol=1e-14)
    for j in range(3):
        single, _ = sol.adjoint_system(np.eye(3)[j]).solve()
        np.testing.assert_allclose(lam[:, j], single, rtol=1e-12, atol=1e-14)
    # d output_r / d a by finite differences (central, step 1e-6)
    rows = system.split(lam)[a]
    x = np.array([0.3, -0.2, 0.5])
    for i in range(3):
        h = np.zeros(3)
        h[i] = 1e-6
        fd = (p.solve(x + h).output - p.solve(x - h).output) / 2e-6
        np.testing.assert_allclose(rows[:, i], fd, rtol=1e-7, atol=1e-9)
    assert info.residual < 1e-12


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("method", ["spsolve", "dense", "gmres", "splu", "fixed_point"])
def test_every_method_takes_a_block(method: str, k: int) -> None:
    _, sol = cyclic()
    cotangents = np.random.default_rng(1).standard_normal((k, 3)) + 2.0
    rhs = np.stack([sol.adjoint_system(c).rhs for c in cotangents], axis=1)  # k = 1 too
    system = lagrad.System(sol.schedule, sol.z, "adjoint", rhs, sol.diagnostics)
    lam, info = system.solve(method)
    ref, _ = system.solve()
    assert lam.shape == ref.shape == (system.shape[0], k)
    np.testing.assert_allclose(lam, ref, rtol=1e-9, atol=1e-11)
    assert info.residual < 1e-9


def test_transposed_block_system() -> None:
    _, sol = cyclic()
    system = sol.tangent_system(np.eye(3))
    assert system.T.seeds == 3
    lam, _ = system.T.solve()  # (I - J)^T X = E, E the directions placed at the inputs
    dense = np.linalg.solve(system.T.matrix.toarray(), system.rhs)
    np.testing.assert_allclose(lam, dense, rtol=1e-12, atol=1e-14)


def test_truncated_backward_mode_is_kept_for_a_block() -> None:
    p, _ = cyclic()
    sol = p.solve(np.array([0.3, -0.2, 0.5]), backward="phantom")
    lam, _ = sol.adjoint_system(np.eye(3)).solve()
    for j in range(3):
        single, _ = sol.adjoint_system(np.eye(3)[j]).solve()
        np.testing.assert_allclose(lam[:, j], single, rtol=1e-14, atol=1e-15)
    exact, _ = p.solve(np.array([0.3, -0.2, 0.5])).adjoint_system(np.eye(3)).solve()
    assert np.abs(lam - exact).max() > 1e-6  # one term of the series, not the exact solve


def test_scalar_seeds_are_never_read_as_blocks() -> None:
    """A (k,) seed for a scalar output or for a program of scalar inputs keeps
    meaning a wrong shape; a mapping's missing inputs are zero in a block."""
    program = lagrad.trace(lambda x, y: lagrad.sum(lagrad.sin(x) * y), np.zeros(2), np.zeros(2))
    x, y = np.array([0.5, 1.0]), np.array([2.0, -1.0])
    sol = program.solve(x, y)
    with pytest.raises(ProgramError, match=r"cotangent has shape \(3,\)"):
        sol.adjoint_system(np.array([1.0, 2.0, -1.0]))
    scalar = lagrad.trace(lambda a, b: a * b, 1.0, 2.0).solve(1.0, 2.0)
    with pytest.raises(ProgramError, match="shape"):
        scalar.tangent_system((np.ones(2), np.ones(2)))
    with pytest.raises(ProgramError, match="shape"):
        lagrad.trace(lagrad.sin, 1.0).solve(1.0).tangent(np.ones(2))
    # directions along x only (y's part not given: zero), two of them
    out = sol.tangent({program.inputs[0]: np.eye(2)})[sol.schedule.output_variable]
    np.testing.assert_allclose(out, np.cos(x) * y, rtol=1e-14)


def test_wrong_blocks_raise_program_error() -> None:
    sol = lagrad.trace(f, np.zeros(4)).solve(X0)
    with pytest.raises(ProgramError, match=r"shape \(k, 4\)"):
        sol.adjoint_system(np.ones((2, 3)))
    two = lagrad.trace(lambda x, y: x * y, np.zeros(2), np.zeros(2)).solve(X0[:2], X0[2:])
    with pytest.raises(ProgramError, match="same leading k"):
        two.tangent_system((np.ones((2, 2)), np.ones((3, 2))))
    with pytest.raises(ProgramError, match=r"shape \(2, 2\)"):
        two.tangent_system((np.ones((2, 2)), np.ones(2)))


def test_non_finite_block_names_the_equation() -> None:
    sol = lagrad.trace(lambda x: lagrad.sqrt(x) * 2.0, np.zeros(2)).solve(np.array([0.0, 1.0]))
    with pytest.raises(NonFiniteError, match="sqrt"):
        sol.adjoint_system(np.eye(2)).solve()


@PROPERTY_SETTINGS
@given(case=cases(max_steps=6), k=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_random_programs_block_equals_columns(case: Case, k: int, seed: int) -> None:
    """On random programs, both orientations: the block's column j is the
    single right-hand side's solve for seed j."""
    sol = case.recipe.build().solve(*case.inputs)
    rng = np.random.default_rng(seed)
    n = sol.schedule.size
    for kind in ("adjoint", "tangent"):  # random right-hand sides over every variable
        rhs = rng.standard_normal((n, k))
        block = lagrad.System(sol.schedule, sol.z, kind, rhs, sol.diagnostics)
        x, _ = block.solve()
        assert x.shape == (n, k)
        for j in range(k):
            single = lagrad.System(sol.schedule, sol.z, kind, rhs[:, j].copy(), sol.diagnostics)
            ref, _ = single.solve()
            np.testing.assert_allclose(x[:, j], ref, rtol=1e-12,
                                       atol=1e-12 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("method", ["backsub", "splu", "dense", "spsolve", "gmres"])
def test_empty_block(method: str) -> None:
    _, sol = cyclic()
    x, info = sol.adjoint_system(np.ones((0, 3))).solve(method)
    assert x.shape == (sol.schedule.size, 0) and info.residual == 0.0
    zdot, _ = sol.tangent_system(np.ones((0, 3))).solve(method)
    assert zdot.shape == x.shape


def test_vmap_of_a_pullback_is_one_block_solve() -> None:
    _, pullback = lagrad.vjp(f, X0)
    rows, = lagrad.vmap(pullback)(np.eye(4))
    np.testing.assert_allclose(rows, jacobian_of_f(X0), rtol=1e-14, atol=1e-16)
    cols, = lagrad.vmap(pullback, in_axes=(1,), out_axes=1)(np.eye(4))
    np.testing.assert_allclose(cols, jacobian_of_f(X0).T, rtol=1e-14, atol=1e-16)


def test_vmap_of_a_pullback_with_pytrees_and_dtypes() -> None:
    def g(a, b):  # noqa: ANN001, ANN202
        return {"prod": a * b, "total": lagrad.sum(a) + b[0]}
    a, b = np.ones(3, dtype=np.float32), np.arange(3.0)
    _, pullback = lagrad.vjp(g, a, b)
    rng = np.random.default_rng(2)
    cts = {"prod": rng.standard_normal((5, 3)), "total": rng.standard_normal(5)}
    ga, gb = lagrad.vmap(pullback)(cts)
    assert ga.shape == (5, 3) and ga.dtype == np.float32 and gb.shape == (5, 3)
    for j in range(5):
        ra, rb = pullback({"prod": cts["prod"][j], "total": cts["total"][j]})
        np.testing.assert_allclose(ga[j], ra, rtol=1e-6)
        np.testing.assert_allclose(gb[j], rb, rtol=1e-14)


def test_vmap_of_a_pullback_through_a_fixed_point() -> None:
    def layer(x):  # noqa: ANN001, ANN202
        return lagrad.fixed_point(lambda z, x: 0.5 * lagrad.tanh(z) + x, np.zeros(3), x)
    x = np.array([0.2, -0.1, 0.4])
    _, pullback = lagrad.vjp(layer, x)
    rows, = lagrad.vmap(pullback)(np.eye(3))
    # z = 0.5 tanh(z) + x: dz/dx = (I - 0.5 diag(1 - tanh(z)^2))^-1, diagonal
    z = x.copy()
    for _ in range(200):
        z = 0.5 * np.tanh(z) + x
    np.testing.assert_allclose(rows, np.diag(1.0 / (1.0 - 0.5 * (1.0 - np.tanh(z) ** 2))),
                               rtol=1e-10, atol=1e-12)


def test_vmap_of_a_pullback_errors() -> None:
    _, pullback = lagrad.vjp(f, X0)
    with pytest.raises(OptionError, match="in_axes"):
        lagrad.vmap(pullback, in_axes=None)(np.eye(4))
    with pytest.raises(OptionError, match="out of range"):
        lagrad.vmap(pullback, in_axes=2)(np.eye(4))
    with pytest.raises(ProgramError, match="batch axis first"):
        lagrad.vmap(pullback)(np.ones((2, 3)))
    # the vmapped pullback is not itself a linear map of one batch: vmap of it
    # is traced, and tracing a pullback raises (never a silently wrong answer)
    with pytest.raises(ProgramError):
        lagrad.vmap(lagrad.vmap(pullback))(np.ones((2, 4, 4)))


@pytest.mark.parametrize("entries", [1 << 20, 50])  # one block; chunks of a few columns
def test_hessian_by_blocks_equals_hvp_columns(entries: int, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    import lagrad.api.jacobians as jacobians
    monkeypatch.setattr(jacobians, "MAX_ENTRIES", entries)
    w = np.array([[0.3, -0.2, 0.1], [0.0, 0.2, 0.4], [-0.3, 0.1, 0.2]])

    def loss(x):  # noqa: ANN001, ANN202
        z = lagrad.fixed_point(lambda z, x: lagrad.tanh(w @ z + x), np.zeros(3), x)
        return lagrad.sum(z ** 3) + x[0] * x[1]
    x = np.array([0.2, -0.4, 0.6])
    hess = lagrad.hessian(loss)(x)
    for j, e in enumerate(np.eye(3)):
        np.testing.assert_allclose(hess[:, j], lagrad.hvp(loss, (x,), (e,)), rtol=1e-10,
                                   atol=1e-12)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-10, atol=1e-12)


@PROPERTY_SETTINGS
@given(case=cases(max_steps=6), k=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_second_order_rhs_of_a_block_equals_columns(case: Case, k: int, seed: int) -> None:
    from lagrad.solve.second import second_order_rhs, second_order_rhs_many
    sol = case.recipe.build().solve(*case.inputs)
    lam = sol.multipliers().vector
    zdot = np.random.default_rng(seed).standard_normal((sol.schedule.size, k))
    block = second_order_rhs_many(sol.schedule, sol.z, zdot, lam)
    for j in range(k):
        ref = second_order_rhs(sol.schedule, sol.z, zdot[:, j].copy(), lam)
        np.testing.assert_allclose(block[:, j], ref, rtol=1e-13,
                                   atol=1e-13 * max(1.0, np.abs(ref).max()))
