"""Greedy colouring of a sparse Jacobian's columns (or rows), and the
compression and recovery that go with it (Curtis, Powell and Reid, 1974).

Two columns of a pattern P that share no row can be computed by one tangent
solve seeded with their sum: each row of the result then holds exactly one of
them, so J[i, j] = (J S)[i, colour(j)] wherever P[i, j] is set. A colouring
of the columns' intersection graph (j ~ j' when some row holds both, the
graph of P^T P) gives the groups; greedy colouring in largest-degree-first
order is good in general. A banded pattern (every row's columns within b of
each other) is first tried with the colouring j mod (b + 1), found in a few
vectorized calls: when that uses no more colours than the fullest row has
entries, no colouring can do better, and the intersection graph is never
built. Rows are coloured
the same way, on P^T, for adjoint solves.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = ["greedy_colouring", "banded_colouring", "colour_count", "seed_matrix", "recover"]

Ints = NDArray[np.intp]
CONFLICT_LIMIT = 20_000_000
"""Most conflict-graph entries a colouring builds (sum over rows of the
squared row counts); past it the columns are left uncoloured (one per
colour): a pattern that dense cannot be compressed much anyway."""


def greedy_colouring(pattern: sp.spmatrix) -> Ints:
    """Colour the columns of ``pattern`` so that no two columns with an entry
    in the same row share a colour.

    Parameters
    ----------
    pattern : scipy.sparse matrix, shape (m, n)
        The structure to colour (stored entries count, whatever their value).

    Returns
    -------
    ndarray of int, shape (n,)
        ``colours[j]`` in ``0 .. k-1``: j mod (b + 1) for a banded pattern
        where that is optimal, else greedy: columns are visited by decreasing
        degree in the intersection graph and each takes the smallest colour
        none of its neighbours has.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from lagrad.solve.colouring import greedy_colouring
    >>> tridiagonal = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(6, 6))
    >>> greedy_colouring(tridiagonal)
    array([0, 1, 2, 0, 1, 2])
    >>> arrow = sp.csr_matrix(np.eye(4) + np.eye(4)[::-1])  # the band would need 4 colours
    >>> greedy_colouring(arrow)
    array([0, 0, 1, 1])
    """
    p = sp.csr_matrix(pattern, dtype=bool)
    p.sum_duplicates()  # sorted indices, as the spans below need
    n = p.shape[1]
    row_counts = np.diff(p.indptr).astype(np.int64)
    clique = int(row_counts.max(initial=0))  # a row's columns all conflict: a lower bound
    if clique >= n or int((row_counts ** 2).sum()) > CONFLICT_LIMIT:
        return np.arange(n, dtype=np.intp)
    band = banded_colouring(p, row_counts)
    if band is not None and colour_count(band) <= clique:
        return band  # optimal, and found without the intersection graph
    conflicts = (p.T @ p).tocsr()
    indptr, indices = conflicts.indptr.tolist(), conflicts.indices.tolist()
    degree = np.diff(conflicts.indptr)
    colours = [-1] * n
    for v in np.argsort(-degree, kind="stable").tolist():
        taken = {colours[u] for u in indices[indptr[v]:indptr[v + 1]]}
        c = 0
        while c in taken:
            c += 1
        colours[v] = c
    return np.asarray(colours, dtype=np.intp)


def banded_colouring(p: sp.csr_matrix, row_counts: NDArray[np.int64]) -> Ints | None:
    """j mod (b + 1) where b is the widest span of a row of ``p`` (CSR, sorted
    indices): valid because two columns of one row are at most b apart. None
    for a pattern without entries."""
    full = np.flatnonzero(row_counts)
    if not full.size:
        return None
    first = p.indices[p.indptr[full]]
    last = p.indices[p.indptr[full + 1] - 1]
    return (np.arange(p.shape[1]) % (int((last - first).max()) + 1)).astype(np.intp)


def colour_count(colours: Ints) -> int:
    """The number of colours (0 for no columns)."""
    return int(colours.max()) + 1 if colours.size else 0


def seed_matrix(colours: Ints) -> NDArray[np.float64]:
    """S with S[j, c] = 1 where column j has colour c: (n, k), dense."""
    s = np.zeros((colours.size, colour_count(colours)))
    s[np.arange(colours.size), colours] = 1.0
    return s


def recover(pattern: sp.spmatrix, compressed: NDArray[np.float64], colours: Ints,
            by_rows: bool = False) -> sp.csr_matrix:
    """The Jacobian on ``pattern`` (m, n) from its compressed form.

    By columns, ``compressed`` is J S (m, k) and J[i, j] = compressed[i,
    colours[j]]; ``by_rows``, it is (S^T J)^T = J^T S (n, k), the adjoint
    solves' result at the inputs, and J[i, j] = compressed[j, colours[i]].

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from lagrad.solve.colouring import greedy_colouring, recover, seed_matrix
    >>> j = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [0.0, 3.0, 4.0]]))
    >>> colours = greedy_colouring(j)
    >>> recover(j, j @ seed_matrix(colours), colours).toarray()
    array([[1., 2., 0.],
           [0., 3., 4.]])
    """
    p = sp.csr_matrix(pattern, dtype=bool)
    p.sort_indices()
    rows = np.repeat(np.arange(p.shape[0]), np.diff(p.indptr))
    cols = p.indices
    values = compressed[cols, colours[rows]] if by_rows else compressed[rows, colours[cols]]
    return sp.csr_matrix((values, cols.copy(), p.indptr.copy()), shape=p.shape)
