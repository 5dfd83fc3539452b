"""A cyclic block's linear operator: (I - J_SS) at z, or its transpose, in
direct form (the block's sparse matrix) and reduced, matrix-free form (the
products with dG/du that the Neumann series, Krylov methods and the reduced
LU use), with the scratch vectors a sweep's blocks share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.compile.jacobian import block_matrix
from lagrad.compile.schedule import CyclicBlock
from lagrad.numeric import norm2
from lagrad.solve.borrow import Borrowed
from lagrad.solve.bound import Sharing, bind_pullbacks, run_all, uncovered
from lagrad.solve.buffers import Pool
from lagrad.solve.results import BlockResult
from lagrad.solve.system import Orientation

__all__ = ["Workspace", "BlockOperator", "ReducedOperator"]

Array = NDArray[np.float64]


class Workspace:
    """Two scratch vectors in the flat layout, allocated once per sweep and
    shared by its blocks (each block only touches its own positions), so that
    a chain of many small blocks costs time linear in their number.

    Their contents are undefined: a block writes every position it reads
    (zeroing its own runs first where it accumulates). With a ``pool`` they
    are taken from the schedule's recycled vectors and go back to it once the
    workspace is dropped, so a sweep allocates no program-sized memory (a DEQ
    layer's z holds all of W: fresh vectors would cost page faults)."""

    def __init__(self, size: int, pool: Pool | None = None) -> None:
        self.size = size
        self.pool = pool if pool is not None and pool.size == size else None
        self._vectors: tuple[Array, Array] | None = None

    def vectors(self) -> tuple[Array, Array]:
        if self._vectors is None:
            if self.pool is None:
                self._vectors = (np.empty(self.size), np.empty(self.size))
            else:
                self._vectors = (self.pool.take(), self.pool.take())  # back when dropped
        return self._vectors


class BlockOperator:
    """(I - J_SS) of one block at z, or its transpose, in direct and reduced
    (matrix-free) form. ``products`` counts the sweeps through the block
    (products with dG/dz_U or its transpose) made so far; ``rate`` is the
    forward iteration's observed contraction, when it had one (a hint for
    error estimates). Inputs in ``borrowed`` are read from the caller's arrays
    by the bound products; reading :attr:`z` copies them into z first."""

    def __init__(self, unit: CyclicBlock, z: Array, orientation: Orientation,
                 workspace: Workspace | None = None, rate: float | None = None,
                 borrowed: Borrowed | None = None) -> None:
        self.unit, self._z, self.orientation = unit, z, orientation
        self.borrowed = borrowed
        self.transposed = orientation.transposed
        self.w, self.w2 = (workspace or Workspace(z.size)).vectors()
        self.products, self.rate = 0, rate
        # the argument of the last product made without an interior seed, and whether
        # the block's rhs has none either (then that product's interior entries are
        # what :meth:`recover` would compute, and the reduced residual is the block's)
        self.last: Array | None = None
        self.interior_free = False
        self._vjp_calls: list[Callable[[], Any]] | None = None  # made on first use
        self._interior_calls: list[Callable[[], Any]] | None = None

    @property
    def z(self) -> Array:
        """z with every input in it (borrowed ones copied in now)."""
        if self.borrowed is not None:
            self.borrowed.fill(self._z)
        return self._z

    @property
    def name(self) -> str:
        return self.unit.block.name

    def result(self, method: str) -> BlockResult:
        return BlockResult(self.name, method, self.unit.block.number)

    def matrix(self) -> Any:
        """(I - J_SS), untransposed (direct methods solve with ``trans``)."""
        return block_matrix(self.unit, self.z)

    def _g_vjp(self, v: Array, b_interior: Array | None = None, copy: bool = True) -> Array:
        """(dG/du)^T v, or with ``b_interior`` the back-substituted interior seed
        (``copy=False``: left in w2 only)."""
        u = self.unit
        closing, interior = self._bind_vjp()
        u.zero(self.w2)
        self.w[u.u_at] = v  # the closing pullbacks read only the unknowns' entries
        run_all(closing)
        if b_interior is not None:
            self.w2[u.i_at] += b_interior
        run_all(interior)
        return self.w2[u.u_at].copy() if copy else self.w2

    def _bind_vjp(self) -> tuple[list[Callable[[], Any]], list[Callable[[], Any]]]:
        """The closing and interior pullbacks of (dG/du)^T, bound once: z, w and
        w2 stay put for the solve."""
        if self._vjp_calls is None:
            u = self.unit
            lent = self.borrowed.arrays if self.borrowed is not None else None
            self._vjp_calls = bind_pullbacks(u.inner_closing, self._z, self.w, self.w2, lent)
            self._vjp_interior = bind_pullbacks(u.inner_interior[::-1], self._z, self.w2,
                                                None, lent)
        return self._vjp_calls, self._vjp_interior

    @property
    def viewable(self) -> bool:
        """Whether :meth:`in_place_product` serves: an adjoint block whose
        unknowns are one run of z."""
        return self.transposed and isinstance(self.unit.u_at, slice)

    def in_place_product(self) -> tuple[Callable[[Array], None], Array]:
        """``(product, out)``: ``product(v)`` leaves (dG/du)^T v in ``out``, a
        view of the workspace valid until the next product, with no copy and
        no allocation; only when :attr:`viewable`. (Not kept on the instance:
        the closure refers to it, see :meth:`_product`.)"""
        u = self.unit
        lent = self.borrowed.arrays if self.borrowed is not None else None
        written: set[tuple[int, int]] = set()  # spans of w2 the calls write first: no clearing
        sharing = Sharing(u.sole_contributions)
        calls = bind_pullbacks(u.inner_closing, self._z, self.w, self.w2, lent,
                               written=written, sharing=sharing) + \
            bind_pullbacks(u.inner_interior[::-1], self._z, self.w2, None, lent,
                           written=written, sharing=sharing)
        clear = [self.w2[a:b] for a, b in uncovered(u.runs, written)]
        w_u, copyto = self.w[u.u_at], np.copyto
        self.last = None  # the products' arguments are the caller's buffers: no reuse

        def product(v: Array) -> None:
            self.products += 1
            for run in clear:
                run.fill(0.0)
            copyto(w_u, v)
            for call in calls:
                call()
        return product, self.w2[u.u_at]

    def _interior_vjp(self, v: Array, b_interior: Array) -> None:
        """The interior multipliers (in w2) for lambda_U = ``v``: the sweep of
        :meth:`_g_vjp` without what flows back into the unknowns (on a DEQ
        layer, the product with W^T), so no product with dG/du."""
        u = self.unit
        if self._interior_calls is None:
            lent = self.borrowed.arrays if self.borrowed is not None else None
            offsets = u.unknown_spans
            closing = bind_pullbacks(u.inner_closing, self._z, self.w, self.w2, lent, offsets)
            self._interior_calls = closing + bind_pullbacks(
                u.inner_interior[::-1], self._z, self.w2, None, lent, offsets)
        u.zero(self.w2)
        self.w[u.u_at] = v
        self.w2[u.i_at] = b_interior  # (zero runs above; the interior's rhs in place)
        run_all(self._interior_calls)

    def _g_jvp(self, v: Array, c_interior: Array | None = None) -> Array:
        """(dG/du) v, with an optional interior source term ``c_interior``."""
        u = self.unit
        u.zero(self.w)
        u.zero(self.w2)
        self.w[u.u_at] = v
        if c_interior is not None:
            self.w[u.i_at] = c_interior
        for step in u.inner_interior:
            step.pushforward(self.z, self.w)
        for step in u.inner_closing:
            step.pushforward(self.z, self.w, into=self.w2)
        return self.w2[u.u_at].copy()

    def reduced_product(self, v: Array, b_interior: Array | None = None) -> Array:
        """(dG/du)^T v for the adjoint, (dG/du) v for the tangent. (Chosen per call:
        a bound method kept on the instance would make a reference cycle that
        holds z until the garbage collector runs, and keeps the buffer pool
        from recycling it.)"""
        self.products += 1
        self.last = v if b_interior is None else None
        if self.transposed:
            return self._g_vjp(v, b_interior)
        return self._g_jvp(v, b_interior)

    def reduced(self, b: Array) -> tuple[spla.LinearOperator, Array]:
        """The reduced n_U x n_U operator (I - dG/du) (or its transpose) and
        right-hand side for the block rhs ``b``."""
        unit = self.unit
        n = unit.u_index.size
        b_i = b[unit.pos_i]
        self.interior_free = not b_i.any()
        # c = b_U + (the interior's rhs carried to the unknowns): no product when it is 0
        c = b[unit.pos_u] if self.interior_free else \
            b[unit.pos_u] + self.reduced_product(np.zeros(n), b_i)
        return ReducedOperator(n, self), c

    def recover(self, x_u: Array, b: Array) -> Array:
        """The whole block's solution from the unknowns' part ``x_u``."""
        unit = self.unit
        if self.interior_free and x_u is self.last:  # the last product did it
            pass
        elif self.transposed:  # back-substitution through the interior only
            self._interior_vjp(x_u, b[unit.pos_i])
        else:
            self.reduced_product(x_u, b[unit.pos_i])
        x_i = (self.w2 if self.transposed else self.w)[unit.i_at]
        x = np.empty(unit.s_index.size)
        x[unit.pos_u], x[unit.pos_i] = x_u, x_i
        return x

    def residual(self, x: Array, b: Array) -> float:
        """Relative residual of the full-block system, matrix-free."""
        return norm2(self.residual_vector(x, b)) / max(norm2(b), np.finfo(float).tiny)

    def residual_vector(self, x: Array, b: Array) -> Array:
        """b - (I - J_SS) x (or its transpose), matrix-free: through each
        equation's own derivative rule, not through an assembled matrix."""
        unit, s = self.unit, self.unit.s_index
        self.w[s] = x
        unit.zero(self.w2)
        for step in unit.inner_interior + unit.inner_closing:
            self.orientation.propagate(step, self.z, self.w, self.w2)
        return b - (x - self.w2[s])


class ReducedOperator(spla.LinearOperator):
    """(I - dG/du) (or its transpose) of a block, matrix-free; ``matvec`` of
    a plain vector calls the block's product directly (scipy's wrapper checks
    cost a few microseconds per call, a Neumann or Krylov iteration's worth of
    bookkeeping on a small block)."""

    def __init__(self, n: int, block: BlockOperator) -> None:
        super().__init__(np.dtype(float), (n, n))
        self.block, self.n = block, n

    def _matvec(self, v: Array) -> Array:
        flat = np.ravel(v)
        return flat - self.block.reduced_product(flat)

    def matvec(self, x: Any) -> Any:
        if isinstance(x, np.ndarray) and x.shape == (self.n,) and x.dtype == np.float64:
            return x - self.block.reduced_product(x)
        return super().matvec(x)
