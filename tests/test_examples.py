"""The examples of lagrad.examples against their independent reference gradients.

Every example is checked the same way: the gradient (reverse mode, every adjoint
method that applies) against the reference computed without lagrad, against
central finite differences of the forward solve, against forward mode, and
through the KKT residuals of the Lagrangian.
"""

from __future__ import annotations

import functools
import importlib
import time
from typing import Any

import numpy as np
import pytest

from lagrad.errors import ConvergenceError, NonFiniteError
from lagrad.examples import EXAMPLES, Example, pagerank

# the module (the package's attribute of that name is the function)
pagerank_module = importlib.import_module("lagrad.examples.pagerank")

NAMES = list(EXAMPLES)
# examples whose map z -> f(z) contracts, so that fixed-point iteration (forward)
# and the Neumann series (adjoint) converge; ridge is a root whose map
# w -> w - g(w) is expansive (the eigenvalues of X^T X are about n_samples)
CONTRACTIVE = ("deq", "pagerank", "linear", "mdp")
ADJOINT_METHODS = ("auto", "backsub", "splu", "gmres", "bicgstab", "lgmres", "fixed_point",
                   "dense", "spsolve", "lstsq")
FORWARD_METHODS = ("newton", "fixed_point", "anderson")
DENSE_METHODS = ("dense", "lstsq")  # O(size^3): for pagerank, run on a small graph
TOL = 1e-8


@functools.cache
def example(name: str) -> Example:
    return EXAMPLES[name]()


@functools.cache
def solution(name: str) -> Any:
    return example(name).solve()


def relative_error(got: Any, ref: Any) -> float:
    got, ref = np.asarray(got, dtype=float), np.asarray(ref, dtype=float)
    return float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-300))


def random_direction(ex: Example, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(np.shape(x)) for k, x in ex.inputs.items()}


def directional(ex: Example, grads: dict[str, Any], direction: dict[str, np.ndarray]) -> float:
    return float(sum(np.sum(np.asarray(grads[k]) * d) for k, d in direction.items()))


# ---------------------------------------------------------------- registry

def test_registry_lists_the_examples_in_order() -> None:
    assert NAMES == ["deq", "pagerank", "linear", "ridge", "mdp"]


@pytest.mark.parametrize("name", NAMES)
def test_example_record_is_consistent(name: str) -> None:
    ex = example(name)
    assert ex.name == name
    assert ex.description
    assert (EXAMPLES[name].__doc__ or "").strip()
    inputs = {v.name: v.shape for v in ex.program.inputs}
    assert set(ex.inputs) == set(inputs) == set(ex.reference)
    for k, x in ex.inputs.items():
        assert np.shape(x) == inputs[k] == np.shape(ex.reference[k])
    cyclic = [b for b in ex.program.blocks if b.cyclic]
    assert len(cyclic) == 1 and len(cyclic[0].unknowns) == 1


# ---------------------------------------------------------------- reverse mode

@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_reference(name: str, seed: int) -> None:
    ex = EXAMPLES[name](seed=seed)
    sol = ex.solve()
    grads = sol.grad()
    grads = grads if isinstance(grads, tuple) else (grads,)
    for v, g in zip(ex.program.inputs, grads):
        assert relative_error(g, ex.reference[v.name]) <= TOL, v.name
    assert ex.gradient_error(sol) <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_reference_discriminates(name: str) -> None:
    # the comparison can fail: another seed's reference is far from this gradient
    other = EXAMPLES[name](seed=1)
    sol = solution(name)
    lam = sol.multipliers()
    assert max(relative_error(lam[k], ref) for k, ref in other.reference.items()) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_central_differences(name: str) -> None:
    ex = example(name)
    direction = random_direction(ex)
    h = 1e-5

    def f(t: float) -> float:
        shifted = {k: x + t * direction[k] for k, x in ex.inputs.items()}
        return float(ex.program.solve(**shifted, **ex.solve_options, tol=1e-14).output)

    fd = (f(h) - f(-h)) / (2 * h)
    exact = directional(ex, solution(name).multipliers(), direction)
    assert fd == pytest.approx(exact, rel=1e-6)


def _adjoint_cases() -> list[Any]:
    return [(name, m) for name in NAMES for m in ADJOINT_METHODS
            if m != "fixed_point" or name in CONTRACTIVE]


@pytest.mark.parametrize(("name", "method"), _adjoint_cases())
def test_every_adjoint_method_matches_reference(name: str, method: str) -> None:
    if name == "pagerank" and method in DENSE_METHODS:
        ex = pagerank(n_nodes=40, n_edges=160)  # O(n^3) methods: a small graph
        sol = ex.solve()
    else:
        ex, sol = example(name), solution(name)
    assert ex.gradient_error(sol, method=method) <= TOL
    if method in ("splu", "gmres", "bicgstab", "lgmres", "fixed_point"):
        _, result = sol.adjoint_system().solve(method)
        (info,) = result.blocks  # the one cyclic block, solved as asked
        assert info.method == method
        assert info.residual <= 1e-10


