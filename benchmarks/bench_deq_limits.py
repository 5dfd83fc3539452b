"""What bounds the DEQ layer's gradient (the ``deq`` workload's problem):
how many products with W each adjoint method and each forward method needs,
and what one product costs through numpy and, when JAX is installed, through
XLA, on one CPU and unpinned (wall and CPU time: XLA's CPU runtime starts
threads of its own, whatever its thread flags say).

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_deq_limits.py [N ...]``
(default N = 1000 and 3000). Medians of 50 products (7 at N >= 3000).

With ``--peers`` (JAX and jaxopt installed: the ``peers`` extra), JAX's
client is started on one CPU, as the peers workload starts it (XLA sets
itself up for the CPUs it sees then; ``--unpinned-client`` starts it with
every CPU in view and pins it afterwards, as the rest is pinned), and
the script times the product per iteration inside a loop of the forward
iteration's steps (numpy's loop, on W as numpy allocated it and on a copy
aligned as XLA aligns its own, against one compiled XLA loop, without the
dispatch cost of a single call), then the whole gradient: lagrad's
default, the floor, JAX and jaxopt as the peers workload calls them, one
call of each per round in a fresh order, then blocks of eight calls of each
(the first two dropped), then lagrad beside each peer as the peers workload
times a pair; and it counts the products with W in JAX's gradient.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np

from lagrad.bench.core import time_calls
from lagrad.bench.deq import ADJOINT_METHODS, make_deq
from lagrad.bench.machine import one_core, pin_blas_threads
from lagrad.solve.buffers import aligned_empty


def _median(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of one call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def products(n: int) -> None:
    """Iterations per method: one product with W (forward) or W^T (adjoint)
    each, except BiCGSTAB's, which make two, and LGMRES's, which count its
    restart cycles."""
    prob = make_deq(n)
    p, (x, w) = prob.program, prob.inputs
    for method in ADJOINT_METHODS:
        if method in ("splu", "dense"):
            continue  # direct: no products with W, a factorization instead
        info = p.solve(x, w).adjoint_system().solve(method).info
        adj = ", ".join(f"{b.method} {b.iterations} it" for b in info.blocks)
        print(f"N={n} adjoint {method:12s} {adj}")
    for method in ("fixed_point", "anderson"):
        sol = p.solve(x, w, method=method)
        fwd = ", ".join(f"{d.method} {d.iterations} it" for d in sol.diagnostics.values())
        print(f"N={n} forward {method:12s} {fwd}")


def product_time(n: int) -> None:
    """One W @ z through numpy, and through XLA if JAX imports."""
    rng = np.random.default_rng(0)
    w, z = rng.standard_normal((n, n)), rng.standard_normal(n)
    repeats = 50 if n < 3000 else 7
    wall, cpu = _median(lambda: w @ z, repeats)
    print(f"N={n} numpy W @ z: {wall * 1e3:.3f} ms wall, {cpu * 1e3:.3f} ms CPU")
    try:
        import jax  # optional: not a dependency
    except ImportError:
        print("jax is not installed: no XLA figures (pip install 'lagrad[peers]')")
        return
    jax.config.update("jax_enable_x64", True)
    wj, zj = jax.numpy.asarray(w), jax.numpy.asarray(z)
    mv = jax.jit(lambda a, b: a @ b)
    for label, pinned in (("unpinned", False), ("one CPU", True)):
        def call() -> Any:
            return mv(wj, zj).block_until_ready()
        if pinned:
            with one_core():
                wall, cpu = _median(call, repeats)
        else:
            wall, cpu = _median(call, repeats)
        print(f"N={n} XLA W @ z, {label}: {wall * 1e3:.3f} ms wall, {cpu * 1e3:.3f} ms CPU")


LOOP = 50  # products per call in loop_time


def loop_time(jax: Any, w: Any, z: Any, repeats: int) -> None:
    """The forward iteration's step z <- tanh(W z), LOOP times in one call:
    numpy's loop (on W as numpy allocated it, and on a 64-byte aligned copy)
    against one compiled XLA loop (on XLA's own copy of W), on one CPU, calls
    in a fresh order each round; per product, free of the per-call dispatch
    of a single one."""
    n = z.size
    wj, zj = jax.numpy.asarray(w), jax.numpy.asarray(z)
    step = jax.jit(lambda a, b: jax.lax.fori_loop(0, LOOP, lambda _, y: jax.numpy.tanh(a @ y),
                                                   b))

    def numpy_loop(m: Any) -> Any:
        y = z
        for _ in range(LOOP):
            y = np.tanh(m @ y)
        return y
    w64 = aligned_empty(w.size).reshape(w.shape)  # 64-byte aligned, as XLA's buffers
    w64[...] = w
    calls = {"numpy": lambda: numpy_loop(w), "numpy aligned": lambda: numpy_loop(w64),
             "XLA": lambda: step(wj, zj).block_until_ready()}
    with one_core():
        for fn in calls.values():
            fn()
        times: dict[str, list[float]] = {name: [] for name in calls}
        for k in range(max(repeats // 2, 5)):
            for name in random.Random(k).sample(list(calls), len(calls)):
                t0 = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
    per = {name: float(np.median(t)) / LOOP for name, t in times.items()}
    print(f"N={n} tanh(W @ z), {LOOP} per call, one CPU, shuffled rounds: numpy "
          f"{per['numpy'] * 1e3:.3f} ms, on a 64-byte aligned W {per['numpy aligned'] * 1e3:.3f}"
          f" ms, XLA {per['XLA'] * 1e3:.3f} ms a product (XLA/numpy "
          f"{per['XLA'] / per['numpy']:.2f}, aligned/numpy "
          f"{per['numpy aligned'] / per['numpy']:.2f})")


def peers_in_blocks(n: int, rounds: int = 60, block: int = 8) -> None:
    """The DEQ gradient of lagrad, its floor, JAX and jaxopt: one call each per
    round, then ``block`` calls each per round (two dropped as warm-up), then
    lagrad beside each peer as the peers workload times a pair; and JAX's
    products with W, counted."""
    from lagrad.bench import peers

    mods = peers.available_peers()
    if "jax" not in mods or "jaxopt" not in mods:
        print("jax and jaxopt are needed (pip install 'lagrad[peers]')")
        return
    with one_core():  # (the caller started JAX's client on this one CPU)
        p = peers._problem("deq", n)
        rng = np.random.default_rng(0)
        loop_time(mods["jax"], p["deq"].W, rng.standard_normal(n), 50)
        calls = {"lagrad": peers._lagrad_call("deq", p), "floor": p["deq"].floor,
                 "jax": peers._jax("deq", p, mods), "jaxopt": peers._jaxopt("deq", p, mods)}
        for fn in calls.values():
            fn()
            fn()
        for per, skip, count in ((1, 0, rounds), (block, 2, max(rounds // block * 2, 5))):
            times: dict[str, list[float]] = {name: [] for name in calls}
            for k in range(count):
                for name in random.Random(k).sample(list(calls), len(calls)):
                    for j in range(per):
                        t0 = time.perf_counter()
                        calls[name]()
                        if j >= skip:
                            times[name].append(time.perf_counter() - t0)
            med = {name: float(np.median(t)) for name, t in times.items()}
            how = "one call each per round" if per == 1 else f"blocks of {per} calls"
            print(f"N={n} gradient, {how}: " + ", ".join(
                f"{name} {m * 1e3:.2f} ms ({m / med['lagrad']:.2f}x)" for name, m in med.items()))
        for peer in ("jax", "jaxopt"):  # pairs, as the peers workload times them
            t = time_calls({"lagrad": calls["lagrad"], peer: calls[peer]}, 5, 60)
            print(f"N={n} {peer} beside lagrad (the peers workload's pairs): lagrad "
                  f"{t['lagrad'].median * 1e3:.2f} ms, {peer} {t[peer].median * 1e3:.2f} ms "
                  f"({t[peer].median / t['lagrad'].median:.2f}x)")
        jax_products(mods["jax"], p)


def jax_products(jax: Any, p: dict[str, Any]) -> None:
    """The products with W in JAX's DEQ gradient (the peers workload's
    ``custom_vjp``): the layer's evaluations and BiCGSTAB's applications of
    its operator, counted by ``jax.debug.callback`` as the compiled gradient
    runs."""
    import jax.scipy.sparse.linalg as jsl

    from lagrad.bench import peers_jax

    count = {"layer": 0, "bicgstab": 0}

    def bump(key: str) -> None:
        count[key] += 1
    solver = jsl.bicgstab

    def counted(op: Callable[[Any], Any], b: Any, **kw: Any) -> Any:
        def applied(u: Any) -> Any:
            jax.debug.callback(bump, "bicgstab")
            return op(u)
        return solver(applied, b, **kw)
    prob, jnp = p["deq"], jax.numpy

    def layer(z: Any, w: Any, a: Any) -> Any:
        jax.debug.callback(bump, "layer")
        return jnp.tanh(w @ z + a)

    def loss(x: Any, w: Any, u: Any, b: Any) -> Any:
        z = peers_jax.jax_implicit(jax, layer, jnp.zeros(prob.n), w, u @ x + b)
        return jnp.sum(z * z)
    jsl.bicgstab = counted  # read when the implicit rule is made: a new one, counting
    peers_jax._IMPLICIT_RULES.pop(id(jax), None)
    try:
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        jax.block_until_ready(grad(*(jnp.asarray(v) for v in (prob.x, prob.W, prob.U, prob.b))))
    finally:
        jsl.bicgstab = solver
        peers_jax._IMPLICIT_RULES.pop(id(jax), None)
    print(f"N={prob.n} JAX's gradient: {count['layer']} evaluations of the layer (the "
          f"iterations and two linearizations), {count['bicgstab']} products in BiCGSTAB")


def main(sizes: list[int]) -> None:
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                          "intra_op_parallelism_threads=1")  # as the peers workload sets
    pin_blas_threads(1)
    for n in sizes:
        products(n)
        product_time(n)


if __name__ == "__main__":
    args = sys.argv[1:]
    sizes = [int(a) for a in args if not a.startswith("--")] or [1000, 3000]
    if "--peers" in args:
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                              "intra_op_parallelism_threads=1")
        pin_blas_threads(1)
        # XLA sets itself up for the CPUs it sees when its client starts: on one,
        # as the peers workload starts it (--unpinned-client: on every CPU, then
        # pinned like the rest, to see the difference)
        with nullcontext() if "--unpinned-client" in args else one_core():
            try:
                import jax
                jax.config.update("jax_enable_x64", True)
                jax.devices()
            except ImportError:
                pass
        for n in sizes:
            peers_in_blocks(n)
    else:
        main(sizes)
