"""Properties of random acyclic programs (hypothesis; strategies in strategies.py).

Every derivative is checked against an independent route to the same number:
reverse mode (back-substitution on (I - J)^T lambda = e_n) against forward mode
(the tangent system (I - J) zdot = e) against central finite differences of
``program.solve``; the three linear solvers against each other; the KKT
conditions of the Lagrangian; the dot-product identity between the two
systems; and, for long scalar programs that the schedule batches, a slow
per-equation interpreter written here with the ``math`` module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import PROPERTY_SETTINGS, SCALAR_OPS, Case, Recipe, cases, scalar_recipe

import lagrad
from lagrad.compile import compile_program

METHODS = ("backsub", "spsolve", "dense")
FD_STEP = 1e-6


# ----------------------------------------------------------------- helpers

def as_tuple(grads: Any, n: int) -> tuple[np.ndarray, ...]:
    """``Solution.grad()`` gives one array for one input, a tuple for several."""
    if n == 1:
        grads = (grads,)
    assert isinstance(grads, tuple) and len(grads) == n
    return tuple(np.asarray(g, dtype=float) for g in grads)


def finite_difference_gradient(program: lagrad.Program, inputs: Sequence[np.ndarray],
                               eps: float = FD_STEP) -> tuple[np.ndarray, ...]:
    """Central differences of ``program.solve(...).output``, entry by entry."""
    grads = []
    for k, x in enumerate(inputs):
        g = np.zeros(np.shape(x))
        for pos in np.ndindex(np.shape(x)):
            e = np.zeros(np.shape(x))
            e[pos] = eps
            plus = [*inputs[:k], x + e, *inputs[k + 1:]]
            minus = [*inputs[:k], x - e, *inputs[k + 1:]]
            g[pos] = (float(program.solve(*plus).output)
                      - float(program.solve(*minus).output)) / (2 * eps)
        grads.append(g)
    return tuple(grads)


def forward_mode_gradient(sol: lagrad.Solution) -> tuple[np.ndarray, ...]:
    """The gradient from one tangent solve per input entry (unit directions)."""
    inputs = sol.program.inputs
    out = sol.program.output_variable
    grads = []
    for v in inputs:
        g = np.zeros(v.shape)
        for pos in np.ndindex(v.shape):
            e = np.zeros(v.shape)
            e[pos] = 1.0
            g[pos] = float(sol.tangent({v: e})[out])
        grads.append(g)
    return tuple(grads)


def assert_same_grads(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray],
                      rtol: float) -> None:
    """Entrywise relative agreement, with a floor at rtol times the largest entry."""
    assert len(actual) == len(expected)
    scale = max([1.0] + [float(np.max(np.abs(g), initial=0.0)) for g in expected])
    for a, e in zip(actual, expected):
        assert np.shape(a) == np.shape(e)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * scale)


def assert_vectors_close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-10) -> None:
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


def random_direction(case: Case, seed: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(np.shape(x)) for x in case.inputs)


def solved(case: Case) -> tuple[lagrad.Program, lagrad.Solution]:
    program = case.recipe.build()
    return program, program.solve(*case.inputs)


# ------------------------------------------------------ forward evaluation

@PROPERTY_SETTINGS
@given(cases())
def test_builder_trace_and_numpy_agree(case: Case) -> None:
    """The builder and lagrad.trace record the same program, and its values
    are those of running the recipe on plain numpy arrays."""
    traced = lagrad.trace(case.recipe.traceable(), *case.inputs)
    program, variables = case.recipe.build_with_variables([v.name for v in traced.inputs])
    sol = program.solve(*case.inputs)
    assert str(traced) == str(program)
    numpy_values = case.recipe.run(*case.inputs)
    assert len(numpy_values) == len(variables)
    for v, value in zip(variables, numpy_values):
        assert v.shape == np.shape(value)
        np.testing.assert_allclose(sol[v], value, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(sol.output, case.recipe(*case.inputs), rtol=1e-13, atol=1e-13)
    traced_sol = traced.solve(*case.inputs)
    assert float(traced_sol.output) == float(sol.output)
    n = case.recipe.n_inputs
    assert_same_grads(as_tuple(traced_sol.grad(), n), as_tuple(sol.grad(), n), rtol=1e-14)


# ----------------------------------------------------------- gradients

@PROPERTY_SETTINGS
@given(cases())
def test_reverse_equals_forward_equals_finite_differences(case: Case) -> None:
    program, sol = solved(case)
    n = case.recipe.n_inputs
    reverse = as_tuple(sol.grad(), n)
    for g, x in zip(reverse, case.inputs):
        assert g.shape == x.shape
    forward = forward_mode_gradient(sol)
    assert_same_grads(forward, reverse, rtol=1e-10)
    fd = finite_difference_gradient(program, case.inputs)
    assert_same_grads(reverse, fd, rtol=1e-6)


@PROPERTY_SETTINGS
@given(cases())
def test_tangent_along_random_direction_is_gradient_dot_direction(case: Case) -> None:
    _, sol = solved(case)
    d = random_direction(case)
    reverse = as_tuple(sol.grad(), case.recipe.n_inputs)
    expected = sum(float(np.sum(g * v)) for g, v in zip(reverse, d))
    direction: Any = d[0] if len(d) == 1 else d
    got = float(sol.tangent(direction)[sol.program.output_variable])
    scale = 1.0 + sum(float(np.sum(np.abs(g * v))) for g, v in zip(reverse, d))
    assert abs(got - expected) <= 1e-10 * scale


@PROPERTY_SETTINGS
@given(cases())
def test_functional_api_agrees_with_solution(case: Case) -> None:
    _, sol = solved(case)
    n = case.recipe.n_inputs
    fn = case.recipe.traceable()
    value, grads = lagrad.value_and_grad(fn, argnums=tuple(range(n)))(*case.inputs)
    np.testing.assert_allclose(value, sol.output, rtol=1e-14, atol=1e-14)
    assert isinstance(grads, tuple) and len(grads) == n  # argnums is a tuple
    assert_same_grads(tuple(np.asarray(g) for g in grads), as_tuple(sol.grad(), n), rtol=1e-12)
    for k in range(n):  # one argument at a time: the others become constants
        g_k = lagrad.grad(fn, argnums=k)(*case.inputs)
        assert_same_grads((np.asarray(g_k),), (as_tuple(sol.grad(), n)[k],), rtol=1e-12)


# ------------------------------------------------------- linear systems

def _systems(case: Case, sol: lagrad.Solution) -> dict[str, lagrad.System]:
    d = random_direction(case, seed=2)
    return {"adjoint": sol.adjoint_system(),
            "tangent": sol.tangent_system(d[0] if len(d) == 1 else d)}


@PROPERTY_SETTINGS
@given(cases(), st.sampled_from(["adjoint", "tangent"]))
def test_all_solve_methods_agree_and_solve_the_system(case: Case, kind: str) -> None:
    _, sol = solved(case)
    system = _systems(case, sol)[kind]
    results = {m: system.solve(method=m) for m in METHODS}
    reference = results["backsub"].x
    assert reference.shape == system.rhs.shape
    for method, (x, info) in results.items():
        assert info.method == method
        assert_vectors_close(x, reference, rtol=1e-10)
        # the solution solves the assembled system and the matrix-free one
        assert_vectors_close(system.matrix @ x, system.rhs, rtol=1e-10)
        assert info.residual <= 1e-10
        assert system.residual(x) <= 1e-10
    if kind == "adjoint":  # lambda on the inputs is the gradient
        grads = as_tuple(sol.grad(), case.recipe.n_inputs)
        for v, g in zip(sol.program.inputs, grads):
            assert_vectors_close(reference[system.index[v]], g.ravel(), rtol=1e-14)
        for method in METHODS:
            assert_same_grads(as_tuple(sol.grad(method=method), case.recipe.n_inputs), grads,
                              rtol=1e-10)


@PROPERTY_SETTINGS
@given(cases())
def test_dot_product_identity(case: Case) -> None:
    """<(I - J) v, w> == <v, (I - J)^T w>, assembled and matrix-free."""
    _, sol = solved(case)
    systems = _systems(case, sol)
    adjoint, tangent = systems["adjoint"], systems["tangent"]
    n = adjoint.rhs.size
    assert adjoint.matrix.shape == tangent.matrix.shape == (n, n)
    assert abs(adjoint.matrix - tangent.matrix.T).max() == 0.0
    rng = np.random.default_rng(3)
    v, w = rng.standard_normal(n), rng.standard_normal(n)
    a_v = tangent.matrix @ v
    at_w = adjoint.matrix @ w
    assert_vectors_close(tangent.matvec(v), a_v, rtol=1e-12)
    assert_vectors_close(adjoint.matvec(w), at_w, rtol=1e-12)
    scale = float(np.abs(tangent.matrix).sum()) * float(np.max(np.abs(v)) * np.max(np.abs(w)))
    for lhs, rhs in [(a_v @ w, v @ at_w), (tangent.matvec(v) @ w, v @ adjoint.matvec(w))]:
        assert abs(lhs - rhs) <= 1e-12 * scale


@PROPERTY_SETTINGS
@given(cases())
def test_jacobian_is_strictly_lower_triangular_on_the_graph(case: Case) -> None:
    """Variables are numbered in creation order, which is topological: J is
    strictly lower triangular, non-zero only on edges of the graph."""
    program, sol = solved(case)
    J = sol.adjoint_system().jacobian
    assert J.shape == (sol.values.vector.size,) * 2
    assert sp.triu(J).count_nonzero() == 0
    index = sol.adjoint_system().index
    edges = set(program.graph.edges)
    rows, cols = J.nonzero()
    for r, c in zip(rows, cols):
        assert (index.owner(c).index, index.owner(r).index) in edges


# ------------------------------------------------------- the Lagrangian

@PROPERTY_SETTINGS
@given(cases(), st.integers(0, 10 ** 6))
def test_kkt_residuals_vanish_and_detect_perturbed_multipliers(case: Case, pick: int) -> None:
    _, sol = solved(case)
    primal, dual = sol.kkt_residuals()
    assert primal <= 1e-10 and dual <= 1e-10
    lam = sol.multipliers().vector
    # Perturbing lambda_j by delta changes (I - J)^T lambda by delta times row j
    # of I - J, whose diagonal entry is 1: the dual residual is >= delta / (1 + |lam'|).
    j = pick % lam.size
    delta = 1e-3 * (1.0 + float(np.linalg.norm(lam)))
    perturbed = lam.copy()
    perturbed[j] += delta
    primal_p, dual_p = sol.kkt_residuals(perturbed)
    assert primal_p <= 1e-10  # the constraints do not depend on lambda
    assert dual_p >= 0.5e-3
    # a random perturbation of every multiplier is detected as well
    rng = np.random.default_rng(pick)
    noisy = lam + delta * rng.standard_normal(lam.size)
    assert sol.kkt_residuals(noisy).dL_dz >= 1e-6


@PROPERTY_SETTINGS
@given(cases())
def test_lagrangian_equals_output_at_the_solution(case: Case) -> None:
    program, sol = solved(case)
    out = float(sol.output)
    tol = 1e-12 * (1.0 + abs(out))
    assert abs(sol.lagrangian() - out) <= tol
    # with the constraints satisfied, L does not depend on lambda at all
    rng = np.random.default_rng(4)
    lam = rng.standard_normal(sol.multipliers().vector.size)
    assert abs(sol.lagrangian(lam) - out) <= tol
    assert abs(program.lagrangian(sol.values, lam) - out) <= tol
    assert abs(program.lagrangian(sol.values.vector, sol.multipliers()) - out) <= tol


def _lagrangian_slope(program: lagrad.Program, z: np.ndarray, lam: np.ndarray, v: np.ndarray,
                      h: float = 1e-6) -> float:
    """Central difference of program.lagrangian(z, lam) along v."""
    return (program.lagrangian(z + h * v, lam) - program.lagrangian(z - h * v, lam)) / (2 * h)


@PROPERTY_SETTINGS
@given(cases(), st.integers(0, 10 ** 6))
def test_lagrangian_gradient_in_z_is_the_dual_residual(case: Case, seed: int) -> None:
    """Central differences of program.lagrangian along a direction v of the
    defined variables equal (e_n - (I - J)^T lambda) . v for any lambda: zero at
    the multipliers (stationarity), not zero for perturbed ones.

    program.lagrangian takes the inputs' values from z (x = z_input, so the
    input constraints z_i = x_i hold at every point): along an input direction
    its slope is dL/dx = lambda_input . v, the gradient (docs/lagrangian.md, section 2).
    """
    program, sol = solved(case)
    adjoint = sol.adjoint_system()
    z = sol.values.vector
    is_input = np.zeros(z.size, dtype=bool)
    for x in program.inputs:
        is_input[adjoint.index[x]] = True
    rng = np.random.default_rng(seed)
    v = np.where(is_input, 0.0, rng.standard_normal(z.size))
    lam_star = sol.multipliers().vector
    J = adjoint.jacobian
    for lam in (lam_star, lam_star + rng.standard_normal(z.size)):
        exact = float((adjoint.rhs - adjoint.matrix @ lam) @ v)
        scale = 1.0 + float(np.abs(lam) @ (abs(J) @ np.abs(v)) + np.abs(lam) @ np.abs(v))
        assert abs(_lagrangian_slope(program, z, lam, v) - exact) <= 1e-6 * scale
    assert abs(_lagrangian_slope(program, z, lam_star, v)) <= \
        1e-6 * (1.0 + float(np.abs(lam_star) @ (abs(J) @ np.abs(v))))
    # along the inputs: the gradient
    u = np.where(is_input, rng.standard_normal(z.size), 0.0)
    grad_dot_u = float(lam_star @ u)
    scale = 1.0 + float(np.abs(lam_star) @ np.abs(u))
    assert abs(_lagrangian_slope(program, z, lam_star, u) - grad_dot_u) <= 1e-6 * scale


# ------------------------------------------- long scalar programs, batched

_REF_VALUE = {
    "identity": lambda x: x, "neg": lambda x: -x, "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y,
    "pow": lambda x, y: x ** y, "maximum": max, "minimum": min, "exp": math.exp,
    "log": math.log, "sin": math.sin, "cos": math.cos, "tanh": math.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + math.exp(-x)), "relu": lambda x: max(x, 0.0),
    "sqrt": math.sqrt, "abs": abs,
}


def _ref_partials(name: str, args: Sequence[float], ans: float) -> tuple[float, ...]:
    """d f / d arg_k for the scalar reference, written from calculus."""
    x = args[0]
    y = args[1] if len(args) > 1 else 0.0
    table: dict[str, Any] = {
        "identity": lambda: (1.0,), "neg": lambda: (-1.0,), "add": lambda: (1.0, 1.0),
        "sub": lambda: (1.0, -1.0), "mul": lambda: (y, x), "div": lambda: (1 / y, -x / y ** 2),
        "pow": lambda: (y * x ** (y - 1), ans * math.log(x) if x > 0 else math.nan),
        "maximum": lambda: (1.0, 0.0) if x > y else (0.0, 1.0),
        "minimum": lambda: (1.0, 0.0) if x < y else (0.0, 1.0),
        "exp": lambda: (math.exp(x),), "log": lambda: (1 / x,), "sin": lambda: (math.cos(x),),
        "cos": lambda: (-math.sin(x),), "tanh": lambda: (1 / math.cosh(x) ** 2,),
        "sigmoid": lambda: (math.exp(-x) / (1 + math.exp(-x)) ** 2,),
        "relu": lambda: (1.0 if x > 0 else 0.0,), "sqrt": lambda: (0.5 / math.sqrt(x),),
        "abs": lambda: (1.0 if x > 0 else -1.0,),
    }
    return table[name]()


def reference_value_and_grad(program: lagrad.Program, inputs: Sequence[float]
                             ) -> tuple[float, list[float]]:
    """One equation at a time, in Python floats: the slow reference for scalar
    programs (forward pass, then reverse accumulation over the equations)."""
    z: dict[int, float] = {v.index: float(x) for v, x in zip(program.inputs, inputs)}
    records = []
    for eq in sorted(program.equations, key=lambda e: e.out):  # creation order: topological
        assert program.variables[eq.out].shape == ()
        args = [z[a] if isinstance(a, int) else float(a) for a in eq.args]
        z[eq.out] = float(_REF_VALUE[eq.primitive.name](*args))
        records.append((eq, args))
    out = program.output_variable.index
    lam = dict.fromkeys(z, 0.0)
    lam[out] = 1.0
    for eq, args in reversed(records):
        partials = _ref_partials(eq.primitive.name, args, z[eq.out])
        for k, a in enumerate(eq.args):
            if isinstance(a, int):  # (a nan partial may only belong to a constant)
                lam[a] += lam[eq.out] * partials[k]
    return z[out], [lam[v.index] for v in program.inputs]


NARROW_OPS = ("tanh", "sin", "mul", "add", "scale", "square", "sub")


@pytest.mark.parametrize("ops", [SCALAR_OPS, NARROW_OPS], ids=["all-scalar-ops", "narrow"])
@settings(PROPERTY_SETTINGS, max_examples=8)
@given(seed=st.integers(0, 2 ** 31))
def test_scalar_programs_batched_match_per_equation_reference(ops: Sequence[str],
                                                              seed: int) -> None:
    """200 random scalar equations of mixed primitives with random parents:
    the schedule runs same-primitive, same-level equations as one batched step,
    and every gradient must equal the one-equation-at-a-time reference."""
    program = scalar_recipe(seed, 200, ops=ops).build()
    rng = np.random.default_rng(seed)
    inputs = [float(x) for x in rng.uniform(-1.0, 1.0, len(program.inputs))]
    assert len(program.equations) >= 200
    steps = compile_program(program).steps
    # the test must exercise batching: some steps run several equations
    assert max(len(s.equations) for s in steps) >= 4
    sol = program.solve(*inputs)
    value, grads = reference_value_and_grad(program, inputs)
    assert float(sol.output) == pytest.approx(value, rel=1e-12, abs=1e-12)
    scale = max(1.0, max(abs(g) for g in grads))
    for method in METHODS:
        got = as_tuple(sol.grad(method=method), len(inputs))
        np.testing.assert_allclose([float(g) for g in got], grads, rtol=1e-10,
                                   atol=1e-10 * scale)
    forward = [float(g) for g in forward_mode_gradient(sol)]  # one tangent solve per input
    np.testing.assert_allclose(forward, grads, rtol=1e-10, atol=1e-10 * scale)
    primal, dual = sol.kkt_residuals()
    assert primal <= 1e-12 and dual <= 1e-10


def test_scalar_reference_is_itself_right() -> None:
    """The per-equation reference against central differences (so that it can
    serve as a reference), on one long program."""
    recipe = scalar_recipe(7, 200, ops=SCALAR_OPS)
    program = recipe.build()
    x = [0.3, -0.2, 0.7, -0.9, 0.1]
    _, grads = reference_value_and_grad(program, x)
    fd = finite_difference_gradient(program, [np.asarray(v) for v in x])
    np.testing.assert_allclose(grads, [float(g) for g in fd], rtol=1e-6,
                               atol=1e-6 * max(1.0, max(map(abs, grads))))


# ----------------------------------------------------- the checks can fail

def test_gradient_comparison_detects_a_wrong_gradient() -> None:
    """assert_same_grads and the finite differences above are sharp enough to
    notice a gradient off by one part in 10^5."""
    recipe: Recipe = scalar_recipe(3, 40, n_inputs=2, ops=SCALAR_OPS)
    program = recipe.build()
    x = [np.asarray(0.4), np.asarray(-0.3)]
    g = as_tuple(program.solve(*x).grad(), 2)
    fd = finite_difference_gradient(program, x)
    assert_same_grads(g, fd, rtol=1e-6)
    k = int(np.argmax([abs(float(gk)) for gk in g]))
    wrong = tuple(gk * (1 + 1e-5) if i == k else gk for i, gk in enumerate(g))
    with pytest.raises(AssertionError):
        assert_same_grads(wrong, fd, rtol=1e-6)


# ------------------------------------------------------ 0-d reductions
# (regressions: logsumexp(0-d, keepdims=True) once computed shape (1,), and
# sum over axis 0 of a 0-d array failed in solve with numpy's AxisError)

@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("name", ["sum", "mean", "logsumexp"])
def test_reductions_of_0d_follow_numpy(name: str, axis: Any, keepdims: bool) -> None:
    op = getattr(lagrad, name)
    p = lagrad.Program()
    x = p.input("x")
    y = op(x, axis=axis, keepdims=keepdims)
    expected = np.sum(np.array(0.5), axis=axis, keepdims=keepdims)
    assert y.shape == np.shape(expected) == ()
    value = op(np.array(0.5), axis=axis, keepdims=keepdims)
    assert np.shape(value) == y.shape
    p.output(y * 3.0)
    sol = p.solve(0.5)
    assert float(sol[y]) == pytest.approx(float(value), rel=1e-15)
    assert float(sol.grad()) == pytest.approx(3.0, rel=1e-15)


def test_softmax_of_0d_is_one_with_zero_gradient() -> None:
    assert float(lagrad.grad(lambda x: lagrad.softmax(x) * 2.0)(0.5)) == 0.0
    p = lagrad.trace(lambda x: lagrad.softmax(x), 0.5)
    assert float(p.solve(0.3).output) == pytest.approx(1.0, rel=1e-15)
