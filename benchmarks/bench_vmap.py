"""vmap: 200 instances of a small fixed point, differentiated in one program,
against a Python loop of grad calls (traced per call, and jitted).

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_vmap.py``. Each instance
is z = 0.5 tanh(W z) + x_i with n = 3 and the loss sum(z); W is shared (its
per-instance gradient is returned too). Medians of interleaved runs; the
target is vmap(grad) at least 20x faster than the loop of grad calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import lagrad
from lagrad.bench.core import time_calls

B, N = 200, 3


def loss(x: Any, w: Any) -> Any:
    z = lagrad.fixed_point(lambda z, x, w: 0.5 * lagrad.tanh(w @ z) + x, np.zeros(N), x, w)
    return z.sum()


def medians(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Interleaved medians, by the suite's own timer (lagrad.bench.core)."""
    return {k: t.median for k, t in time_calls(calls, repeats, budget=60.0).items()}


def main() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((N, N))
    xs = rng.standard_normal((B, N))
    for label, options in (("default (auto)", None), ("newton", {"method": "newton"})):
        grad = lagrad.grad(loss, argnums=(0, 1), solve_options=options)
        jitted = lagrad.jit(grad)
        batched = lagrad.vmap(grad, in_axes=(0, None))
        gx, gw = batched(xs, w)
        ref = [jitted(x, w) for x in xs]
        err = max(np.abs(gx - [r[0] for r in ref]).max(), np.abs(gw - [r[1] for r in ref]).max())
        t = medians({"loop": lambda: [grad(x, w) for x in xs],  # noqa: B023
                     "loop_jit": lambda: [jitted(x, w) for x in xs],  # noqa: B023
                     "vmap": lambda: batched(xs, w)}, 7)  # noqa: B023
        print(f"{B} fixed points, n={N}, forward {label}: loop of grad {t['loop'] * 1e3:.1f} ms, "
              f"loop of jitted grad {t['loop_jit'] * 1e3:.1f} ms, vmap(grad) "
              f"{t['vmap'] * 1e3:.2f} ms; speed-up {t['loop'] / t['vmap']:.0f}x "
              f"({t['loop_jit'] / t['vmap']:.0f}x over the jitted loop; target >= 20x); "
              f"max |vmap - loop| {err:.1e}")


if __name__ == "__main__":
    main()
