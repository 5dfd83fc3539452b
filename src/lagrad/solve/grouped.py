"""Solving a group of same-structure cyclic blocks together (compile/groups.py).

Forward: one Newton iteration on F(U) = U - G(U) over the unknowns U (B, n_U)
of all B elements. G runs every equation of the element once for all
elements (batched primitives). With K = dG/dU = D + C, D the B diagonal
n_U x n_U blocks (an element's own unknowns) and C the coupling (an element
reading an earlier one's unknowns, so C is strictly block lower triangular):

    I - K = M - C = M (I - M^-1 C) = M L,    M = I - D (B stacked n_U x n_U)

M is factorized by one LU vectorized over the elements and L, unit lower
triangular and banded in a chain, by BLAS dtbsv (solve/chain.py); independent
blocks have no C and need only M's LU; a group reaching further back than
chain.MAX_REACH keeps M's stacked inverse and one sparse triangular solve.
D and C come from one seeded sweep (solve/groupjac.py). Running sums carried
along the group are left out of U's Newton solve (solve/groupcarry.py).

Linear solves (adjoint and tangent) reuse that factorization: see
solve/grouplinear.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.linalg import spsolve_triangular

from lagrad.compile.groups import Cross, CyclicGroup, Position
from lagrad.errors import SingularSystemError
from lagrad.ir.batching import MATMUL, align
from lagrad.ir.elementwise import identity
from lagrad.numeric import broadcast
from lagrad.solve.chain import MAX_REACH, BandFactor, Coupling, band_factorize
from lagrad.solve.groupcarry import core_of
from lagrad.solve.groupjac import group_jacobian
from lagrad.solve.results import BlockResult

__all__ = ["GroupMap", "GroupFactor", "gather", "scatter", "factorize", "check_group_determined",
           "shift_of", "outside_of"]

Array = NDArray[np.float64]
SENSITIVITY_LIMIT = 1e-3  # as blocksolve.SENSITIVITY_LIMIT (see there)
SINGULAR_CONDITION = 1e13


def outside_of(group: CyclicGroup, cross: Cross) -> NDArray[np.intp]:
    """The elements whose read of a cross argument is outside the group."""
    key = ("outside", id(cross))
    found = group.cache.get(key)
    if found is None:
        found = group.cache[key] = np.flatnonzero(~cross.mask)
    return found


def shift_of(group: CyclicGroup, cross: Cross) -> int:
    """d when element k reads element k - d for every k >= d (and the first d
    read outside the group), else 0."""
    key = ("shift", id(cross))
    found = group.cache.get(key)
    if found is None:
        k = np.flatnonzero(cross.mask)
        d = int(k[0]) if k.size else 0
        regular = d > 0 and k.size == group.size - d and np.array_equal(cross.source[k], k - d)
        found = group.cache[key] = d if regular else 0
    return found


def _matrix_by_entry(group: CyclicGroup, p: int) -> Array | None:
    """For a step ``A_k @ x_k`` (A constant, x a vector): A as (r, c, B), each
    entry's values for all elements contiguous (cached), so that the product
    is one einsum over contiguous rows (6x faster than the stacked (B, r, c)
    product at B = 1e5); None for any other step."""
    key = ("matrix by entry", p)
    if key not in group.cache:
        step, found = group.steps[p], None
        if step.primitive.batch is MATMUL and len(step.args) == 2 \
                and step.args[0][0] == "const" and np.ndim(step.args[0][1]) == 3 \
                and step.args[1][0] != "const" and len(step.args[1][2]) == 1:
            found = np.ascontiguousarray(np.moveaxis(step.args[0][1], 0, -1))
        group.cache[key] = found
    return group.cache[key]


def _shaped(dest: Array, shape: tuple[int, ...]) -> Array | None:
    """The slot columns ``dest`` (B, k) of the element layout as a view of
    the step's batched shape, or None when that takes a copy."""
    view = dest.view()
    try:
        view.shape = shape
    except AttributeError:
        return None
    return view


