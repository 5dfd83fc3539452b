"""Hypothesis strategies: random cyclic lagrad programs with a known solution route.

A random cyclic program is drawn as a :class:`CyclicRecipe`, plain data:

* inputs (one vector ``x``, sometimes a second input ``y``, a vector or a scalar),
  each transformed by an acyclic *pre-processing* step into a *signal* (a 1-D
  vector): ``sin(x) + x / 2``, ``tanh(P x + q)``, ``0.3 x^2 - x``, ``x`` itself,
  or for a scalar ``sin(y) c + y d``;
* a chain of cyclic *blocks* (:class:`BlockSpec`); each reads one earlier signal
  ``s`` (an input's, or an earlier block's output: blocks feed blocks) and adds
  its unknowns' values as new signals. Kinds:

  - ``tanh``:   z = tanh(W z + U s + b)
  - ``sin``:    z = 0.5 sin(A z) + B s
  - ``mix``:    z = 0.5 tanh(W z) + 0.5 sin(V z + B s)
  - ``pair``:   two coupled unknowns, z1 = tanh(W11 z1 + W12 z2 + U1 s),
                z2 = 0.5 sin(W21 z1 + W22 z2) + U2 s
  - ``scalar``: a scalar unknown, z = 0.5 sin(a z) + 0.4 tanh(c . s) + b
  - ``root``:   the root constraint z + 0.3 z^3 - 0.5 tanh(W z) - U s = 0
                (``program.root``), whose Jacobian I + diag(0.9 z^2) - 0.5 D W is
                invertible because ||0.5 D W|| < 1;

  every matrix acting on unknowns has a random sparsity mask and is scaled to a
  spectral norm <= 0.8 (the ``gain``), so each define-block map is a contraction
  (fixed-point iteration converges) and I - J is well conditioned; matrices are
  dense numpy arrays or constant ``scipy.sparse`` matrices (``lagrad.matmul``);
* a *readout* (post-processing): a sum over every block output (and sometimes
  an input signal) of ``sum(w s^2)``, ``sum(w sin(s))`` or ``w logsumexp(s)``.

The same recipe is

* built with the explicit builder (:meth:`CyclicRecipe.build`), optionally with
  per-unknown forward methods,
* written as an ordinary function with :func:`lagrad.fixed_point` and
  :func:`lagrad.root` (:meth:`CyclicRecipe.function`; a ``pair`` block becomes a
  fixed point over z1 whose map contains the inner fixed point over z2: nested
  combinators), and
* solved in plain numpy (:meth:`CyclicRecipe.evaluate`): fixed-point iteration
  to machine precision for define blocks, Newton with the analytic Jacobian for
  root blocks; an independent route to the values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.special
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import lagrad
from lagrad import Variable

Shape = tuple[int, ...]

KINDS = ("tanh", "sin", "mix", "pair", "scalar", "root")
DEFINE_KINDS = ("tanh", "sin", "mix", "pair", "scalar")
PRE = ("sin", "tanh_mat", "poly", "raw")
READOUT = ("sq", "sin", "lse")

#: Few examples, no deadline; ``LAGRAD_EXAMPLES=500`` for a long bug hunt.
CYCLIC_SETTINGS = settings(
    max_examples=int(os.environ.get("LAGRAD_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ------------------------------------------------------------ array helpers
# Every map below is written with numpy ufuncs and these helpers, so the same
# code records equations on Variables and computes on numpy arrays.

def mm(a: Any, v: Any) -> Any:
    """Constant matrix (dense or scipy.sparse) times a vector."""
    if isinstance(v, Variable):
        return lagrad.matmul(a, v)
    return np.asarray(a @ v, dtype=float)


def total(v: Any) -> Any:
    return lagrad.sum(v) if isinstance(v, Variable) else np.sum(v)


def lse(v: Any) -> Any:
    return lagrad.logsumexp(v) if isinstance(v, Variable) else scipy.special.logsumexp(v)


def contraction(rng: np.random.Generator, rows: int, cols: int, gain: float,
                density: float, sparse: bool) -> Any:
    """A random matrix with a sparsity mask, scaled to spectral norm ``gain``."""
    m = rng.normal(size=(rows, cols)) * (rng.random((rows, cols)) < density)
    if not m.any():
        m[rng.integers(rows), rng.integers(cols)] = 1.0
    m *= gain / np.linalg.norm(m, 2)
    return sp.csr_matrix(m) if sparse else m


def dense(m: Any) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


# ------------------------------------------------------------------ recipes

@dataclass(frozen=True)
class BlockSpec:
    """One cyclic block: its kind, unknown size(s), the signal it reads."""

    kind: str
    n: int  # unknown size (z1's for "pair"; unused for "scalar")
    m: int  # z2's size for "pair"
    source: int  # index of the signal it reads
    gain: float  # spectral norm of the matrices acting on the unknowns (<= 0.8)
    density: float
    sparse: bool

    def __repr__(self) -> str:
        size = {"pair": f"{self.n}+{self.m}", "scalar": "()"}.get(self.kind, str(self.n))
        sparse = ", sparse" if self.sparse else ""
        return (f"{self.kind}[{size}](s{self.source}, gain={self.gain:.2f}, "
                f"density={self.density:.2f}{sparse})")


@dataclass
class _Block:
    """A BlockSpec with its constants drawn."""

    spec: BlockSpec
    c: dict[str, Any]
    names: tuple[str, ...]  # the unknowns' names

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def shapes(self) -> tuple[Shape, ...]:
        s = self.spec
        return {"pair": ((s.n,), (s.m,)), "scalar": ((),)}.get(s.kind, ((s.n,),))

    # the maps: z_new = F(z, s) for define blocks, residual g(z, s) for root
    def define_maps(self, zs: Sequence[Any], s: Any) -> list[Any]:
        c, kind = self.c, self.kind
        if kind == "tanh":
            return [np.tanh(mm(c["W"], zs[0]) + mm(c["U"], s) + c["b"])]
        if kind == "sin":
            return [0.5 * np.sin(mm(c["A"], zs[0])) + mm(c["B"], s)]
        if kind == "mix":
            return [0.5 * np.tanh(mm(c["W"], zs[0])) + 0.5 * np.sin(mm(c["V"], zs[0])
                                                                      + mm(c["B"], s))]
        if kind == "pair":
            return [self.pair_first(zs[0], zs[1], s), self.pair_second(zs[1], zs[0], s)]
        if kind == "scalar":
            return [0.5 * np.sin(c["a"] * zs[0]) + 0.4 * np.tanh(total(c["w"] * s)) + c["b"]]
        raise AssertionError(kind)

    def pair_first(self, z1: Any, z2: Any, s: Any) -> Any:
        c = self.c
        return np.tanh(mm(c["W11"], z1) + mm(c["W12"], z2) + mm(c["U1"], s))

    def pair_second(self, z2: Any, z1: Any, s: Any) -> Any:
        c = self.c
        return 0.5 * np.sin(mm(c["W21"], z1) + mm(c["W22"], z2)) + mm(c["U2"], s)

    def residual(self, z: Any, s: Any) -> Any:
        c = self.c
        return z + 0.3 * z ** 3 - 0.5 * np.tanh(mm(c["W"], z)) - mm(c["U"], s)

    def residual_jacobian(self, z: np.ndarray) -> np.ndarray:
        w = dense(self.c["W"])
        t = np.tanh(w @ z)
        return np.eye(z.size) + np.diag(0.9 * z ** 2) - 0.5 * (1 - t ** 2)[:, None] * w

    def signals(self, zs: Sequence[Any]) -> list[Any]:
        """What the block adds to the signals (1-D vectors)."""
        if self.kind == "scalar":
            return [zs[0] * self.c["out"]]
        return list(zs)

    # numpy solve, independent of lagrad's solvers
    def solve_numpy(self, s: np.ndarray) -> list[np.ndarray]:
        zs = [np.zeros(shape) for shape in self.shapes]
        if self.kind == "root":
            z = zs[0]
            for _ in range(100):
                step = np.linalg.solve(self.residual_jacobian(z), self.residual(z, s))
                z = z - step
                if np.linalg.norm(step) <= 1e-15 * max(1.0, np.linalg.norm(z)):
                    break
            return [z]
        for _ in range(5000):
            new = [np.asarray(v, dtype=float) for v in self.define_maps(zs, s)]
            change = sum(np.linalg.norm(a - b) for a, b in zip(new, zs))
            zs = new
            if change <= 1e-16:
                break
        return zs


@dataclass(frozen=True)
class CyclicRecipe:
    """A random cyclic program as data (see the module docstring)."""

    input_shapes: tuple[Shape, ...]
    pre: tuple[str, ...]  # per input
    blocks: tuple[BlockSpec, ...]
    readout: tuple[tuple[int, str], ...]  # (signal index, kind)
    seed: int
    _drawn: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # ---------------------------------------------------------- constants
    def _constants(self) -> tuple[list[dict[str, Any]], list[_Block], list[np.ndarray]]:
        if not self._drawn:
            rng = np.random.default_rng(self.seed)
            pre_consts = []
            lengths = []
            for shape, kind in zip(self.input_shapes, self.pre):
                d = shape[0] if shape else 0
                if not shape:
                    pc = {"c": rng.normal(size=2), "d": rng.normal(size=2)}
                    lengths.append(2)
                elif kind == "tanh_mat":
                    k = int(rng.integers(2, 5))
                    pc = {"P": rng.normal(size=(k, d)), "q": rng.normal(size=k) * 0.3}
                    lengths.append(k)
                else:
                    pc = {}
                    lengths.append(d)
                pre_consts.append(pc)
            blocks = []
            for k, spec in enumerate(self.blocks):
                blocks.append(self._draw_block(k, spec, rng, lengths))
                lengths += [int(np.prod(shape)) if shape else 2 for shape in blocks[-1].shapes]
            weights = [rng.uniform(-1, 1, size=lengths[j]) for j, _ in self.readout]
            self._drawn.update(pre=pre_consts, blocks=blocks, weights=weights,
                               lengths=lengths)
        return self._drawn["pre"], self._drawn["blocks"], self._drawn["weights"]

    @staticmethod
    def _draw_block(k: int, spec: BlockSpec, rng: np.random.Generator,
                    lengths: Sequence[int]) -> _Block:
        n, m, g, dens, sparse = spec.n, spec.m, spec.gain, spec.density, spec.sparse
        ls = lengths[spec.source]

        def inject(rows: int) -> Any:
            u = rng.normal(size=(rows, ls)) / np.sqrt(ls)
            return sp.csr_matrix(u) if sparse else u
        c: dict[str, Any]
        if spec.kind == "tanh":
            c = {"W": contraction(rng, n, n, g, dens, sparse), "U": inject(n),
                 "b": rng.normal(size=n) * 0.2}
        elif spec.kind == "sin":
            c = {"A": contraction(rng, n, n, 2 * g, dens, sparse), "B": inject(n)}
        elif spec.kind == "mix":
            c = {"W": contraction(rng, n, n, g, dens, sparse),
                 "V": contraction(rng, n, n, g, dens, sparse), "B": inject(n)}
        elif spec.kind == "pair":
            big = dense(contraction(rng, n + m, n + m, g, max(dens, 0.5), False))
            parts = {"W11": big[:n, :n], "W12": big[:n, n:], "W21": big[n:, :n],
                     "W22": big[n:, n:]}
            c = {key: sp.csr_matrix(v) if sparse else v for key, v in parts.items()}
            c.update(U1=inject(n), U2=inject(m))
        elif spec.kind == "scalar":
            c = {"a": 2 * g * rng.choice([-1.0, 1.0]), "w": rng.normal(size=ls) / np.sqrt(ls),
                 "b": float(rng.normal() * 0.2), "out": rng.normal(size=2)}
        elif spec.kind == "root":
            c = {"W": contraction(rng, n, n, 2 * g, dens, sparse), "U": inject(n)}
        else:
            raise AssertionError(spec.kind)
        names = (f"z{k}a", f"z{k}b") if spec.kind == "pair" else (f"z{k}",)
        return _Block(spec, c, names)

    # -------------------------------------------------------------- parts
    @property
    def n_inputs(self) -> int:
        return len(self.input_shapes)

    @property
    def input_names(self) -> tuple[str, ...]:
        return ("x", "y")[:self.n_inputs]

    @property
    def has_root(self) -> bool:
        return any(b.kind == "root" for b in self.blocks)

    @property
    def unknown_names(self) -> tuple[str, ...]:
        return tuple(name for b in self._constants()[1] for name in b.names)

    def _pre(self, xs: Sequence[Any]) -> list[Any]:
        out = []
        for x, kind, pc, shape in zip(xs, self.pre, self._constants()[0], self.input_shapes):
            if not shape:
                out.append(np.sin(x) * pc["c"] + x * pc["d"])
            elif kind == "sin":
                out.append(np.sin(x) + 0.5 * x)
            elif kind == "tanh_mat":
                out.append(np.tanh(mm(pc["P"], x) + pc["q"]))
            elif kind == "poly":
                out.append(0.3 * x * x - x)
            else:
                out.append(x)
        return out

    def _output(self, signals: Sequence[Any]) -> Any:
        out = None
        for (j, kind), w in zip(self.readout, self._constants()[2]):
            s = signals[j]
            if kind == "sq":
                term = total(w * s * s)
            elif kind == "sin":
                term = total(w * np.sin(s))
            else:
                term = float(w[0]) * lse(s)
            out = term if out is None else out + term
        return out

    # ---------------------------------------------------------- building
    def build(self, forward: str | None = None) -> lagrad.Program:
        """The program with the explicit builder (unknown/define/root/output).

        ``forward``: a forward method given to the define blocks' unknowns
        (root blocks always get "newton").
        """
        p = lagrad.Program("cyclic recipe")
        xs = [p.input(name, shape) for name, shape in zip(self.input_names, self.input_shapes)]
        signals = self._pre(xs)
        for blk in self._constants()[1]:
            method = "newton" if blk.kind == "root" else forward
            zs = [p.unknown(name, shape, method=method)
                  for name, shape in zip(blk.names, blk.shapes)]
            s = signals[blk.spec.source]
            if blk.kind == "root":
                p.root(zs[0], blk.residual(zs[0], s))
            else:
                for z, expr in zip(zs, blk.define_maps(zs, s)):
                    p.define(z, expr)
            signals += blk.signals(zs)
        p.output(self._output(signals))
        return p

    def function(self, *xs: Any) -> Any:
        """The program as an ordinary function, with lagrad.fixed_point / root."""
        signals = self._pre(xs)
        for blk in self._constants()[1]:
            s = signals[blk.spec.source]
            zeros = [np.zeros(shape) for shape in blk.shapes]
            if blk.kind == "root":
                zs = [lagrad.root(blk.residual, zeros[0], s)]
            elif blk.kind == "pair":
                def inner(z1: Any, s: Any, blk: _Block = blk) -> Any:
                    return lagrad.fixed_point(lambda z2, z1, s: blk.pair_second(z2, z1, s),
                                              np.zeros(blk.shapes[1]), z1, s)

                def outer(z1: Any, s: Any, blk: _Block = blk, inner: Any = inner) -> Any:
                    return blk.pair_first(z1, inner(z1, s), s)
                z1 = lagrad.fixed_point(outer, zeros[0], s)
                zs = [z1, inner(z1, s)]  # the same z2 (a second, equivalent block)
            else:
                zs = [lagrad.fixed_point(lambda z, s, blk=blk: blk.define_maps([z], s)[0],
                                         zeros[0], s)]
            signals += blk.signals(zs)
        return self._output(signals)

    def evaluate(self, *xs: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Output and unknowns solved in plain numpy (independent of lagrad)."""
        signals = self._pre([np.asarray(x, dtype=float) for x in xs])
        values: dict[str, np.ndarray] = {}
        for blk in self._constants()[1]:
            zs = blk.solve_numpy(np.asarray(signals[blk.spec.source], dtype=float))
            values.update(zip(blk.names, zs))
            signals += blk.signals(zs)
        return float(self._output(signals)), values

    def __repr__(self) -> str:
        lines = [f"CyclicRecipe(seed={self.seed}, inputs={list(self.input_shapes)}, "
                 f"pre={list(self.pre)}:"]
        lines += [f"  block {k}: {b!r}" for k, b in enumerate(self.blocks)]
        lines.append("  out = " + " + ".join(f"{kind}(s{j})" for j, kind in self.readout))
        return "\n".join(lines) + ")"


