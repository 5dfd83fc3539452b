"""Workload ``peers``: the scaling / mlp / deq / pagerank problems through other
differentiation libraries, side by side with lagrad in the same run.

Peers are used only when importable (nothing is installed here): JAX (with
jaxopt for the implicit problems), HIPS autograd, PyTorch (CPU) and CasADi.
A missing peer is reported with a one-line note. Every peer runs in float64;
compile / build time is excluded from the timings (reported separately where
it is large) and each peer's gradient is checked against lagrad's.

What each peer runs:

* jax: mlp (``jit(grad)``), scaling (the numpy level pass written in
  ``jax.numpy`` under ``jit(grad)``), deq and pagerank with jaxopt's
  ``FixedPointIteration`` (implicit differentiation, BiCGSTAB at tol 1e-12);
* autograd: mlp, scaling (one autograd call per scalar equation);
* torch: mlp (autograd), scaling (level pass with ``index_put``), deq and
  pagerank with a hand-written implicit backward (adjoint iteration through
  ``torch.autograd.grad``);
* casadi: scaling (an SX expression graph built from Python, then
  ``gradient``; build time reported).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .core import Column, Context, attempt, format_table, relative_error, time_calls
from .dag import KINDS, LevelPass, build_program, random_dag
from .deq import make_deq
from .mlp import lagrad_loss, make_mlp
from .pagerank import ALPHA, PageRankProblem

__all__ = ["peers", "PEERS", "SIZES", "available_peers"]

PEERS = ("jax", "jaxopt", "autograd", "torch", "casadi")
SIZES = {"tiny": {"scaling": 1000, "mlp": ((64, 32, 32, 10), 16), "deq": 30, "pagerank": 2000},
         "quick": {"scaling": 10_000, "mlp": ((784, 256, 256, 10), 128), "deq": 1000,
                   "pagerank": 100_000},
         "full": {"scaling": 100_000, "mlp": ((784, 256, 256, 10), 128), "deq": 3000,
                  "pagerank": 1_000_000}}
TOL = 1e-12


def available_peers() -> dict[str, Any]:
    """name -> module, for the peers that import."""
    found = {}
    for name in PEERS:
        try:
            found[name] = importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 (ImportError, or a broken install: not a peer)
            continue
    return found


# ---------------------------------------------------------------- problems

def _mlp_problem(size: Any) -> dict[str, Any]:
    sizes, batch = size
    data, labels, params = make_mlp(sizes, batch)
    return {"data": data, "labels": labels, "params": params, "label": f"{sizes} x {batch}"}


def _lagrad_call(problem: str, p: Any) -> Callable[[], Any]:
    """lagrad's gradient call for a problem (the program traced or built once)."""
    if problem == "mlp":
        import lagrad

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


# ---------------------------------------------------------------- jax

def _jax_ready(jax: Any, value: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: np.asarray(a.block_until_ready()), value)


