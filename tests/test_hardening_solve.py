"""Regression tests of issue 12 (hardening), on the solve side: unused infinite
derivatives, overflowing residual norms, empty cyclic blocks, NaN inside a
fixed point."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from cyclic_strategies import empty_block

import lagrad
from lagrad import ConvergenceError, NonFiniteError
from lagrad.compile import compile_program
from lagrad.compile.schedule import Batch, CyclicBlock, Single
from lagrad.numeric import norm2
from lagrad.solve import linsolve, nonlinear, petsc
from lagrad.solve.results import BlockResult, Status

# ------------------------------------- 1. an unused infinite derivative

METHODS = ["auto", "backsub", "levels", "splu", "gmres"]
METHODS_ALL = sorted(linsolve.METHODS)


def _unused_sqrt(x):  # sqrt(x - 1) at x = 1 has an infinite derivative, and is not used
    lagrad.sqrt(x - 1.0)
    return x * x


@pytest.mark.parametrize("method", METHODS)
def test_an_unused_infinite_derivative_leaves_the_gradient_alone(method):
    sol = lagrad.trace(_unused_sqrt, 0.0).solve(1.0)
    assert float(sol.grad(method=method)) == 2.0
    lam = sol.multipliers(method=method)
    assert float(lam["v1"]) == 0.0 and float(lam["v2"]) == 0.0  # not read by the output


def _with_unused(x, y):
    lagrad.sqrt(y)  # sqrt(0): infinite derivative, not used
    return x * x + y


def test_an_unused_sqrt_of_zero_in_grad():
    g = lagrad.grad(_with_unused, argnums=(0, 1))(3.0, 0.0)
    assert tuple(map(float, g)) == (6.0, 1.0)


def _batched(a, b, c, d, v):
    """Four sqrt at level 1 form one Batch; sqrt(a) is not used; the vector
    operation keeps the program off the levels path (Batch and Single steps)."""
    roots = [lagrad.sqrt(a), lagrad.sqrt(b), lagrad.sqrt(c), lagrad.sqrt(d)]
    return roots[1] + roots[2] * roots[3] + lagrad.sum(v * v)


def test_an_unused_entry_of_a_batch_step():
    x = (0.0, 4.0, 9.0, 16.0, np.array([1.0, 2.0]))
    p = lagrad.trace(_batched, *x)
    steps = compile_program(p).steps
    batch = [s for s in steps if isinstance(s, Batch)]
    assert len(batch) == 1 and len(batch[0].equations) == 4  # the case under test
    assert any(isinstance(s, Single) for s in steps)
    g = p.solve(*x).grad()
    expected = (0.0, 0.5 / 2.0, 4.0 * 0.5 / 3.0, 3.0 * 0.5 / 4.0, 2 * x[4])
    for got, want in zip(g, expected):
        np.testing.assert_allclose(got, want, rtol=1e-14)


def test_an_unused_infinite_derivative_on_the_levels_path():
    p = lagrad.trace(lambda a, b, c, d: _batched(a, b, c, d, np.zeros(2)) * 1.0,
                     0.0, 1.0, 1.0, 1.0)
    sol = p.solve(0.0, 4.0, 9.0, 16.0)
    for method in ("auto", "levels", "backsub"):
        np.testing.assert_allclose(sol.grad(method=method), (0.0, 0.25, 2 / 3, 0.375),
                                   rtol=1e-14)


def _bulk() -> lagrad.Program:
    # z2 = sqrt(x0) (unused), z3 = sqrt(x1): one Batch of two; z4 = z3 * x1 = x1^1.5
    return lagrad.Program.from_arrays(["sqrt", "sqrt", "mul"], [[0, -1], [1, -1], [3, 1]],
                                      n_inputs=2)


@pytest.mark.parametrize("method", ["auto", "levels", "splu"])
def test_an_unused_infinite_derivative_in_a_bulk_program(method):
    g = _bulk().solve(0.0, 0.7).grad(method=method)
    np.testing.assert_allclose(g, (0.0, 1.5 * np.sqrt(0.7)), rtol=1e-14)


@pytest.mark.parametrize("method", ["auto", "levels", "splu"])
def test_a_used_infinite_derivative_in_a_bulk_program_is_named(method):
    with pytest.raises(NonFiniteError, match=r"`v3 = sqrt\(x1\)"):
        _bulk().solve(0.0, 0.0).grad(method=method)


def test_an_unused_infinite_derivative_beside_a_cyclic_block():
    p = lagrad.Program()
    x = p.input("x")
    z = p.unknown("z")
    p.define(z, 0.5 * lagrad.cos(z) + x)
    lagrad.sqrt(x - 1.0)
    p.output(z * z)
    sol = p.solve(1.0)
    zs = float(sol["z"])
    for method in ("auto", "splu", "gmres"):
        np.testing.assert_allclose(float(sol.grad(method=method)),
                                   2 * zs / (1 + 0.5 * np.sin(zs)), rtol=1e-12)


def test_an_unused_infinite_derivative_in_forward_mode():
    assert lagrad.jvp(_unused_sqrt, (1.0,), (1.0,)) == (1.0, 2.0)
    assert float(lagrad.jacobian(_unused_sqrt, mode="forward")(1.0)) == 2.0
    p = lagrad.trace(_unused_sqrt, 0.0)
    zdot = p.solve(1.0).tangent(1.0)
    assert float(zdot[p.output_variable]) == 2.0
    assert np.isinf(zdot["v2"])  # not an ancestor of the output: not checked


def test_a_used_infinite_derivative_still_raises_and_is_named():
    def f(x, y):
        used = lagrad.sqrt(y)  # level 1, on the path to the output
        lagrad.sqrt(lagrad.sin(x))  # level 2: reached first by back-substitution
        return used + x

    p = lagrad.trace(f, 1.0, 1.0)
    sol = p.solve(0.0, 0.0)
    for method in ("auto", "backsub", "levels", "splu"):
        with pytest.raises(NonFiniteError, match=r"first produced by equation `v2 = sqrt\(y\)"):
            sol.grad(method=method)
    with pytest.raises(NonFiniteError, match=r"tangent of 'v2'.*`v2 = sqrt\(y\)"):
        sol.tangent((0.0, 1.0))
    with pytest.raises(NonFiniteError) as err:
        lagrad.grad(f, argnums=1)(0.0, 0.0)
    assert "= sqrt(y)" in err.value.equation


def test_the_finite_path_computes_no_ancestors():
    p = lagrad.trace(lambda x: lagrad.sqrt(x) * x, 0.0)
    p.solve(2.0).grad()
    p.solve(2.0).tangent(1.0)
    assert not [k for k in compile_program(p).extras if isinstance(k, tuple)]


# ------------------------------------------ 2. residual norms above 1e154

@pytest.mark.parametrize("x", [np.array([3e160, -4e160]), np.array([1e300, 1e300, 1e-300]),
                               np.array([2e154] * 1000), np.array([3.0, 4.0]), np.zeros(0)])
def test_norm2_does_not_overflow(x):
    with np.errstate(over="ignore"):
        assert norm2(x) == pytest.approx(math.hypot(*x), rel=1e-14)  # hypot is scale-safe


@np.errstate(over="ignore")
def test_norm2_of_non_finite_entries():
    assert norm2(np.array([1e200, np.inf])) == np.inf
    assert np.isnan(norm2(np.array([1e200, np.nan])))


@pytest.mark.parametrize("method", [None, "fixed_point", "newton", "anderson"])
@pytest.mark.parametrize("shape", [(), (3,)])
def test_a_fixed_point_at_1e160_converges(method, shape):
    p = lagrad.Program()
    x = p.input("x", shape)
    z = p.unknown("z", shape)
    p.define(z, 0.5 * z + x)
    p.output(lagrad.sum(z * 3.0))
    xs = np.full(shape, 1e160)
    sol = p.solve(xs, method=method)
    np.testing.assert_allclose(sol["z"], 2 * xs, rtol=1e-10)  # z = x / (1 - 0.5)
    np.testing.assert_allclose(sol.grad(), np.full(shape, 6.0), rtol=1e-12)


def test_residuals_of_huge_values_are_finite():
    p = lagrad.Program()
    x = p.input("x", (2,))
    z = p.unknown("z", (2,))
    p.define(z, 0.5 * z + x)
    p.output(lagrad.sum(z))
    sol = p.solve(np.array([1e160, -2e160]))
    _, info = sol.adjoint_system().solve(method="splu")
    assert info.residual < 1e-14
    kkt = sol.kkt_residuals()
    assert kkt.dL_dlambda < 1e-10 and kkt.dL_dz < 1e-14


# -------------------------------------------------- 3. an empty cyclic block

LINEAR = [m for m in METHODS_ALL if m != "levels"
          and (petsc.available() or not m.startswith("petsc"))  # an optional extra
          and m != "petsc"]  # a Krylov solve of the whole system: tests/petsc, to rounding




@pytest.mark.parametrize("kind", ["define", "root"])
@pytest.mark.parametrize("forward", [None, "fixed_point", "newton", "anderson"])
def test_an_empty_cyclic_block_solves_trivially(kind, forward):
    p = empty_block(kind)
    assert [b.cyclic for b in p.blocks].count(True) == 1
    sol = p.solve(3.0, method=forward)
    assert sol["z"].shape == (0,) and float(sol.output) == 12.0
    for method in LINEAR:
        assert float(sol.grad(method=method)) == 7.0, method  # d(x^2 + x) = 2x + 1
        assert float(sol.tangent(1.0, method=method)[p.output_variable]) == 7.0, method


def test_an_empty_block_reports_how_it_was_solved():
    sol = empty_block("define").solve(3.0)
    (forward,) = sol.diagnostics.values()
    assert forward.converged and forward.method == "evaluation"
    (adjoint,) = sol.adjoint_diagnostics
    assert adjoint.converged and adjoint.method == "substitution"


def test_an_empty_fixed_point_in_a_traced_function():
    def f(x, e):
        z = lagrad.fixed_point(lambda z, e: 0.5 * z + e, np.zeros(0), e)
        return x * x + lagrad.sum(z)

    for method in ("auto", "lstsq", "lgmres"):
        sol = lagrad.trace(f, 0.0, np.zeros(0)).solve(2.0, np.zeros(0))
        assert float(sol.grad(method=method)[0]) == 4.0


# ------------------------------------------------ 4. NaN inside a fixed point

def _sqrt_block(shift: float) -> lagrad.Program:
    """z = 0.5 sqrt(z - shift) + x: NaN while z < shift."""
    p = lagrad.Program()
    x = p.input("x")
    z = p.unknown("z")
    p.define(z, 0.5 * lagrad.sqrt(z - shift) + x)
    p.output(z * 1.0)
    return p


@pytest.mark.parametrize("method", [None, "fixed_point", "newton", "anderson"])
def test_a_nan_in_a_fixed_point_names_its_equation(method):
    with pytest.raises(ConvergenceError) as err:
        _sqrt_block(2.0).solve(1.0, method=method)
    message = str(err.value)
    assert re.match(r"block 1 \(z\): \w+ met a non-finite value at iteration 1: the value of "
                    r"'v3' is not finite, first in equation `v3 = sqrt\(v2\)  # \(\)`", message)
    assert "diverges" not in message and "method=" not in message
    assert "init" in message


def test_the_same_block_solves_from_an_init_in_the_domain():
    sol = _sqrt_block(2.0).solve(3.0, init={"z": 3.0})
    zs = float(sol["z"])
    assert zs == pytest.approx(0.5 * np.sqrt(zs - 2.0) + 3.0, abs=1e-12)


@pytest.mark.parametrize("name", ["fixed_point", "newton", "anderson"])
@np.errstate(invalid="ignore")
def test_a_forward_method_reports_a_nan_as_nonfinite(name):
    p = _sqrt_block(2.0)
    unit = _block_of(p)
    z = np.zeros(compile_program(p).size)
    z[0] = 1.0  # x
    result = nonlinear.METHODS[name](nonlinear.BlockMap(unit, z), np.zeros(1), 1e-12, 50)
    assert result.status is Status.NONFINITE
    assert result.extra["equation"] == "v3 = sqrt(v2)  # ()"


def test_a_nan_after_some_iterations():
    # z <- sqrt(z) - 1 from z = 4: 1, 0, -1, then sqrt(-1); no real fixed point exists
    p = lagrad.Program()
    x = p.input("x")
    z = p.unknown("z", init=4.0)
    p.define(z, lagrad.sqrt(z) - 1.0 + x)
    p.output(z * 1.0)
    with pytest.raises(ConvergenceError, match=r"fixed_point met a non-finite value at "
                                               r"iteration 4: .*`v2 = sqrt\(z\)"):
        p.solve(0.0, method="fixed_point")


def test_a_non_finite_value_entering_a_block_is_named():
    with pytest.raises(ConvergenceError, match=r"block 1 \(z\): .*it reads 'x', which is not "
                                               r"finite before the block is solved"):
        _sqrt_block(-1.0).solve(np.nan, method="fixed_point")


@pytest.mark.parametrize("method", ["fixed_point", "newton"])
def test_a_block_meeting_a_nan_raises_what_both_handlers_catch(method):
    """A NaN met by a block's solve is a non-finite value (the guarantee says
    NonFiniteError) and a failed solve (ConvergenceError, which callers of
    earlier versions catch): NonFiniteSolveError is both."""
    with pytest.raises(lagrad.NonFiniteError) as caught:
        _sqrt_block(-1.0).solve(np.nan, method=method)
    assert isinstance(caught.value, ConvergenceError)
    assert isinstance(caught.value, FloatingPointError) and isinstance(caught.value, RuntimeError)
    assert type(caught.value) is lagrad.NonFiniteSolveError


@pytest.mark.parametrize("method", ["newton", "fixed_point"])
def test_divergence_suggests_newton_only_to_other_methods(method):
    g = nonlinear.BlockMap(_block_of(_sqrt_block(2.0)), np.zeros(4))
    result = BlockResult("block 1 (z)", method, residuals=[1.0, 1e10])
    assert nonlinear._diverged(g, result, 1e10, np.ones(1))
    assert result.status is Status.BREAKDOWN and "diverges" in result.message
    assert ("method='newton'" in result.message) == (method != "newton")


def _block_of(p: lagrad.Program) -> CyclicBlock:
    return next(s for s in compile_program(p).steps if isinstance(s, CyclicBlock))


# ------------------------------------- 5. raw exceptions found by the property test

def _solved_sin() -> tuple[lagrad.Program, lagrad.Solution]:
    p = lagrad.trace(lambda x: lagrad.sin(x) * x, 0.0)
    return p, p.solve(0.5)


@pytest.mark.parametrize("call", [
    lambda p, s: s.grad(method=np.zeros(0)),
    lambda p, s: s.multipliers(method=["auto"]),
    lambda p, s: p.solve(0.5, method=np.zeros(0)),
    lambda p, s: p.solve(0.5, init=1),
    lambda p, s: p.solve(0.5, init=np.zeros(0)),
    lambda p, s: lagrad.jacobian(lagrad.sin, mode=np.zeros(0)),
])
def test_junk_options_raise_option_errors(call):
    with pytest.raises(lagrad.OptionError):
        call(*_solved_sin())


@pytest.mark.parametrize("call", [
    lambda p, s: s[None],
    lambda p, s: s.values[1.5],
    lambda p, s: p.lagrangian("", s.z),
    lambda p, s: p.lagrangian(s.z, {"x": "a"}),
    lambda p, s: s.kkt_residuals(object()),
    lambda p, s: lagrad.vjp(lagrad.sin, 0.5)[1](""),
])  # a complex cotangent is cast with a warning: test_hardening_solve_main
def test_junk_values_raise_program_errors(call):
    with pytest.raises(lagrad.ProgramError):
        call(*_solved_sin())


def test_init_values_are_checked():
    p = _sqrt_block(-1.0)
    with pytest.raises(lagrad.ProgramError, match=r"init of 'z' must be real numbers"):
        p.solve(1.0, init={"z": "abc"})
    assert float(p.solve(1.0, init={"z": np.array([2.0])})["z"]) == pytest.approx(
        0.5 * np.sqrt(float(p.solve(1.0)["z"]) + 1.0) + 1.0)
