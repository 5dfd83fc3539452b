"""Where the DEQ layer's gradient (the ``deq`` workload's problem) spends its
time beside its numpy floor, phase by phase, in one process: lagrad's forward
iterations, its adjoint iterations (the Neumann series), the product that
writes dL/dW (an outer product of two vectors of N), and the rest of
``program.solve(...).grad()`` (binding the block's products, the interior
multipliers, the other gradients, the Solution); the floor's forward loop,
adjoint loop and gradient products. Calls alternate between lagrad and the
floor, each phase timed inside the call (lagrad's by wrapping the functions
that run them for the duration of this script).

With ``--rest``, lagrad's solve + gradient alone, with the functions that
make up "the rest" timed too (each call's median, and how many calls a
gradient makes): where the fixed cost of a solve goes.

With ``--outer``, each round times the ways of writing dL/dW
(``accumulate.OUTER_WAY``: numpy's broadcast multiply, BLAS dgemm with
k = 1, numpy's einsum) and the floor's gradient, in a fresh order; the
medians of that product and of the whole call, and the call's ratio to the
floor, are printed for each (lagrad itself times them on the first large
outer products of a process and keeps the fastest: ``accumulate.OUTER_TIMED``).

Run: ``python benchmarks/bench_deq_parts.py [--outer | --rest] [N ...]``
(default 100 1000; BLAS on one thread). Prints the median of each phase in ms.
"""

from __future__ import annotations

import importlib
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lagrad.ir.accumulate as accumulate
from lagrad.bench.deq import make_deq
from lagrad.bench.machine import pin_blas_threads


