"""Property: wrong input to the public API raises a LagradError, never a bare
builtin exception, and never changes the caller's arrays (issue 12).

Random small programs come from :mod:`tests.strategies`; the wrong inputs
from :data:`junk`. A call may also succeed (a junk value can be acceptable,
``tol=3``): only what escapes is checked.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import Case, cases

import lagrad
from lagrad import LagradError

ComplexWarning = getattr(np, "exceptions", np).ComplexWarning  # numpy < 1.25: np

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_ARRAYS = st.sampled_from([
    np.zeros(0), np.ones(2), np.ones((2, 3)), np.ones((3, 2, 1)), np.array([1 + 2j]),
    np.array(["a", "b"]), np.array([None, 1.0], dtype=object), np.array([True, False]),
    np.full(3, np.nan), np.arange(4), np.ones((1, 3)), np.array(1.5),
])
leaf_junk: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10 ** 20), st.floats(allow_nan=True),
    st.complex_numbers(max_magnitude=10.0), st.text(max_size=6), st.binary(max_size=3),
    _ARRAYS, st.just(object()), st.just(slice(0, 1)), st.just(Ellipsis), st.just(lagrad.sin),
)
"""Wrong values that are not containers (lists, tuples and dicts of arguments
are traced as containers of leaves, and handed to the user's function as such)."""
junk: st.SearchStrategy[Any] = st.one_of(
    leaf_junk, st.lists(st.floats(-2, 2), max_size=4), st.tuples(st.integers(0, 3)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
"""Values that no argument of lagrad's API expects (or not in that place)."""


def _copies(values: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every numpy array among ``values`` (nested in lists, tuples, dicts),
    paired with a copy of it."""
    found: list[tuple[np.ndarray, np.ndarray]] = []

    def walk(v: Any) -> None:
        if isinstance(v, np.ndarray):
            found.append((v, copy.deepcopy(v)))
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
    walk(values)
    return found


def check(call: Callable[[], Any], *passed: Any) -> None:
    """Run ``call``: it may return or raise a LagradError, nothing else, and
    the arrays in ``passed`` must be unchanged. A complex value where a real
    one is expected loses its imaginary part with numpy's ComplexWarning (as
    documented): expected here, so not shown."""
    kept = _copies(passed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ComplexWarning)
            call()
    except LagradError:
        pass
    for arr, before in kept:
        same = np.array_equal(arr, before, equal_nan=arr.dtype.kind in "fc") \
            if arr.dtype.kind in "biufc" else bool((arr == before).all()) if arr.size else True
        assert same and arr.shape == before.shape, f"the caller's array changed: {before!r}"


def _solved(case: Case) -> tuple[lagrad.Program, lagrad.Solution]:
    program = case.recipe.build()
    return program, program.solve(*case.inputs)


def _input_or_junk(case: Case) -> st.SearchStrategy[list[Any]]:
    """Positional inputs: right, wrong or missing, in any number."""
    right = [st.just(x.copy()) for x in case.inputs]
    one = st.one_of(*right, junk) if right else junk
    return st.lists(one, max_size=len(case.inputs) + 2)


# ---------------------------------------------------------------- program.solve

@SETTINGS
@given(case=cases(max_steps=4), data=st.data())
def test_solve_with_wrong_inputs(case: Case, data: st.DataObject) -> None:
    program = case.recipe.build()
    args = data.draw(_input_or_junk(case))
    named = data.draw(st.dictionaries(st.sampled_from(["x0", "x1", "nope", "v3", "init"]),
                                      junk, max_size=2))
    check(lambda: program.solve(*args, **named), args, named)


@SETTINGS
@given(case=cases(max_steps=4), method=junk, tol=junk, maxiter=junk, init=junk)
def test_solve_with_wrong_options(case: Case, method: Any, tol: Any, maxiter: Any,
                                  init: Any) -> None:
    program = case.recipe.build()
    check(lambda: program.solve(*case.inputs, method=method, tol=tol, maxiter=maxiter,
                                init=init), case.inputs, init)


# ------------------------------------------------------------ solution methods

@SETTINGS
@given(case=cases(max_steps=4), method=st.one_of(st.text(max_size=8), junk),
       options=st.dictionaries(st.sampled_from(["tol", "maxiter", "preconditioner", "bogus"]),
                               junk, max_size=3))
def test_grad_and_multipliers_with_wrong_options(case: Case, method: Any,
                                                 options: dict[str, Any]) -> None:
    _, sol = _solved(case)
    check(lambda: sol.grad(method=method, **options), options)
    check(lambda: sol.multipliers(method=method, **options), options)
    check(lambda: sol.adjoint_system().solve(method=method, **options), options)


@SETTINGS
@given(case=cases(max_steps=4), key=junk)
def test_indexing_a_solution_with_junk(case: Case, key: Any) -> None:
    _, sol = _solved(case)
    check(lambda: sol[key], key)
    check(lambda: sol.values[key], key)


@SETTINGS
@given(case=cases(max_steps=4), data=st.data())
def test_tangent_with_wrong_directions(case: Case, data: st.DataObject) -> None:
    program, sol = _solved(case)
    names = [v.name for v in program.inputs] + ["nope", "v3"]
    direction = data.draw(st.one_of(
        junk, _input_or_junk(case), _input_or_junk(case).map(tuple),
        st.dictionaries(st.one_of(st.sampled_from(names), st.integers(), st.none()), junk,
                        max_size=2)))
    check(lambda: sol.tangent(direction), direction)
    check(lambda: sol.tangent_system(direction), direction)


@SETTINGS
@given(case=cases(max_steps=4), values=junk, multipliers=junk)
def test_lagrangian_with_wrong_shapes(case: Case, values: Any, multipliers: Any) -> None:
    program, sol = _solved(case)
    check(lambda: program.lagrangian(values, multipliers), values, multipliers)
    check(lambda: program.lagrangian(sol.z, multipliers), multipliers)
    check(lambda: sol.lagrangian(multipliers), multipliers)
    check(lambda: sol.kkt_residuals(multipliers), multipliers)


@SETTINGS
@given(case=cases(max_steps=4), cotangent=junk)
def test_adjoint_system_with_wrong_cotangents(case: Case, cotangent: Any) -> None:
    _, sol = _solved(case)
    check(lambda: sol.adjoint_system(cotangent), cotangent)


# -------------------------------------------------------------- functional API

@SETTINGS
@given(case=cases(max_steps=4), argnums=junk, data=st.data())
def test_grad_with_wrong_argnums_and_arguments(case: Case, argnums: Any,
                                               data: st.DataObject) -> None:
    # every argument traced, as many as the function takes: a constant argument
    # or a missing one reaches the user's function itself, whose errors are its own.
    # So does None: a pytree without leaves, handed to the function as it is (as in JAX)
    n = len(case.inputs)
    leaf = leaf_junk.filter(lambda v: v is not None)
    args = data.draw(st.lists(st.one_of(leaf, *[st.just(x.copy()) for x in case.inputs]),
                              min_size=n, max_size=n))
    every = tuple(range(n))
    check(lambda: lagrad.grad(case.recipe, argnums=argnums)(*case.inputs), case.inputs)
    check(lambda: lagrad.grad(case.recipe, argnums=every)(*args), args)
    check(lambda: lagrad.value_and_grad(case.recipe, argnums=every)(*args), args)


@SETTINGS
@given(case=cases(max_steps=4), mode=junk, argnums=junk)
def test_jacobian_with_wrong_mode(case: Case, mode: Any, argnums: Any) -> None:
    check(lambda: lagrad.jacobian(case.recipe, mode=mode)(*case.inputs), case.inputs)
    check(lambda: lagrad.jacobian(case.recipe, argnums=argnums)(*case.inputs), case.inputs)


@SETTINGS
@given(case=cases(max_steps=4), tangents=st.lists(junk, max_size=4), cotangent=junk)
def test_jvp_and_vjp_with_wrong_tangents(case: Case, tangents: list[Any],
                                         cotangent: Any) -> None:
    check(lambda: lagrad.jvp(case.recipe, case.inputs, tangents), case.inputs, tangents)

    def pull() -> Any:
        _, fn = lagrad.vjp(case.recipe, *case.inputs)
        return fn(cotangent)
    check(pull, case.inputs, cotangent)


@pytest.mark.parametrize("fn", [lambda x: x, lambda x: "abc", lambda x: None,
                                lambda x: 1j * x, lambda x: [x, x], lambda x: {"a": x}])
def test_functions_returning_odd_things(fn: Callable[[Any], Any]) -> None:
    x = np.ones(3)
    check(lambda: lagrad.grad(fn)(x), x)
    check(lambda: lagrad.jacobian(fn)(x), x)
