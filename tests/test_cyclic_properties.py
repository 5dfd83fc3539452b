"""Properties of random cyclic programs (hypothesis; strategies in cyclic_strategies.py).

Random sparse contractive maps with random nonlinearities, one to three cyclic
blocks (single unknowns, two coupled unknowns, root constraints, scalar
unknowns) feeding each other, with acyclic pre-processing of the inputs and
post-processing of the block outputs. Every number is checked against an
independent route to it:

* values: lagrad's Newton / fixed-point / Anderson solves against each other
  and against a plain numpy solve of the same equations;
* multipliers and gradients: every adjoint method against a dense numpy solve
  of the assembled (I - J)^T, against central finite differences of
  ``program.solve`` (tol=1e-13), and against forward mode (the tangent system);
* the KKT conditions of the Lagrangian; the systems' own residuals
  (matrix @ x == rhs); the dot-product identity between the two systems;
* the same equations written with lagrad.fixed_point / lagrad.root (nested for
  coupled blocks) under lagrad.grad / jvp.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from cyclic_strategies import CYCLIC_SETTINGS, CyclicCase, cyclic_cases
from hypothesis import Phase, given, settings

import lagrad

DIRECT = ("auto", "backsub", "splu", "lstsq", "spsolve", "dense")
KRYLOV = ("gmres", "bicgstab", "lgmres")
FD_STEP = 1e-5

#: The sparse-matrix variants run fewer examples.
SPARSE_SETTINGS = settings(CYCLIC_SETTINGS, max_examples=10,
                           phases=[Phase.explicit, Phase.generate])


# ----------------------------------------------------------------- helpers

def as_tuple(grads: Any, n: int) -> tuple[np.ndarray, ...]:
    """``Solution.grad()`` gives one array for one input, a tuple for several."""
    if n == 1:
        grads = (grads,)
    assert isinstance(grads, tuple) and len(grads) == n
    return tuple(np.asarray(g, dtype=float) for g in grads)


def flat(parts: Any) -> np.ndarray:
    return np.concatenate([np.ravel(p) for p in parts])


def assert_close(actual: Any, expected: Any, rtol: float, what: str, atol: float = 1e-13
                 ) -> None:
    actual, expected = np.ravel(actual), np.ravel(expected)
    err = float(np.linalg.norm(actual - expected))
    scale = float(np.linalg.norm(expected))
    assert err <= rtol * scale + atol, \
        f"{what}: error {err:.3e}, relative {err / max(scale, 1e-300):.3e}"


def adjoint_methods(case: CyclicCase) -> tuple[str, ...]:
    """Every adjoint method; the Neumann iteration only where every block is a
    contractive define block (a root block's reduced map does not contract)."""
    fixed = () if case.recipe.has_root else ("fixed_point",)
    return DIRECT + KRYLOV + fixed


def dense_multipliers(sol: lagrad.Solution) -> np.ndarray:
    """lambda from numpy's dense solve of the assembled (I - J)^T lambda = e_n."""
    system = sol.adjoint_system()
    return np.linalg.solve(system.matrix.toarray(), system.rhs)


def input_part(sol: lagrad.Solution, vec: np.ndarray) -> tuple[np.ndarray, ...]:
    index = sol.schedule.index
    return tuple(vec[index[v]] for v in sol.program.inputs)


def random_direction(case: CyclicCase, seed: int = 1) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(size=np.shape(x)) if np.ndim(x) else float(rng.normal())
                 for x in case.inputs)


def direction_arg(direction: tuple[Any, ...]) -> Any:
    return direction if len(direction) > 1 else direction[0]


def shifted(case: CyclicCase, direction: tuple[Any, ...], h: float) -> list[Any]:
    return [x + h * np.asarray(v) for x, v in zip(case.inputs, direction)]


# ----------------------------------------------------------------- forward

@CYCLIC_SETTINGS
@given(cyclic_cases())
def test_forward_methods_agree_with_numpy_solve(case: CyclicCase) -> None:
    recipe = case.recipe
    out_ref, values_ref = recipe.evaluate(*case.inputs)
    for forward in ("newton", "fixed_point", "anderson"):
        program = recipe.build(forward=forward)
        tol = 1e-13 if forward == "newton" else 1e-12  # 1e-12: the default
        sol = program.solve(*case.inputs, tol=tol if forward == "newton" else None)
        for name, ref in values_ref.items():
            assert_close(sol[name], ref, 1e-9, f"{forward}: value of {name}", atol=1e-11)
        assert abs(float(sol.output) - out_ref) <= 1e-9 * max(1.0, abs(out_ref))
        cyclic = [b for b in program.blocks if b.cyclic]
        assert sorted(sol.diagnostics) == [b.number for b in cyclic]
        for diag in sol.diagnostics.values():
            unknown = program.blocks[diag.number].unknowns[0].name
            is_root = recipe.blocks[int(unknown[1:].rstrip("ab"))].kind == "root"
            assert diag.method == ("newton" if is_root else forward)
            assert diag.converged
            assert diag.residuals and len(diag.residuals) >= diag.iterations
            u = np.concatenate([np.ravel(sol[v]) for v in program.blocks[diag.number].unknowns])
            assert diag.residuals[-1] <= tol * max(1.0, np.linalg.norm(u))


