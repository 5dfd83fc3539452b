"""Unit tests for cyclic and implicit programs.

The builder (unknown / define / root / output, blocks, printing), the
combinators lagrad.fixed_point and lagrad.root under grad / jvp / jacobian
(closed forms: Newton's square root, cube roots, linear fixed points
z = W z + U x with z = (I - W)^-1 U x, implicit differentiation by hand, finite
differences), forward and adjoint diagnostics, and every failure: divergence,
too few iterations, singular blocks, malformed programs, unknown method names.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import lagrad
from lagrad import ConvergenceError, OptionError, ProgramError, SingularSystemError
from lagrad.solve.results import BlockResult

# ------------------------------------------------------------------ helpers


def contraction(rng: np.random.Generator, n: int, gain: float = 0.8) -> np.ndarray:
    w = rng.normal(size=(n, n))
    return w * (gain / np.linalg.norm(w, 2))


def central_difference(f: Any, x: Any, direction: Any, h: float = 1e-6) -> float:
    x, direction = np.asarray(x, dtype=float), np.asarray(direction, dtype=float)
    return (float(f(x + h * direction)) - float(f(x - h * direction))) / (2 * h)


def deq(n: int = 5, d: int = 3, seed: int = 0, gain: float = 0.8, **unknown: Any
        ) -> tuple[lagrad.Program, dict[str, Any]]:
    """z = tanh(W z + U x + b), output sum(z^2)."""
    rng = np.random.default_rng(seed)
    c = {"W": contraction(rng, n, gain), "U": rng.normal(size=(n, d)),
         "b": 0.1 * rng.normal(size=n), "x": rng.normal(size=d)}
    p = lagrad.Program("deq")
    x = p.input("x", (d,))
    z = p.unknown("z", (n,), **unknown)
    p.define(z, lagrad.tanh(c["W"] @ z + c["U"] @ x + c["b"]))
    p.output(lagrad.sum(z * z))
    return p, c


def deq_reference(c: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z by numpy iteration and d sum(z^2)/dx = U^T D lambda, (I - D W)^T lambda = 2 z."""
    z = np.zeros(c["W"].shape[0])
    for _ in range(2000):
        z = np.tanh(c["W"] @ z + c["U"] @ x + c["b"])
    dd = 1 - z ** 2
    lam = np.linalg.solve((np.eye(z.size) - dd[:, None] * c["W"]).T, 2 * z)
    return z, c["U"].T @ (dd * lam)


def two_blocks() -> lagrad.Program:
    """x -> h (acyclic) -> block z (define) -> block w (root) -> y (acyclic) -> out."""
    rng = np.random.default_rng(1)
    n = 3
    W, U = contraction(rng, n), rng.normal(size=(n, 2))
    p = lagrad.Program("two blocks")
    x = p.input("x", (2,))
    h = lagrad.sin(x) + 0.5 * x
    z = p.unknown("z", (n,))
    p.define(z, lagrad.tanh(W @ z + U @ h))
    w = p.unknown("w", (n,), init=np.ones(n))
    p.root(w, w + 0.3 * w ** 3 - z)
    y = p.unknown("y")
    p.define(y, lagrad.sum(w * w))
    p.output(y + lagrad.sum(z))
    return p


def singular_program(output_reads_z: bool = True) -> lagrad.Program:
    """A cycle of gain 1: z = 1.0 z + 0 x. Any z solves it; from init 0 the
    fixed-point iteration stops at once, but I - J is singular."""
    p = lagrad.Program("singular")
    x = p.input("x")
    z = p.unknown("z")
    p.define(z, 1.0 * z + 0.0 * x)
    p.output(z + x if output_reads_z else x * x)
    return p


def block_pattern(name: str) -> str:
    return rf"block \d+ \({name}\)"


# ------------------------------------------------------------------ builder

class TestBuilder:
    def test_blocks_in_topological_order_with_cyclic_flags_and_sizes(self) -> None:
        p = two_blocks()
        blocks = p.blocks
        assert [b.number for b in blocks] == list(range(len(blocks)))
        # every variable in exactly one block
        members = [v.index for b in blocks for v in b.variables]
        assert sorted(members) == list(range(len(p.variables)))
        # topological: every edge goes forward or stays inside a block
        where = {v.index: b.number for b in blocks for v in b.variables}
        for j, i in p.graph.edges:
            assert where[j] <= where[i]
        cyclic = [b for b in blocks if b.cyclic]
        assert [[v.name for v in b.unknowns] for b in cyclic] == [["z"], ["w"]]
        z_block, w_block = cyclic
        assert z_block.number < w_block.number  # z feeds the root block
        # z-block: W @ z, + U @ h, tanh, z (U @ h and h are outside it)
        assert len(z_block.variables) == 4 and z_block.size == 4 * 3
        # w-block: w ** 3, 0.3 *, w +, - z, w
        assert len(w_block.variables) == 5 and w_block.size == 5 * 3
        for b in blocks:
            assert b.size == sum(v.size for v in b.variables)
            assert b.cyclic == (len(b.variables) > 1)
        assert "z" in z_block.name and "w" in w_block.name
        # the acyclic define y = sum(w * w) is its own block, after w's
        y_block = blocks[where[p["y"].index]]
        assert not y_block.cyclic and y_block.number > w_block.number

    def test_print_shows_unknowns_defines_and_root_equation(self) -> None:
        p = two_blocks()
        text = str(p)
        assert "unknown z: (3,)" in text and "unknown w: (3,)" in text
        assert re.search(r"^z = identity\(\w+\)  # \(3,\)$", text, re.M)
        root = re.search(r"^0 = (\w+)  # root: determines w \(3,\)$", text, re.M)
        assert root, text
        assert p[root.group(1)].shape == (3,)  # the residual is a variable of the program
        assert text.splitlines()[-1] == f"output {p.output_variable.name}"

    def test_solution_satisfies_the_constraints_and_gradient_matches_fd(self) -> None:
        p = two_blocks()
        x = np.array([0.3, -0.7])
        sol = p.solve(x)
        z, w = sol["z"], sol["w"]
        assert np.allclose(w + 0.3 * w ** 3, z, atol=1e-13)
        assert np.isclose(sol["y"], np.sum(w * w), rtol=1e-14)
        assert np.isclose(float(sol.output), np.sum(w * w) + np.sum(z), rtol=1e-14)
        g = sol.grad()
        v = np.array([0.6, 0.8])
        fd = central_difference(lambda t: p.solve(t, tol=1e-13).output, x, v)
        assert abs(g @ v - fd) <= 1e-8 * max(1.0, abs(fd))

    def test_define_that_does_not_read_the_unknown_is_acyclic(self) -> None:
        p = lagrad.Program()
        x = p.input("x")
        z = p.unknown("z")
        p.define(z, 2.0 * x + 1.0)
        p.output(z * z)
        assert not any(b.cyclic for b in p.blocks)
        sol = p.solve(1.5)
        assert sol.diagnostics == {}
        assert float(sol.output) == 16.0
        assert float(sol.grad()) == pytest.approx(2 * 4.0 * 2.0)  # d (2x+1)^2 / dx
        assert not list(sol.adjoint_system().solve("auto").info.extra["blocks"])

    def test_define_with_a_constant(self) -> None:
        p = lagrad.Program()
        x = p.input("x")
        z = p.unknown("z", (2,))
        p.define(z, [1.0, 2.0])
        p.output(lagrad.sum(z * x))
        sol = p.solve(3.0)
        assert np.array_equal(sol["z"], [1.0, 2.0]) and float(sol.grad()) == 3.0

    def test_self_loop_is_a_cyclic_block_of_one_variable(self) -> None:
        p = lagrad.Program()
        x = p.input("x")
        z = p.unknown("z")
        p.root(z, z - 0.5 * x)  # the residual reads z: one block {z, mul, sub}
        p.output(z * 1.0)
        cyclic = [b for b in p.blocks if b.cyclic]
        assert len(cyclic) == 1 and cyclic[0].unknowns == (z,)
        sol = p.solve(3.0)
        assert float(sol.output) == pytest.approx(1.5) and float(sol.grad()) == pytest.approx(0.5)