def _value_into(group: CyclicGroup, p: int, args: Sequence[Array], out: Array) -> bool:
    """Run step p over all elements straight into its slots ``out`` (no
    temporary, no copy into the Fortran-ordered layout) when it is a product
    ``A_k @ x_k`` with constant A (see _matrix_by_entry), an identity, or a
    ufunc with no params; False for any other step."""
    step = group.steps[p]
    prim = step.primitive
    at = _matrix_by_entry(group, p)
    if at is not None:
        np.einsum("ijb,bj->bi", at, args[1], out=out)
    elif prim is identity:
        out[...] = align(args[0], out.ndim - 1)
    elif prim.batch is None and not step.params and isinstance(prim.value, np.ufunc):
        rank = max(np.ndim(a) for a in args) - 1
        prim.value(*(align(a, rank) for a in args), out=out)
    else:
        return False
    return True


LAYOUT = "F"
"""The element layouts (B, n_W + n_U) of values, tangents and multipliers are
Fortran-ordered: a slot's column holds all B elements contiguously, so an
equation's batched operands are contiguous in B (C order would make every
column operation stride over all n_W + n_U entries of each element, ~30x
slower once the region no longer fits in cache)."""


def _by_slot(group: CyclicGroup) -> NDArray[np.intp]:
    found = group.cache.get("positions_t")
    if found is None:
        found = group.cache["positions_t"] = np.ascontiguousarray(group.positions.T)
    return found


def _regular(group: CyclicGroup) -> tuple[int, int, NDArray[np.intp], int] | None:
    """(first, stride, columns, width) when element k's entries sit at
    first + k stride + columns (a traced loop lays its iterations out so),
    else None (cached)."""
    found = group.cache.get("regular", False)
    if found is False:
        pos, found = group.positions, None
        if pos.shape[0] > 1:
            stride = int(pos[1, 0] - pos[0, 0])
            steps = np.arange(pos.shape[0])[:, None] * stride
            if stride > 0 and np.array_equal(pos, pos[0] + steps):
                first = int(pos[0].min())
                cols = pos[0] - first
                found = (first, stride, cols, int(cols.max()) + 1)
        group.cache["regular"] = found
    return found


def _rows(group: CyclicGroup, z: Array) -> tuple[Array, NDArray[np.intp]] | None:
    """A view (B, width) of z, one row per element over the elements' span,
    and the columns that are the region's slots; None when not regular."""
    regular = _regular(group)
    if regular is None or z.ndim != 1:
        return None
    first, stride, cols, width = regular
    step = z.strides[0]
    view = np.lib.stride_tricks.as_strided(z[first:], shape=(group.size, width),
                                           strides=(stride * step, step))
    return view, cols


CHUNK_BYTES = 1 << 18
"""Gather and scatter convert between z's element-major rows and the
Fortran-ordered element layout a chunk of elements at a time, so that each
chunk's rows stay in cache while its columns are read or written: 3.5x
faster than one pass per slot column at B = 1e5 (18 MB)."""


