"""Without petsc4py, method "petsc" says how to install it (runs everywhere)."""

from __future__ import annotations

import sys
import types

import pytest

import lagrad
from lagrad.solve import petsc


def _solution() -> lagrad.Solution:
    p = lagrad.Program()
    a = p.input("a")
    z = p.unknown("z")
    p.define(z, 0.5 * lagrad.sin(z) + a)
    p.output(z * z)
    return p.solve(1.0)


@pytest.mark.parametrize("call", [
    lambda sol: sol.grad(method="petsc"),
    lambda sol: sol.grad(method="petsc_blocks"),
    lambda sol: sol.adjoint_system().solve(method="petsc", ksp_type="gmres"),
    lambda sol: sol.program.solve(1.0, method="petsc"),
])
def test_a_missing_petsc4py_names_the_extra(monkeypatch, call):
    sol = _solution()
    monkeypatch.setitem(sys.modules, "petsc4py", None)  # import petsc4py now fails
    with pytest.raises(lagrad.MissingDependencyError, match=r'pip install "lagrad\[petsc\]"'):
        call(sol)
    assert not petsc.available()


def _module(name: str, attribute: str, loaded: list[str]) -> types.ModuleType:
    """A stand-in module that notes when its one attribute is first taken."""
    module = types.ModuleType(name)

    def getattr_(key: str) -> object:
        if key != attribute:
            raise AttributeError(key)
        if name not in loaded:
            loaded.append(name)
        return object()

    module.__getattr__ = getattr_  # type: ignore[method-assign]
    return module


def test_mpi4py_loads_mpi_before_petsc4py_needs_it(monkeypatch):
    # a PETSc built from source finds libmpi only where it was built; mpi4py finds it anywhere
    loaded: list[str] = []
    monkeypatch.setitem(sys.modules, "mpi4py", _module("mpi4py", "MPI", loaded))
    monkeypatch.setitem(sys.modules, "petsc4py", _module("petsc4py", "PETSc", loaded))
    petsc.import_petsc()
    assert loaded == ["mpi4py", "petsc4py"]


def test_without_mpi4py_petsc4py_is_still_tried(monkeypatch):
    loaded: list[str] = []
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "petsc4py", _module("petsc4py", "PETSc", loaded))
    petsc.import_petsc()
    assert loaded == ["petsc4py"]


def test_the_missing_dependency_error_is_an_import_error():
    assert issubclass(lagrad.MissingDependencyError, ImportError)
    assert issubclass(lagrad.MissingDependencyError, lagrad.LagradError)


@pytest.mark.parametrize("options", [{"ksp_type": "cg"}, {"pc_type": "ilu"},
                                     {"mat_type": "python"}, {"petsc_options": {}}])
def test_petsc_options_belong_to_method_petsc(options):
    with pytest.raises(lagrad.OptionError, match="belong to method 'petsc'"):
        _solution().grad(method="gmres", **options)


@pytest.mark.parametrize("options, match", [
    ({"mat_type": "dense"}, "mat_type must be one of"),
    ({"ksp_type": 3}, "ksp_type must be a PETSc type name"),
    ({"pc_type": ""}, "pc_type must be a PETSc type name"),
    ({"petsc_options": ["ksp_monitor"]}, "petsc_options must be a dict"),
])
def test_bad_petsc_options_raise_before_petsc_is_imported(monkeypatch, options, match):
    monkeypatch.setitem(sys.modules, "petsc4py", None)
    with pytest.raises(lagrad.OptionError, match=match):
        _solution().grad(method="petsc", **options)


@pytest.mark.parametrize("n, size", [(10, 1), (10, 3), (2, 4), (1_000_001, 2)])
def test_ownership_splits_the_rows_as_petsc_does(n, size):
    ranges = [petsc.ownership(n, r, size) for r in range(size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    lengths = [e - s for s, e in ranges]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
