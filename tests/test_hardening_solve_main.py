"""Issue 12, solution side: a Solution belongs to the program version it
solved, validates what it is given, and is safe to share between threads."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest

import lagrad
from lagrad import OptionError, ProgramError

ComplexWarning = getattr(np, "exceptions", np).ComplexWarning


def _two_outputs() -> tuple[lagrad.Program, lagrad.Variable, lagrad.Variable]:
    p = lagrad.Program()
    x = p.input("x", 2)
    a = lagrad.sum(x * x)
    b = lagrad.sum(lagrad.sin(x))
    p.output(a)
    return p, a, b


def test_a_solution_keeps_the_output_it_was_solved_for():
    p, a, b = _two_outputs()
    x = np.array([0.3, -1.2])
    sol = p.solve(x)
    p.output(b)  # a new version of the program
    assert sol.output == pytest.approx(np.sum(x * x))
    np.testing.assert_allclose(sol.grad(), 2 * x)
    np.testing.assert_allclose(sol.adjoint_system().rhs[sol.schedule.index[a]], [1.0])
    fresh = p.solve(x)
    assert fresh.output == pytest.approx(np.sum(np.sin(x)))
    np.testing.assert_allclose(fresh.grad(), np.cos(x))


def test_a_variable_added_after_the_solve_is_an_error_not_an_index_error():
    p, a, _ = _two_outputs()
    sol = p.solve(np.ones(2))
    late = lagrad.exp(a)
    with pytest.raises(ProgramError, match="added to the program after"):
        sol[late]


@pytest.mark.parametrize("key", [0, 1.5, None, (1, 2)])
def test_indexing_a_solution_with_a_non_variable(key: object):
    p, _, _ = _two_outputs()
    sol = p.solve(np.ones(2))
    with pytest.raises(ProgramError):
        sol[key]  # type: ignore[index]


def test_tangent_keyed_by_a_non_input():
    p, a, _ = _two_outputs()
    sol = p.solve(np.ones(2))
    with pytest.raises(ProgramError, match="not an input"):
        sol.tangent({a: 1.0})
    zdot = sol.tangent({"x": np.array([1.0, 0.0])})  # by name: fine
    assert zdot[a] == pytest.approx(2.0)


@pytest.mark.parametrize("multipliers", [np.ones(3), "abc", {"x": np.ones(3)}, {"x": "ab"}])
def test_lagrangian_with_wrong_multipliers(multipliers: object):
    p, _, _ = _two_outputs()
    sol = p.solve(np.ones(2))
    with pytest.raises(ProgramError):
        sol.lagrangian(multipliers)
    with pytest.raises(ProgramError):
        p.lagrangian(sol.z, multipliers)


def test_lagrangian_with_a_mapping_is_the_flat_one():
    p, _, _ = _two_outputs()
    sol = p.solve(np.array([0.5, 2.0]))
    lam = sol.multipliers()
    by_name = {v.name: lam[v] for v in p.variables}
    assert sol.lagrangian(by_name) == pytest.approx(sol.lagrangian(lam.vector))


def test_a_complex_cotangent_is_cast_with_a_warning():
    p = lagrad.Program()
    x = p.input("x", 2)
    p.output(x * 3.0)
    sol = p.solve(np.ones(2))
    with pytest.warns(ComplexWarning, match="cotangent"):
        system = sol.adjoint_system(np.array([1 + 2j, 1j]))
    np.testing.assert_array_equal(system.rhs[sol.schedule.index[p.output_variable]], [1.0, 0.0])
    y, pullback = lagrad.vjp(lambda x: 3.0 * x, np.ones(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ComplexWarning)
        (g,) = pullback(np.array([2 + 1j, 1.0]))
    np.testing.assert_allclose(g, [6.0, 3.0])


def _cyclic() -> lagrad.Program:
    p = lagrad.Program()
    x = p.input("x", 3)
    z = p.unknown("z", 3)
    p.define(z, 0.5 * lagrad.tanh(z) + x)
    p.output(lagrad.sum(z * z) + lagrad.sum(lagrad.sin(x)))
    return p


def _calls(p: lagrad.Program, sol: lagrad.Solution, x: np.ndarray) -> dict[str, np.ndarray]:
    f = lagrad.jacobian(lambda x: lagrad.fixed_point(lambda z, x: 0.5 * lagrad.tanh(z) + x,
                                                     np.zeros(3), x))
    return {"grad": np.asarray(sol.grad()),
            "multipliers": sol.multipliers().vector.copy(),
            "gmres": np.asarray(sol.grad(method="gmres", tol=1e-12)),
            "solve": np.asarray(p.solve(x).grad()),
            "jacobian": f(x)}


def _in_threads(n: int, fn: Callable[[], Any]) -> list[Any]:
    """``fn()`` in n threads released together; their results (errors re-raised)."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            results.append(fn())
        except BaseException as err:  # noqa: BLE001 (re-raised below)
            errors.append(err)
    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_threads_sharing_a_program_and_a_solution_agree_with_a_serial_run():
    p = _cyclic()
    x = np.array([0.2, -0.4, 0.9])
    expected = _calls(p, p.solve(x), x)
    for _ in range(50):
        sol = p.solve(x)  # shared by every thread, multipliers not yet computed
        for got in _in_threads(6, partial(_calls, p, sol, x)):
            for key, want in expected.items():
                np.testing.assert_array_equal(got[key], want, err_msg=key)