def _chunks(rows: Array) -> list[slice]:
    size = max(1, CHUNK_BYTES // (rows.itemsize * rows.shape[1]))
    return [slice(s, s + size) for s in range(0, rows.shape[0], size)]


def gather(group: CyclicGroup, z: Array) -> Array:
    """The region's entries of the flat vector z in the element layout (B,
    n_W + n_U), Fortran-ordered: copied a chunk of elements at a time (a traced
    loop's iterations are evenly spaced), or one gather."""
    found = _rows(group, z)
    if found is None:
        return z[_by_slot(group)].T
    rows, cols = found
    out = np.empty((rows.shape[0], cols.size), rows.dtype, order="F")
    for chunk in _chunks(rows):
        out[chunk] = rows[chunk, cols]
    return out


def scatter(group: CyclicGroup, z: Array, local: Array) -> None:
    """Write the element layout ``local`` back into the flat vector z."""
    found = _rows(group, z)
    if found is None:
        z[_by_slot(group)] = local.T
        return
    rows, cols = found
    for chunk in _chunks(rows):
        rows[chunk, cols] = local[chunk]


class GroupMap:
    """G over all elements at once. Values live in the local layout ``zl``
    (B, n_W + n_U); outer values are read from z once (they are computed
    before the group and do not change while it is solved)."""

    def __init__(self, group: CyclicGroup, z: Array) -> None:
        self.group, self.z = group, z
        # a column per slot (see LAYOUT); every W slot is written by a call
        # before it is read, so only the caller's U matters
        self.b = group.size
        self.zl = np.empty((self.b, group.n_w + group.n_u), order="F")
        self.outer: dict[tuple[int, int], Array] = {}
        for p, step in enumerate(group.steps):
            for a, arg in enumerate(step.args):
                if arg[0] == "outer":
                    self.outer[(p, a)] = z[arg[1]].reshape((self.b,) + arg[2])
        self.gu = np.empty((self.b, group.n_u), order="F")  # the closing equations' values
        self.args: list[list[Array]] = []
        self.ans: list[Array] = []
        self.partials = {}  # elementwise local derivatives at the current values
        self.core = core_of(group)

    def _arg(self, p: int, a: int, arg: tuple[Any, ...], u: Array) -> Array:
        if arg[0] == "const":
            return arg[1]
        if arg[0] == "local":
            return self.zl[:, arg[1]].reshape((self.b,) + arg[2])
        value = self.outer[(p, a)]
        cross = arg[3]
        if cross is not None:  # the source elements' unknowns, the outside value elsewhere
            d = shift_of(self.group, cross)
            if d:  # element k reads element k - d: two slice copies, no gather
                flat = np.empty((self.b, cross.u.stop - cross.u.start), order="F")
                flat[d:] = u[:-d, cross.u]
                flat[:d] = value.reshape(self.b, -1)[:d]
                return flat.reshape(value.shape)
            flat = np.take(u[:, cross.u], cross.source, axis=0)
            rest = outside_of(self.group, cross)
            if rest.size:
                flat[rest] = value.reshape(self.b, -1)[rest]
            value = flat.reshape(value.shape)
        return value

    def __call__(self, u: Array) -> Array:
        """G(U): sets the unknowns, runs the elements' equations, returns (B, n_U).
        With only the core's columns (B, core.n) it runs only the steps the core
        needs (the running sums are left out; see groupcarry) and returns those."""
        n = u.shape[1]
        self.args = [[] for _ in self.group.steps]
        self.ans = [None] * len(self.group.steps)
        self.partials: dict[tuple[int, int], Array] = {}
        self._run(u, self.core.needed if n < self.group.n_u else None, True)
        return self.gu[:, :n].copy(order="F")

    def complete(self, u: Array) -> Array:
        """After a call with the core's columns at the core's solution: the
        steps left out, with the whole U (B, n_U); returns G's running-sum columns."""
        self._run(u, self.core.needed, False)
        return self.gu[:, self.core.n:].copy(order="F")

    def _run(self, u: Array, needed: tuple[bool, ...] | None, value: bool) -> None:
        """Set U and run the steps whose ``needed`` entry is ``value`` (all: None)."""
        n_w = self.group.n_w
        self.zl[:, n_w:n_w + u.shape[1]] = u
        for p, step in enumerate(self.group.steps):
            if needed is not None and needed[p] is not value:
                continue
            args = [self._arg(p, a, arg, u) for a, arg in enumerate(step.args)]
            dest = (self.gu if step.closing else self.zl)[:, step.out]
            ans = _shaped(dest, (self.b,) + step.shape)
            if ans is None or not _value_into(self.group, p, args, ans):
                dest[...] = step.primitive.batched_value(args, step.params).reshape(self.b, -1)
                ans = dest.reshape((self.b,) + step.shape)
            self.args[p] = args
            self.ans[p] = ans

    def _jvp(self, p: int, a: int, t: Array) -> Array:
        """Output tangent of step p for the tangent t of its argument a alone;
        an elementwise step's local derivative is computed once per G call
        (a Jacobian takes one sweep per column)."""
        step = self.group.steps[p]
        prim, ans = step.primitive, self.ans[p]
        if prim.batch is not None or prim.partials is None:
            return prim.batched_jvp(a, t, ans, self.args[p], step.params)
        rank = ans.ndim - 1
        if prim.constant_partials is not None:
            c = prim.constant_partials[a]
            out = align(t, rank) if c == 1.0 else c * align(t, rank)
        else:
            d = self.partials.get((p, a))
            if d is None:
                d = self.partials[(p, a)] = prim.partials(
                    a, ans, *(align(x, rank) for x in self.args[p]), **step.params)
            out = d * align(t, rank)
        return broadcast(out, ans.shape)

    def write(self) -> None:
        """Leave z at the current values of the whole region."""
        scatter(self.group, self.z, self.zl)

    # ------------------------------------------------------------- sweeps
    def jvp(self, tl: Array, outer_t: dict[tuple[int, int], Array],
            live_u: Sequence[int] | None = None) -> Array:
        """Tangent sweep in place in ``tl`` (B, n_W + n_U: W sources, own U
        tangents); ``outer_t`` gives outer arguments' tangents. Returns the
        closing equations' tangents (B, n_U). With ``live_u`` (the U columns
        whose tangent may be non-zero; tl's W part then zero) the sweep skips
        every argument whose tangent is known to be zero."""
        b, n_w, gd = self.b, self.group.n_w, np.zeros((self.b, self.group.n_u), order="F")
        live: set[int] | None = None if live_u is None else set()  # W slots that are live
        for p, step in enumerate(self.group.steps):
            target = (gd if step.closing else tl)[:, step.out]
            moved = False
            for a, arg in enumerate(step.args):
                if arg[0] == "const":
                    continue
                if arg[0] == "local":
                    if live is not None and live_u is not None and not (
                            arg[1].start in live if arg[1].start < n_w else
                            any(arg[1].start - n_w <= c < arg[1].stop - n_w for c in live_u)):
                        continue
                    t = tl[:, arg[1]].reshape((b,) + arg[2])
                else:
                    t = outer_t.get((p, a))
                    if t is None:
                        continue
                target += self._jvp(p, a, t).reshape(b, -1)
                moved = True
            if live is not None and moved and not step.closing:
                live.add(step.out.start)
        return gd

    def vjp(self, ll: Array, lam_u: Array) -> dict[tuple[int, int], Array]:
        """Reverse sweep in place in ``ll`` (B, n_W + n_U: W seeds in, W
        multipliers and the U part of the pullbacks out) from the closing
        cotangents ``lam_u``; returns the outer arguments' cotangents."""
        b, out = self.b, {}
        for p in range(len(self.group.steps) - 1, -1, -1):
            step: Position = self.group.steps[p]
            g = (lam_u if step.closing else ll)[:, step.out].reshape((b,) + step.shape)
            for a, arg in enumerate(step.args):
                if arg[0] == "const":
                    continue
                ct = step.primitive.batched_vjp(a, g, self.ans[p], self.args[p], step.params)
                if arg[0] == "local":
                    ll[:, arg[1]] += ct.reshape(b, -1)
                else:
                    out[(p, a)] = ct.reshape(b, -1)
        return out


# -------------------------------------------------------------- factorization

@dataclass
class GroupFactor:
    """I - dG/dU = M L at the solution: ``minv`` the stacked M^-1, ``lower``
    the sparse unit lower triangular L (None without coupling)."""

    minv: Array
    lower: Any
    condition: Array  # per element, ||M||_1 ||M^-1||_1
    diagonal: Array  # D, kept to see how much it moved over a Newton step
    map: Any = None  # the group's map evaluated where this was made (linear solves reuse it)

    def solve(self, r: Array, transposed: bool) -> Array:
        """(M - C) x = r, or its transpose; r and x are (B, n_U)."""
        b, n = r.shape
        if not transposed:
            y = np.matmul(self.minv, r[:, :, None])[:, :, 0]
            if self.lower is not None:
                y = spsolve_triangular(self.lower, y.ravel(), lower=True,
                                       unit_diagonal=True).reshape(b, n)
            return y
        y = r
        if self.lower is not None:
            y = spsolve_triangular(self.lower.T.tocsr(), r.ravel(), lower=False,
                                   unit_diagonal=True).reshape(b, n)
        return np.matmul(np.swapaxes(self.minv, 1, 2), y[:, :, None])[:, :, 0]


def _coupling_matrix(coupling: list[Coupling], b: int, n: int) -> sp.csr_matrix | None:
    """C (B n_U x B n_U) from its columns, or None."""
    if not coupling:
        return None
    rows = [(c.k[:, None] * n + np.arange(n)).ravel() for c in coupling]
    cols = [np.repeat(c.source * n + c.col, n) for c in coupling]
    vals = [c.values.ravel() for c in coupling]
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(b * n, b * n))


