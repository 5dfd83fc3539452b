"""The PETSc backend (method="petsc") against scipy; skipped without petsc4py.

Runs in one process under pytest and in parallel as
``mpiexec -n 2 python -m pytest tests/petsc``: every rank runs every test
(the solves are collective), each rank holding the whole program and the
whole solution, with the matrix and the Krylov vectors split between them.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("petsc4py")

from cyclic_strategies import empty_block  # noqa: E402

import lagrad  # noqa: E402
from lagrad.examples import pagerank  # noqa: E402
from lagrad.solve import petsc  # noqa: E402

RANK, SIZE = petsc.ranks()


@pytest.fixture(scope="module")
def example():
    return pagerank(300, 1500, seed=3)


@pytest.fixture(scope="module")
def solution(example):
    return example.solve()


def _close(x, ref, tol=1e-10):
    assert np.max(np.abs(x - ref)) <= tol * np.max(np.abs(ref))


def test_the_run_has_the_ranks_it_was_launched_with():
    # set by the launching test, else by MPICH's mpiexec (PMI_SIZE): 1 without mpiexec
    expected = int(os.environ.get("LAGRAD_TEST_RANKS") or os.environ.get("PMI_SIZE") or "1")
    assert SIZE == expected


@pytest.mark.parametrize("mat_type", ["aij", "python"])
def test_the_whole_adjoint_system_matches_scipy(solution, mat_type):
    system = solution.adjoint_system()
    ref, _ = system.solve(method="spsolve")
    lam, info = system.solve(method="petsc", mat_type=mat_type, tol=1e-12)
    _close(lam, ref)
    assert info.method == "petsc" and info.residual < 1e-10
    assert info.extra["mat_type"] == mat_type and info.extra["ranks"] == SIZE
    assert info.extra["transposed_solve"] is True  # (I - J)^T by solveTranspose
    assert info.extra["reason"].startswith("CONVERGED")


@pytest.mark.parametrize("mat_type", ["aij", "python"])
def test_the_whole_tangent_system_matches_scipy(solution, mat_type, rng):
    system = solution.adjoint_system().T
    system.rhs[:] = rng.standard_normal(system.rhs.size)
    ref, _ = system.solve(method="spsolve")
    zdot, info = system.solve(method="petsc", mat_type=mat_type, tol=1e-12)
    _close(zdot, ref)
    assert info.extra["transposed_solve"] is False


def test_the_gradient_matches_the_independent_reference(example, solution):
    assert example.gradient_error(solution, method="petsc", tol=1e-12) < 1e-9
    assert example.gradient_error(solution, method="petsc_blocks", tol=1e-12) < 1e-9


def test_the_block_method_matches_sparse_lu(solution):
    system = solution.adjoint_system()
    ref, _ = system.solve(method="splu")
    for mat_type in ("aij", "python"):
        lam, info = system.solve(method="petsc_blocks", mat_type=mat_type, tol=1e-12)
        _close(lam, ref)
        [block] = info.blocks
        assert block.method == "petsc" and block.extra["transposed_solve"] is True
        assert block.residual < 1e-10


def test_a_declared_adjoint_method_petsc_is_used_by_the_default_sweep():
    p = lagrad.Program()
    a = p.input("a", (50,))
    z = p.unknown("z", (50,), adjoint_method="petsc")
    p.define(z, 0.4 * lagrad.sin(z[::-1]) + a)
    p.output(lagrad.sum(z * z))
    sol = p.solve(np.linspace(0, 1, 50))
    [block] = sol.adjoint_diagnostics
    assert block.method == "petsc"
    _close(sol.grad(), sol.grad(method="dense"))


def test_forward_newton_ksp_is_reused_by_solve_transpose(example):
    sol = example.solve(method="petsc")
    assert example.gradient_error(sol) < 1e-9
    [block] = sol.adjoint_diagnostics
    assert block.method == "petsc" and block.reused_factorization
    assert block.reason.startswith("reuses the forward Newton KSP")
    assert block.extra["transposed_solve"] is True
    _close(sol.grad(method="splu")[1], sol.grad()[1])


def test_ksp_and_pc_types_are_passed_through(solution):
    system = solution.adjoint_system()
    ref, _ = system.solve(method="spsolve")
    lam, info = system.solve(method="petsc", ksp_type="bcgs", pc_type="bjacobi", tol=1e-12)
    _close(lam, ref)
    assert (info.extra["ksp_type"], info.extra["pc_type"]) == ("bcgs", "bjacobi")
    lam, info = system.solve(method="petsc", petsc_options={"ksp_type": "lgmres",
                                                           "ksp_gmres_restart": 10})
    _close(lam, ref)
    assert info.extra["ksp_type"] == "lgmres"


@pytest.mark.skipif(SIZE > 1, reason="PETSc's own LU runs on one rank")
def test_a_direct_solve_takes_one_iteration(solution):
    lam, info = solution.adjoint_system().solve(method="petsc", ksp_type="preonly",
                                                pc_type="lu")
    _close(lam, solution.adjoint_system().solve(method="spsolve")[0])
    assert info.iterations == 1


@pytest.mark.parametrize("options", [{"maxiter": 2, "pc_type": "none"},
                                     {"petsc_options": {"ksp_max_it": 1}, "pc_type": "none"}])
def test_a_ksp_that_stops_short_raises_and_gives_no_gradient(solution, options):
    with pytest.raises(lagrad.ConvergenceError, match="DIVERGED_(ITS|MAX_IT).*raise maxiter"):
        solution.grad(method="petsc", **options)
    with pytest.raises(lagrad.ConvergenceError, match=r"block \d+ \(r\).*DIVERGED_(ITS|MAX_IT)"):
        solution.grad(method="petsc_blocks", **options)


def test_a_breakdown_is_a_convergence_error(solution):
    # Richardson with a damping of 3 diverges on I - J (eigenvalues near 1)
    with pytest.raises(lagrad.ConvergenceError,
                       match="DIVERGED_(DTOL|NANORINF)|true relative residual"):
        solution.grad(method="petsc", ksp_type="richardson", pc_type="none",
                      petsc_options={"ksp_richardson_scale": 3.0})


def test_a_ksp_converged_without_a_residual_test_is_checked(solution):
    # one application of ILU is not a solve, though PETSc reports CONVERGED_ITS
    with pytest.raises(lagrad.ConvergenceError, match="true relative residual"):
        solution.grad(method="petsc", ksp_type="preonly", pc_type="jacobi")


def test_an_unsupported_or_unknown_petsc_type_is_an_option_error(solution):
    # PETSc's SOR has no transposed application, which solveTranspose needs
    with pytest.raises(lagrad.OptionError, match="not supported.*choose another"):
        solution.grad(method="petsc", pc_type="sor")
    with pytest.raises(lagrad.OptionError, match="unknown type"):
        solution.grad(method="petsc", ksp_type="no_such_krylov_method")


@pytest.mark.parametrize("kind", ["define", "root"])
def test_an_empty_cyclic_block(kind):
    """z of shape (0,) in a cycle: d(x^2 + x)/dx = 2x + 1 = 7 at x = 3."""
    p = empty_block(kind)
    sol = p.solve(3.0)
    for method in ("petsc", "petsc_blocks"):
        assert float(sol.grad(method=method)) == pytest.approx(7.0, rel=1e-13)
        assert float(sol.tangent(1.0, method=method)[p.output_variable]) == \
            pytest.approx(7.0, rel=1e-13)
