"""Workload ``peers``: the scaling / mlp / deq / pagerank problems through other
differentiation libraries, side by side with lagrad in the same run.

Peers are used only when importable (none is a dependency): JAX, jaxopt, HIPS
autograd, PyTorch (CPU) and CasADi; ``pip install 'lagrad[peers]'`` installs
all but PyTorch. A missing peer is reported with a one-line note and skipped.

What each peer runs (the ``method`` column of the table says the same):

* jax: mlp and scaling under ``jit(grad)`` (scaling: the numpy level pass of
  :class:`~lagrad.bench.dag.LevelPass` in ``jax.numpy``, its index arrays
  passed as arguments); deq and pagerank as a ``custom_vjp``: a fixed-point
  ``while_loop`` forward and an adjoint solve by BiCGSTAB (the implicit
  differentiation a JAX user writes without jaxopt);
* jaxopt: deq and pagerank with ``FixedPointIteration`` (``implicit_diff``,
  i.e. ``custom_fixed_point``), BiCGSTAB for the implicit solve;
* autograd: mlp, scaling (one autograd call per scalar equation), deq and
  pagerank with ``autograd.misc.fixed_points.fixed_point`` (adjoint by
  fixed-point iteration; pagerank's scatter-add is a primitive with a
  hand-written VJP, autograd having none);
* torch: mlp (eager autograd), scaling (level pass with ``index_put``), deq
  and pagerank with a hand-written implicit backward (fixed point without a
  graph, adjoint iteration through ``torch.autograd.grad``);
* casadi: scaling (an SX expression graph built from Python, then
  ``gradient`` and a ``Function``);
* jax and jaxopt also run the blocks chain (``lax.scan`` over the blocks,
  one ``custom_root`` / ``FixedPointIteration`` per block) and the Jacobians
  of the ``jacobian`` workload (``jax.jacrev``), against lagrad's default
  gradient and ``lagrad.jacrev`` (see :mod:`lagrad.bench.peers_jax`).

Conventions, as for the other workloads: float64 everywhere (jax's x64 mode
is switched on); one thread (BLAS is pinned by the runner; XLA's and torch's
intra-op threads are set to one here, and the whole workload runs on one CPU,
since XLA's CPU runtime starts threads of its own whatever its flags say:
without that, JAX's matrix-vector products ran on both cores here); compile
and build time are excluded from the timings and reported as ``build s``
(jax programs are compiled ahead of time with
``jit(...).lower(...).compile()``; CasADi's graph and Function are built
before timing). Each peer is timed interleaved with lagrad, so that
``/lagrad`` compares the two under the same machine load. Every iteration
stops at ``||z_new - z|| <= TOL max(1, ||z_new||)`` (jaxopt: its own absolute
test ``||z_new - z|| <= TOL``), linear solves at relative residual ``TOL``.
Quantities that do not change inside a fixed-point loop (the DEQ's
``U x + b``, PageRank's normalized weights ``w / s[src]``) are computed once
before it, the gradient flowing through them, as in lagrad's programs.

Every peer's gradient is checked against lagrad's: the relative error (max
abs difference over max abs) must be at most ``AGREE[problem]``; a larger
one is flagged in the row's note ("DISAGREES").
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

import lagrad

from .core import Column, Context, Guard, format_table, relative_error, time_calls
from .dag import KINDS, LevelPass, build_program, random_dag
from .deq import make_deq
from .machine import one_core
from .mlp import lagrad_loss, make_mlp
from .pagerank import ALPHA, PageRankProblem
from .peers_jax import (
    EXTRA_METHODS,
    EXTRA_PROBLEMS,
    MAXITER,
    TOL,
    extra_lagrad_call,
    extra_problem,
    jax_extra,
    jaxopt_extra,
    jaxopt_fixed_point,
)
from .peers_jax import jax_compiled as _jax_compiled
from .peers_jax import jax_implicit as _jax_implicit
from .peers_jax import jax_setup as _jax_setup

__all__ = ["peers", "PEERS", "SIZES", "AGREE", "available_peers"]

PEERS = ("jax", "jaxopt", "autograd", "torch", "casadi")
SIZES: dict[str, dict[str, list[Any]]] = {
    "tiny": {"scaling": [1000], "mlp": [((64, 32, 32, 10), 16)], "deq": [30],
             "pagerank": [2000], "blocks": [10],
             "jacobian": [("deq", 30, 10), ("mlp", (64, 32, 32), 20)]},
    "quick": {"scaling": [10_000], "mlp": [((784, 256, 256, 10), 128)], "deq": [1000],
              "pagerank": [100_000], "blocks": [1000],
              "jacobian": [("mlp", (784, 256, 256), 100), ("deq", 1000, 100)]},
    "full": {"scaling": [100_000, 1_000_000], "mlp": [((784, 256, 256, 10), 128)],
             "deq": [1000, 3000], "pagerank": [100_000, 1_000_000], "blocks": [1000, 100_000],
             "jacobian": [("mlp", (784, 256, 256), 100), ("deq", 1000, 100),
                          ("deq", 3000, 100)]}}
# a peer's gradient agrees with lagrad's when the relative error is at most this:
# rounding for the explicit programs; for the implicit ones, two solutions of the
# same system, each to TOL, through conditioning 1 / (1 - 0.9) or 1 / (1 - 0.85)
AGREE = {"scaling": 1e-12, "mlp": 1e-12, "deq": 1e-9, "pagerank": 1e-9, "blocks": 1e-9,
         "jacobian": 1e-9}
WORK_EXPONENT = {"scaling": 1.0, "mlp": 1.0, "deq": 2.0, "pagerank": 1.0,  # guard: time ~ size^k
                 "blocks": 1.0, "jacobian": 1.0}
METHODS = {
    ("jax", "scaling"): "jit(grad), level pass", ("jax", "mlp"): "jit(grad)",
    ("jax", "deq"): "custom_vjp, BiCGSTAB", ("jax", "pagerank"): "custom_vjp, BiCGSTAB",
    ("jaxopt", "deq"): "FixedPointIteration, BiCGSTAB",
    ("jaxopt", "pagerank"): "FixedPointIteration, BiCGSTAB",
    ("autograd", "scaling"): "grad, scalar ops", ("autograd", "mlp"): "grad",
    ("autograd", "deq"): "fixed_point", ("autograd", "pagerank"): "fixed_point",
    ("torch", "scaling"): "autograd, level pass", ("torch", "mlp"): "autograd (eager)",
    ("torch", "deq"): "hand-written implicit", ("torch", "pagerank"): "hand-written implicit",
    ("casadi", "scaling"): "SX gradient",
    **EXTRA_METHODS,
}
_XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def available_peers() -> dict[str, Any]:
    """name -> module, for the peers that import.

    Before JAX is first imported, XLA is told to use one thread (unless
    ``XLA_FLAGS`` already sets its threading), as BLAS is for every workload.
    """
    if "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        if "multi_thread_eigen" not in flags and "intra_op_parallelism" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {_XLA_ONE_THREAD}".strip()
    found = {}
    for name in PEERS:
        try:
            found[name] = importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 (ImportError, or a broken install: not a peer)
            continue
    return found


# ---------------------------------------------------------------- problems

def _problem(name: str, size: Any) -> dict[str, Any]:
    if name in EXTRA_PROBLEMS:
        return extra_problem(name, size)
    if name == "mlp":
        sizes, batch = size
        data, labels, params = make_mlp(sizes, batch)
        return {"data": data, "labels": labels, "params": params,
                "label": f"{'-'.join(map(str, sizes))} x {batch}"}
    if name == "scaling":
        dag = random_dag(size)
        return {"dag": dag, "x": dag.inputs(), "floor": LevelPass(dag), "label": f"n={size}"}
    if name == "deq":
        return {"deq": make_deq(size), "label": f"N={size}"}
    return {"pagerank": PageRankProblem(size), "label": f"m={size}"}


def _lagrad_call(problem: str, p: Any) -> Callable[[], Any]:
    """lagrad's gradient call for a problem (the program traced or built once)."""
    if problem in EXTRA_PROBLEMS:
        return extra_lagrad_call(problem, p)
    if problem == "mlp":
        program = lagrad.trace(lagrad_loss(p["data"], p["labels"]), *p["params"])
        return lambda: program.solve(*p["params"]).grad()
    if problem == "scaling":
        program, _ = build_program(p["dag"])
        x = p["x"]
        return lambda: np.asarray(program.solve(*x).grad())
    if problem == "deq":
        prob = p["deq"]
        return lambda: prob.program.solve(*prob.inputs).grad()
    prob = p["pagerank"]
    return lambda: prob.program.solve(prob.w, prob.v).grad()