def factorize(gm: GroupMap) -> GroupFactor | BandFactor | int:
    """M L (or, for a chain, the band LU of M - C) at the current values of
    ``gm`` (after a call); an element number when that element's M is singular.
    It covers the group's core (groupcarry): U without its running sums."""
    core = gm.core
    d, coupling = group_jacobian(gm, core.n)
    reach = core.reach
    if reach <= MAX_REACH:
        # M = I - D written once, elements last: the block LU works on it in place
        n = core.n
        a = np.negative(np.moveaxis(d, 0, -1), out=np.empty((n, n, gm.b)))
        a[np.arange(n), np.arange(n)] += 1.0
        band = band_factorize(np.moveaxis(a, -1, 0), coupling, reach, gm.group.cache,
                              diagonal=d, overwrite=True)
        if isinstance(band, int) or np.all(band.condition <= SINGULAR_CONDITION):
            return band
        return int(np.argmax(band.condition))
    m = np.eye(core.n) - d
    try:
        minv = np.linalg.inv(m)
    except np.linalg.LinAlgError:
        return int(np.argmin(np.abs(np.linalg.det(m))))
    cond = np.abs(m).sum(axis=1).max(axis=1) * np.abs(minv).sum(axis=1).max(axis=1)
    if not np.all(cond <= SINGULAR_CONDITION):
        return int(np.argmax(np.where(np.isfinite(cond), cond, np.inf)))
    c = _coupling_matrix(coupling, gm.b, core.n) if reach else None
    lower = None
    if c is not None:
        b, n = minv.shape[0], minv.shape[1]
        blocks = sp.bsr_matrix((minv, np.arange(b), np.arange(b + 1)), shape=(b * n, b * n))
        lower = (sp.identity(b * n, format="csr") - (blocks @ c).tocsr()).tocsr()
        lower.sort_indices()
    return GroupFactor(minv, lower, cond, d)


def check_group_determined(group: CyclicGroup, forward: BlockResult) -> None:
    """Raise SingularSystemError naming the block whose I - J is singular at the
    solution (condition times last change, as blocksolve.check_determined)."""
    factor, moved = forward.factorization, forward.extra.get("jacobian_change")
    if factor is None or moved is None:
        return
    risk = factor.condition * moved
    k = int(np.argmax(risk))
    if risk[k] > SENSITIVITY_LIMIT:
        raise SingularSystemError(
            f"{group.units[k].block.name}: I - J is singular at the solution: its estimated "
            f"condition is {factor.condition[k]:.1e} and it still moved by {moved[k]:.1e} over "
            f"the last Newton step, so the derivative is not determined; use method='lstsq' "
            "for minimum-norm multipliers")
