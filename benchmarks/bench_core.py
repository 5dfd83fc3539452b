"""Core benchmark: cost of the gradient relative to the forward pass.

Run as ``python benchmarks/bench_core.py [--quick] [--json PATH]``.

Each problem is traced once into a :class:`lagrad.Program` and compiled once
(``compile_program``, cached on the program), outside the timing; a warm-up
solve follows. Then, over ``repeats`` interleaved runs, it times

* forward:          ``program.solve(*x)``                 (dL/dlambda = 0)
* forward+gradient: ``program.solve(*x).grad()``          (plus (I - J)^T lambda = e_n)

and reports the medians and their ratio, after checking the gradient against
central differences along a random direction. The cheap gradient principle (docs/lagrangian.md,
section 5) says the ratio should be a small constant; the target is <= 3.
The gradient sweep alone (``grad()`` on a fresh solution, timed inside the
forward+gradient runs) is reported too.

Problems
--------
scalar DAG (wide)
    10^4 scalar equations z_i = f_i(z_alpha(i)) with random primitives
    (add, sub, mul, sin, cos, tanh, exp, mul by a constant) and parents drawn
    uniformly among all earlier variables, over 4 scalar inputs. Variables no
    equation reads are summed into the output by a balanced tree of adds, so
    every equation reaches the output (no dead code). Primitives are chosen
    with interval bounds tracked while building, so every value of the random
    part stays in [-10, 10] and nothing overflows. Shallow: few levels, many
    equations per level, the case the schedule's Batch steps are built for.
scalar DAG (deep)
    The same with parents drawn among the 16 most recent variables: hundreds
    of levels with few equations each, so most equations run as Single steps.
MLP
    tanh MLP 784-256-10 on a batch of 32, mean softmax cross-entropy; the
    weights and biases are the inputs, the data and one-hot labels constants.
"""

from __future__ import annotations

import os

# BLAS runs single-threaded unless the caller sets these: on a small shared
# machine a second BLAS thread waiting for a busy core turns a 2 ms matmul into
# 30 ms, and the benchmark measures lagrad, not thread scheduling. Must happen
# before numpy is imported.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for _name in BLAS_THREAD_VARIABLES:
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import lagrad  # noqa: E402
from lagrad.compile import compile_program  # noqa: E402
from lagrad.compile.schedule import Batch  # noqa: E402

N_INPUTS = 4
N_EQUATIONS = 10_000
BOUND = 10.0  # every value of the scalar DAG stays in [-BOUND, BOUND]
DEEP_WINDOW = 16


# ------------------------------------------------------------------ problems

@dataclass(frozen=True)
class Problem:
    name: str
    program: lagrad.Program
    inputs: tuple[Any, ...]
    trace_seconds: float