@CYCLIC_SETTINGS
@given(cyclic_cases())
def test_forward_method_of_solve_overrides_and_agrees(case: CyclicCase) -> None:
    """program.solve(method=...) on the same program: values agree."""
    program = case.recipe.build()
    methods = ("newton", "anderson") if case.recipe.has_root else \
        ("newton", "fixed_point", "anderson")
    sols = {}
    for m in methods:
        try:
            sols[m] = program.solve(*case.inputs, method=m)
        except lagrad.ConvergenceError:
            # fixed-point iteration z <- z - g(z) of a root block need not
            # converge; "anderson" on root blocks is only tried, not required
            assert case.recipe.has_root and m == "anderson"
            continue
        assert {d.method for d in sols[m].diagnostics.values()} == {m}
    base = sols["newton"].values.vector
    for m, sol in sols.items():
        assert_close(sol.values.vector, base, 1e-9, f"values by {m}", atol=1e-11)


# ----------------------------------------------------------------- reverse

@CYCLIC_SETTINGS
@given(cyclic_cases())
def test_every_adjoint_method_matches_dense_reference(case: CyclicCase) -> None:
    program = case.recipe.build()
    sol = program.solve(*case.inputs)
    lam_ref = dense_multipliers(sol)
    grad_ref = input_part(sol, lam_ref)
    n = case.recipe.n_inputs
    for method in adjoint_methods(case):
        grads = as_tuple(sol.grad(method=method), n)
        assert_close(flat(grads), flat(grad_ref), 1e-8, f"gradient by {method}")
        lam = sol.multipliers(method=method)
        assert_close(lam.vector, lam_ref, 1e-8, f"multipliers by {method}")
        for name in case.recipe.unknown_names:
            assert np.shape(lam[name]) == np.shape(sol[name])


@CYCLIC_SETTINGS
@given(cyclic_cases(sparse=False))
def test_gradient_matches_finite_differences_and_forward_mode(case: CyclicCase) -> None:
    check_gradient_fd_and_forward_mode(case)


@SPARSE_SETTINGS
@given(cyclic_cases(sparse=True))
def test_gradient_matches_finite_differences_and_forward_mode_sparse(case: CyclicCase) -> None:
    check_gradient_fd_and_forward_mode(case)


def check_gradient_fd_and_forward_mode(case: CyclicCase) -> None:
    program = case.recipe.build()
    sol = program.solve(*case.inputs)
    grads = as_tuple(sol.grad(), case.recipe.n_inputs)
    direction = random_direction(case)
    directional = float(flat(grads) @ flat(direction))
    # central differences, re-solving the program at perturbed inputs
    plus = program.solve(*shifted(case, direction, FD_STEP), tol=1e-13).output
    minus = program.solve(*shifted(case, direction, -FD_STEP), tol=1e-13).output
    fd = (float(plus) - float(minus)) / (2 * FD_STEP)
    scale = max(1.0, abs(directional), float(np.linalg.norm(flat(grads))))
    assert abs(fd - directional) <= 1e-6 * scale, (fd, directional)
    # forward mode: the tangent system along the same direction
    zdot = sol.tangent(direction_arg(direction))
    assert abs(float(zdot[program.output_variable]) - directional) <= 1e-10 * scale
    for method in ("splu", "gmres", "dense"):
        zdot_m = sol.tangent(direction_arg(direction), method=method)
        assert_close(zdot_m.vector, zdot.vector, 1e-8, f"tangent by {method}")
    # and the same number from the traced function with fixed_point / root
    value, tangent = lagrad.jvp(case.recipe.function, case.inputs, direction)
    assert abs(float(value) - float(sol.output)) <= 1e-10 * max(1.0, abs(float(sol.output)))
    assert abs(float(tangent) - directional) <= 1e-9 * scale


@CYCLIC_SETTINGS
@given(cyclic_cases(sparse=False))
def test_combinators_give_the_builders_gradient(case: CyclicCase) -> None:
    """lagrad.grad of the function written with fixed_point / root (nested for
    the coupled blocks) equals the builder program's gradient."""
    check_combinators(case)


@SPARSE_SETTINGS
@given(cyclic_cases(sparse=True))
def test_combinators_give_the_builders_gradient_sparse(case: CyclicCase) -> None:
    check_combinators(case)


