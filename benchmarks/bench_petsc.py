"""The PETSc backend on a PageRank program of about 10^6 unknowns: the
multiplier system solved by lagrad's default (scipy) and by PETSc on 1 and 2
MPI ranks.

Run (needs the ``petsc`` extra): ``python benchmarks/bench_petsc.py``. The
driver starts the worker (this script with ``--worker``) alternately under
``mpiexec -n 1`` and ``mpiexec -n 2``, ``--rounds`` times each, and reports
the medians over rounds of each worker's own medians. A worker builds the
program and solves the forward problem on every rank (replicated, not
timed), then times, interleaved, the adjoint solve (assembly of J included:
every call takes a fresh system):

* ``lagrad auto``: the default, scipy-based (one rank only): back-substitution
  between blocks, the PageRank block by its automatic method;
* ``petsc blocks``: ``method="petsc_blocks"``, the same back-substitution with
  the block's system (I - J_SS)^T solved by a PETSc KSP (GMRES with ILU, or
  block Jacobi/ILU on 2 ranks) on all ranks;
* ``petsc aij``: ``method="petsc"``, the whole (I - J) as a distributed AIJ
  matrix, the same KSP and preconditioner, ``solveTranspose``;
* ``petsc python``: ``method="petsc", mat_type="python"``: matrix-free
  (JVP/VJP sweeps), GMRES without a preconditioner.

scipy's SuperLU on the whole system (``spsolve``) is timed with
``--spsolve`` only: it fills in (72 s at 3.4 x 10^5 unknowns here). Every
PETSc multiplier vector is compared with the reference (spsolve with
``--spsolve``, else the default at tol 1e-15; untimed, on every rank) and
must agree to 1e-10 relative.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lagrad.bench.core import time_calls
from lagrad.examples import pagerank
from lagrad.solve import petsc

TOL = 1e-12  # relative residual of the Krylov solves


def _calls(sol: Any, size: int, spsolve: bool) -> dict[str, Any]:
    calls = {
        "petsc blocks": lambda: sol.adjoint_system().solve(method="petsc_blocks", tol=TOL),
        "petsc aij": lambda: sol.adjoint_system().solve(method="petsc", tol=TOL),
        "petsc python": lambda: sol.adjoint_system().solve(method="petsc", mat_type="python",
                                                           tol=TOL),
    }
    if size == 1:
        calls = {"lagrad auto": lambda: sol.adjoint_system().solve(), **calls}
        if spsolve:
            calls["scipy spsolve"] = lambda: sol.adjoint_system().solve(method="spsolve")
    return calls


def worker(nodes: int, edges: int, repeats: int, spsolve: bool,
           budget: float) -> dict[str, Any]:
    """Time the solves on this MPI run; rank 0 returns the figures."""
    rank, size = petsc.ranks()
    ex = pagerank(nodes, edges, seed=0)
    t0 = time.perf_counter()
    sol = ex.solve()
    forward = time.perf_counter() - t0
    unknowns = sol.adjoint_system().rhs.size
    ref, _ = sol.adjoint_system().solve(method="spsolve") if spsolve else \
        sol.adjoint_system().solve(tol=1e-15)
    timings = time_calls(_calls(sol, size, spsolve), repeats, budget=budget)
    out: dict[str, Any] = {"ranks": size, "unknowns": unknowns, "forward_s": forward,
                           "medians_s": {}, "errors": {}, "iterations": {}, "ksp_s": {}}
    for name, timing in timings.items():
        lam, info = timing.value
        err = float(np.max(np.abs(lam - ref)) / np.max(np.abs(ref)))
        assert err < 1e-10, f"{name}: multipliers off by {err:.1e} relative"
        blocks = info.extra.get("blocks") or []
        out["medians_s"][name] = timing.median
        out["errors"][name] = err
        out["iterations"][name] = info.iterations
        out["ksp_s"][name] = info.extra.get(
            "ksp_seconds", sum(b.extra.get("ksp_seconds", 0.0) for b in blocks))
    return out if rank == 0 else {}


def driver(args: argparse.Namespace) -> None:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for ranks in (1, 2):
            cmd = [str(mpiexec), "-n", str(ranks), sys.executable, __file__, "--worker",
                   "--nodes", str(args.nodes), "--edges", str(args.edges),
                   "--repeats", str(args.repeats), "--budget", str(args.budget)]
            done = subprocess.run(cmd + (["--spsolve"] if args.spsolve else []), env=env,
                                  capture_output=True, text=True, check=True)
            runs[ranks].append(json.loads(done.stdout.strip().splitlines()[-1]))
    first = runs[1][0]
    print(f"PageRank, {args.nodes} nodes, {args.edges} edges: {first['unknowns']} unknowns in "
          f"the multiplier system; forward (replicated) {first['forward_s']:.2f} s; "
          f"{args.rounds} alternating rounds of 1 and 2 ranks, medians of medians")
    base = statistics.median(r["medians_s"]["lagrad auto"] for r in runs[1])
    for ranks, results in runs.items():
        for name in results[0]["medians_s"]:
            t = statistics.median(r["medians_s"][name] for r in results)
            ksp = statistics.median(r["ksp_s"][name] for r in results)
            its = results[0]["iterations"][name]
            err = max(r["errors"][name] for r in results)
            print(f"  {ranks} rank(s)  {name:<14} {t:8.3f} s (KSP {ksp:7.3f} s)  "
                  f"{t / base:7.2f}x lagrad auto  iterations {its:>4}  max rel. diff {err:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help="time on this MPI run")
    parser.add_argument("--nodes", type=int, default=60_000)  # 1.02 x 10^6 unknowns
    parser.add_argument("--edges", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per worker")
    parser.add_argument("--spsolve", action="store_true", help="time scipy spsolve too")
    args = parser.parse_args()
    if args.worker:
        result = worker(args.nodes, args.edges, args.repeats, args.spsolve, args.budget)
        if result:
            print(json.dumps(result))
    else:
        driver(args)


if __name__ == "__main__":
    main()