# ------------------------------------------------------------- combinators

def ones_like(a: Any) -> np.ndarray:
    """A starting point of a's shape (a may be a traced variable)."""
    return np.ones(a.shape if isinstance(a, lagrad.Variable) else np.shape(a))


def sqrt_newton(a: Any) -> Any:
    """sqrt(a) as the fixed point of Newton's map z = (z + a / z) / 2."""
    return lagrad.fixed_point(lambda z, a: 0.5 * (z + a / z), ones_like(a), a)


def cube_root(a: Any) -> Any:
    return lagrad.root(lambda z, a: z ** 3 - a, ones_like(a), a)


class TestCombinatorsOnNumbers:
    def test_fixed_point_returns_the_value(self) -> None:
        value = lagrad.fixed_point(lambda z, a: 0.5 * (z + a / z), 1.0, 2.0)
        assert not isinstance(value, lagrad.Variable)
        assert float(value) == pytest.approx(np.sqrt(2.0), rel=1e-14)

    def test_root_returns_the_value(self) -> None:
        assert np.allclose(cube_root(np.array([8.0, 27.0, 0.125])), [2.0, 3.0, 0.5],
                           rtol=1e-13)

    def test_linear_fixed_point_is_the_linear_solve(self, rng: np.random.Generator) -> None:
        W, b = contraction(rng, 4), rng.normal(size=4)
        z = lagrad.fixed_point(lambda z, W, b: W @ z + b, np.zeros(4), W, b)
        assert np.allclose(z, np.linalg.solve(np.eye(4) - W, b), rtol=1e-12, atol=1e-13)


