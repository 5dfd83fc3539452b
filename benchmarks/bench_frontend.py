"""Compile once, run many: a jitted training step against hand-written numpy,
and the per-call overhead of a jitted value_and_grad of a 3-element function
over the same value and gradient written in numpy by hand (target 20 us).

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_frontend.py``. The MLP is
64-32-10 on data of the shape of scikit-learn's digits (1797 x 64, 10
classes; synthetic unless scikit-learn is installed). Medians of interleaved runs:
the jitted step, ``program.solve().grad()`` and hand-written numpy are timed
round after round on the same data; the uncached call (a trace per call, each
allocating a new program's vectors) is timed on its own afterwards, so that its
allocations do not shift the memory the compared calls page through. Three
shuffled batches of the data then show that new data arrays do not retrace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import lagrad
from lagrad.bench.core import time_calls
from lagrad.bench.mlp import make_mlp, numpy_gradient


def digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits  # optional: not a dependency
        d = load_digits()
        return d.data / 16.0, np.eye(10)[d.target]
    except ImportError:
        rng = np.random.default_rng(0)
        return rng.random((1797, 64)), np.eye(10)[rng.integers(10, size=1797)]


def loss(params: Any, x: np.ndarray, y: np.ndarray) -> Any:
    w1, b1, w2, b2 = params
    a = lagrad.tanh(x @ w1 + b1) @ w2 + b2
    return -lagrad.mean(lagrad.sum(y * (a - lagrad.logsumexp(a, axis=1, keepdims=True)),
                                   axis=1))


def medians(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Interleaved medians, by the suite's own timer (lagrad.bench.core)."""
    return {k: t.median for k, t in time_calls(calls, repeats, budget=60.0).items()}


def main() -> None:
    x, y = digits()
    params = make_mlp((64, 32, 10), 16)[2]
    step = lagrad.jit(lagrad.value_and_grad(loss))
    program = lagrad.trace(lambda *p: loss(p, x, y), *params)
    step(params, x, y)
    t = medians({"jit": lambda: step(params, x, y),
                 "program": lambda: program.solve(*params).grad(),
                 "numpy": lambda: numpy_gradient(x, y, params)}, 300)
    t.update(medians({"uncached": lambda: lagrad.value_and_grad(loss)(params, x, y)}, 30))
    print(f"digits MLP 64-32-10, batch {x.shape[0]}: uncached {t['uncached'] * 1e3:.3f} ms, "
          f"jit {t['jit'] * 1e3:.3f} ms, program.solve().grad() {t['program'] * 1e3:.3f} ms, "
          f"numpy {t['numpy'] * 1e3:.3f} ms; jit/numpy {t['jit'] / t['numpy']:.2f} "
          f"(target 1.3), traces {step.cache.traces}")
    rng = np.random.default_rng(0)
    for order in (rng.permutation(len(x)) for _ in range(3)):
        step(params, x[order], y[order])
    print(f"3 shuffled batches of the digits: traces {step.cache.traces} (1: data arrays are "
          "inputs of the program, not constants)")
    f = lambda v: (lagrad.sin(v) * v).sum()  # noqa: E731
    x3 = np.array([0.1, 0.2, 0.3])
    small = lagrad.jit(lagrad.value_and_grad(f))
    p3 = lagrad.trace(f, x3)
    small(x3)
    s = medians({"jit": lambda: small(x3), "solve": lambda: p3.solve(x3).grad(),
                 "numpy": lambda: (float((np.sin(x3) * x3).sum()),
                                   np.cos(x3) * x3 + np.sin(x3))}, 3000)
    s.update(medians({"uncached": lambda: lagrad.value_and_grad(f)(x3)}, 300))
    print(f"3-element value_and_grad: uncached {s['uncached'] * 1e6:.1f} us, jit "
          f"{s['jit'] * 1e6:.1f} us, program.solve().grad() {s['solve'] * 1e6:.1f} us, "
          f"numpy by hand {s['numpy'] * 1e6:.1f} us; overhead over program.solve().grad() "
          f"{(s['jit'] - s['solve']) * 1e6:.1f} us, over numpy "
          f"{(s['jit'] - s['numpy']) * 1e6:.1f} us (target 20)")


if __name__ == "__main__":
    main()