def test_multipliers_held_by_threads_survive_the_solution():
    """Threads racing to compute a Solution's multipliers get one vector, and
    none that a caller still holds goes back to the buffer pool."""
    p = lagrad.trace(lambda x: lagrad.sum(lagrad.tanh(x) ** 2), np.ones(400))
    x = np.linspace(-1, 1, 400)
    want = p.solve(x).multipliers().vector.copy()
    for _ in range(50):
        held = _in_threads(8, p.solve(x).multipliers)  # the Solution is then dropped
        for _ in range(3):  # later solves take vectors from the pool
            p.solve(-x).grad()
        assert len({id(m.vector) for m in held}) == 1
        for m in held:
            np.testing.assert_array_equal(m.vector, want)


# ------------------------------------------------------------ traced z0

def _root_from(sign: float):
    return lambda a: lagrad.root(lambda z, a: z * z - a, sign * a, a)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_traced_z0_is_the_starting_point(sign: float):
    """z^2 = a has two roots; starting from +a or -a picks one. Traced, the
    start must still be z0's value (it used to be 0 for a traced z0), so the
    value and the gradient match the untraced call."""
    f = _root_from(sign)
    a = 4.0
    value, grad = lagrad.value_and_grad(f)(a)
    assert value == pytest.approx(f(a)) == pytest.approx(sign * 2.0)
    assert grad == pytest.approx(sign * 0.25)  # d sqrt(a)/da = 1 / (2 sqrt a)


def test_a_start_from_another_branch_is_computed_before_the_block():
    """z0 comes from an input the block does not read: the block still runs
    after it, and its start is z0's value, not zero."""
    p = lagrad.Program()
    a = p.input("a")
    b = p.input("b")
    start = lagrad.exp(lagrad.exp(b)) * -1.0  # a long branch the block never reads
    z = p.unknown("z", init=start)
    p.root(z, z * z - a)
    p.output(z)
    sol = p.solve(4.0, 0.0)
    assert float(sol["z"]) == pytest.approx(-2.0)
    assert sol.grad()[0] == pytest.approx(-0.25) and sol.grad()[1] == 0.0
    assert float(p.solve(4.0, 0.0, init={"z": 1.0})["z"]) == pytest.approx(2.0)  # given wins


def test_a_start_variable_must_match_and_belong():
    p = lagrad.Program()
    a = p.input("a", 2)
    with pytest.raises(ProgramError, match="shape"):
        p.unknown("z", 3, init=a)
    q = lagrad.Program()
    with pytest.raises(ProgramError, match="another program"):
        q.unknown("z", 2, init=a)


@pytest.mark.parametrize("init", [{"a": 1.0}, {"z": np.ones(3)}, [1.0], {"z": "x"}])
def test_solve_init_is_checked(init: object):
    """A wrong part raises ProgramError; init that is no mapping, OptionError."""
    p = lagrad.Program()
    a = p.input("a")
    z = p.unknown("z")
    p.define(z, 0.5 * z + a)
    p.output(z)
    with pytest.raises(OptionError if isinstance(init, list) else ProgramError):
        p.solve(1.0, init=init)


# -------------------------------------------- singular at the solution

def _double_root(x):
    return lagrad.root(lambda z, x: z * z - x, 1.0, x)  # z^2 = 0: a double root at x = 0


def _slope_one(x):
    return lagrad.fixed_point(lambda z, x: z * z + x, 0.0, x)  # G'(1/2) = 1 at x = 1/4


