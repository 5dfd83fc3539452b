"""The linear systems of a solved program.

With J the sparse n x n matrix J[i, j] = df_i/dz_j (non-zero only on edges of
the dependency graph, zero rows for inputs):

* adjoint (multiplier) system   (I - J)^T lambda = e      (e: output seed)
* tangent system                (I - J) zdot = e          (e: input direction)

Both are exposed as objects for study: the assembled sparse matrix, the index
map, the right-hand side, matrix-free products, and ``solve(method=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.compile.jacobian import assemble_jacobian, blame_partials
from lagrad.compile.schedule import Index, Schedule

__all__ = ["System"]

Array = NDArray[np.float64]






class System:
    """(I - J)^T lambda = rhs (``kind="adjoint"``) or (I - J) zdot = rhs
    (``kind="tangent"``) at the values of a solution.

    Attributes
    ----------
    kind : {"adjoint", "tangent"}
    index : Index
        Variable -> slice of the flat vectors, in program order
        (``system.index[var]``, ``system.index["name"]``).
    rhs : ndarray
        The right-hand side e (output seed or input direction), flat.
    values : ndarray
        The flat z at which J is evaluated.
    """

    def __init__(self, schedule: Schedule, values: Array, kind: str, rhs: Array,
                 forward: Mapping[int, Any] | None = None) -> None:
        self.schedule = schedule
        self.values = values
        self.kind = kind
        self.rhs = rhs
        self.index: Index = schedule.index
        self.forward: dict[int, Any] = dict(forward or {})
        """Forward-solve diagnostics of the cyclic blocks (by block number): their
        observed contraction and Newton's LU factors guide the "auto" choice."""

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rhs.size, self.rhs.size)

    @cached_property
    def jacobian(self) -> sp.csr_matrix:
        """J[i, j] = df_i / dz_j, assembled (sparse CSR)."""
        with np.errstate(all="ignore"):
            j = assemble_jacobian(self.schedule, self.values)
        if not np.isfinite(j.data).all():
            raise blame_partials(self.schedule, self.values)
        return j

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """(I - J)^T for the adjoint system, (I - J) for the tangent one (CSR)."""
        a = sp.identity(self.rhs.size, format="csr") - self.jacobian
        return (a.T if self.kind == "adjoint" else a).tocsr()

    @property
    def blocks(self) -> list[Any]:
        """The strongly connected components in topological order
        (:class:`lagrad.ir.blocks.Block`: ``variables``, ``size``, ``cyclic``)."""
        return self.schedule.program.blocks

    @cached_property
    def permutation(self) -> NDArray[np.intp]:
        """Flat positions grouped block by block, in topological block order:
        ``matrix[perm][:, perm]`` is block triangular (upper for the adjoint
        system, lower for the tangent one), with the cyclic blocks as its
        diagonal blocks.

        Examples
        --------
        >>> import numpy as np, lagrad
        >>> p = lagrad.Program()
        >>> a = p.input("a")
        >>> z = p.unknown("z")
        >>> p.define(z, 0.5 * lagrad.sin(z) + a)
        >>> p.output(z * z)
        >>> system = p.solve(1.0).adjoint_system()
        >>> [(b.size, b.cyclic) for b in system.blocks]
        [(1, False), (4, True), (1, False)]
        >>> m = system.block_triangular().toarray()
        >>> bool(np.all(m[1:5, :1] == 0) and np.all(m[5:, :5] == 0))  # upper block triangular
        True
        """
        index = self.index
        parts = [np.arange(index.offsets[v.index], index.offsets[v.index + 1])
                 for block in self.blocks for v in block.variables]
        return (np.concatenate(parts) if parts else np.zeros(0)).astype(np.intp)

    def block_positions(self, block: Any) -> NDArray[np.intp]:
        """Flat positions of a block's variables (its rows and columns)."""
        return np.concatenate([np.arange(self.index.offsets[v.index],
                                         self.index.offsets[v.index + 1])
                               for v in block.variables]).astype(np.intp)

    def block_triangular(self) -> sp.csr_matrix:
        """``matrix`` permuted by :attr:`permutation` (block triangular)."""
        perm = self.permutation
        return self.matrix[perm][:, perm].tocsr()

    def matvec(self, x: Array) -> Array:
        """``matrix @ x`` without assembling the matrix (one VJP or JVP sweep)."""
        z = self.values
        jx = np.zeros_like(x)
        if self.kind == "adjoint":
            for step in self.schedule.steps:
                step.pullback(z, x, into=jx)
        else:
            for step in self.schedule.steps:
                step.pushforward(z, x, into=jx)
        return x - jx

    def residual(self, x: Array) -> float:
        """Relative residual ||matrix x - rhs|| / max(||rhs||, tiny)."""
        with np.errstate(all="ignore"):
            r = self.matvec(x) - self.rhs
        scale = max(float(np.linalg.norm(self.rhs)), np.finfo(float).tiny)
        return float(np.linalg.norm(r)) / scale

    def split(self, x: Array) -> dict[Any, Array]:
        """A flat vector as ``{variable: array of its shape}``."""
        return {v: x[sl].reshape(v.shape) for v, sl in self.index.items()}

    def __repr__(self) -> str:
        sign = "(I - J)^T lambda" if self.kind == "adjoint" else "(I - J) zdot"
        return f"<System {sign} = e, n={self.rhs.size}>"
