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

The pool's vectors are placed so that the largest variable a solve writes
starts on a 64-byte boundary (:func:`aligned_empty`); numpy's own large
arrays start 16 bytes past one, where every 64-byte store of a vectorized
loop straddles two cache lines. Writing a DEQ layer's dL/dW (N = 1000, 8 MB,
out of cache) into the multipliers' slice for W took 2.5 ms misaligned and
2.2 ms aligned by dgemm, 1.4 ms aligned by numpy's multiply (``python
benchmarks/bench_deq_parts.py``, before and after).
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Pool", "pool_of", "aligned_empty"]

Array = NDArray[np.float64]
ALIGN = 64  # bytes: a cache line (and an AVX-512 register)
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

    def __init__(self, size: int, aligned_at: int = 0) -> None:
        self.size = size
        self.aligned_at = aligned_at
        self.free: list[Array] = []
        self._made: weakref.WeakValueDictionary[int, Array] = weakref.WeakValueDictionary()

    def __getstate__(self) -> dict[str, int]:
        """Pickled empty: the recycled vectors belong to this process."""
        return {"size": self.size, "aligned_at": self.aligned_at}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["size"], state["aligned_at"])  # type: ignore[misc]

    def take(self) -> Array:
        """A vector of ``size`` entries, contents undefined (like np.empty)."""
        try:
            return self.free.pop()
        except IndexError:
            vec = aligned_empty(self.size, self.aligned_at)
            self._made[id(vec)] = vec
            return vec

    def zeros(self) -> Array:
        """A vector of ``size`` zeros."""
        vec = self.take()
        vec.fill(0.0)
        return vec

    def recycle(self, owner: object, vec: Array) -> None:
        """Take ``vec`` back once ``owner`` is collected, if nothing but one of
        the owner's attributes holds it then."""
        if vec.size == self.size and vec.dtype == np.float64 and \
                (vec.base is None or self._made.get(id(vec)) is vec):
            weakref.finalize(owner, _give_back, self.free, vec)


def aligned_empty(size: int, at: int = 0) -> Array:
    """np.empty(size) placed so that entry ``at`` starts on a 64-byte boundary.

    The vector is a view of a slightly larger array through a memoryview, so
    that views of it (``sol.z[:10]``) refer to it, not to the larger array,
    and its reference count tells whether anything still reads it."""
    raw = np.empty(size + ALIGN // 8 - 1)
    shift = (-(raw.ctypes.data + 8 * at) % ALIGN) // 8
    vec: Array = np.frombuffer(memoryview(raw).cast("B"), dtype=np.float64, count=size,
                               offset=8 * shift)
    return vec


def pool_of(schedule: object) -> Pool:
    """The pool of a compiled schedule (made on first use)."""
    extras = schedule.extras  # type: ignore[attr-defined]
    pool = extras.get("pool")
    if pool is None:
        pool = extras["pool"] = Pool(schedule.size, _aligned_start(schedule))
    return pool


def _aligned_start(schedule: Any) -> int:
    """The flat position to put on a 64-byte boundary: where the largest
    variable that a solve writes into its vectors starts. In a program with a
    cyclic block that may be an input (the multipliers' slice of a DEQ's W
    receives dL/dW); in an acyclic one the generated sweep writes the inputs'
    gradients into arrays of their own, and the largest computed variable is
    taken (an MLP's activations, which its generated forward pass writes). 0
    for an index without offsets: a bulk program's, of scalars only."""
    offsets = getattr(schedule.index, "offsets", None)
    if offsets is None or len(offsets) < 2:
        return 0
    sizes = np.diff(offsets)
    if not any(block.cyclic for block in schedule.program.blocks):
        sizes = sizes.copy()
        sizes[[v.index for v in schedule.inputs]] = -1
    return int(offsets[int(np.argmax(sizes))])