@pytest.mark.parametrize(("f", "x"), [(_double_root, 0.0), (_slope_one, 0.25)])
@pytest.mark.parametrize("method", ["auto", "splu", "gmres", "fixed_point", "reduced_lu",
                                    "dense", "spsolve"])
def test_a_block_singular_at_its_solution_gives_no_gradient(f, x, method: str):
    """There dz/dx is infinite; the solve ends near it with gradients of 2e6-3e6
    that differ by method. Every method refuses instead."""
    sol = lagrad.trace(f, x).solve(x)
    with pytest.raises(lagrad.SingularSystemError, match="singular at the solution.*lstsq"):
        sol.grad(method=method)
    with pytest.raises(lagrad.SingularSystemError):
        lagrad.grad(f)(x)


def test_lstsq_is_the_way_to_ask_anyway():
    sol = lagrad.trace(_double_root, 0.0).solve(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = sol.grad(method="lstsq")
    assert np.isfinite(g) and g > 1e5  # 1 / (2 z) at the iterate where Newton stopped


@pytest.mark.parametrize(("f", "x", "want"), [(_double_root, 1.0, 0.5),
                                              (_double_root, 0.04, 2.5),
                                              (_slope_one, 0.2, 1 / np.sqrt(1 - 0.8))])
def test_regular_solutions_nearby_keep_their_gradient(f, x: float, want: float):
    assert lagrad.grad(f)(x) == pytest.approx(want, rel=1e-9)


def test_an_ill_conditioned_linear_block_is_not_singular():
    """Newton solves a linear block in one step: I - J does not move, so even a
    condition number of 1e9 leaves the derivative determined."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    a = np.eye(4) - q @ np.diag([1.0, 0.5, 0.1, 1e-9]) @ q.T  # I - A has condition 1e9
    p = lagrad.Program()
    b = p.input("b", 4)
    z = p.unknown("z", 4, method="newton")
    p.define(z, a @ z + b)
    p.output(lagrad.sum(z))
    bv = np.arange(1.0, 5.0)
    g = p.solve(bv).grad()
    np.testing.assert_allclose(g, np.linalg.solve((np.eye(4) - a).T, np.ones(4)), rtol=1e-6)


# ---------------------------------------------------------------- options

def _contracting() -> lagrad.Program:
    p = lagrad.Program()
    a = p.input("a")
    z = p.unknown("z")
    p.define(z, 0.5 * lagrad.cos(z) + a)
    p.output(z * z)
    return p


@pytest.mark.parametrize("options", [{"tol": -1}, {"tol": "a"}, {"tol": float("nan")},
                                     {"tol": True}, {"maxiter": 0}, {"maxiter": 2.5},
                                     {"maxiter": -3}, {"bogus": 1}])
def test_bad_linear_options_raise_at_the_call(options: dict[str, object]):
    sol = _contracting().solve(0.3)
    with pytest.raises(lagrad.OptionError):
        sol.grad(method="gmres", **options)
    with pytest.raises(lagrad.OptionError):
        sol.adjoint_system().solve("bicgstab", **options)


@pytest.mark.parametrize("options", [{"tol": -1}, {"tol": "a"}, {"maxiter": 0},
                                     {"method": "bogus"}])
def test_bad_forward_options_raise_at_the_call(options: dict[str, object]):
    p = _contracting()
    with pytest.raises(lagrad.OptionError):
        p.solve(0.3, **options)
    q = lagrad.Program()
    with pytest.raises(lagrad.OptionError):
        q.unknown("z", **options)


def test_tol_zero_means_zero_not_the_default():
    p = _contracting()
    default = p.solve(0.3, method="fixed_point").diagnostics[1]
    exact = p.solve(0.3, method="fixed_point", tol=0.0).diagnostics[1]
    assert exact.iterations > default.iterations
    assert exact.residual == 0.0
    sol = p.solve(0.3, method="newton")
    _, loose = sol.adjoint_system().solve("gmres", tol=1e-3)
    _, tight = sol.adjoint_system().solve("gmres", tol=0.0, maxiter=50)
    assert tight.blocks[0].residual <= loose.blocks[0].residual


def test_auto_keeps_maxiter_for_newton():
    """"auto" solves a root constraint by Newton; a given maxiter bounds it (it
    used to be replaced by Newton's default of 100)."""
    p = lagrad.Program()
    a = p.input("a")
    z = p.unknown("z", init=30.0)
    p.root(z, z * z * z - a)
    p.output(z)
    with pytest.raises(lagrad.ConvergenceError, match="in 2 iterations"):
        p.solve(2.0, maxiter=2)
    assert float(p.solve(2.0)["z"]) == pytest.approx(2 ** (1 / 3))


def test_dense_does_not_call_an_acyclic_program_singular():
    """I - J of an acyclic program is unit triangular, never singular, however
    large its condition number (here ~1e36): the dense reference solves it."""
    f = lambda x: 1e9 * (1e9 * x)  # noqa: E731
    sol = lagrad.trace(f, 1.0).solve(2.0)
    assert sol.grad(method="dense") == pytest.approx(1e18)
    assert sol.grad(method="spsolve") == pytest.approx(1e18)


def test_a_krylov_breakdown_is_named_as_such():
    """BiCGSTAB breaks down on a rotation-like block (its first direction is
    orthogonal to the shadow residual): the error says it broke down and
    points to gmres or a direct method, not to a larger maxiter."""
    p = lagrad.Program()
    x = p.input("x")
    z = p.unknown("z", 2)
    p.define(z, np.array([[1.0, 1.0], [-1.0, 1.0]]) @ z + np.array([1.0, 0.0]) * x)
    p.output(2.0 * z[0] + z[1])
    sol = p.solve(1.0, method="newton")
    with pytest.raises(lagrad.ConvergenceError, match="bicgstab broke down.*use gmres"):
        sol.grad(method="bicgstab")
    assert sol.grad(method="gmres") == pytest.approx(sol.grad(method="splu"), abs=1e-12)
    assert sol.grad() == pytest.approx(-1.0, abs=1e-12)


def test_an_infinite_weight_is_named_not_called_singular():
    """tanh(w @ z + x) with one infinite w_ij saturates (a finite value) and
    has a zero derivative there: I - J gets 0 * inf = NaN, which Newton's LU
    reported as 'exactly singular'. The error now names the equation whose
    local derivative is not finite."""
    p = lagrad.Program()
    w, x = p.input("w", (3, 3)), p.input("x", 3)
    z = p.unknown("z", 3, init=[0.2, 0.5, -0.1])  # z_1 != 0: w_01 z_1 is infinite
    p.define(z, lagrad.tanh(w @ z + x))
    p.output(lagrad.sum(z * z))
    weights = 0.3 * np.eye(3)
    weights[0, 1] = np.inf
    with pytest.raises(lagrad.ConvergenceError, match=r"non-finite Jacobian.*matmul\(w, z\)"):
        p.solve(weights, np.array([0.1, 0.5, -0.2]), method="newton")


def _layer() -> tuple[Callable[[Any], Any], np.ndarray]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4))
    w *= 0.5 / np.linalg.norm(w, 2)

    def fn(x: Any) -> Any:
        return lagrad.sum(lagrad.fixed_point(lambda z, x: lagrad.tanh(w @ z + x), np.zeros(4),
                                             x) ** 2)
    return fn, rng.standard_normal(4)