def _converged(step_norm: float, new_norm: float) -> bool:
    return step_norm <= TOL * max(1.0, new_norm)


# ---------------------------------------------------------------- jax

def _jax_fixed_points(problem: str, p: Any, jax: Any,
                      fixed_point: Callable[..., Any]) -> Callable[[], Any]:
    """deq or pagerank through jax, ``fixed_point(T, z0, *args)`` solving z = T(z, *args)."""
    jnp = jax.numpy
    if problem == "deq":
        prob = p["deq"]

        def layer(z: Any, w: Any, a: Any) -> Any:
            return jnp.tanh(w @ z + a)

        def deq_loss(x: Any, w: Any, u: Any, b: Any) -> Any:
            z = fixed_point(layer, jnp.zeros(prob.n), w, u @ x + b)
            return jnp.sum(z * z)
        return _jax_compiled(jax, p, jax.grad(deq_loss, argnums=(0, 1)),
                             *(jnp.asarray(a) for a in (prob.x, prob.W, prob.U, prob.b)))
    prob = p["pagerank"]
    n = prob.n
    segment_sum = partial(jax.ops.segment_sum, num_segments=n)

    def step(r: Any, c: Any, v: Any, src: Any, dst: Any) -> Any:
        return ALPHA * segment_sum(r[src] * c, dst) + (1.0 - ALPHA) * v

    def mass(w: Any, v: Any, src: Any, dst: Any, subset: Any) -> Any:
        c = w / segment_sum(w, src)[src]
        r = fixed_point(step, jnp.full(n, 1.0 / n), c, v, src, dst)
        return jnp.sum(r[subset])
    return _jax_compiled(jax, p, jax.grad(mass, argnums=(0, 1)),
                         *(jnp.asarray(a) for a in (prob.w, prob.v, prob.src, prob.dst,
                                                    prob.subset)))