def check_combinators(case: CyclicCase) -> None:
    recipe = case.recipe
    n = recipe.n_inputs
    grads = as_tuple(recipe.build().solve(*case.inputs).grad(), n)
    traced = lagrad.grad(recipe.function, argnums=tuple(range(n)))(*case.inputs)
    assert_close(flat(traced), flat(grads), 1e-9, "lagrad.grad of the combinator function")
    # the Jacobian of the scalar output, both modes, as a third route
    for mode in ("forward", "reverse"):
        jac = lagrad.jacobian(recipe.function, argnums=tuple(range(n)), mode=mode)(
            *case.inputs)
        assert_close(flat(jac), flat(grads), 1e-9, f"jacobian mode={mode}")


# ----------------------------------------------------------------- systems

@CYCLIC_SETTINGS
@given(cyclic_cases())
def test_kkt_residuals_vanish(case: CyclicCase) -> None:
    sol = case.recipe.build().solve(*case.inputs, tol=1e-13)
    kkt = sol.kkt_residuals()
    assert kkt.dL_dlambda <= 1e-12
    assert kkt.dL_dz <= 1e-12
    # and the Lagrangian equals the output at the solution
    assert abs(sol.lagrangian() - float(sol.output)) <= 1e-10 * max(1.0, abs(float(sol.output)))
    # multipliers from another method satisfy the same conditions
    kkt = sol.kkt_residuals(sol.multipliers(method="gmres"))
    assert kkt.dL_dz <= 1e-10


@CYCLIC_SETTINGS
@given(cyclic_cases(sparse=False))
def test_adjoint_and_tangent_systems_are_solved(case: CyclicCase) -> None:
    check_systems(case)


@SPARSE_SETTINGS
@given(cyclic_cases(sparse=True))
def test_adjoint_and_tangent_systems_are_solved_sparse(case: CyclicCase) -> None:
    check_systems(case)


def check_systems(case: CyclicCase) -> None:
    sol = case.recipe.build().solve(*case.inputs)
    direction = random_direction(case, seed=2)
    adjoint = sol.adjoint_system()
    tangent = sol.tangent_system(direction_arg(direction))
    solutions = {}
    for system in (adjoint, tangent):
        matrix = system.matrix.toarray()
        reference = np.linalg.solve(matrix, system.rhs)
        for method in adjoint_methods(case):
            x, info = system.solve(method)
            assert info.residual <= 1e-10, (system.kind, method, info)
            # matrix @ x == rhs, with the assembled matrix (not matrix-free)
            assert_close(matrix @ x, system.rhs, 1e-10, f"{system.kind} {method}: M x")
            assert_close(x, reference, 1e-8, f"{system.kind} {method}: x")
            if method not in ("spsolve", "dense"):
                blocks = info.extra["blocks"]
                assert len(blocks) == sum(b.cyclic for b in sol.program.blocks)
                assert all(b.residual <= 1e-10 for b in blocks)
        solutions[system.kind] = reference
    # the transposed systems: e_out . zdot == lambda . e_direction
    assert_close(adjoint.rhs @ solutions["tangent"], solutions["adjoint"] @ tangent.rhs,
                 1e-10, "dot-product identity")
    # the two matrices are transposes of each other
    assert abs(adjoint.matrix - tangent.matrix.T).max() == 0


@CYCLIC_SETTINGS
@given(cyclic_cases())
def test_solving_again_at_other_inputs_leaves_program_and_solutions(case: CyclicCase) -> None:
    program = case.recipe.build()
    text, n_vars, n_eqs = str(program), len(program.variables), len(program.equations)
    first = program.solve(*case.inputs)
    values1 = first.values.vector.copy()
    grads1 = flat(as_tuple(first.grad(), case.recipe.n_inputs))
    direction = random_direction(case, seed=3)
    other = shifted(case, direction, 0.3)
    second = program.solve(*other)
    # the program is unchanged, and the first solution is untouched
    assert (str(program), len(program.variables), len(program.equations)) == \
        (text, n_vars, n_eqs)
    assert np.array_equal(first.values.vector, values1)
    assert_close(flat(as_tuple(first.grad(method="splu"), case.recipe.n_inputs)), grads1,
                 1e-12, "first solution's gradient after re-solving")
    # the second solution is right for its own inputs
    out_ref, _ = case.recipe.evaluate(*other)
    assert abs(float(second.output) - out_ref) <= 1e-9 * max(1.0, abs(out_ref))
    fresh = case.recipe.build().solve(*other)
    assert_close(flat(as_tuple(second.grad(), case.recipe.n_inputs)),
                 flat(as_tuple(fresh.grad(), case.recipe.n_inputs)), 1e-10,
                 "gradient after re-solving")