@dataclass(frozen=True)
class CyclicCase:
    recipe: CyclicRecipe
    inputs: tuple[Any, ...]

    def __repr__(self) -> str:
        return (f"CyclicCase({self.recipe!r},\n  inputs="
                f"{[np.round(x, 3).tolist() for x in self.inputs]})")


# --------------------------------------------------------------- strategies

@st.composite
def cyclic_recipes(draw: Any, kinds: Sequence[str] = KINDS, max_blocks: int = 3,
                   max_size: int = 5, sparse: bool | None = None) -> CyclicRecipe:
    """A random cyclic recipe (see the module docstring). ``sparse``: every
    matrix is a scipy.sparse constant (True), a numpy array (False), or drawn
    per block (None)."""
    d = draw(st.integers(1, 4))
    shapes: list[Shape] = [(d,)]
    if draw(st.booleans()):
        shapes.append(draw(st.sampled_from([(), (2,), (3,)])))
    pre = tuple(draw(st.sampled_from(PRE)) for _ in shapes)
    n_blocks = draw(st.integers(1, max_blocks))
    n_signals = len(shapes)
    blocks = []
    for _ in range(n_blocks):
        kind = draw(st.sampled_from(list(kinds)))
        n = draw(st.integers(1, max_size))
        m = draw(st.integers(1, 3)) if kind == "pair" else 0
        source = draw(st.integers(0, n_signals - 1))
        gain = draw(st.floats(0.1, 0.8))
        density = draw(st.sampled_from([0.3, 0.6, 1.0]))
        blocks.append(BlockSpec(kind, n, m, source, gain, density,
                                draw(st.booleans()) if sparse is None else sparse))
        n_signals += 2 if kind == "pair" else 1
    # every block output is read out (gradients flow through every block),
    # sometimes an input's signal as well
    block_signals = list(range(len(shapes), n_signals))
    picked = block_signals + ([draw(st.integers(0, len(shapes) - 1))]
                              if draw(st.booleans()) else [])
    readout = tuple((j, draw(st.sampled_from(READOUT))) for j in picked)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return CyclicRecipe(tuple(shapes), pre, tuple(blocks), readout, seed)


@st.composite
def cyclic_cases(draw: Any, **kwargs: Any) -> CyclicCase:
    """A recipe and input values in [-1, 1]."""
    recipe = draw(cyclic_recipes(**kwargs))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    inputs = tuple(rng.uniform(-1, 1, size=shape) if shape else float(rng.uniform(-1, 1))
                   for shape in recipe.input_shapes)
    return CyclicCase(recipe, inputs)


def empty_block(kind: str) -> lagrad.Program:
    """A cyclic block of no unknowns: z of shape (0,) with a scalar interior
    s = sum(z) + x (which is x), by ``define`` or ``root``; the output x s + x
    reads the interior, so its derivative is 2x + 1."""
    p = lagrad.Program()
    x = p.input("x")
    z = p.unknown("z", (0,))
    s = lagrad.sum(z) + x
    if kind == "define":
        p.define(z, 0.5 * z + s)
    else:
        p.root(z, z - s)
    p.output(x * s + x)
    return p
