"""The 100-row Jacobian of the DEQ layer (the ``jacobian`` workload's
problem) with the reduced LU of its block built from the identity's rows a
chunk at a time (the default) against one product with all of them (the
chunk bound ``multirhs.MAX_ENTRIES`` lifted), timed interleaved in one
process, after the other workloads' kind of work has churned memory (a DEQ
gradient at N = 3000). Prints each call's times, the medians and whether the
Jacobians are equal.

Run: ``python benchmarks/bench_reduced_lu.py [N] [ROUNDS]`` (default 1000, 12).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

import lagrad
from lagrad.bench.deq import make_deq
from lagrad.bench.machine import pin_blas_threads
from lagrad.bench.multirhs import deq_problem
from lagrad.solve import multirhs


def main(n: int = 1000, rounds: int = 12) -> None:
    pin_blas_threads(1)
    churn = make_deq(3000)
    churn.program.solve(*churn.inputs).grad()
    problem = deq_problem(n, 100)
    jac = lagrad.jacrev(lagrad.jit(problem.f))
    chunked_entries = multirhs.MAX_ENTRIES

    def with_bound(entries: int) -> np.ndarray:
        multirhs.MAX_ENTRIES = entries
        try:
            return np.asarray(jac(problem.x))
        finally:
            multirhs.MAX_ENTRIES = chunked_entries
    calls = {"chunked": lambda: with_bound(chunked_entries),
             "one product": lambda: with_bound(2**62)}
    values = {name: f() for name, f in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        for name in (calls if r % 2 else reversed(list(calls))):
            t0 = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"{name:12s} median {1e3 * statistics.median(ts):7.1f} ms   "
              + " ".join(f"{1e3 * t:.0f}" for t in ts))
    print("equal:", np.array_equal(values["chunked"], values["one product"]))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
