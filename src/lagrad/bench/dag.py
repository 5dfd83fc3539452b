"""Random scalar DAGs as arrays, lagrad programs built from them, and the
hand-vectorized numpy level pass over the same graph (the *floor*).

A :class:`ScalarDag` is n scalar equations z_i = f_i(z_a(i), z_b(i)) over d
scalar inputs, stored as arrays (kind, a, b, c). Parents are drawn uniformly
among all earlier variables, so the graph is wide and shallow (a few dozen
levels for a million equations). Values stay bounded: mul, scale, add, sub
and exp read only variables bounded by 1 (inputs in [-1, 1], sin, cos,
tanh, mul of two of them, scale by |c| <= 1), so nothing overflows.

Every equation reaches the output: the variables no equation reads are summed
by a balanced tree of adds whose root is the output. (With random parents and
one output most equations would be dead code, and a peer that prunes dead code
would measure nothing.)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

import lagrad

__all__ = ["ScalarDag", "random_dag", "build_program", "LevelPass", "KINDS",
           "bulk_builder"]

Array = NDArray[np.float64]
Ints = NDArray[np.intp]
KINDS = ("sin", "cos", "tanh", "exp", "mul", "scale", "add", "sub")
SIN, COS, TANH, EXP, MUL, SCALE, ADD, SUB = range(len(KINDS))
UNIT = (SIN, COS, TANH, MUL, SCALE)  # results bounded by 1 in absolute value
READS_UNIT = (EXP, MUL, SCALE, ADD, SUB)  # read only unit-bounded variables
BINARY = (MUL, ADD, SUB)
PROBABILITIES = (0.15, 0.15, 0.15, 0.05, 0.15, 0.15, 0.10, 0.10)


@dataclass(frozen=True)
class ScalarDag:
    """n equations over d inputs: variable d + i is kind[i](z[a[i]], z[b[i]])
    (b[i] = -1 for unary kinds; c[i] is the constant of "scale")."""

    n_inputs: int
    kind: NDArray[np.int8]
    a: Ints
    b: Ints
    c: Array

    @property
    def n_equations(self) -> int:
        return int(self.kind.size)

    @property
    def n_variables(self) -> int:
        return self.n_inputs + self.n_equations

    def inputs(self, seed: int = 1) -> Array:
        return np.random.default_rng(seed).uniform(-1.0, 1.0, self.n_inputs)


def random_dag(n: int, n_inputs: int = 8, seed: int = 0) -> ScalarDag:
    """About n random equations (n random ones plus the add tree over the
    unread ones: the total is :attr:`ScalarDag.n_equations`)."""
    rng = np.random.default_rng(seed)
    d = n_inputs
    kind = rng.choice(len(KINDS), size=n, p=PROBABILITIES).astype(np.int8)
    var = np.arange(d, d + n)
    unit = np.ones(d + n, dtype=bool)
    unit[d:] = np.isin(kind, UNIT)
    unit_at = np.flatnonzero(unit)
    below = np.searchsorted(unit_at, var)  # unit-bounded variables before each one
    pick_unit = unit_at[(rng.random((2, n)) * below).astype(np.intp)]
    pick_any = (rng.random(n) * var).astype(np.intp)
    a = np.where(np.isin(kind, READS_UNIT), pick_unit[0], pick_any)
    b = np.where(np.isin(kind, BINARY), pick_unit[1], -1)
    c = rng.uniform(-1.0, 1.0, n)
    read = np.zeros(d + n, dtype=bool)
    read[a] = True
    read[b[b >= 0]] = True
    sinks = np.flatnonzero(~read[d:]) + d
    kinds, aa, bb, cc = [kind], [a], [b], [c]
    nxt = d + n
    while sinks.size > 1:  # balanced tree of adds: depth log2(sinks)
        m = sinks.size // 2
        kinds.append(np.full(m, ADD, dtype=np.int8))
        aa.append(sinks[0:2 * m:2])
        bb.append(sinks[1:2 * m:2])
        cc.append(np.zeros(m))
        sinks = np.concatenate([np.arange(nxt, nxt + m), sinks[2 * m:]])
        nxt += m
    return ScalarDag(d, np.concatenate(kinds), np.concatenate(aa).astype(np.intp),
                     np.concatenate(bb).astype(np.intp), np.concatenate(cc))


# ------------------------------------------------------------------ lagrad

def bulk_builder() -> Callable[..., Any] | None:
    """lagrad's bulk builder (programs from arrays), when this version has one."""
    return getattr(lagrad.Program, "from_arrays", None)


def _trace_fn(dag: ScalarDag) -> Callable[..., Any]:
    unary = {SIN: lagrad.sin, COS: lagrad.cos, TANH: lagrad.tanh, EXP: lagrad.exp}
    rows = list(zip(dag.kind.tolist(), dag.a.tolist(), dag.b.tolist(), dag.c.tolist()))

    def f(*xs: Any) -> Any:
        z = list(xs)
        push = z.append
        for k, i, j, c in rows:
            if k in unary:
                push(unary[k](z[i]))
            elif k == MUL:
                push(z[i] * z[j])
            elif k == SCALE:
                push(z[i] * c)
            elif k == ADD:
                push(z[i] + z[j])
            else:
                push(z[i] - z[j])
        return z[-1]

    return f


def build_program(dag: ScalarDag) -> tuple[lagrad.Program, str]:
    """The DAG as a lagrad Program, and how it was built ("trace" or "bulk").

    Uses lagrad's bulk builder when it exists; else traces a Python function
    making one lagrad call per equation.
    """
    builder = bulk_builder()
    if builder is not None:
        try:
            return _bulk(builder, dag), "bulk"
        except TypeError:  # a bulk builder with another signature: fall back
            pass
    return lagrad.trace(_trace_fn(dag), *([0.0] * dag.n_inputs)), "trace"