def test_neumann_adjoint_refused_where_map_expands() -> None:
    with pytest.raises(ConvergenceError, match=r"block \d+ \(w\): fixed_point did not "):
        solution("ridge").multipliers(method="fixed_point")


@pytest.mark.parametrize("name", NAMES)
def test_kkt_residuals_vanish(name: str) -> None:
    sol = solution(name)
    primal, dual = sol.kkt_residuals()
    assert primal <= 1e-10
    assert dual <= 1e-10
    assert sol.lagrangian() == pytest.approx(float(sol.output), rel=1e-12, abs=1e-14)
    wrong = sol.multipliers().vector * (1 + 1e-3)
    assert sol.kkt_residuals(wrong).dL_dz > 1e-6


# ---------------------------------------------------------------- forward mode

@pytest.mark.parametrize("name", NAMES)
def test_forward_mode_matches_reverse(name: str) -> None:
    # pagerank has gathers and sparse products inside its cycle, whose JVP rules
    # once received no tangent at all (regression)
    ex = example(name)
    sol = solution(name)
    direction = random_direction(ex, seed=2)
    tangent = sol.tangent(direction)
    exact = directional(ex, sol.multipliers(), direction)
    assert float(tangent[ex.program.output_variable]) == pytest.approx(exact, rel=1e-10)


# ---------------------------------------------------------------- forward solves

def _forward_cases() -> list[Any]:
    return [(name, m) for name in NAMES for m in FORWARD_METHODS
            if m != "fixed_point" or name in CONTRACTIVE]


@pytest.mark.parametrize(("name", "method"), _forward_cases())
def test_every_forward_method_converges(name: str, method: str) -> None:
    ex = example(name)
    sol = ex.solve(method=method)
    (diag,) = sol.diagnostics.values()
    assert diag.method == method
    assert diag.converged
    unknown = sol.program.blocks[diag.number].unknowns[0]
    assert diag.residual <= 1e-12 * max(1.0, float(np.linalg.norm(sol[unknown])))
    assert float(sol.output) == pytest.approx(float(solution(name).output), rel=1e-10)
    assert ex.gradient_error(sol) <= TOL


def test_fixed_point_iteration_refused_on_ridge() -> None:
    # w <- w - (X^T (X w - y) + alpha w) expands: the solve must fail, naming the block
    # (regression: the iterate used to be accepted once ||w|| overflowed to inf)
    with pytest.raises((ConvergenceError, NonFiniteError), match=r"block \d+ \(w\)"):
        example("ridge").solve(method="fixed_point")


# ---------------------------------------------------------------- pagerank at scale

def test_pagerank_scales_without_dense_matrices() -> None:
    n, m = 2000, 20_000
    ex = pagerank(n_nodes=n, n_edges=m)
    t0 = time.perf_counter()
    sol = ex.solve()
    error = ex.gradient_error(sol)
    seconds = time.perf_counter() - t0
    assert error <= TOL
    assert seconds < 5.0
    (info,) = sol.adjoint_diagnostics  # block too large to factorize: matrix-free
    assert info.method in ("bicgstab", "gmres", "fixed_point")
    assert not info.reused_factorization
    # no dense n x n or m x n operator anywhere: variables, constants, parameters
    assert max(v.size for v in ex.program.variables) == m
    for eq in ex.program.equations:
        for a in eq.args:
            assert isinstance(a, int) or np.size(a) <= m
        for value in eq.params.values():
            assert getattr(value, "nnz", np.size(value)) <= m


def test_pagerank_references_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    direct = pagerank().reference  # sparse LU
    monkeypatch.setattr(pagerank_module, "DIRECT_REFERENCE_NODES", 0)
    iterated = pagerank().reference  # Neumann iteration to rounding
    for k, ref in direct.items():
        assert relative_error(iterated[k], ref) <= 1e-12


def test_pagerank_rank_is_a_distribution() -> None:
    ex, sol = example("pagerank"), solution("pagerank")
    r = sol["r"]
    assert np.all(r > 0)
    assert float(np.sum(r)) == pytest.approx(1.0, rel=1e-12)  # sum(v) = 1, P stochastic
    assert ex.inputs["v"].sum() == pytest.approx(1.0)


def test_pagerank_needs_a_ring() -> None:
    with pytest.raises(ValueError, match="n_edges=5 must be at least n_nodes=10"):
        pagerank(n_nodes=10, n_edges=5)

