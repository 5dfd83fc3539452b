"""Every error path of building, tracing and solving a program.

Each case expects the *exact* lagrad exception class, a message naming the
offending variable, function or option, and no numpy/scipy exception or
RuntimeWarning escaping on the way (warnings are errors in this module, and
:func:`raises_exactly` also turns them into errors explicitly).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import lagrad
from lagrad import NonFiniteError, OptionError, ProgramError
from lagrad.errors import TracedIndexError

pytestmark = pytest.mark.filterwarnings("error")


@contextlib.contextmanager
def raises_exactly(cls: type[BaseException], match: str) -> Iterator[Any]:
    """pytest.raises(cls, match=...) that also rejects subclasses and warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(cls, match=match) as info:
            yield info
    assert type(info.value) is cls, f"expected {cls.__name__}, got {type(info.value).__name__}"


def _program(*shapes: tuple[int, ...], names: str = "abcdef") -> tuple[lagrad.Program, list[Any]]:
    p = lagrad.Program()
    return p, [p.input(n, s) for n, s in zip(names, shapes)]


# ------------------------------------------------------ defined twice

def test_input_name_given_twice() -> None:
    p, (a,) = _program((3,))
    with raises_exactly(ProgramError, match="'a'"):
        p.input("a", (2,))
    assert len(p.variables) == 1  # the failed call added nothing


def test_renaming_to_a_taken_name() -> None:
    p, (a, b) = _program((3,), (3,))
    c = a + b
    with raises_exactly(ProgramError, match="'b'"):
        c.name = "b"
    c.name = "c"  # a free name is fine
    assert p["c"] is c


def test_equation_for_an_already_defined_variable() -> None:
    p, (x,) = _program(())
    z = p.unknown("z")
    p.define(z, lagrad.tanh(0.5 * z + x))
    with raises_exactly(ProgramError, match="'z'.*defined twice"):
        p.define(z, 2.0 * x)
    with raises_exactly(ProgramError, match="'z'.*defined twice"):
        p.root(z, z - x)


def test_defining_an_input_or_a_computed_variable() -> None:
    p, (x,) = _program(())
    y = x * 2.0
    with raises_exactly(ProgramError, match="'a'"):
        p.define(x, y)
    with raises_exactly(ProgramError, match=re.escape(repr(y.name))):
        p.define(y, x)


def test_trace_names_varargs_without_collisions() -> None:
    def f(x0: Any, *x: Any) -> Any:
        return x0 * x[0]

    p = lagrad.trace(f, 1.0, 2.0)
    assert len({v.name for v in p.inputs}) == 2


# ------------------------------------------------- undefined or foreign

@pytest.fixture
def two_programs() -> tuple[lagrad.Program, Any, lagrad.Program, Any]:
    p = lagrad.Program()
    x = p.input("x", 3)
    q = lagrad.Program()
    y = q.input("y", 3)
    return p, x, q, y


FOREIGN_USES: dict[str, Callable[[Any, Any], Any]] = {
    "x + y": lambda x, y: x + y,
    "y * x": lambda x, y: y * x,
    "np.add": lambda x, y: np.add(x, y),
    "maximum": lambda x, y: lagrad.maximum(x, y),
    "x @ y": lambda x, y: x @ y,
    "dot": lambda x, y: lagrad.dot(x, y),
    "where": lambda x, y: lagrad.where(np.array([True, False, True]), x, y),
    "concatenate": lambda x, y: lagrad.concatenate([x, y]),
    "stack": lambda x, y: lagrad.stack([x, y]),
    "np.stack": lambda x, y: np.stack([x, y]),
}


@pytest.mark.parametrize("use", sorted(FOREIGN_USES))
def test_variable_of_another_program_in_an_operation(use: str, two_programs: Any) -> None:
    p, x, q, y = two_programs
    # whichever variable comes second is the foreign one
    with raises_exactly(ProgramError, match="'[xy]'.*another program"):
        FOREIGN_USES[use](x, y)
    assert p.equations == [] and q.equations == []  # neither program was touched