def _jax(problem: str, p: Any, mods: dict[str, Any]) -> Callable[[], Any]:
    jax = mods["jax"]
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    if problem == "mlp":
        data, labels = jnp.asarray(p["data"]), jnp.asarray(p["labels"])

        def loss(params: Any) -> Any:
            h = data
            for k in range(len(params) // 2 - 1):
                h = jnp.tanh(h @ params[2 * k] + params[2 * k + 1])
            logits = h @ params[-2] + params[-1]
            lse = jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
            return -jnp.mean(jnp.sum(labels * (logits - lse), axis=1))
        grad = jax.jit(jax.grad(loss))
        params = tuple(jnp.asarray(a) for a in p["params"])
        return lambda: _jax_ready(jax, grad(params))
    if problem == "scaling":
        floor: LevelPass = p["floor"]
        ops = {"sin": jnp.sin, "cos": jnp.cos, "tanh": jnp.tanh, "exp": jnp.exp}

        def out(x: Any) -> Any:
            z = jnp.zeros(floor.dag.n_variables).at[:floor.dag.n_inputs].set(x)
            for k, o, a, b, c in floor.segments:
                name = KINDS[k]
                if name in ops:
                    val = ops[name](z[a])
                elif name == "mul":
                    val = z[a] * z[b]
                elif name == "scale":
                    val = z[a] * c
                elif name == "add":
                    val = z[a] + z[b]
                else:
                    val = z[a] - z[b]
                z = z.at[o].set(val)
            return z[-1]
        grad = jax.jit(jax.grad(out))
        x = jnp.asarray(p["x"])
        return lambda: _jax_ready(jax, grad(x))
    if "jaxopt" not in mods:
        raise ImportError("jaxopt is not installed (needed for the implicit problems)")
    jaxopt = mods["jaxopt"]
    from functools import partial

    solve = partial(jaxopt.linear_solve.solve_bicgstab, tol=TOL)
    if problem == "deq":
        prob = p["deq"]
        u, b = jnp.asarray(prob.U), jnp.asarray(prob.b)

        def layer(z: Any, x: Any, w: Any) -> Any:
            return jnp.tanh(w @ z + u @ x + b)
        fpi = jaxopt.FixedPointIteration(layer, maxiter=10_000, tol=TOL, implicit_diff=True,
                                         implicit_diff_solve=solve)

        def deq_loss(x: Any, w: Any) -> Any:
            z = fpi.run(jnp.zeros(prob.n), x, w).params
            return jnp.sum(z * z)
        grad = jax.jit(jax.grad(deq_loss, argnums=(0, 1)))
        x, w = jnp.asarray(prob.x), jnp.asarray(prob.W)
        return lambda: _jax_ready(jax, grad(x, w))
    prob = p["pagerank"]
    src, dst, n = jnp.asarray(prob.src), jnp.asarray(prob.dst), prob.n
    subset = jnp.asarray(prob.subset)

    def step(r: Any, w: Any, v: Any) -> Any:
        s = jax.ops.segment_sum(w, src, num_segments=n)
        flow = jax.ops.segment_sum(r[src] * w / s[src], dst, num_segments=n)
        return ALPHA * flow + (1.0 - ALPHA) * v
    fpi = jaxopt.FixedPointIteration(step, maxiter=10_000, tol=TOL, implicit_diff=True,
                                     implicit_diff_solve=solve)

    def mass(w: Any, v: Any) -> Any:
        return jnp.sum(fpi.run(jnp.full(n, 1.0 / n), w, v).params[subset])
    grad = jax.jit(jax.grad(mass, argnums=(0, 1)))
    w, v = jnp.asarray(prob.w), jnp.asarray(prob.v)
    return lambda: _jax_ready(jax, grad(w, v))


# ---------------------------------------------------------------- autograd

def _autograd(problem: str, p: Any, mods: dict[str, Any]) -> Callable[[], Any]:
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
    raise NotImplementedError("autograd has no implicit differentiation; not run")


# ---------------------------------------------------------------- torch

def _torch(problem: str, p: Any, mods: dict[str, Any]) -> Callable[[], Any]:
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

        def layer(z: Any) -> Any:
            return torch.tanh(w @ z + u @ x + b)
        return lambda: _torch_implicit(torch, layer, torch.zeros(prob.n, dtype=f64),
                                       lambda z: torch.sum(z * z), (x, w))
    prob = p["pagerank"]
    src, dst = torch.as_tensor(prob.src), torch.as_tensor(prob.dst)
    wt, vt = t(prob.w, True), t(prob.v, True)
    subset = torch.as_tensor(prob.subset)

    def step(r: Any) -> Any:
        s = torch.zeros(prob.n, dtype=f64).index_add(0, src, wt)
        flow = torch.zeros(prob.n, dtype=f64).index_add(0, dst, r[src] * wt / s[src])
        return ALPHA * flow + (1.0 - ALPHA) * vt
    return lambda: _torch_implicit(torch, step, torch.full((prob.n,), 1.0 / prob.n, dtype=f64),
                                   lambda r: torch.sum(r[subset]), (wt, vt))


def _torch_implicit(torch: Any, f: Callable[[Any], Any], z0: Any,
                    loss: Callable[[Any], Any], params: tuple[Any, ...]) -> Any:
    """Fixed point without a graph, then lambda = J^T lambda + dloss/dz by
    iteration, then dloss/dparams = lambda^T df/dparams (hand-written implicit)."""
    with torch.no_grad():
        z = z0
        for _ in range(10_000):
            new = f(z)
            done = torch.linalg.norm(new - z) <= TOL * max(1.0, float(torch.linalg.norm(new)))
            z = new
            if done:
                break
    z = z.detach().requires_grad_(True)
    fz = f(z)
    seed = torch.autograd.grad(loss(z), z)[0]
    lam = seed.clone()
    for _ in range(10_000):
        new = torch.autograd.grad(fz, z, lam, retain_graph=True)[0] + seed
        done = torch.linalg.norm(new - lam) <= TOL * float(torch.linalg.norm(seed))
        lam = new
        if done:
            break
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
    "jax": _jax, "autograd": _autograd, "torch": _torch, "casadi": _casadi}


