"""Program-sized vectors recycled from one solve to the next.

A solve's values z and multipliers lambda outlive the call (the Solution
keeps them), so each solve allocates them anew. A training loop that drops
every Solution right away, ``program.solve(*params).grad()``, frees several
program-sized vectors at once; glibc then hands that memory back to the
operating system, and the next solve page-faults through all of it again
(measured on the MLP 784-256-256-10 workload: 3,000 page faults and 14 ms
per gradient, against 5 ms once the memory is reused).

A :class:`Pool` per schedule takes a vector back when the Solution that owned
it is collected, unless something else still refers to it (a view, a System,
``sol.z`` kept by the caller): such a vector is left alone, never reused.
"""

from __future__ import annotations

import sys
import weakref

import numpy as np
from numpy.typing import NDArray

__all__ = ["Pool", "pool_of"]

Array = NDArray[np.float64]
KEEP = 4  # vectors kept per schedule: z and lambda of the solution just dropped, two spare


def _give_back(free: list[Array], vec: Array) -> None:
    """Finalizer: put ``vec`` back when nothing but this call refers to it."""
    if sys.getrefcount(vec) <= _UNSHARED and len(free) < KEEP:
        free.append(vec)


def _unshared_count() -> int:
    """What sys.getrefcount reports inside :func:`_give_back` for a vector that
    only its owner refers to, as an attribute (weakref callbacks run before the
    owner's attributes are cleared). Measured, so it holds on any CPython."""
    seen: list[int] = []

    class Owner:
        vec: Array

    owner = Owner()
    owner.vec = np.empty(1)
    weakref.finalize(owner, lambda free, vec: seen.append(sys.getrefcount(vec)), [],
                     owner.vec)
    del owner
    return seen[0] if seen else 0  # 0: never recycle (a runtime without refcounts)


_UNSHARED = _unshared_count()


class Pool:
    """Recycled float64 vectors of one size.

    Examples
    --------
    >>> pool = Pool(3)
    >>> class Owner: pass
    >>> owner = Owner()
    >>> owner.z = pool.take()
    >>> pool.recycle(owner, owner.z)
    >>> del owner             # the owner is collected: z goes back to the pool
    >>> len(pool.free)
    1
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.free: list[Array] = []

    def take(self) -> Array:
        """A vector of ``size`` entries, contents undefined (like np.empty)."""
        try:
            return self.free.pop()
        except IndexError:
            return np.empty(self.size)

    def zeros(self) -> Array:
        """A vector of ``size`` zeros."""
        vec = self.take()
        vec.fill(0.0)
        return vec

    def recycle(self, owner: object, vec: Array) -> None:
        """Take ``vec`` back once ``owner`` is collected, if nothing but one of
        the owner's attributes holds it then."""
        if vec.size == self.size and vec.dtype == np.float64 and vec.base is None:
            weakref.finalize(owner, _give_back, self.free, vec)


def pool_of(schedule: object) -> Pool:
    """The pool of a compiled schedule (made on first use)."""
    extras = schedule.extras  # type: ignore[attr-defined]
    pool = extras.get("pool")
    if pool is None:
        pool = extras["pool"] = Pool(schedule.size)  # type: ignore[attr-defined]
    return pool