def test_variable_of_another_program_as_output_or_key(two_programs: Any) -> None:
    p, x, q, y = two_programs
    with raises_exactly(ProgramError, match="'y'"):
        p.output(y)
    with raises_exactly(ProgramError, match="'y'"):
        p.equation(y)
    p.output(lagrad.sum(x))
    sol = p.solve(np.ones(3))
    with raises_exactly(ProgramError, match="'y'"):
        sol[y]
    with raises_exactly(ProgramError, match="'y'"):
        sol.multipliers()[y]
    with raises_exactly(ProgramError, match="'y'"):
        sol.adjoint_system().index[y]


def test_unknown_names() -> None:
    p, (x,) = _program((2,), names="x")
    p.output(lagrad.sum(x * 3.0))
    with raises_exactly(ProgramError, match="'nope'"):
        p["nope"]
    sol = p.solve(np.ones(2))
    for lookup in (lambda: sol["nope"], lambda: sol.values["nope"],
                   lambda: sol.multipliers()["nope"], lambda: sol.adjoint_system().index["nope"],
                   lambda: sol.tangent({"nope": 1.0}), lambda: p.solve(nope=np.ones(2))):
        with raises_exactly(ProgramError, match="'nope'"):
            lookup()


def test_unknown_that_is_never_defined() -> None:
    p, (x,) = _program((), names="x")
    z = p.unknown("z")
    p.output(z + x)
    with raises_exactly(ProgramError, match="'z'"):
        p.solve(1.0)


def test_program_without_output() -> None:
    p, (x,) = _program((), names="x")
    _ = lagrad.sin(x)
    with raises_exactly(ProgramError, match="output"):
        _ = p.output_variable
    with raises_exactly(ProgramError, match="output"):
        p.solve(1.0).grad()


# --------------------------------------------------------- shape mismatch

def test_adding_incompatible_shapes() -> None:
    p, (a, b) = _program((3,), (4,))
    with raises_exactly(ProgramError, match=r"add\(a, b\)") as info:
        a + b
    assert "(3,)" in str(info.value) and "(4,)" in str(info.value)
    with raises_exactly(ProgramError, match=r"mul\(a, const\(4,\)\)"):
        a * np.ones(4)
    with raises_exactly(ProgramError, match="sub"):
        np.ones((2, 4)) - a
    assert p.equations == []


@pytest.mark.parametrize(("sa", "sb"), [((2, 3), (2, 3)), ((3,), (4,)), ((3,), (2, 3)),
                                        ((2, 3), (4,))])