def _scalar_dag_fn(n_equations: int, window: int | None, seed: int
                   ) -> Callable[..., Any]:
    """A function of N_INPUTS scalars recording ``n_equations`` scalar
    equations (random ones, then a tree of adds over the variables no random
    equation reads), every one of which reaches the output."""

    def f(*xs: Any) -> Any:
        rng = np.random.default_rng(seed)
        z: list[Any] = list(xs)
        bound = [1.0] * len(xs)  # |z_j| <= bound[j] for inputs in [-1, 1]
        read = [True] * len(xs)  # inputs need no reader
        unread = 0  # defined variables that no equation reads yet

        def parent() -> int:
            lo = 0 if window is None else max(0, len(z) - window)
            return int(rng.integers(lo, len(z)))

        def mark_read(j: int) -> None:
            nonlocal unread
            if not read[j]:
                read[j] = True
                unread -= 1

        # stop when the random equations plus the (unread - 1) adds that sum
        # the unread variables make n_equations
        while len(z) - len(xs) + unread - 1 < n_equations:
            a, b = parent(), parent()
            ba, bb = bound[a], bound[b]
            choices = ["sin", "cos", "tanh", "scale"]
            if ba <= 2.0:
                choices.append("exp")
            if ba + bb <= BOUND:
                choices += ["add", "sub"]
            if ba * bb <= BOUND:
                choices.append("mul")
            op = choices[int(rng.integers(len(choices)))]
            if op in ("add", "sub", "mul"):
                if op == "mul":
                    v, new = z[a] * z[b], ba * bb
                else:
                    v, new = (z[a] + z[b] if op == "add" else z[a] - z[b]), ba + bb
                mark_read(b)
            elif op == "scale":
                c = float(rng.uniform(-1.0, 1.0))
                v, new = z[a] * c, ba * abs(c)
            elif op == "exp":
                v, new = lagrad.exp(z[a]), float(np.exp(ba))
            else:
                v, new = getattr(lagrad, op)(z[a]), 1.0
            mark_read(a)
            z.append(v)
            bound.append(new)
            read.append(False)
            unread += 1
        sinks = [z[j] for j in range(len(xs), len(z)) if not read[j]]
        while len(sinks) > 1:  # balanced tree: log depth
            pairs = [sinks[k] + sinks[k + 1] for k in range(0, len(sinks) - 1, 2)]
            sinks = pairs + ([sinks[-1]] if len(sinks) % 2 else [])
        return sinks[0]

    return f


def scalar_dag(n_equations: int, window: int | None, seed: int = 0) -> Problem:
    name = "scalar DAG " + ("(wide)" if window is None else f"(deep, window {window})")
    fn = _scalar_dag_fn(n_equations, window, seed)
    t0 = time.perf_counter()
    program = lagrad.trace(fn, *([0.0] * N_INPUTS))
    seconds = time.perf_counter() - t0
    x = tuple(float(v) for v in np.random.default_rng(seed + 1).uniform(-1, 1, N_INPUTS))
    return Problem(name, program, x, seconds)


def mlp(batch: int = 32, sizes: Sequence[int] = (784, 256, 10), seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out = sizes
    data = rng.standard_normal((batch, n_in))
    labels = np.eye(n_out)[rng.integers(n_out, size=batch)]

    def loss(w1: Any, b1: Any, w2: Any, b2: Any) -> Any:
        h = lagrad.tanh(data @ w1 + b1)
        logits = h @ w2 + b2
        log_probs = logits - lagrad.logsumexp(logits, axis=1, keepdims=True)
        return -lagrad.mean(lagrad.sum(labels * log_probs, axis=1))

    params = (rng.standard_normal((n_in, n_hidden)) / np.sqrt(n_in), np.zeros(n_hidden),
              rng.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden), np.zeros(n_out))
    t0 = time.perf_counter()
    program = lagrad.trace(loss, *params)
    seconds = time.perf_counter() - t0
    return Problem(f"tanh MLP {n_in}-{n_hidden}-{n_out}, batch {batch}", program, params,
                   seconds)


# ------------------------------------------------------------------ timing

@dataclass(frozen=True)
class Result:
    problem: str
    variables: int
    equations: int
    flat_entries: int
    levels: int
    steps: int
    batch_steps: int
    trace_seconds: float
    compile_seconds: float
    repeats: int
    forward_median: float
    gradient_median: float  # forward + gradient
    sweep_median: float  # the gradient sweep alone
    ratio: float  # gradient_median / forward_median
    sweep_ratio: float  # sweep_median / forward_median
    fd_error: float  # gradient vs central differences, relative


def check_gradient(problem: Problem, eps: float = 1e-6) -> float:
    """Relative error of the gradient along a random direction against central
    differences of the forward solve (a guard that the timed work is right)."""
    program, x = problem.program, problem.inputs
    rng = np.random.default_rng(1)
    arrays = [np.asarray(a, dtype=float) for a in x]
    v = [rng.standard_normal(a.shape) for a in arrays]
    grads = program.solve(*x).grad()
    grads = grads if isinstance(grads, tuple) else (grads,)
    slope = sum(float(np.sum(g * d)) for g, d in zip(grads, v))
    plus = program.solve(*(a + eps * d for a, d in zip(arrays, v))).output
    minus = program.solve(*(a - eps * d for a, d in zip(arrays, v))).output
    fd = (float(plus) - float(minus)) / (2 * eps)
    return abs(slope - fd) / max(abs(fd), 1e-12)