@contextmanager
def _patched(targets: list[tuple[str, str, str]],
             record: Callable[[str, tuple[Any, ...], float], None]) -> Iterator[None]:
    """While in the block, every call of each target (module, function or
    Class.method, label) reports ``record(label, args, seconds)``; a function
    is replaced wherever lagrad imported it by name."""

    def wrap(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                record(label, args, time.perf_counter() - t0)
        return run

    saved = []
    for module_name, name, label in targets:
        module = importlib.import_module(module_name)
        if "." in name:
            cls, attr = name.split(".")
            owner = getattr(module, cls)
            saved.append((owner, attr, owner.__dict__[attr]))
            setattr(owner, attr, wrap(getattr(owner, attr), label))
            continue
        fn = getattr(module, name)
        for key, other in list(sys.modules.items()):
            if key.startswith("lagrad") and getattr(other, name, None) is fn:
                saved.append((other, name, fn))
                setattr(other, name, wrap(fn, label))
    try:
        yield
    finally:
        for owner, attr, fn in saved:
            setattr(owner, attr, fn)


PHASES = [("lagrad.solve.nonlinear", "_fixed_point_in_place", "forward"),
          ("lagrad.solve.neumann", "series_in_place", "adjoint"),
          ("lagrad.ir.accumulate", "matmul_vjp_add", "dW")]


def timed(last: dict[str, float]) -> Any:
    """Record in ``last`` the seconds of the last forward iteration loop
    ("forward"), adjoint series ("adjoint") and square outer product ("dW")."""

    def record(label: str, args: tuple[Any, ...], seconds: float) -> None:
        if label != "dW" or args[1].ndim == 2 and args[1].shape[0] == args[1].shape[1]:
            last[label] = seconds

    return _patched(PHASES, record)


REST = [  # (module, function or Class.method, label)
    ("lagrad.solve.forward", "evaluate", "forward pass (evaluate)"),
    ("lagrad.solve.nonlinear", "_fixed_point_in_place", "  its iterations"),
    ("lagrad.solve.flatplan", "FlatPlan.multipliers", "multipliers"),
    ("lagrad.solve.blocksolve", "substitute_block", "  the block's adjoint solve"),
    ("lagrad.solve.neumann", "series_in_place", "    its iterations"),
    ("lagrad.solve.blockop", "BlockOperator.in_place_product", "    binding the products"),
    ("lagrad.solve.blockop", "BlockOperator.reduced", "    the reduced right-hand side"),
    ("lagrad.solve.blockop", "BlockOperator.recover", "    the interior multipliers"),
    ("lagrad.solve.blocksolve", "choose", "    choosing the method"),
    ("lagrad.solve.flatplan", "_pull", "  a pullback outside the block"),
]


def each_call(seconds: dict[str, list[float]]) -> Any:
    """Append every call's seconds of the functions in REST to ``seconds``."""
    return _patched(REST, lambda label, _, t: seconds.setdefault(label, []).append(t))


def rest(sizes: list[int]) -> None:
    """lagrad's gradient alone, the functions of REST timed call by call."""
    pin_blas_threads(1)
    for n in sizes:
        prob = make_deq(n)
        rounds = 200 if n <= 300 else 40
        for _ in range(3):
            prob.program.solve(*prob.inputs).grad()
        seconds: dict[str, list[float]] = {}
        totals = []
        with each_call(seconds):
            for _ in range(rounds):
                t0 = time.perf_counter()
                prob.program.solve(*prob.inputs).grad()
                totals.append(time.perf_counter() - t0)
        total = statistics.median(totals) * 1e3
        print(f"N = {n} ({rounds} rounds): solve + gradient {total:.3f} ms")
        for _, _, label in REST:
            values = seconds.get(label, [])
            if values:
                print(f"  {label:38s} {statistics.median(values) * 1e3:8.3f} ms "
                      f"x{len(values) / rounds:.0f}")


def outer_ways(sizes: list[int]) -> None:
    """dL/dW each way (multiply, dgemm, einsum), and the floor's gradient, each round in
    a fresh order (as the bench times calls)."""
    pin_blas_threads(1)
    ways = accumulate.OuterWays.WAYS
    saved = accumulate.OUTER_WAY
    for n in sizes:
        prob = make_deq(n)
        last: dict[str, float] = {}
        product: dict[str, list[float]] = {way: [] for way in ways}
        total: dict[str, list[float]] = {way: [] for way in (*ways, "floor")}
        rounds = 100 if n <= 500 else 40
        try:
            with timed(last):
                for k in range(rounds + 2):
                    for way in random.Random(k).sample(list(total), len(total)):
                        t0 = time.perf_counter()
                        if way == "floor":
                            prob.floor()
                        else:
                            accumulate.OUTER_WAY = way
                            prob.program.solve(*prob.inputs).grad()
                        if k >= 2:  # after two calls each
                            total[way].append(time.perf_counter() - t0)
                            if way != "floor":
                                product[way].append(last["dW"])
        finally:
            accumulate.OUTER_WAY = saved
        floor = statistics.median(total["floor"])
        print(f"N = {n} ({rounds} rounds each; the floor's gradient {floor * 1e3:.3f} ms)")
        for way in ways:
            grad = statistics.median(total[way])
            print(f"  {way:9s} dL/dW {statistics.median(product[way]) * 1e3:7.3f} ms, "
                  f"gradient {grad * 1e3:8.3f} ms ({grad / floor:.3f}x the floor)")


def main(sizes: list[int]) -> None:
    pin_blas_threads(1)
    for n in sizes:
        prob = make_deq(n)
        last: dict[str, float] = {}
        rows: dict[str, list[float]] = {k: [] for k in (
            "lagrad total", "  forward iterations", "  adjoint iterations", "  dL/dW product",
            "  the rest", "floor total", "  forward loop", "  adjoint loop",
            "  gradient products")}
        phases: list[tuple[float, float, float]] = []
        rounds = 200 if n <= 300 else 40
        with timed(last):
            for _ in range(3):
                prob.program.solve(*prob.inputs).grad()
                prob.floor()
            for _ in range(rounds):
                t0 = time.perf_counter()
                prob.program.solve(*prob.inputs).grad()
                total = time.perf_counter() - t0
                parts = [last["forward"], last["adjoint"], last.get("dW", 0.0)]
                rows["lagrad total"].append(total)
                for key, value in zip(list(rows)[1:4], parts):
                    rows[key].append(value)
                rows["  the rest"].append(total - sum(parts))
                t0 = time.perf_counter()
                prob.floor(phases)
                rows["floor total"].append(time.perf_counter() - t0)
                for key, value in zip(list(rows)[6:], phases[-1]):
                    rows[key].append(value)
        print(f"N = {n} ({rounds} rounds)")
        for key, values in rows.items():
            print(f"  {key:22s} {statistics.median(values) * 1e3:8.3f} ms")


if __name__ == "__main__":
    args = sys.argv[1:]
    chosen = [int(a) for a in args if not a.startswith("--")] or [100, 1000]
    (outer_ways if "--outer" in args else rest if "--rest" in args else main)(chosen)