def _bulk(builder: Callable[..., Any], dag: ScalarDag) -> lagrad.Program:
    """Adapter to ``Program.from_arrays``: "scale" (z_a * c) is "mul" with a
    constant second operand."""
    scale = dag.kind == SCALE
    codes = np.where(scale, MUL, dag.kind)
    parents = np.stack([dag.a, np.where(scale, -1, dag.b)], axis=1)
    constants = np.stack([np.zeros_like(dag.c), dag.c], axis=1)
    return builder(codes, parents, constants=constants, n_inputs=dag.n_inputs,
                   primitives=[k if k != "scale" else "mul" for k in KINDS])


# ------------------------------------------------------------------ floor

def _levels(dag: ScalarDag) -> Ints:
    """Longest path from the inputs, per variable (relaxation: depth passes)."""
    d = dag.n_inputs
    level = np.zeros(dag.n_variables, dtype=np.intp)
    b = np.where(dag.b >= 0, dag.b, 0)
    while True:
        new = 1 + np.maximum(level[dag.a], level[b])
        if np.array_equal(new, level[d:]):
            return level
        level[d:] = new


class LevelPass:
    """Hand-vectorized numpy forward and reverse pass over a :class:`ScalarDag`.

    Built once per graph (levels, grouping, edge order: that is the floor's
    build time); then :meth:`forward` runs one numpy call per (level, kind) and
    :meth:`gradient` adds one gather-multiply-``bincount`` per level from the
    top, as a careful numpy programmer would write it.
    """

    def __init__(self, dag: ScalarDag) -> None:
        self.dag = dag
        d, n = dag.n_inputs, dag.n_equations
        level = _levels(dag)
        self.depth = int(level.max()) if level.size else 0
        eq_level = level[d:]
        order = np.lexsort((dag.kind, eq_level))
        keys = eq_level[order] * len(KINDS) + dag.kind[order]
        cuts = np.flatnonzero(np.diff(keys)) + 1
        self.segments = []
        for idx in np.split(order, cuts):
            k = int(dag.kind[idx[0]])
            self.segments.append((k, idx + d, dag.a[idx], dag.b[idx], dag.c[idx]))
        self.by_kind = [np.flatnonzero(dag.kind == k) for k in range(len(KINDS))]
        # edges (child <- parent): weight index e + slot * n into [pa, pb]
        has_b = dag.b >= 0
        eqs = np.concatenate([np.arange(n), np.flatnonzero(has_b)])
        slot = np.concatenate([np.zeros(n, np.intp), np.ones(int(has_b.sum()), np.intp)])
        cols = np.concatenate([dag.a, dag.b[has_b]])
        edge_order = np.argsort(-eq_level[eqs], kind="stable")
        self.widx = (eqs + slot * n)[edge_order]
        self.rows = (eqs + d)[edge_order]
        cols = cols[edge_order]
        lv = eq_level[eqs][edge_order]
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(lv)) + 1, [lv.size]])
        self.spans = []
        for s, e in itertools.pairwise(bounds):
            targets, inverse = np.unique(cols[s:e], return_inverse=True)
            self.spans.append((int(s), int(e), targets, inverse))

    def forward(self, x: Array) -> Array:
        """All values z (inputs first); the output is z[-1]."""
        z = np.empty(self.dag.n_variables)
        z[:self.dag.n_inputs] = x
        for k, out, a, b, c in self.segments:
            if k == SIN:
                z[out] = np.sin(z[a])
            elif k == COS:
                z[out] = np.cos(z[a])
            elif k == TANH:
                z[out] = np.tanh(z[a])
            elif k == EXP:
                z[out] = np.exp(z[a])
            elif k == MUL:
                z[out] = z[a] * z[b]
            elif k == SCALE:
                z[out] = z[a] * c
            elif k == ADD:
                z[out] = z[a] + z[b]
            else:
                z[out] = z[a] - z[b]
        return z

    def _partials(self, z: Array) -> Array:
        """[d f_i / d z_a(i) for all i, then d f_i / d z_b(i)]."""
        dag, d, n = self.dag, self.dag.n_inputs, self.dag.n_equations
        w = np.zeros(2 * n)
        pa, pb = w[:n], w[n:]
        out = z[d:]
        for k, idx in enumerate(self.by_kind):
            if idx.size == 0:
                continue
            za = z[dag.a[idx]]
            if k == SIN:
                pa[idx] = np.cos(za)
            elif k == COS:
                pa[idx] = -np.sin(za)
            elif k == TANH:
                pa[idx] = 1.0 - out[idx] ** 2
            elif k == EXP:
                pa[idx] = out[idx]
            elif k == MUL:
                pa[idx] = z[dag.b[idx]]
                pb[idx] = za
            elif k == SCALE:
                pa[idx] = dag.c[idx]
            else:
                pa[idx] = 1.0
                pb[idx] = 1.0 if k == ADD else -1.0
        return w

    def gradient(self, x: Array) -> tuple[float, Array]:
        """The output and its gradient (forward pass included)."""
        z = self.forward(x)
        w = self._partials(z)[self.widx]
        lam = np.zeros(self.dag.n_variables)
        lam[-1] = 1.0
        rows = self.rows
        for s, e, targets, inverse in self.spans:
            lam[targets] += np.bincount(inverse, weights=w[s:e] * lam[rows[s:e]],
                                        minlength=targets.size)
        return float(z[-1]), lam[:self.dag.n_inputs]