class TestCombinatorsDifferentiated:
    @pytest.mark.parametrize("a", [0.5, 2.0, 9.0])
    def test_grad_of_newton_square_root(self, a: float) -> None:
        value, g = lagrad.value_and_grad(sqrt_newton)(a)
        assert float(value) == pytest.approx(np.sqrt(a), rel=1e-13)
        assert float(g) == pytest.approx(0.5 / np.sqrt(a), rel=1e-12)

    def test_cube_root_all_modes(self) -> None:
        a = np.array([8.0, 27.0, 0.125])
        expected = np.diag(1.0 / (3.0 * np.cbrt(a) ** 2))
        for mode in ("forward", "reverse", "auto"):
            assert np.allclose(lagrad.jacobian(cube_root, mode=mode)(a), expected, rtol=1e-12)
        value, tangent = lagrad.jvp(cube_root, (a,), (np.ones(3),))
        assert np.allclose(value, np.cbrt(a)) and np.allclose(tangent, np.diag(expected))
        assert float(lagrad.grad(lambda a: cube_root(a) * 1.0)(8.0)) == pytest.approx(1 / 12)

    def test_linear_fixed_point_closed_form(self, rng: np.random.Generator) -> None:
        n, d = 5, 3
        W, U, c = contraction(rng, n), rng.normal(size=(n, d)), rng.normal(size=n)
        inverse = np.linalg.inv(np.eye(n) - W)

        def z_of(x: Any) -> Any:
            return lagrad.fixed_point(lambda z, x: W @ z + U @ x, np.zeros(n), x)
        x = rng.normal(size=d)
        for mode in ("forward", "reverse"):
            assert np.allclose(lagrad.jacobian(z_of, mode=mode)(x), inverse @ U, rtol=1e-11)
        v = rng.normal(size=d)
        value, tangent = lagrad.jvp(z_of, (x,), (v,))
        assert np.allclose(value, inverse @ U @ x, rtol=1e-11)
        assert np.allclose(tangent, inverse @ U @ v, rtol=1e-11)
        g = lagrad.grad(lambda x: lagrad.sum(c * z_of(x)))(x)
        assert np.allclose(g, U.T @ np.linalg.solve((np.eye(n) - W).T, c), rtol=1e-11)

    def test_gradient_with_respect_to_the_matrix_of_the_cycle(
            self, rng: np.random.Generator) -> None:
        n = 4
        W, b, c = contraction(rng, n), rng.normal(size=n), rng.normal(size=n)

        def f(W: Any, b: Any) -> Any:
            z = lagrad.fixed_point(lambda z, W, b: W @ z + b, np.zeros(n), W, b)
            return lagrad.sum(c * z)
        g_w, g_b = lagrad.grad(f, argnums=(0, 1))(W, b)
        z = np.linalg.solve(np.eye(n) - W, b)
        lam = np.linalg.solve((np.eye(n) - W).T, c)
        assert np.allclose(g_b, lam, rtol=1e-11)
        assert np.allclose(g_w, np.outer(lam, z), rtol=1e-11)

    def test_nested_fixed_point(self) -> None:
        """z = sqrt(a + z^2) / 4 + cos(z) / 10, with the square root itself a
        fixed point (of Newton's map) inside the outer map: one block."""
        def outer(a: Any) -> Any:
            def f(z: Any, a: Any) -> Any:
                s = lagrad.fixed_point(lambda w, c: 0.5 * (w + c / w), 1.0, a + z * z)
                return 0.25 * s + 0.1 * lagrad.cos(z)
            return lagrad.fixed_point(f, 0.0, a)

        def outer_numpy(a: float) -> float:
            z = 0.0
            for _ in range(200):
                z = 0.25 * np.sqrt(a + z * z) + 0.1 * np.cos(z)
            return z
        program = lagrad.trace(outer, 2.0)
        assert sum(b.cyclic for b in program.blocks) == 1
        assert len([b for b in program.blocks if b.cyclic][0].unknowns) == 2
        for a in (0.5, 2.0):
            z = outer_numpy(a)
            s = np.sqrt(a + z * z)
            # implicit differentiation by hand: z = F(z, a)
            dz_da = (0.125 / s) / (1 - 0.25 * z / s + 0.1 * np.sin(z))
            assert float(outer(a)) == pytest.approx(z, rel=1e-13)
            assert float(lagrad.grad(outer)(a)) == pytest.approx(dz_da, rel=1e-11)
            assert float(lagrad.jvp(outer, (a,), (1.0,))[1]) == pytest.approx(dz_da, rel=1e-11)
            assert central_difference(outer_numpy, a, 1.0) == pytest.approx(dz_da, rel=1e-7)

    def test_nested_fixed_point_inside_a_fixed_point_used_by_grad_of_vector_input(
            self, rng: np.random.Generator) -> None:
        n = 3
        W, V = contraction(rng, n, 0.4), contraction(rng, n, 0.4)

        def f(x: Any) -> Any:
            def inner(u: Any, z: Any, x: Any) -> Any:
                return 0.5 * lagrad.tanh(V @ u + z)
            def outer(z: Any, x: Any) -> Any:
                u = lagrad.fixed_point(inner, np.zeros(n), z, x)
                return lagrad.sin(W @ z + u) * 0.5 + x
            return lagrad.sum(lagrad.fixed_point(outer, np.zeros(n), x) ** 2)

        def f_numpy(x: np.ndarray) -> float:
            z, u = np.zeros(n), np.zeros(n)
            for _ in range(300):
                for _ in range(100):
                    u = 0.5 * np.tanh(V @ u + z)
                z = 0.5 * np.sin(W @ z + u) + x
            return float(np.sum(z ** 2))
        x = rng.normal(size=n)
        assert float(f(x)) == pytest.approx(f_numpy(x), rel=1e-12)
        g = lagrad.grad(f)(x)
        for k in range(n):
            e = np.eye(n)[k]
            assert g[k] == pytest.approx(central_difference(f_numpy, x, e), rel=1e-7, abs=1e-9)
        assert np.allclose(lagrad.jacobian(f, mode="forward")(x), g, rtol=1e-10)

    def test_several_blocks_in_one_function(self) -> None:
        """u = sin(u)/2 + a (define block), then v^3 + v = u (root block)."""
        def f(a: Any) -> Any:
            u = lagrad.fixed_point(lambda z, a: 0.5 * lagrad.sin(z) + a, np.zeros(2), a)
            v = lagrad.root(lambda w, u: w ** 3 + w - u, np.zeros(2), u)
            return lagrad.sum(u * v)

        def f_numpy(a: np.ndarray) -> float:
            u = np.zeros(2)
            for _ in range(200):
                u = 0.5 * np.sin(u) + a
            v = np.array([np.real(r[np.isreal(r)][0]) for r in
                          (np.roots([1.0, 0.0, 1.0, -ui]) for ui in u)])
            return float(np.sum(u * v))
        a = np.array([0.3, -0.4])
        program = lagrad.trace(f, a)
        assert sum(b.cyclic for b in program.blocks) == 2
        assert float(f(a)) == pytest.approx(f_numpy(a), rel=1e-12)
        # closed form: du/da = 1 / (1 - cos(u)/2), dv/du = 1 / (3 v^2 + 1)
        u = a.copy()
        for _ in range(200):
            u = 0.5 * np.sin(u) + a
        v = np.array([np.real(r[np.isreal(r)][0]) for r in
                      (np.roots([1.0, 0.0, 1.0, -ui]) for ui in u)])
        expected = (v + u / (3 * v ** 2 + 1)) / (1 - 0.5 * np.cos(u))
        assert np.allclose(lagrad.grad(f)(a), expected, rtol=1e-11)
        for mode in ("forward", "reverse"):
            assert np.allclose(lagrad.jacobian(f, mode=mode)(a), expected, rtol=1e-11)
        fd = [central_difference(f_numpy, a, e) for e in np.eye(2)]
        assert np.allclose(expected, fd, rtol=1e-7)

    def test_jacobian_modes_agree_on_a_nonlinear_vector_fixed_point(
            self, rng: np.random.Generator) -> None:
        n, d = 4, 3
        W, U = contraction(rng, n), rng.normal(size=(n, d))

        def z_of(x: Any) -> Any:
            return lagrad.fixed_point(lambda z, x: lagrad.tanh(W @ z + U @ x), np.zeros(n), x)
        x = rng.normal(size=d)
        forward = lagrad.jacobian(z_of, mode="forward")(x)
        reverse = lagrad.jacobian(z_of, mode="reverse")(x)
        assert forward.shape == (n, d)
        assert np.allclose(forward, reverse, rtol=1e-12, atol=1e-14)
        z = np.asarray(z_of(x))
        dd = 1 - z ** 2
        closed = np.linalg.solve(np.eye(n) - dd[:, None] * W, dd[:, None] * U)
        assert np.allclose(forward, closed, rtol=1e-11)

    def test_options_and_name_reach_the_block(self) -> None:
        def slow(a: Any) -> Any:
            return lagrad.fixed_point(lambda z, a: 0.99 * z + a, 0.0, a, method="fixed_point",
                                      maxiter=3, name="slow")
        program = lagrad.trace(slow, 1.0)
        assert any(b.cyclic and "slow" in b.name for b in program.blocks)
        with pytest.raises(ConvergenceError, match=r"block \d+ \(slow\).*3 iterations"):
            lagrad.grad(slow)(1.0)
        with pytest.raises(ConvergenceError):
            slow(1.0)  # on numbers too

    def test_closing_over_a_traced_value_is_an_error(self) -> None:
        def bad(a: Any) -> Any:
            return lagrad.fixed_point(lambda z: 0.5 * z + a, 0.0)
        with pytest.raises(ProgramError, match="extra arguments"):
            lagrad.grad(bad)(1.0)

    def test_root_residual_of_the_wrong_shape(self) -> None:
        def bad(a: Any) -> Any:
            return lagrad.root(lambda z, a: lagrad.sum(z * z) - a, np.zeros(2), a)
        with pytest.raises(ProgramError, match="not square"):
            lagrad.grad(bad)(1.0)