def _jax(problem: str, p: Any, mods: dict[str, Any]) -> Callable[[], Any]:
    if problem in EXTRA_PROBLEMS:
        return jax_extra(problem, p, mods)
    jax = _jax_setup(mods)
    jnp = jax.numpy
    if problem == "mlp":
        def loss(params: Any, data: Any, labels: Any) -> Any:
            h = data
            for k in range(len(params) // 2 - 1):
                h = jnp.tanh(h @ params[2 * k] + params[2 * k + 1])
            logits = h @ params[-2] + params[-1]
            lse = jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
            return -jnp.mean(jnp.sum(labels * (logits - lse), axis=1))
        params = tuple(jnp.asarray(a) for a in p["params"])
        return _jax_compiled(jax, p, jax.grad(loss), params, jnp.asarray(p["data"]),
                             jnp.asarray(p["labels"]))
    if problem == "scaling":
        floor: LevelPass = p["floor"]
        names = [KINDS[k] for k, *_ in floor.segments]
        # each segment writes distinct variables in increasing order (a scatter hint)
        hint = all(bool(np.all(np.diff(o) > 0)) for _, o, *_ in floor.segments)
        arrays = [tuple(jnp.asarray(v) for v in seg[1:]) for seg in floor.segments]
        unary = {"sin": jnp.sin, "cos": jnp.cos, "tanh": jnp.tanh, "exp": jnp.exp}
        n_variables, n_inputs = floor.dag.n_variables, floor.dag.n_inputs

        def out(x: Any, arrays: Any) -> Any:
            z = jnp.zeros(n_variables).at[:n_inputs].set(x)
            for name, (o, a, b, c) in zip(names, arrays):
                if name in unary:
                    val = unary[name](z[a])
                elif name == "mul":
                    val = z[a] * z[b]
                elif name == "scale":
                    val = z[a] * c
                elif name == "add":
                    val = z[a] + z[b]
                else:
                    val = z[a] - z[b]
                z = z.at[o].set(val, indices_are_sorted=hint, unique_indices=hint)
            return z[-1]
        return _jax_compiled(jax, p, jax.grad(out), jnp.asarray(p["x"]), arrays)
    return _jax_fixed_points(problem, p, jax, partial(_jax_implicit, jax))


def _jaxopt(problem: str, p: Any, mods: dict[str, Any]) -> Callable[[], Any]:
    if problem in EXTRA_PROBLEMS:
        return jaxopt_extra(problem, p, mods)
    if problem not in ("deq", "pagerank"):
        raise NotImplementedError("jaxopt: implicit problems only (see the jax row)")
    return _jax_fixed_points(problem, p, _jax_setup(mods), jaxopt_fixed_point(mods))


# ---------------------------------------------------------------- autograd

class _Distance:
    """Step size test for autograd's ``fixed_point`` (which has no iteration limit)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, new: Any, old: Any) -> float:
        self.calls += 1
        if self.calls > 2 * MAXITER:  # forward and adjoint iterations together
            raise RuntimeError(f"autograd fixed_point: no convergence in {MAXITER} iterations")
        step, size = float(np.linalg.norm(new - old)), float(np.linalg.norm(new))
        return step / max(1.0, size)


def _autograd(problem: str, p: Any, mods: dict[str, Any]) -> Callable[[], Any]:
    if problem in EXTRA_PROBLEMS:
        raise NotImplementedError(f"{problem}: run through jax and jaxopt only")
    ag = mods["autograd"]
    anp = importlib.import_module("autograd.numpy")
    if problem == "mlp":
        data, labels = p["data"], p["labels"]

        def loss(params: Any) -> Any:
            h = data
            for k in range(len(params) // 2 - 1):
                h = anp.tanh(anp.dot(h, params[2 * k]) + params[2 * k + 1])
            logits = anp.dot(h, params[-2]) + params[-1]
            m = anp.max(logits, axis=1, keepdims=True)
            lse = m + anp.log(anp.sum(anp.exp(logits - m), axis=1, keepdims=True))
            return -anp.mean(anp.sum(labels * (logits - lse), axis=1))
        grad = ag.grad(loss)
        params = list(p["params"])
        return lambda: tuple(grad(params))
    if problem == "scaling":
        dag = p["dag"]
        rows = list(zip(dag.kind.tolist(), dag.a.tolist(), dag.b.tolist(), dag.c.tolist()))
        unary = {0: anp.sin, 1: anp.cos, 2: anp.tanh, 3: anp.exp}

        def out(x: Any) -> Any:
            z = [x[i] for i in range(dag.n_inputs)]
            for k, i, j, c in rows:
                z.append(unary[k](z[i]) if k in unary else z[i] * z[j] if k == 4 else
                         z[i] * c if k == 5 else z[i] + z[j] if k == 6 else z[i] - z[j])
            return z[-1]
        grad = ag.grad(out)
        return lambda: grad(p["x"])
    fixed_points = importlib.import_module("autograd.misc.fixed_points")
    extend = importlib.import_module("autograd.extend")
    ag_tuple = importlib.import_module("autograd.builtins").tuple
    if problem == "deq":
        prob = p["deq"]
        u, b = prob.U, prob.b

        def layer(params: Any) -> Callable[[Any], Any]:
            w, a = params
            return lambda z: anp.tanh(anp.dot(w, z) + a)

        def deq_loss(xw: Any) -> Any:
            x, w = xw
            z = fixed_points.fixed_point(layer, ag_tuple((w, anp.dot(u, x) + b)),
                                         np.zeros(prob.n), _Distance(), TOL)
            return anp.sum(z * z)
        grad = ag.grad(deq_loss)
        return lambda: tuple(grad((prob.x, prob.W)))
    prob = p["pagerank"]
    src, dst, n, subset = prob.src, prob.dst, prob.n, prob.subset

    @extend.primitive
    def segment_sum(values: Any, ids: Any) -> Any:
        return np.bincount(ids, weights=values, minlength=n)
    extend.defvjp(segment_sum, lambda ans, values, ids: lambda g: g[ids])

    def step(params: Any) -> Callable[[Any], Any]:
        c, v = params
        return lambda r: ALPHA * segment_sum(r[src] * c, dst) + (1.0 - ALPHA) * v

    def mass(wv: Any) -> Any:
        w, v = wv
        c = w / segment_sum(w, src)[src]
        r = fixed_points.fixed_point(step, ag_tuple((c, v)), np.full(n, 1.0 / n), _Distance(),
                                     TOL)
        return anp.sum(r[subset])
    grad = ag.grad(mass)
    return lambda: tuple(grad((prob.w, prob.v)))


# ---------------------------------------------------------------- torch

def _torch(problem: str, p: Any, mods: dict[str, Any]) -> Callable[[], Any]:
    if problem in EXTRA_PROBLEMS:
        raise NotImplementedError(f"{problem}: run through jax and jaxopt only")
    torch = mods["torch"]
    torch.set_num_threads(1)
    f64 = torch.float64

    def t(a: Any, grad: bool = False) -> Any:
        return torch.tensor(np.asarray(a), dtype=f64, requires_grad=grad)

    if problem == "mlp":
        data, labels = t(p["data"]), t(p["labels"])
        params = [t(a, True) for a in p["params"]]

        def run() -> Any:
            h = data
            for k in range(len(params) // 2 - 1):
                h = torch.tanh(h @ params[2 * k] + params[2 * k + 1])
            logits = h @ params[-2] + params[-1]
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            loss = -torch.mean(torch.sum(labels * (logits - lse), dim=1))
            return tuple(g.numpy() for g in torch.autograd.grad(loss, params))
        return run
    if problem == "scaling":
        floor: LevelPass = p["floor"]
        segs = [(KINDS[k], torch.as_tensor(o), torch.as_tensor(a), torch.as_tensor(b), t(c))
                for k, o, a, b, c in floor.segments]
        x = t(p["x"], True)
        fns = {"sin": torch.sin, "cos": torch.cos, "tanh": torch.tanh, "exp": torch.exp}

        def run_scaling() -> Any:
            z = torch.cat([x, torch.zeros(floor.dag.n_equations, dtype=f64)])
            for name, o, a, b, c in segs:
                val = fns[name](z[a]) if name in fns else z[a] * z[b] if name == "mul" else \
                    z[a] * c if name == "scale" else z[a] + z[b] if name == "add" else \
                    z[a] - z[b]
                z = z.index_put((o,), val)
            return torch.autograd.grad(z[-1], x)[0].numpy()
        return run_scaling
    if problem == "deq":
        prob = p["deq"]
        u, b, x, w = t(prob.U), t(prob.b), t(prob.x, True), t(prob.W, True)
        return lambda: _torch_implicit(
            torch, lambda z, a: torch.tanh(w @ z + a), lambda: (u @ x + b,),
            torch.zeros(prob.n, dtype=f64), lambda z: torch.sum(z * z), (x, w))
    prob = p["pagerank"]
    n = prob.n
    src, dst = torch.as_tensor(prob.src), torch.as_tensor(prob.dst)
    wt, vt = t(prob.w, True), t(prob.v, True)
    subset = torch.as_tensor(prob.subset)

    def weights() -> tuple[Any]:
        s = torch.zeros(n, dtype=f64).index_add(0, src, wt)
        return (wt / s[src],)

    def step(r: Any, c: Any) -> Any:
        return ALPHA * torch.zeros(n, dtype=f64).index_add(0, dst, r[src] * c) + \
            (1.0 - ALPHA) * vt
    return lambda: _torch_implicit(torch, step, weights,
                                   torch.full((n,), 1.0 / n, dtype=f64),
                                   lambda r: torch.sum(r[subset]), (wt, vt))


def _torch_iterate(torch: Any, update: Callable[[Any], Any], z: Any) -> Any:
    for _ in range(MAXITER):
        new = update(z)
        done = _converged(float(torch.linalg.norm(new - z)), float(torch.linalg.norm(new)))
        z = new
        if done:
            return z
    raise RuntimeError(f"torch: no convergence in {MAXITER} iterations")


def _torch_implicit(torch: Any, f: Callable[..., Any], prepare: Callable[[], tuple[Any, ...]],
                    z0: Any, loss: Callable[[Any], Any], params: tuple[Any, ...]) -> Any:
    """Gradient of loss(z) at z = f(z, *prepare()) with respect to ``params``.

    The fixed point is iterated without a graph; then lambda = J^T lambda +
    dloss/dz is iterated with J = df/dz (one ``autograd.grad`` per step) and
    dloss/dparams = lambda^T df/dparams, through ``prepare`` too.
    """
    with torch.no_grad():
        fixed = prepare()
        z = _torch_iterate(torch, lambda z: f(z, *fixed), z0)
    z = z.detach().requires_grad_(True)
    fz = f(z, *prepare())
    seed = torch.autograd.grad(loss(z), z)[0]
    lam = _torch_iterate(
        torch, lambda lam: torch.autograd.grad(fz, z, lam, retain_graph=True)[0] + seed, seed)
    return tuple(g.numpy() for g in torch.autograd.grad(fz, params, lam))


# ---------------------------------------------------------------- casadi

def _casadi(problem: str, p: Any, mods: dict[str, Any]) -> Callable[[], Any]:
    if problem != "scaling":
        raise NotImplementedError("only the scalar DAG (scaling) is run through CasADi")
    ca = mods["casadi"]
    dag = p["dag"]
    t0 = time.perf_counter()
    x = ca.SX.sym("x", dag.n_inputs)
    z = [x[i] for i in range(dag.n_inputs)]
    unary = {0: ca.sin, 1: ca.cos, 2: ca.tanh, 3: ca.exp}
    for k, i, j, c in zip(dag.kind.tolist(), dag.a.tolist(), dag.b.tolist(), dag.c.tolist()):
        z.append(unary[k](z[i]) if k in unary else z[i] * z[j] if k == 4 else
                 z[i] * c if k == 5 else z[i] + z[j] if k == 6 else z[i] - z[j])
    fn = ca.Function("grad", [x], [ca.gradient(z[-1], x)])
    p["build_s"] = time.perf_counter() - t0
    xv = p["x"]
    return lambda: np.asarray(fn(xv).full()).ravel()


RUNNERS: dict[str, Callable[[str, Any, dict[str, Any]], Callable[[], Any]]] = {
    "jax": _jax, "jaxopt": _jaxopt, "autograd": _autograd, "torch": _torch, "casadi": _casadi}


COLUMNS = [Column("problem", "problem"), Column("label", "size"), Column("peer", "library"),
           Column("method", "method"), Column("seconds", "grad ms", "{:.2f}", 1e3),
           Column("over_lagrad", "/lagrad", "{:.2f}"), Column("build_s", "build s", "{:.2f}"),
           Column("error", "err vs lagrad", "{:.0e}"), Column("note", "note")]


def _peer_row(ctx: Context, guard: Guard, problem: str, size: Any, p: dict[str, Any],
              peer: str, mods: dict[str, Any], lagrad_call: Callable[[], Any],
              reference: Any, base: dict[str, Any]) -> dict[str, Any]:
    """One peer on one problem: set up, timed interleaved with lagrad, checked."""
    row: dict[str, Any] = {**base, "peer": peer, "series": f"{peer} {problem}",
                           "method": METHODS.get((peer, problem))}
    key = f"{peer} {problem}"
    work = float(size if isinstance(size, int) else 1) ** WORK_EXPONENT[problem]
    reason = guard.reason(key, work)
    if reason:
        row.update(note=f"skipped, {reason}", seconds_skipped=True)
        return row
    try:
        call = RUNNERS[peer](problem, p, mods)
    except (ImportError, NotImplementedError) as err:
        row["note"] = str(err)
        return row
    except Exception as err:  # noqa: BLE001 (a peer's API differs from what we expect)
        row["note"] = f"setup failed: {type(err).__name__}: {str(err)[:80]}"
        return row
    finally:
        row["build_s"] = p.pop("build_s", None)
    try:
        t = time_calls({"lagrad": lagrad_call, peer: call}, ctx.repeats or 1, ctx.comparison_budget)
    except Exception as err:  # noqa: BLE001 (the peer failed while running: note it)
        row["note"] = f"failed: {type(err).__name__}: {str(err)[:80]}"
        guard.stop(key, f"failed at {p['label']}")
        return row
    timing = t[peer]
    guard.record(key, work, timing.warmup if timing.repeats == 1 else timing.median, p["label"])
    error = relative_error(timing.value, reference)
    row.update(seconds=timing.median, lagrad_s=t["lagrad"].median,
               over_lagrad=timing.median / t["lagrad"].median, error=error)
    if not error <= AGREE[problem]:
        row["note"] = f"DISAGREES with lagrad (err > {AGREE[problem]:g})"
    return row


def peers(ctx: Context) -> list[dict[str, Any]]:
    """The same problems through every importable peer, with lagrad alongside,
    all on one CPU (:func:`~lagrad.bench.machine.one_core`)."""
    with one_core():
        return _peers(ctx)


def _peers(ctx: Context) -> list[dict[str, Any]]:
    mods = available_peers()
    missing = [name for name in PEERS if name not in mods]
    for name in missing:
        ctx.print(f"peers: {name} is not installed; skipped (pip install 'lagrad[peers]'"
                  + (", or the CPU build of torch" if name == "torch" else "") + ")")
    runnable = [name for name in RUNNERS if name in mods]
    if not runnable:
        ctx.print("peers: no peer library is importable; nothing to compare")
        return []
    rows: list[dict[str, Any]] = []
    guard = ctx.guard()
    for problem, sizes in ctx.pick(SIZES).items():
        for size in sizes:
            ctx.progress(f"peers: {problem} {size}: problem and lagrad")
            p = _problem(problem, size)
            lagrad_call = _lagrad_call(problem, p)
            base = {"workload": "peers", "problem": problem, "label": p["label"],
                    "size": size if isinstance(size, int) else size[1]}
            lagrad_call()  # the first call compiles (the blocks chain: a minute at 10^5): untimed
            t = time_calls({"lagrad": lagrad_call}, ctx.repeats or 1, ctx.comparison_budget)
            rows.append({**base, "peer": "lagrad", "series": f"lagrad {problem}",
                         "method": "default", "seconds": t["lagrad"].median,
                         "over_lagrad": 1.0})
            for peer in runnable:
                ctx.progress(f"peers: {problem} {p['label']}: {peer}")
                rows.append(_peer_row(ctx, guard, problem, size, p, peer, mods, lagrad_call,
                                      t["lagrad"].value, base))
    notes = ["grad: forward + gradient, float64, one thread on one CPU; compile/build "
             "excluded (build s; first call untimed); /lagrad: peer time over lagrad's, "
             "timed interleaved",
             "err vs lagrad: max abs difference / max abs of lagrad's gradient; agreement "
             "required: " + ", ".join(f"{k} {v:g}" for k, v in AGREE.items()),
             f"iterations to ||step|| <= {TOL:g} max(1, ||z||) (jaxopt: ||step|| <= {TOL:g}); "
             f"BiCGSTAB to relative residual {TOL:g}"]
    ctx.print(format_table("peers: the same problems through other libraries", COLUMNS, rows,
                           notes))
    return rows
