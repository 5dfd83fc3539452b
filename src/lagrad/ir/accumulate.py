"""Cotangents added into the multiplier vector in place, without temporaries.

Back-substitution adds each equation's contribution lambda_i df_i/dz_j into
lambda_j. For a matrix product the contribution is itself a product (an outer
product for a matrix-vector layer, a gemm for a batch): computing it into a
temporary and then adding costs an extra pass over memory and, for large
operands, fresh pages. BLAS accumulates in place: ``ger`` (A += x y^T),
``gemv`` (y += A x) and ``gemm`` (C += A B) with beta = 1.

A C-ordered target ``out`` (m, n) is the Fortran-ordered matrix out.T (n, m),
so every update below is written for out.T: out += G B^T  <=>  out.T += B G^T.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import blas

__all__ = ["matmul_vjp_add", "matmul_vjp_bound", "OUTER_TIMED", "OUTER_WAYS", "OuterWays"]

Array = NDArray[np.float64]
OUTER_TIMED = 100_000
"""Entries from which an outer product written once is written the fastest of
three ways on this machine: numpy's broadcast multiply, dgemm with k = 1 and
beta = 0, or numpy's einsum ``"i,j->ij"`` (the same values every way: one
rounded product per entry; multiply keeps the sign of a zero product, the
others write +0). Such a target is out of cache (a new gradient, written
after the iterations have streamed the matrix through the cache), and which
way is fastest depends on the machine and the size: a DEQ layer's dL/dW at
N = 1000 (8 MB) took 1.7 ms by multiply and 2.2 ms by dgemm on an Intel Xeon
(2026-12-06); on an AMD EPYC (2026-12-07) 0.98-1.04 ms by multiply,
0.68-0.71 ms by dgemm and 0.60-0.65 ms by einsum, but at N = 3000 (72 MB,
beyond its L3) 5.7, 6.6 and 7.8 ms (``python benchmarks/bench_deq_parts.py
--outer N``). So the first :data:`OUTER_TRIALS` such products of each size
class (entries between two powers of two: :data:`OUTER_WAYS`) take the ways
in turn and are timed, and the fastest (by median time per entry) writes the
rest of that class. Below this size dgemm writes them."""
OUTER_TRIALS = 9
OUTER_WAY: str | None = None
"""``"multiply"``, ``"dgemm"`` or ``"einsum"`` writes every large outer
product that way (benchmarks and tests); None chooses by timing."""


class OuterWays:
    """The timed choice between the ways of writing a large outer product of
    one size class (see :data:`OUTER_TIMED`): :meth:`pick` the way for the
    next one, :meth:`record` its seconds per entry; after
    :data:`OUTER_TRIALS` records the way with the smallest median is kept."""

    WAYS = ("multiply", "dgemm", "einsum")

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {way: [] for way in self.WAYS}
        self.kept: str | None = None

    def pick(self) -> str:
        if OUTER_WAY is not None:
            return OUTER_WAY
        if self.kept is not None:
            return self.kept
        return min(self.WAYS, key=lambda w: len(self.seconds[w]))  # in turn

    def record(self, way: str, seconds_per_entry: float) -> None:
        if self.kept is not None or OUTER_WAY is not None:
            return
        self.seconds[way].append(seconds_per_entry)
        if sum(map(len, self.seconds.values())) >= OUTER_TRIALS:
            self.kept = min(self.WAYS, key=lambda w: float(np.median(self.seconds[w])))


OUTER_WAYS: dict[int, OuterWays] = {}
"""The timed choice of each size class, by ``size.bit_length()``."""


def _write_outer(u: Array, v: Array, out: Array) -> None:
    """out (m, l), C-ordered, = u v^T: by dgemm with k = 1 and beta = 0, which
    reads nothing of ``out`` (ger would need it cleared; numpy's outer
    broadcasts through buffers at a third of the speed, in cache), or from
    :data:`OUTER_TIMED` entries the fastest way on this machine."""
    large = out.size >= OUTER_TIMED
    ways = OUTER_WAYS.setdefault(out.size.bit_length(), OuterWays()) if large else None
    way = ways.pick() if ways is not None else "dgemm"
    timing = ways is not None and ways.kept is None and OUTER_WAY is None
    t0 = time.perf_counter() if timing else 0.0
    if way == "multiply":
        np.multiply(u[:, None], v, out=out)
    elif way == "einsum":
        np.einsum("i,j->ij", u, v, out=out)
    else:  # out.T (l, m), Fortran-ordered, = v u^T
        res = blas.dgemm(1.0, v[:, None], u[None, :], beta=0.0, c=out.T, overwrite_c=1)
        if not np.shares_memory(res, out):  # f2py worked on a copy: write it back
            out.T[...] = res
    if timing:
        assert ways is not None
        ways.record(way, (time.perf_counter() - t0) / out.size)


def _vectors(a: Array, b: Array) -> tuple[Array, Array]:
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    return a2, b2


def matmul_vjp_add(k: int, out: Array, g: Array, a: Array, b: Array,
                   beta: float = 1.0) -> bool:
    """Add the cotangent of argument ``k`` of ``a @ b`` into ``out`` in place
    (``beta * out +`` the cotangent; ``beta=0`` writes it, reading nothing of
    ``out``).

    Returns False (and changes nothing) when the operands are not plain
    float64 arrays laid out for BLAS; the caller then adds a temporary.
    """
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
            and a.dtype == b.dtype == g.dtype == out.dtype == np.float64
            and out.flags.c_contiguous and out.flags.writeable
            and a.flags.c_contiguous and b.flags.c_contiguous and g.flags.c_contiguous):
        return False
    if min(out.size, g.size, a.size, b.size) == 0:
        # an empty factor makes the cotangent all zeros (or ``out`` empty); BLAS
        # rejects zero-size operands
        _scaled(out, beta)
        return True
    a2, b2 = _vectors(a, b)
    m, n = a2.shape[0], b2.shape[1]
    g2 = g.reshape(m, n)
    if k == 0:  # d a = g b^T, shape of a (m, l)
        t = out.reshape(m, -1).T  # (l, m), Fortran order
        if n == 1 and beta == 0.0:  # an outer product written once
            _write_outer(g2[:, 0], b2[:, 0], out.reshape(m, -1))
            return True
        if n == 1:
            res = blas.dger(1.0, b2[:, 0], g2[:, 0], a=_scaled(t, beta), overwrite_a=1)
        elif m == 1:  # a vector: d a = b g (numpy's gemv into a vector-sized temporary:
            t = _scaled(out.reshape(-1), beta)  # ~10% faster than scipy's dgemv at 1000^2)
            t += b2 @ g2[0]
            return True
        else:  # (l, m) += b (l, n) @ g^T (n, m)
            res = blas.dgemm(1.0, b2.T, g2.T, beta=beta, c=t, trans_a=1, overwrite_c=1)
    else:  # d b = a^T g, shape of b (l, n)
        t = out.reshape(-1, n).T  # (n, l), Fortran order
        if m == 1 and beta == 0.0:  # an outer product written once
            _write_outer(a2[0], g2[0], out.reshape(-1, n))
            return True
        if m == 1:
            res = blas.dger(1.0, g2[0], a2[0], a=_scaled(t, beta), overwrite_a=1)
        elif n == 1 and beta == 0.0:  # b a vector written once: numpy's gemv into it
            np.matmul(a2.T, g2[:, 0], out=out.reshape(-1))
            return True
        elif n == 1:  # b a vector: d b = a^T g (numpy's gemv, as above)
            t = _scaled(out.reshape(-1), beta)
            t += a2.T @ g2[:, 0]
            return True
        else:  # (n, l) += g^T (n, m) @ a (m, l)
            res = blas.dgemm(1.0, g2.T, a2.T, beta=beta, c=t, trans_b=1, overwrite_c=1)
    if not np.shares_memory(res, t):  # f2py worked on a copy: write it back
        t[...] = res
    return True


def matmul_vjp_bound(k: int, out: Array, g: Array, a: Array, b: Array,
                     beta: float = 1.0) -> Callable[[], Any] | None:
    """:func:`matmul_vjp_add` as one bound numpy call, its operands' layout
    checked now, for the one case a linear solve repeats in its loop: the
    cotangent of the vector ``b`` written once (beta = 0), d b = a^T g, a
    matrix-vector product (the Neumann series' W^T lambda: the checks of the
    general function cost some 5 us a product). None for any other case."""
    if not (k == 1 and beta == 0.0 and isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
            and a.ndim == 2 and b.ndim == 1 and g.ndim == 1 and out.ndim == 1 and a.size
            and a.dtype == b.dtype == g.dtype == out.dtype == np.float64
            and out.flags.c_contiguous and out.flags.writeable
            and a.flags.c_contiguous and g.flags.c_contiguous):
        return None
    return partial(np.matmul, a.T, g, out=out)


def _scaled(t: Array, beta: float) -> Array:
    """``t`` scaled by ``beta`` in place, for ger (no beta) and gemv (whose
    beta = 0 need not clear a NaN); 0 clears ``t``, whatever it held."""
    if beta == 0.0:
        t.fill(0.0)
    elif beta != 1.0:
        t *= beta
    return t