# ---------------------------------------------------------- forward diagnostics

class TestForwardDiagnostics:
    @pytest.mark.parametrize("method", ["newton", "fixed_point", "anderson"])
    def test_per_block_diagnostics(self, method: str) -> None:
        p, c = deq()
        sol = p.solve(c["x"], method=method)
        z_ref, _ = deq_reference(c, c["x"])
        assert np.allclose(sol["z"], z_ref, rtol=1e-11, atol=1e-13)
        [block] = [b for b in p.blocks if b.cyclic]
        assert list(sol.diagnostics) == [block.number]
        diag = sol.diagnostics[block.number]
        assert diag.method == method and diag.converged
        assert diag.number == block.number and diag.block == block.name
        assert diag.iterations >= 1
        res = np.array(diag.residuals)
        tol = 1e-13 * max(1.0, np.linalg.norm(sol["z"]))  # the default tol
        assert res[-1] <= tol and diag.residual == res[-1]
        assert (res[:-1] > tol).all()  # it stopped at the first converged iterate
        if method == "fixed_point":
            assert len(res) == diag.iterations
            assert (np.diff(res) < 0).all()  # a contraction: strictly decreasing
        if method == "newton":
            assert len(res) == diag.iterations + 1  # before the first step, then each step
            assert (np.diff(res) < 0).all()
            assert diag.iterations <= 8  # quadratic convergence

    def test_warm_start_reduces_iterations(self) -> None:
        p, c = deq()
        cold = p.solve(c["x"], method="fixed_point")
        number = next(iter(cold.diagnostics))
        warm = p.solve(c["x"], method="fixed_point", init={"z": cold["z"]})
        assert warm.diagnostics[number].iterations < cold.diagnostics[number].iterations
        assert warm.diagnostics[number].iterations <= 2
        assert np.allclose(warm["z"], cold["z"], rtol=1e-11)
        # a nearby input, warm started by variable
        near = p.solve(c["x"] + 1e-3, method="fixed_point", init={p["z"]: cold["z"]})
        assert near.diagnostics[number].iterations < cold.diagnostics[number].iterations
        # the unknown's own init is the default start
        q, _ = deq(init=cold["z"])
        assert q.solve(c["x"], method="fixed_point").diagnostics[number].iterations <= 2
        newton_cold = p.solve(c["x"]).diagnostics[number].iterations
        assert p.solve(c["x"], init={"z": cold["z"]}).diagnostics[number].iterations < newton_cold

    def test_tol_is_honoured(self) -> None:
        p, c = deq()
        tight = p.solve(c["x"], method="fixed_point")
        loose = p.solve(c["x"], method="fixed_point", tol=1e-5)
        number = next(iter(loose.diagnostics))
        res = loose.diagnostics[number].residuals
        scale = max(1.0, np.linalg.norm(loose["z"]))
        assert res[-1] <= 1e-5 * scale < res[-2]
        assert loose.diagnostics[number].iterations < tight.diagnostics[number].iterations
        # the error of a contraction's iterate is at most residual / (1 - gain)
        assert np.linalg.norm(loose["z"] - tight["z"]) <= res[-1] / (1 - 0.8)

    def test_maxiter_is_honoured(self) -> None:
        p, c = deq()
        with pytest.raises(ConvergenceError, match=re.escape("in 4 iterations")) as err:
            p.solve(c["x"], method="fixed_point", maxiter=4)
        assert re.search(block_pattern("z"), str(err.value))
        assert re.search(r"residual \d\.\d+e[-+]\d+", str(err.value))
        with pytest.raises(ConvergenceError, match="anderson"):
            p.solve(c["x"], method="anderson", maxiter=2)

    def test_unknown_options_and_solve_override(self) -> None:
        p, c = deq(method="anderson", tol=1e-9, maxiter=500)
        sol = p.solve(c["x"])
        diag = next(iter(sol.diagnostics.values()))
        assert diag.method == "anderson"
        assert diag.residual <= 1e-9 * max(1.0, np.linalg.norm(sol["z"]))
        assert next(iter(p.solve(c["x"], method="fixed_point").diagnostics.values())).method \
            == "fixed_point"
        p, c = deq(method="fixed_point", maxiter=3)
        with pytest.raises(ConvergenceError, match="3 iterations"):
            p.solve(c["x"])

    def test_diagnostics_of_several_blocks(self) -> None:
        p = two_blocks()
        sol = p.solve(np.array([0.3, -0.7]), method="anderson")
        numbers = [b.number for b in p.blocks if b.cyclic]
        assert sorted(sol.diagnostics) == numbers
        assert all(d.converged and d.method == "anderson" for d in sol.diagnostics.values())

    def test_acyclic_program_has_no_diagnostics(self) -> None:
        p = lagrad.Program()
        x = p.input("x")
        p.output(lagrad.sin(x))
        assert p.solve(1.0).diagnostics == {}