def measure(problem: Problem, repeats: int) -> Result:
    program, x = problem.program, problem.inputs
    t0 = time.perf_counter()
    schedule = compile_program(program)  # cached on the program: solve reuses it
    compile_seconds = time.perf_counter() - t0
    program.solve(*x).grad()  # warm up
    forward, total, sweep = [], [], []
    for _ in range(repeats):  # interleaved, so that both see the same machine load
        t0 = time.perf_counter()
        program.solve(*x)
        forward.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sol = program.solve(*x)
        t1 = time.perf_counter()
        sol.grad()
        t2 = time.perf_counter()
        total.append(t2 - t0)
        sweep.append(t2 - t1)
    batch_steps = sum(isinstance(s, Batch) for s in schedule.steps)
    f, g, s = (statistics.median(t) for t in (forward, total, sweep))
    error = check_gradient(problem)
    if not error < 1e-5:
        raise lagrad.GradientCheckError(f"{problem.name}: gradient differs from central "
                                        f"differences by {error:.1e} (relative)")
    return Result(problem.name, len(program.variables), len(program.equations),
                  schedule.size, int(schedule.levels.max()), len(schedule.steps),
                  batch_steps, problem.trace_seconds, compile_seconds, repeats, f, g, s,
                  g / f, s / f, error)


# ------------------------------------------------------------------ report

def machine() -> dict[str, Any]:
    """The machine description shared with ``lagrad bench``."""
    from lagrad.bench.machine import describe_machine

    info = describe_machine()
    return {**info, "nproc": info["cpus"]}


def table(results: Sequence[Result]) -> str:
    head = (f"{'problem':<32} {'vars':>6} {'eqs':>6} {'flat':>7} {'levels':>6} "
            f"{'steps':>6} {'batch':>5} {'fwd ms':>9} {'fwd+grad ms':>11} {'ratio':>6} "
            f"{'sweep/fwd':>9} {'fd err':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.problem:<32} {r.variables:>6} {r.equations:>6} {r.flat_entries:>7} "
                     f"{r.levels:>6} {r.steps:>6} {r.batch_steps:>5} "
                     f"{1e3 * r.forward_median:>9.2f} "
                     f"{1e3 * r.gradient_median:>11.2f} {r.ratio:>6.2f} {r.sweep_ratio:>9.2f} "
                     f"{r.fd_error:>7.0e}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats instead of 20")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per timing")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 20)
    if repeats < 1:
        parser.error(f"--repeats must be at least 1, got {repeats}")

    info = machine()
    print(f"machine: {info['cpu']}, {info['nproc']} CPUs, {info['uname']}")
    print(f"python {info['python']}, numpy {info['numpy']}, scipy {info['scipy']}, "
          f"lagrad {info['lagrad']}; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; "
          f"median of {repeats} repeats\n")
    problems = [scalar_dag(N_EQUATIONS, None), scalar_dag(N_EQUATIONS, DEEP_WINDOW), mlp()]
    results = [measure(p, repeats) for p in problems]
    print(table(results))
    print("\nsteps: schedule steps (batch: how many are Batch steps); ratio = "
          "(forward+gradient) / forward, target <= 3;\nsweep/fwd = gradient sweep alone / "
          "forward; fd err = relative error of the gradient against central differences.")
    print("one-off costs (s): " + "; ".join(
        f"{r.problem}: trace {r.trace_seconds:.2f}, compile {r.compile_seconds:.2f}"
        for r in results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "repeats": repeats,
                       "results": [asdict(r) for r in results]}, fh, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