@pytest.mark.parametrize("scale, refined", [(0.9999, True), (0.5, False)])
def test_a_direct_block_solve_is_held_to_its_residual(monkeypatch, scale: float, refined: bool):
    """The block's residual is computed through the equations' own rules, not
    through the factorized I - J: with an assembled J slightly off, refinement
    recovers the exact multipliers; far off, the solve raises instead of
    returning a wrong gradient (it returned one, 0.23 off, before)."""
    import lagrad.compile.jacobian as assembly

    fn, x = _layer()
    exact = lagrad.grad(fn)(x)
    program = lagrad.trace(fn, x)
    sol = program.solve(x, method="fixed_point")  # no Newton factorization to reuse
    right = assembly.identity_minus
    monkeypatch.setattr(assembly, "identity_minus",
                        lambda rows, cols, vals, n: right(rows, cols, vals * scale, n))
    if refined:
        _, info = sol.adjoint_system().solve(method="splu")
        assert np.allclose(sol.grad(method="splu"), exact, rtol=1e-12, atol=1e-14)
        assert all(b.extra["refinements"] > 0 for b in info.blocks)
    else:
        with pytest.raises(lagrad.ConvergenceError, match="splu left a relative "
                                                          "residual.*disagrees"):
            sol.grad(method="splu")
    assert np.allclose(sol.grad(method="gmres"), exact, rtol=1e-10, atol=1e-12)