# ---------------------------------------------------------- adjoint diagnostics

class TestAdjointDiagnostics:
    @pytest.mark.parametrize("method", ["auto", "splu", "gmres", "bicgstab", "lgmres",
                                        "fixed_point", "lstsq", "reduced_lu"])
    def test_block_solve_info(self, method: str) -> None:
        p, c = deq()
        sol = p.solve(c["x"], method="newton")
        x, info = sol.adjoint_system().solve(method)
        _, g_ref = deq_reference(c, c["x"])
        assert np.allclose(x[sol.adjoint_system().index["x"]], g_ref, rtol=1e-9)
        assert info.residual <= 1e-10  # iterative methods: tol on the reduced system
        [block_info] = info.extra["blocks"]
        assert isinstance(block_info, BlockResult)
        assert re.fullmatch(block_pattern("z"), block_info.block)
        assert block_info.method == ("splu" if method == "auto" else method)
        assert block_info.iterations >= 1
        assert block_info.residual <= 1e-11
        assert block_info.reused_factorization == (method in ("auto", "splu"))
        g = sol.grad(method=method, tol=1e-12)
        assert np.allclose(g, g_ref, rtol=1e-9)
        # another method's solve leaves the default solve's diagnostics alone
        assert [d.method for d in sol.adjoint_diagnostics] == ["splu"]

    @pytest.mark.parametrize("forward, reused", [("newton", True), ("fixed_point", False),
                                                 ("anderson", False)])
    def test_factorization_reused_only_after_newton(self, forward: str, reused: bool) -> None:
        p, c = deq()
        sol = p.solve(c["x"], method=forward)
        for system in (sol.adjoint_system(), sol.tangent_system(np.ones(3))):
            _, info = system.solve("auto")
            [block_info] = info.extra["blocks"]
            # after a plain iteration that contracted, "auto" factorizes the reduced
            # 5 x 5 matrix (5 products: fewer than the Neumann series would take)
            expected = "reduced_lu" if forward == "fixed_point" else "splu"
            assert block_info.method == expected
            assert block_info.reused_factorization is reused
        sol.grad()
        assert [d.reused_factorization for d in sol.adjoint_diagnostics] == [reused]

    @pytest.mark.parametrize("n, expected", [(300, "splu"), (500, "bicgstab")])
    def test_auto_without_a_forward_rate_factorizes_only_small_blocks(self, n: int,
                                                                       expected: str) -> None:
        from lagrad.solve import blocksolve

        p, c = deq(n=n)
        sol = p.solve(c["x"], method="anderson")  # Anderson observes no contraction rate
        g = sol.grad()
        [info] = sol.adjoint_diagnostics
        assert info.method == expected, info.reason
        entries = int(re.search(r"block of (\d+) entries", info.reason).group(1))
        assert (entries <= blocksolve.BLIND_DIRECT_LIMIT) == (expected == "splu")
        _, g_ref = deq_reference(c, c["x"])
        np.testing.assert_allclose(g, g_ref, rtol=1e-9)

    @pytest.mark.parametrize("n, expected", [(5, "reduced_lu"), (120, "fixed_point")])
    def test_auto_weighs_unknowns_against_neumann_iterations(self, n: int,
                                                             expected: str) -> None:
        p, c = deq(n=n, gain=0.5)
        sol = p.solve(c["x"], method="fixed_point")
        [fwd] = sol.diagnostics.values()
        g = sol.grad()
        [info] = sol.adjoint_diagnostics
        assert info.method == expected, info.reason
        assert "Neumann" in info.reason
        _, g_ref = deq_reference(c, c["x"])
        np.testing.assert_allclose(g, g_ref, rtol=1e-10)
        assert fwd.contraction < 0.99

    def test_auto_krylov_chain_falls_back_to_gmres(self, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
        from lagrad.solve import blocksolve

        p, c = deq(n=5, gain=0.9)
        sol = p.solve(c["x"], method="fixed_point")
        monkeypatch.setattr(blocksolve, "REDUCED_LU_LIMIT", 0)  # as if the block were big
        monkeypatch.setattr(blocksolve, "NEUMANN_BUDGET", 1)  # and contracted slowly
        [info] = sol.adjoint_system().solve("auto").info.extra["blocks"]
        assert info.method == "bicgstab" and "slow" in info.reason
        monkeypatch.setattr(blocksolve, "KRYLOV_BUDGET", 1)  # BiCGSTAB cannot make it
        x, result = sol.adjoint_system().solve("auto")
        [info] = result.extra["blocks"]
        assert info.method == "gmres" and "bicgstab was not converging" in info.reason
        _, g_ref = deq_reference(c, c["x"])
        np.testing.assert_allclose(x[sol.adjoint_system().index["x"]], g_ref, rtol=1e-9)

    def test_reduced_lu_forward_mode_matches_reverse(self) -> None:
        p, c = deq(n=6)
        sol = p.solve(c["x"])
        direction = np.array([0.3, -1.0, 2.0])
        tangent, info = sol.tangent_system(direction).solve("reduced_lu")
        out = tangent[sol.tangent_system(direction).index[p.output_variable]][0]
        assert out == pytest.approx(sol.grad(method="splu") @ direction, rel=1e-11)
        assert [b.method for b in info.extra["blocks"]] == ["reduced_lu"]

    def test_reduced_lu_reports_a_singular_block(self) -> None:
        p = lagrad.Program()
        x = p.input("x")
        z = p.unknown("z")
        p.define(z, z + 0.0 * x)  # dG/dz = 1: I - dG/dz is singular
        p.output(z)
        sol = p.solve(1.0, init={"z": 0.5}, method="fixed_point")
        with pytest.raises(lagrad.SingularSystemError, match="singular"):
            sol.grad(method="reduced_lu")

    def test_reused_factorization_gives_the_fresh_answer(self) -> None:
        p, c = deq()
        by_newton = p.solve(c["x"], method="newton").grad()
        by_iteration = p.solve(c["x"], method="fixed_point").grad()
        assert np.allclose(by_newton, by_iteration, rtol=1e-10)

    def test_one_info_per_block(self) -> None:
        p = two_blocks()
        sol = p.solve(np.array([0.3, -0.7]))
        for method in ("auto", "gmres", "splu"):
            _, info = sol.adjoint_system().solve(method)
            names = sorted(b.block for b in info.extra["blocks"])
            assert len(names) == 2
            assert re.fullmatch(block_pattern("w"), names[0]) or \
                re.fullmatch(block_pattern("w"), names[1])
            assert any(re.fullmatch(block_pattern("z"), n) for n in names)
        _, info = sol.tangent_system(np.ones(2)).solve("gmres")
        assert len(info.extra["blocks"]) == 2

    def test_whole_system_methods_report_no_blocks(self) -> None:
        p, c = deq()
        sol = p.solve(c["x"])
        for method in ("spsolve", "dense"):
            x, info = sol.adjoint_system().solve(method)
            assert info.method == method and info.residual <= 1e-12
            assert not info.extra.get("blocks")


# ------------------------------------------------------------------ failures

class TestForwardFailures:
    def expansive(self) -> lagrad.Program:
        p = lagrad.Program("expansive")
        x = p.input("x")
        z = p.unknown("z")
        p.define(z, 2.0 * z + 1.0 + x)
        p.output(z * 1.0)
        return p

    def test_expansive_map_with_few_iterations(self) -> None:
        with pytest.raises(ConvergenceError) as err:
            self.expansive().solve(0.5, method="fixed_point", maxiter=50)
        message = str(err.value)
        assert re.search(block_pattern("z"), message)
        assert re.search(r"\d+ iterations", message)
        assert re.search(r"final residual \d\.\d+e\+\d+", message)

    def test_expansive_map_diverges_with_default_maxiter(self) -> None:
        with pytest.raises(ConvergenceError, match=block_pattern("z")):
            self.expansive().solve(0.5, method="fixed_point")

    def test_expansive_map_still_has_a_solution(self) -> None:
        """The constraint z = 2 z + 1 + x holds at z = -1 - x: Newton finds it,
        and the adjoint (1 - 2) lambda = 1 gives d z / d x = -1."""
        sol = self.expansive().solve(0.5, method="newton")
        assert float(sol.output) == pytest.approx(-1.5)
        assert float(sol.grad()) == pytest.approx(-1.0)

    def test_oscillating_map_fails_for_fixed_point_but_newton_solves_it(self) -> None:
        p = lagrad.Program()
        a = p.input("a")
        w = p.unknown("w")
        p.define(w, lagrad.tanh(-3.0 * w + a))  # slope -3 at the fixed point
        p.output(w * 1.0)
        with pytest.raises(ConvergenceError, match=r"block \d+ \(w\).*200 iterations.*"
                                                   r"final residual"):
            p.solve(0.1, method="fixed_point", maxiter=200)
        sol = p.solve(0.1, method="newton")
        z = float(sol.output)
        assert z == pytest.approx(np.tanh(-3 * z + 0.1), abs=1e-14)
        s = 1 - z ** 2
        assert float(sol.grad()) == pytest.approx(s / (1 + 3 * s), rel=1e-12)

    def test_newton_with_one_iteration_on_a_hard_problem(self) -> None:
        p, c = deq(gain=0.95)
        with pytest.raises(ConvergenceError, match=r"block \d+ \(z\): newton.*1 iteration"):
            p.solve(3.0 * c["x"], method="newton", maxiter=1)

    def test_unknown_never_defined(self) -> None:
        p = lagrad.Program()
        x = p.input("x")
        lonely = p.unknown("lonely")
        p.output(lonely + x)
        with pytest.raises(ProgramError, match="'lonely' is never defined"):
            p.solve(1.0)

    def test_newton_on_a_singular_block(self) -> None:
        with pytest.raises(SingularSystemError, match=block_pattern("z")):
            singular_program().solve(0.5, method="newton")

    def test_newton_singular_message_is_formatted(self) -> None:
        with pytest.raises(SingularSystemError) as err:
            singular_program().solve(0.5, method="newton")
        assert "{err}" not in str(err.value)


class TestSingularBlocks:
    @pytest.mark.parametrize("method", ["auto", "splu"])
    def test_direct_block_methods_raise_naming_block_and_condition(self, method: str) -> None:
        sol = singular_program().solve(0.5, method="fixed_point")
        assert next(iter(sol.diagnostics.values())).iterations == 1  # z = 0 at once
        with pytest.raises(SingularSystemError,
                           match=block_pattern("z") + r".*condition (inf|\d)"):
            sol.grad(method=method)

    @pytest.mark.parametrize("method", ["dense", "spsolve"])
    def test_whole_system_methods_raise(self, method: str) -> None:
        sol = singular_program().solve(0.5, method="fixed_point")
        with pytest.raises(SingularSystemError, match="singular"):
            sol.grad(method=method)

    def test_dense_names_the_singular_block_and_condition(self) -> None:
        sol = singular_program().solve(0.5, method="fixed_point")
        with pytest.raises(SingularSystemError, match=block_pattern("z") + ".*condition"):
            sol.grad(method="dense")

    def test_nearly_singular_block_reports_its_condition(self) -> None:
        p = lagrad.Program()
        x = p.input("x")
        z = p.unknown("z")
        p.define(z, (1 - 1e-15) * z + x)
        p.output(z * 1.0)
        sol = p.solve(0.0, method="fixed_point")
        for method in ("auto", "splu"):
            with pytest.raises(SingularSystemError,
                               match=block_pattern("z") + r".*condition \d\.\d+e\+1[3-9]"):
                sol.grad(method=method)

    @pytest.mark.parametrize("method", ["gmres", "bicgstab", "fixed_point"])
    def test_iterative_methods_fail_on_an_inconsistent_singular_block(self, method: str
                                                                      ) -> None:
        sol = singular_program().solve(0.5, method="fixed_point")
        with pytest.raises(lagrad.SolveError, match=block_pattern("z")):
            sol.grad(method=method, maxiter=50)

    def test_lstsq_warns_and_returns_minimum_norm_multipliers(self) -> None:
        p = lagrad.Program("singular pair")
        x = p.input("x", (2,))
        z = p.unknown("z", (2,))
        A = np.array([[1.0, 0.0], [0.0, 0.5]])  # gain 1 along the first axis
        p.define(z, A @ z + np.array([[0.0, 0.0], [0.0, 1.0]]) @ x)
        p.output(lagrad.sum(z) + lagrad.sum(x * x))
        xv = np.array([0.5, 1.0])
        sol = p.solve(xv, method="fixed_point")
        with pytest.warns(RuntimeWarning, match=block_pattern("z") + ".*singular"):
            lam = sol.multipliers(method="lstsq")
        with pytest.warns(RuntimeWarning, match=block_pattern("z")):
            g = sol.grad(method="lstsq")
        # minimum norm over the block: lambda_S = pinv(M_SS) (rhs_S - M_S,rest lambda_rest)
        system = sol.adjoint_system()
        m = system.matrix.toarray()
        [block] = [b for b in p.blocks if b.cyclic]
        s = np.concatenate([np.arange(system.index[v].start, system.index[v].stop)
                            for v in block.variables])
        rest = np.setdiff1d(np.arange(m.shape[0]), s)
        b_s = system.rhs[s] - m[np.ix_(s, rest)] @ lam.vector[rest]
        assert np.allclose(lam.vector[s], np.linalg.pinv(m[np.ix_(s, s)]) @ b_s, atol=1e-12)
        # the second input only enters through the contracting direction: exact there
        assert g[1] == pytest.approx(2 * xv[1] + 1 / (1 - 0.5))
        assert g[0] == pytest.approx(2 * xv[0])

    def test_lstsq_on_a_regular_block_does_not_warn(self) -> None:
        p, c = deq()
        sol = p.solve(c["x"])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            g = sol.grad(method="lstsq")
        assert np.allclose(g, deq_reference(c, c["x"])[1], rtol=1e-10)


class TestAdjointFailures:
    @pytest.fixture
    def hard(self) -> lagrad.Solution:
        """z = tanh(0.95 P z + x) with P a cyclic shift of 40 entries: the
        eigenvalues of D P lie near a circle of radius 0.95, so Krylov and
        Neumann iterations need many steps (about 0.95^k)."""
        n = 40
        shift = 0.95 * np.roll(np.eye(n), 1, axis=1)
        p = lagrad.Program("hard")
        x = p.input("x", (n,))
        z = p.unknown("z", (n,))
        p.define(z, lagrad.tanh(shift @ z + x))
        p.output(lagrad.sum(z * z))
        return p.solve(0.1 * np.random.default_rng(3).normal(size=n))

    @pytest.mark.parametrize("method", ["gmres", "bicgstab", "lgmres"])
    def test_krylov_with_too_few_iterations(self, hard: lagrad.Solution, method: str) -> None:
        with pytest.raises(ConvergenceError, match=block_pattern("z") + f": {method}.*"
                           r"residual \d\.\d+e[-+]\d+"):
            hard.grad(method=method, maxiter=1, tol=1e-14)
        with pytest.raises(ConvergenceError, match=method):
            hard.tangent(np.ones(40), method=method, maxiter=1, tol=1e-14)
        with pytest.raises(ConvergenceError):
            hard.adjoint_system().solve(method, maxiter=1, tol=1e-14)

    def test_neumann_with_too_few_iterations(self, hard: lagrad.Solution) -> None:
        with pytest.raises(ConvergenceError, match=block_pattern("z")
                           + r": fixed_point.*2 iterations.*residual \d\.\d+e[-+]\d+"):
            hard.grad(method="fixed_point", maxiter=2)

    def test_enough_iterations_succeed(self, hard: lagrad.Solution) -> None:
        reference = hard.grad(method="dense")
        for method in ("gmres", "bicgstab", "lgmres", "fixed_point"):
            assert np.allclose(hard.grad(method=method, tol=1e-13), reference, rtol=1e-9)

    @pytest.mark.parametrize("method", [
        "gmres", "bicgstab",
        "lgmres"])
    def test_iterative_result_or_error_is_consistent_with_tolerance(self, method: str) -> None:
        """Either a gradient whose block residual meets the tolerance, or a
        ConvergenceError whose reported residual does not."""
        rng = np.random.default_rng(0)
        n = 40
        w = rng.normal(size=(n, n))
        w *= 0.9 / np.linalg.norm(w, 2)
        p = lagrad.Program()
        x = p.input("x", (n,))
        z = p.unknown("z", (n,))
        p.define(z, lagrad.tanh(w @ z + x))
        p.output(lagrad.sum(z * z))
        sol = p.solve(rng.normal(size=n))
        try:
            g = sol.grad(method=method, maxiter=1, tol=1e-14)
        except ConvergenceError as err:
            residual = float(re.search(r"residual (\S+),", str(err)).group(1))
            assert residual > 1e-14, str(err)
        else:
            assert all(d.residual <= 1e-13 for d in sol.adjoint_diagnostics)
            assert np.allclose(g, sol.grad(method="dense"), rtol=1e-9)


class TestMalformedPrograms:
    def test_non_square_root(self) -> None:
        p = lagrad.Program()
        x = p.input("x", (2,))
        z = p.unknown("z", (2,))
        with pytest.raises(ProgramError, match="not square"):
            p.root(z, lagrad.sum(z * z) - x[0])
        with pytest.raises(ProgramError, match="not square"):
            p.root(z, lagrad.concatenate([z, x]))

    def test_root_residual_must_be_an_expression(self) -> None:
        p = lagrad.Program()
        z = p.unknown("z")
        with pytest.raises(ProgramError):
            p.root(z, 0.0)

    def test_defining_an_input_or_a_defined_variable(self) -> None:
        p = lagrad.Program()
        x = p.input("x")
        z = p.unknown("z")
        with pytest.raises(ProgramError, match="'x' is an input"):
            p.define(x, z + 1.0)
        with pytest.raises(ProgramError, match="'x'"):
            p.root(x, x - 1.0)
        y = x * 2.0
        with pytest.raises(ProgramError, match="program.unknown"):
            p.define(y, z)

    def test_defining_twice(self) -> None:
        p = lagrad.Program()
        x = p.input("x")
        z = p.unknown("z")
        p.define(z, 0.5 * z + x)
        with pytest.raises(ProgramError, match="defined twice"):
            p.define(z, 0.3 * z + x)
        with pytest.raises(ProgramError, match="defined twice"):
            p.root(z, z - x)

    def test_other_malformed_definitions(self) -> None:
        p = lagrad.Program()
        x = p.input("x", (2,))
        z = p.unknown("z", (2,))
        with pytest.raises(ProgramError, match="z = z"):
            p.define(z, z)
        with pytest.raises(ProgramError, match="shape"):
            p.define(z, lagrad.sum(x))
        with pytest.raises(ProgramError, match="init"):
            p.unknown("w", (2,), init=np.zeros(3))
        other = lagrad.Program()
        with pytest.raises(ProgramError, match="another program"):
            other.define(other.unknown("u", (2,)), x)
        with pytest.raises(ProgramError, match="already defined"):
            p.unknown("z")


class TestUnknownMethodNames:
    @pytest.fixture
    def sol(self) -> lagrad.Solution:
        p, c = deq()
        return p.solve(c["x"])

    def test_forward_method(self) -> None:
        p, c = deq()
        with pytest.raises(OptionError, match="bogus"):
            p.solve(c["x"], method="bogus")
        with pytest.raises(OptionError, match="unknown 'z'.*bogus"):  # where it is declared
            deq(method="bogus")
        with pytest.raises(OptionError):
            lagrad.fixed_point(lambda z, a: 0.5 * z + a, 0.0, 1.0, method="bogus")

    def test_adjoint_and_tangent_methods(self, sol: lagrad.Solution) -> None:
        with pytest.raises(OptionError, match="bogus"):
            sol.grad(method="bogus")
        with pytest.raises(OptionError, match="bogus"):
            sol.multipliers(method="bogus")
        with pytest.raises(OptionError, match="bogus"):
            sol.tangent(np.ones(3), method="bogus")
        with pytest.raises(OptionError, match="bogus"):
            sol.adjoint_system().solve("bogus")
        with pytest.raises(OptionError, match="bogus"):
            sol.tangent_system(np.ones(3)).solve("bogus")

    def test_unknown_solver_options(self, sol: lagrad.Solution) -> None:
        with pytest.raises(OptionError, match="restart"):
            sol.grad(method="gmres", restart=5)
        with pytest.raises(OptionError, match="tol"):
            sol.grad(method="dense", tol=1e-3)
        with pytest.raises(OptionError):
            lagrad.jacobian(lambda a: a, mode="bogus")


def test_sparse_constant_matrix_in_a_block(rng: np.random.Generator) -> None:
    """lagrad.matmul(A_sparse, z) inside a cycle: reverse mode against the
    dense reference (forward mode: see the xfail test below)."""
    n = 6
    W = sp.random(n, n, density=0.4, random_state=1, format="csr")
    W = W * (0.8 / np.linalg.norm(W.toarray(), 2))
    p = lagrad.Program()
    x = p.input("x", (n,))
    z = p.unknown("z", (n,))
    p.define(z, lagrad.tanh(lagrad.matmul(W, z) + x))
    p.output(lagrad.sum(z * z))
    xv = rng.normal(size=n)
    sol = p.solve(xv)
    z_v = sol["z"]
    dd = 1 - z_v ** 2
    lam = np.linalg.solve((np.eye(n) - dd[:, None] * W.toarray()).T, 2 * z_v)
    for method in ("auto", "gmres", "fixed_point", "dense"):
        assert np.allclose(sol.grad(method=method), dd * lam, rtol=1e-10)


def test_forward_mode_through_a_sparse_matmul_in_a_block() -> None:
    n = 2
    p = lagrad.Program()
    x = p.input("x", (n,))
    z = p.unknown("z", (n,))
    p.define(z, lagrad.tanh(lagrad.matmul(sp.csr_matrix(0.5 * np.eye(n)), z) + x))
    p.output(lagrad.sum(z))
    sol = p.solve(np.ones(n))
    tangent = sol.tangent(np.ones(n))[p.output_variable]
    assert float(tangent) == pytest.approx(float(sol.grad() @ np.ones(n)))


def test_system_exposes_blocks_and_a_block_triangular_permutation() -> None:
    """matrix[perm][:, perm] has no entry below (adjoint) or above (tangent)
    the diagonal blocks, and the diagonal blocks are the program's blocks."""
    rng = np.random.default_rng(5)
    p = lagrad.Program()
    x = p.input("x", 3)
    z1 = p.unknown("z1", 3)
    p.define(z1, lagrad.tanh(0.4 * rng.normal(size=(3, 3)) @ z1 + x))
    z2 = p.unknown("z2", 2)
    p.define(z2, 0.3 * lagrad.sin(rng.normal(size=(2, 2)) @ z2) + lagrad.sum(z1))
    p.output(lagrad.sum(z2 ** 2) + lagrad.sum(z1))
    sol = p.solve(rng.normal(size=3))
    for system, upper in ((sol.adjoint_system(), True), (sol.tangent_system(np.ones(3)), False)):
        assert [b.cyclic for b in system.blocks].count(True) == 2
        perm = system.permutation
        assert sorted(perm.tolist()) == list(range(system.shape[0]))
        m = system.block_triangular().toarray()
        np.testing.assert_array_equal(m, system.matrix.toarray()[np.ix_(perm, perm)])
        sizes = [b.size for b in system.blocks]
        ends = np.cumsum(sizes)
        starts = ends - sizes
        for bi, (a, b) in enumerate(zip(starts, ends)):
            below = m[b:, a:b] if upper else m[a:b, b:]
            assert not below.any(), f"entries outside block {bi}'s triangle"
        for block in system.blocks:
            pos = system.block_positions(block)
            assert pos.size == block.size
