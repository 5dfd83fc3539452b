"""The baselines of lagrad.study.naive against reverse mode (sol.grad) and closed forms.

Forward mode and the path sum are exact up to rounding (they sum the same
products in another order), so they must agree with reverse mode to ~1e-12;
central differences to ~1e-6. On cyclic programs the path sum does not exist
(infinitely many paths) and must say so; on the unrolled (acyclic) version of
the same examples it must match the unrolled program's gradient.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from strategies import PROPERTY_SETTINGS, Case, cases

import lagrad
from lagrad.examples import EXAMPLES, Example, worked_example, worked_example_derivative
from lagrad.study.naive import (
    TooManyPathsError,
    count_paths,
    finite_difference_gradient,
    forward_gradient,
    path_sum_gradient,
)

EXACT = 1e-11  # forward mode, path sum: the same sums, another order
FD = 1e-6  # central differences, smooth programs
FD_CYCLIC = 2e-5  # ... through solves converged to 1e-12 only


def as_tuple(g: Any) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(a, dtype=float) for a in (g if isinstance(g, tuple) else (g,)))


def rel_error(got: Any, want: Any) -> float:
    gs, ws = as_tuple(got), as_tuple(want)
    assert [g.shape for g in gs] == [w.shape for w in ws]
    scale = max(max(float(np.max(np.abs(w))) for w in ws), 1e-300)
    return max(float(np.max(np.abs(g - w))) for g, w in zip(gs, ws)) / scale


def close(got: Any, want: Any, rtol: float, atol: float = 1e-12) -> bool:
    """Entrywise |got - want| <= atol + rtol * max |want| (exact zeros come out as
    rounding-sized numbers when summed in another order)."""
    gs, ws = as_tuple(got), as_tuple(want)
    scale = max(float(np.max(np.abs(w))) for w in ws)
    return all(bool(np.all(np.abs(g - w) <= atol + rtol * scale)) for g, w in zip(gs, ws))


def same_structure(got: Any, want: Any) -> None:
    assert isinstance(got, tuple) == isinstance(want, tuple)
    for g, w in zip(as_tuple(got), as_tuple(want)):
        assert np.shape(g) == np.shape(w)


# ----------------------------------------------------------- traced programs

def _two_inputs(x: Any, w: Any) -> Any:
    return lagrad.sum(lagrad.tanh(x @ w) * lagrad.sin(x @ w + 1.0))


def _diamonds(depth: int) -> Any:
    def f(x: Any) -> Any:
        for _ in range(depth):
            x = lagrad.sin(x) + lagrad.cos(x)
        return x
    return f


def _broadcast(a: Any, b: Any) -> Any:
    return lagrad.sum(lagrad.exp(0.5 * a[:, None] - b[None, :]) * b)


TRACED = {
    "scalar": (lambda x: lagrad.exp(lagrad.sin(x) * x) / (2.0 + lagrad.cos(x)), (0.7,)),
    "two inputs": (_two_inputs, (np.array([0.1, -0.4, 0.3]), np.arange(6.0).reshape(3, 2) / 7)),
    "diamonds": (_diamonds(6), (0.3,)),
    "broadcast": (_broadcast, (np.array([0.2, -0.1]), np.array([0.3, 0.5, -0.2]))),
    "unused input": (lambda x, y: lagrad.sum(x * x), (np.array([1.0, 2.0]), np.array([3.0]))),
}


@pytest.mark.parametrize("name", list(TRACED))
def test_baselines_agree_with_reverse_mode_on_traced_programs(name: str) -> None:
    fn, args = TRACED[name]
    program = lagrad.trace(fn, *args)
    reverse = program.solve(*args).grad()
    for got, tol in ((forward_gradient(program, *args), EXACT),
                     (path_sum_gradient(program, *args), EXACT),
                     (finite_difference_gradient(program, *args), FD)):
        same_structure(got, reverse)
        assert rel_error(got, reverse) <= tol


def test_unused_input_has_zero_gradient_in_every_baseline() -> None:
    fn, args = TRACED["unused input"]
    program = lagrad.trace(fn, *args)
    for method in (forward_gradient, path_sum_gradient, finite_difference_gradient):
        gx, gy = method(program, *args)
        np.testing.assert_allclose(gx, 2 * args[0], rtol=1e-6)
        assert np.all(gy == 0.0)


def test_output_that_is_an_input() -> None:
    program = lagrad.Program()
    x = program.input("x", (2,))
    program.output(x[1])
    x0 = np.array([3.0, 4.0])
    for method in (forward_gradient, path_sum_gradient, finite_difference_gradient):
        np.testing.assert_allclose(method(program, x0), [0.0, 1.0], atol=1e-9)


def test_worked_example_matches_the_closed_form() -> None:
    program = worked_example()
    want = worked_example_derivative(0.5)
    assert abs(forward_gradient(program, 0.5) - want) <= EXACT * abs(want)
    assert abs(path_sum_gradient(program, 0.5) - want) <= EXACT * abs(want)
    assert abs(finite_difference_gradient(program, 0.5) - want) <= FD * abs(want)
    # a -> b -> c and a -> c, then c -> d -> out and c -> e -> out
    assert path_sum_gradient(program, 0.5, return_paths=True)[1] == 4
    assert count_paths(program, 0.5) == 4


def test_named_inputs_and_solve_options_are_passed_on() -> None:
    fn, args = TRACED["two inputs"]
    program = lagrad.trace(fn, *args)
    want = program.solve(*args).grad()
    got = forward_gradient(program, w=args[1], x=args[0])
    assert rel_error(got, want) <= EXACT
    got = finite_difference_gradient(program, args[0], w=args[1], solve_options={"tol": 1e-14})
    assert rel_error(got, want) <= FD


# ----------------------------------------------------------- path counts

@pytest.mark.parametrize("depth", range(1, 11))
def test_diamond_paths_double_per_layer(depth: int) -> None:
    program = lagrad.trace(_diamonds(depth), 0.0)
    g, paths = path_sum_gradient(program, 0.3, return_paths=True)
    assert paths == 2 ** depth
    assert count_paths(program, 0.3) == 2 ** depth
    assert abs(g - program.solve(0.3).grad()) <= EXACT * abs(g)


def test_path_sum_refuses_past_max_paths() -> None:
    program = lagrad.trace(_diamonds(12), 0.0)
    with pytest.raises(TooManyPathsError, match="4096 paths, more than max_paths=4095") as err:
        path_sum_gradient(program, 0.3, max_paths=4095)
    assert err.value.paths == 4096
    assert isinstance(err.value, lagrad.LagradError)
    _, paths = path_sum_gradient(program, 0.3, max_paths=4096, return_paths=True)
    assert paths == 4096


@pytest.mark.parametrize("bad", [-1, 2.5, "10", True])
def test_path_sum_rejects_bad_max_paths(bad: Any) -> None:
    program = lagrad.trace(_diamonds(2), 0.0)
    with pytest.raises(lagrad.OptionError, match="max_paths"):
        path_sum_gradient(program, 0.3, max_paths=bad)


@pytest.mark.parametrize("eps", [0.0, -1e-6, float("nan"), float("inf")])
def test_finite_differences_reject_bad_eps(eps: float) -> None:
    program = lagrad.trace(_diamonds(2), 0.0)
    with pytest.raises(lagrad.OptionError, match="eps"):
        finite_difference_gradient(program, 0.3, eps=eps)


@pytest.mark.parametrize("method", [forward_gradient, finite_difference_gradient,
                                    path_sum_gradient])
def test_non_scalar_output_is_refused(method: Any) -> None:
    program = lagrad.trace(lambda x: lagrad.sin(x), np.zeros(2))
    with pytest.raises(lagrad.ProgramError, match="scalar output"):
        method(program, np.zeros(2))


# ----------------------------------------------------------- cyclic examples

SMALL = {"deq": {"n": 6, "d": 3}, "pagerank": {"n_nodes": 12, "n_edges": 40},
         "linear": {"n": 4}, "ridge": {"n_samples": 12, "n_features": 3},
         "mdp": {"n_states": 4}}


@functools.cache
def small_example(name: str) -> Example:
    return EXAMPLES[name](**SMALL[name])


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_forward_mode_and_fd_agree_on_cyclic_examples(name: str) -> None:
    ex = small_example(name)
    sol = ex.solve()
    reverse = sol.grad()
    forward = forward_gradient(ex.program, **ex.inputs, solve_options=ex.solve_options)
    same_structure(forward, reverse)
    assert rel_error(forward, reverse) <= EXACT
    options = {**ex.solve_options, "tol": 1e-14}
    fd = finite_difference_gradient(ex.program, **ex.inputs, solve_options=options)
    assert rel_error(fd, reverse) <= FD_CYCLIC
    # and all three against the example's independent reference
    lam = sol.multipliers()
    for key, ref in ex.reference.items():
        scale = float(np.max(np.abs(ref)))
        assert float(np.max(np.abs(np.asarray(lam[key]) - ref))) <= 1e-8 * scale


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_path_sum_raises_cycle_error_on_cyclic_examples(name: str) -> None:
    ex = small_example(name)
    with pytest.raises(lagrad.CycleError, match="infinitely many"):
        path_sum_gradient(ex.program, **ex.inputs, solve_options=ex.solve_options)
    with pytest.raises(lagrad.CycleError):
        count_paths(ex.program, **ex.inputs)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_path_sum_on_the_unrolled_examples(name: str) -> None:
    """unroll(program, K) is acyclic: the flat formula exists and must match."""
    ex = small_example(name)
    unrolled = lagrad.unroll(ex.program, 2)
    reverse = unrolled.solve(**ex.inputs).grad()
    g, paths = path_sum_gradient(unrolled, **ex.inputs, max_paths=200_000, return_paths=True)
    assert paths == count_paths(unrolled, **ex.inputs)
    same_structure(g, reverse)
    assert rel_error(g, reverse) <= EXACT
    assert rel_error(forward_gradient(unrolled, **ex.inputs), reverse) <= EXACT


# ----------------------------------------------------------- properties

@PROPERTY_SETTINGS
@given(cases(max_steps=6))
def test_baselines_agree_on_random_programs(case: Case) -> None:
    program = lagrad.trace(case.recipe.traceable(), *case.inputs)
    reverse = program.solve(*case.inputs).grad()
    assert close(forward_gradient(program, *case.inputs), reverse, 1e-10)
    assert close(finite_difference_gradient(program, *case.inputs), reverse, 1e-5, 1e-8)
    try:
        g, paths = path_sum_gradient(program, *case.inputs, max_paths=20_000,
                                     return_paths=True)
    except TooManyPathsError as err:
        assert err.paths > 20_000
        assert count_paths(program, *case.inputs) == err.paths
        return
    assert paths == count_paths(program, *case.inputs)
    assert close(g, reverse, 1e-10)