def _problem(name: str, size: Any) -> dict[str, Any]:
    if name == "mlp":
        return _mlp_problem(size)
    if name == "scaling":
        dag = random_dag(size)
        return {"dag": dag, "x": dag.inputs(), "floor": LevelPass(dag), "label": f"n={size}"}
    if name == "deq":
        return {"deq": make_deq(size), "label": f"N={size}"}
    return {"pagerank": PageRankProblem(size), "label": f"m={size}"}


COLUMNS = [Column("problem", "problem"), Column("label", "size"), Column("peer", "library"),
           Column("seconds", "grad ms", "{:.2f}", 1e3),
           Column("over_lagrad", "/lagrad", "{:.2f}"), Column("build_s", "build s", "{:.2f}"),
           Column("error", "err vs lagrad", "{:.0e}"), Column("note", "note")]


def peers(ctx: Context) -> list[dict[str, Any]]:
    """The same problems through every importable peer, with lagrad alongside."""
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
    for problem, size in ctx.pick(SIZES).items():
        ctx.progress(f"peers: {problem}: problem and lagrad")
        p = _problem(problem, size)
        lagrad_call = _lagrad_call(problem, p)
        base = {"workload": "peers", "problem": problem, "label": p["label"],
                "size": size if isinstance(size, int) else size[1]}
        t = time_calls({"lagrad": lagrad_call}, ctx.repeats or 1, ctx.budget or 1.0)["lagrad"]
        reference = t.value
        rows.append({**base, "peer": "lagrad", "series": f"lagrad {problem}",
                     "seconds": t.median, "over_lagrad": 1.0})
        for peer in runnable:
            ctx.progress(f"peers: {problem}: {peer}")
            row: dict[str, Any] = {**base, "peer": peer, "series": f"{peer} {problem}"}
            try:
                call = RUNNERS[peer](problem, p, mods)
            except (ImportError, NotImplementedError) as err:
                row["note"] = str(err)
                rows.append(row)
                continue
            except Exception as err:  # noqa: BLE001 (a peer's API differs from what we expect)
                row["note"] = f"setup failed: {type(err).__name__}: {str(err)[:80]}"
                rows.append(row)
                continue
            try:
                got = attempt(ctx, guard, f"{peer} {problem}", 1.0, p["label"], call)
            except Exception as err:  # noqa: BLE001 (the peer failed while running: note it)
                row["note"] = f"failed: {type(err).__name__}: {str(err)[:80]}"
                rows.append(row)
                continue
            if got.timing is None:
                row["note"] = got.note
            else:
                row.update(seconds=got.timing.median, over_lagrad=got.timing.median / t.median,
                           error=relative_error(got.timing.value, reference),
                           build_s=p.pop("build_s", None))
            rows.append(row)
    notes = ["grad: forward + gradient, float64, compile/build excluded (first call untimed); "
             "/lagrad: peer time over lagrad's in this run"]
    ctx.print(format_table("peers: the same problems through other libraries", COLUMNS, rows,
                           notes))
    return rows