def test_matmul_inner_dimensions_differ(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    p, (a, b) = _program(sa, sb)
    with raises_exactly(ProgramError, match=r"matmul\(a, b\)"):
        a @ b
    with raises_exactly(ProgramError, match="matmul"):
        np.ones(sa) @ b


def test_matmul_of_scalars_and_mismatched_stacks() -> None:
    p, (s, t) = _program((), (2, 2, 2))
    with raises_exactly(ProgramError, match="matmul"):
        s @ np.ones(2)
    with raises_exactly(ProgramError, match="matmul.*inner dimensions"):
        t @ np.ones(3)
    with raises_exactly(ProgramError, match="matmul.*do not broadcast"):
        t @ np.ones((3, 2, 2))


@pytest.mark.parametrize(("call", "match"), [
    (lambda a: lagrad.reshape(a, (4,)), r"reshape.*\(2, 3\).*\(4,\)"),
    (lambda a: lagrad.reshape(a, (-1, 4)), r"reshape.*\(2, 3\)"),
    (lambda a: lagrad.transpose(a, (0, 0)), r"axes \(0, 0\)"),
    (lambda a: lagrad.transpose(a, (1, 2)), "axis 2"),
    (lambda a: lagrad.sum(a, axis=2), "axis 2"),
    (lambda a: lagrad.mean(a, axis=(0, -2)), "repeated axis"),
    (lambda a: lagrad.logsumexp(a, axis=-3), "axis -3"),
    (lambda a: lagrad.softmax(a, axis=5), "axis 5"),
    (lambda a: lagrad.concatenate([a, np.ones((3, 2))]), r"concatenate.*\(2, 3\).*\(3, 2\)"),
    (lambda a: lagrad.concatenate([a, a], axis=2), "axis 2"),
    (lambda a: lagrad.concatenate([]), "concatenate"),
    (lambda a: lagrad.stack([a, np.ones(3)]), r"stack.*\(2, 3\).*\(3,\)"),
    (lambda a: lagrad.stack([a, a], axis=3), "axis 3"),
    (lambda a: lagrad.where(np.ones(4, dtype=bool), a, a), r"where"),
    (lambda a: a + "text", "str"),
])
def test_bad_shapes_axes_and_indices(call: Callable[[Any], Any], match: str) -> None:
    p, (a,) = _program((2, 3))
    with raises_exactly(ProgramError, match=match):
        call(a)
    assert p.equations == []


@pytest.mark.parametrize(("call", "match"), [
    (lambda a: a[2], "index 2"),
    (lambda a: a[:, 3], "index 3"),
    (lambda a: a[np.array([0, 5])], "5"),
    (lambda a: a[np.array([True, False, True])], "boolean"),
])
def test_bad_indices(call: Callable[[Any], Any], match: str) -> None:
    p, (a,) = _program((2, 3))
    with raises_exactly(TracedIndexError, match=match):  # a ProgramError and an IndexError
        call(a)
    assert p.equations == []


def test_solve_given_wrong_inputs() -> None:
    p, (x, y) = _program((3,), (), names="xy")
    p.output(lagrad.sum(x) * y)
    with raises_exactly(ProgramError, match=r"'x'.*\(3,\).*\(4,\)"):
        p.solve(np.ones(4), 1.0)
    with raises_exactly(ProgramError, match=r"'y'.*\(\).*\(3,\)"):
        p.solve(x=np.ones(3), y=np.ones(3))
    with raises_exactly(ProgramError, match="3 inputs given"):
        p.solve(np.ones(3), 1.0, 2.0)
    with raises_exactly(ProgramError, match="'y'"):
        p.solve(np.ones(3))
    with raises_exactly(ProgramError, match="'x'"):
        p.solve(y=1.0)
    with raises_exactly(ProgramError, match="'x'.*twice"):
        p.solve(np.ones(3), 1.0, x=np.ones(3))
    with raises_exactly(ProgramError, match="'x'"):
        p.solve(np.array(["a", "b", "c"]), 1.0)
    v = p.output_variable
    with raises_exactly(ProgramError, match=re.escape(repr(v.name))):
        p.solve(np.ones(3), 1.0, **{v.name: 2.0})  # not an input


def test_wrong_shaped_direction_and_cotangent() -> None:
    p, (x,) = _program((3,), names="x")
    p.output(x * 2.0)
    sol = p.solve(np.ones(3))
    with raises_exactly(ProgramError, match="'x'"):
        sol.tangent(np.ones(2))
    with raises_exactly(ProgramError, match="cotangent"):
        sol.adjoint_system(np.ones(2))
    _, pullback = lagrad.vjp(lambda x: x * 2.0, np.ones(3))
    with raises_exactly(ProgramError, match="cotangent"):
        pullback(np.ones(4))
    with raises_exactly(ProgramError, match="'x'"):
        lagrad.jvp(lambda x: x * 2.0, (np.ones(3),), (np.ones(4),))


# ---------------------------------------------------- non-scalar outputs

def vector_valued(x: Any) -> Any:
    return x * 2.0


def test_grad_of_non_scalar_output() -> None:
    with raises_exactly(ProgramError, match="vector_valued"):
        lagrad.grad(vector_valued)(np.ones(3))
    with raises_exactly(ProgramError, match="vector_valued"):
        lagrad.value_and_grad(vector_valued)(np.ones(3))
    with raises_exactly(ProgramError, match=r"\(1,\)"):
        lagrad.grad(lambda x: lagrad.sum(x, keepdims=True))(np.ones(3))


def test_solution_grad_of_non_scalar_output() -> None:
    p, (x,) = _program((3,), names="x")
    out = x * 2.0
    out.name = "doubled"
    p.output(out)
    sol = p.solve(np.ones(3))
    with raises_exactly(ProgramError, match="'doubled'"):
        sol.grad()
    with raises_exactly(ProgramError, match="'doubled'"):
        sol.multipliers()
    with raises_exactly(ProgramError, match="'doubled'"):
        sol.adjoint_system()


# --------------------------------------------------- unsupported numpy

@pytest.mark.parametrize(("name", "call"), [
    ("nextafter", lambda v: np.nextafter(v, v)),
    ("ldexp", lambda v: np.ldexp(v, 2)),
    ("nanargmax", lambda v: np.nanargmax(v)),
    ("bincount", lambda v: np.bincount(v)),
    ("unique", lambda v: np.unique(v)),
])
def test_unsupported_numpy_function(name: str, call: Callable[[Any], Any]) -> None:
    p, (v,) = _program((3,), names="v")
    with raises_exactly(ProgramError, match=name):
        call(v)
    with raises_exactly(ProgramError, match=name):
        lagrad.grad(lambda x: lagrad.sum(call(x)))(np.ones(3))


# -------------------------------------------------------- non-finite

def test_log_of_negative_input_names_the_equation() -> None:
    p, (x,) = _program((3,), names="x")
    y = lagrad.log(x)
    p.output(lagrad.sum(y))
    with raises_exactly(NonFiniteError, match=r"log\(x\)") as info:
        p.solve(np.array([1.0, -1.0, 2.0]))
    assert info.value.equation == p.describe(p.equation(y))
    assert "log(x)" in info.value.equation
    with raises_exactly(NonFiniteError, match=r"log\(x\)"):
        lagrad.grad(lambda x: lagrad.sum(lagrad.log(x)))(np.array([1.0, -1.0]))


@pytest.mark.parametrize(("fn", "x", "match"), [
    (lambda x: lagrad.exp(x), 1000.0, r"exp\(x\)"),                 # overflow to inf
    (lambda x: lagrad.exp(x * 2.0), 400.0, r"exp\(v1\)"),
    (lambda x: 1.0 / x, 0.0, r"div\(1\.0, x\)"),
    (lambda x: x ** 0.5, -4.0, r"pow\(x, 0\.5\)"),
    (lambda x: lagrad.sqrt(x), -1.0, r"sqrt\(x\)"),
    (lambda x: np.log(x), 0.0, r"log\(x\)"),
    (lambda x: lagrad.exp(x) - lagrad.exp(x), 800.0, r"exp\(x\)"),  # inf - inf later
])
def test_non_finite_value_names_the_equation(fn: Callable[[Any], Any], x: float,
                                             match: str) -> None:
    p = lagrad.trace(fn, x)
    with raises_exactly(NonFiniteError, match=match) as info:
        p.solve(x)
    assert re.search(match, info.value.equation)
    with raises_exactly(NonFiniteError, match=match):
        lagrad.grad(fn)(x)


def test_non_finite_input_is_named() -> None:
    p, (x,) = _program((2,), names="x")
    p.output(lagrad.sum(x))
    with raises_exactly(NonFiniteError, match="'x'"):
        p.solve(np.array([1.0, np.nan]))
    with raises_exactly(NonFiniteError, match="'x'"):
        p.solve(np.array([np.inf, 1.0]))


def _sqrt_at_zero() -> lagrad.Solution:
    # the value sqrt(0) = 0 is finite; its derivative 0.5 / sqrt(0) is not
    p = lagrad.trace(lambda x: lagrad.sum(lagrad.sqrt(x * 1.0)), np.zeros(2))
    sol = p.solve(np.array([0.0, 1.0]))
    assert float(sol.output) == 1.0
    return sol


def test_non_finite_multiplier_raises() -> None:
    sol = _sqrt_at_zero()
    with raises_exactly(NonFiniteError, match="multiplier"):
        sol.grad()
    with raises_exactly(NonFiniteError, match="multiplier"):
        sol.multipliers()
    with raises_exactly(NonFiniteError, match="not finite"):
        lagrad.grad(lambda x: lagrad.sqrt(x))(0.0)


def test_non_finite_multiplier_names_the_equation() -> None:
    sol = _sqrt_at_zero()
    with raises_exactly(NonFiniteError, match=r"sqrt\(") as info:
        sol.grad()
    assert "sqrt(" in info.value.equation


def test_non_finite_tangent_names_the_equation() -> None:
    sol = _sqrt_at_zero()
    with raises_exactly(NonFiniteError, match=r"sqrt\(") as info:
        sol.tangent(np.ones(2))
    assert "sqrt(" in info.value.equation
    with raises_exactly(NonFiniteError, match=r"sqrt\("):
        lagrad.jvp(lagrad.sqrt, (0.0,), (1.0,))


@pytest.mark.parametrize("method", ["spsolve", "dense"])
def test_non_finite_multiplier_with_assembled_solvers(method: str) -> None:
    sol = _sqrt_at_zero()
    with raises_exactly(NonFiniteError, match=r"sqrt\("):
        sol.grad(method=method)


# ----------------------------------------- control flow on traced values

@pytest.mark.parametrize(("what", "call"), [
    ("bool", lambda v: bool(v)),
    ("if", lambda v: 1 if v else 0),
    ("if v > 0", lambda v: 1 if v > 0 else 0),
    ("if v < 0", lambda v: 1 if v < 0 else 0),
    ("bool(v >= 0)", lambda v: bool(v >= 0)),
    ("if v <= 0", lambda v: 1 if v <= 0 else 0),
    ("if 0 < v", lambda v: 1 if 0 < v else 0),
    ("if arr < v", lambda v: 1 if np.zeros(()) < v else 0),
    ("if v == 0", lambda v: 1 if v == 0 else 0),
    ("v in [0.0]", lambda v: v in [0.0]),
    ("np.asarray", lambda v: np.asarray(v)),
    ("index by v", lambda v: lagrad.stack([v, v])[v]),
])
def test_traced_values_have_no_truth_value(what: str, call: Callable[[Any], Any]) -> None:
    p, (v,) = _program((), names="v")
    with raises_exactly(ProgramError, match="'v'"):
        call(v)


def test_python_control_flow_inside_grad() -> None:
    def f(x: Any) -> Any:
        return x if x > 0 else -x

    with raises_exactly(ProgramError, match="'x'"):
        lagrad.grad(f)(1.0)


# ------------------------------------------------------ unknown options

def test_unknown_linear_solve_method() -> None:
    p, (x,) = _program((2,), names="x")
    p.output(lagrad.sum(lagrad.sin(x)))
    sol = p.solve(np.ones(2))
    calls = [lambda: sol.grad(method="nope"), lambda: sol.multipliers(method="nope"),
             lambda: sol.tangent(np.ones(2), method="nope"),
             lambda: sol.adjoint_system().solve("nope"),
             lambda: sol.tangent_system(np.ones(2)).solve(method="nope")]
    for call in calls:
        with raises_exactly(OptionError, match="'nope'"):
            call()


def test_unknown_nonlinear_solve_method_for_a_cyclic_program() -> None:
    p, (x,) = _program((), names="x")
    z = p.unknown("z")
    p.define(z, lagrad.tanh(0.5 * z + x))
    p.output(z)
    with raises_exactly(OptionError, match="'nope'"):
        p.solve(0.3, method="nope")


def test_unknown_solve_method_for_an_acyclic_program() -> None:
    p, (x,) = _program((), names="x")
    p.output(x * 2.0)
    with raises_exactly(OptionError, match="'nope'"):
        p.solve(1.0, method="nope")


def test_unknown_jacobian_mode_and_bad_argnums() -> None:
    with raises_exactly(OptionError, match="'sideways'"):
        lagrad.jacobian(lagrad.sin, mode="sideways")
    with raises_exactly(OptionError, match="argnums 3"):
        lagrad.grad(lagrad.sin, argnums=3)(1.0)
    with raises_exactly(OptionError, match="repeated"):
        lagrad.grad(lambda x, y: x * y, argnums=(0, 0))(1.0, 2.0)


@pytest.mark.parametrize("name, call", [
    ("unroll", lambda f: lagrad.unroll(f, 3)),
    ("compare_unrolled", lambda f: lagrad.compare_unrolled(f, [np.ones(2)], [1, 2])),
    ("lagrad.optimize", lambda f: lagrad.optimize.minimize(f, np.ones(2))),
])
def test_a_function_where_a_program_is_expected(name: str, call: Callable[[Any], Any]) -> None:
    """Functions that take a Program say so, and how to make one, when given
    the Python function itself."""
    with raises_exactly(ProgramError, match=rf"^{re.escape(name)}: expected a lagrad.Program, "
                                            r"got function; trace the function first"):
        call(lambda x: lagrad.sum(x * x))


@pytest.mark.parametrize("name, call", [
    ("grad", lambda v: lagrad.grad(v)),
    ("value_and_grad", lambda v: lagrad.value_and_grad(v)),
    ("jvp", lambda v: lagrad.jvp(v, (1.0,), (1.0,))),
    ("vjp", lambda v: lagrad.vjp(v, 1.0)),
    ("linearize", lambda v: lagrad.linearize(v, 1.0)),
    ("jacobian", lambda v: lagrad.jacobian(v)),
    ("jacfwd", lambda v: lagrad.jacfwd(v)),
    ("jacrev", lambda v: lagrad.jacrev(v)),
    ("hessian", lambda v: lagrad.hessian(v)),
    ("hvp", lambda v: lagrad.hvp(v, (1.0,), (1.0,))),
    ("vmap", lambda v: lagrad.vmap(v)),
    ("jit", lambda v: lagrad.jit(v)),
    ("trace", lambda v: lagrad.trace(v, 1.0)),
    ("check_grad", lambda v: lagrad.check_grad(v, 1.0)),
    ("taylor_test", lambda v: lagrad.taylor_test(v, 1.0, 1.0)),
    ("custom_vjp", lambda v: lagrad.custom_vjp(v)),
    ("custom_jvp", lambda v: lagrad.custom_jvp(v)),
    ("fixed_point", lambda v: lagrad.grad(lambda x: lagrad.fixed_point(v, 0.0, x))(1.0)),
    ("root", lambda v: lagrad.grad(lambda x: lagrad.root(v, 0.0, x))(1.0)),
])
def test_a_value_where_a_function_is_expected(name: str, call: Callable[[Any], Any]) -> None:
    """Every transform given a value instead of a function names itself, at
    once, in an error that is a TypeError too (as JAX raises)."""
    with raises_exactly(lagrad.NotCallableError,
                        match=rf"^lagrad\.{name}: expected a function, got float 2\.5; "):
        call(2.5)
    assert issubclass(lagrad.NotCallableError, TypeError)
    assert issubclass(lagrad.NotCallableError, ProgramError)


@pytest.mark.parametrize("method", ["matvec", "residual", "split"])
def test_a_system_given_a_vector_of_another_size(method: str) -> None:
    """System.matvec/residual/split name themselves and the size they need
    (they reshaped, or broadcast, into a bare numpy ValueError)."""
    x = np.array([0.2, 0.3])
    sol = lagrad.trace(lambda v: lagrad.sum(v * v), x).solve(x)
    system = sol.adjoint_system()
    n = system.shape[0]
    with raises_exactly(ProgramError, match=rf"^System\.{method}: x has shape \(3,\); this "
                                            rf"system has n = {n} unknowns"):
        getattr(system, method)(np.ones(3))
    with raises_exactly(ProgramError, match=rf"^System\.{method}: x must be real numbers"):
        getattr(system, method)("abc")
    lam, _ = system.solve()
    assert system.residual(list(lam)) < 1e-14  # a list of the right size is fine


def test_a_misspelt_solve_option_is_named_as_such() -> None:
    """solve takes inputs by name too, so a misspelt option was reported as
    an unknown variable; the error lists the inputs and the options."""
    x = np.array([0.2, 0.3])
    p = lagrad.trace(lambda v: lagrad.sum(v * v), x)
    with raises_exactly(ProgramError, match=r"^solve: 'methd' is neither an input of the "
                                            r"program \(\['v'\]\) nor an option of solve "
                                            r"\(method, tol, maxiter, init, backward\)"):
        p.solve(x, methd="newton")
    assert p.solve(v=x).output == p.solve(x).output  # an input by name still works
