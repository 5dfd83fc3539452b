"""The PETSc tests again on two MPI ranks: ``mpiexec -n 2 python -m pytest
tests/petsc``, with the whole system and the cyclic block distributed, and
lambda compared with scipy's to 1e-10 on every rank."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("petsc4py")

from lagrad.solve import petsc  # noqa: E402

HERE = Path(__file__).resolve().parent


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"  # the mpich wheel's, in the venv
    return str(beside) if beside.exists() else shutil.which("mpiexec")


@pytest.mark.skipif(petsc.ranks()[1] > 1, reason="already running under mpiexec")
def test_the_petsc_tests_pass_on_two_ranks():
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec on PATH")
    env = {**os.environ, "LAGRAD_TEST_RANKS": "2", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    cmd = [mpiexec, "-n", "2", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           str(HERE), "-k", "not two_ranks"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                          cwd=HERE.parents[1])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert done.stdout.count(" passed") == 2, done.stdout[-2000:]  # one summary per rank
