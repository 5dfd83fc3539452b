"""Program-sized vectors recycled from one solve to the next.

A solve's values z and multipliers lambda outlive the call (the Solution
keeps them), so each solve allocates them anew. A training loop that drops
every Solution right away, ``program.solve(*params).grad()``, frees several
program-sized vectors at once; glibc then hands that memory back to the
operating system, and the next solve page-faults through all of it again
(measured on the MLP 784-256-256-10 workload: 3,000 page faults and 14 ms
per gradient, against 5 ms once the memory is reused).

A :class:`Pool` per schedule gets a vector's memory back when the last
reference to the vector goes: a Solution dropped with nothing else reading its
z, the gradient that views the multipliers dropped after it. While anything
still reads it (a view, a System, ``sol.z`` kept by the caller) it is never
reused.

The pool's vectors are placed so that the largest variable a solve writes
starts on a 64-byte boundary (:func:`aligned_empty`); numpy's own large
arrays start 16 bytes past one, where every 64-byte store of a vectorized
loop straddles two cache lines. Writing a DEQ layer's dL/dW (N = 1000, 8 MB,
out of cache) into the multipliers' slice for W took 2.5 ms misaligned and
2.2 ms aligned by dgemm, 1.4 ms aligned by numpy's multiply (``python
benchmarks/bench_deq_parts.py``, before and after).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Pool", "pool_of", "aligned_empty", "write_flat"]

Array = NDArray[np.float64]
ALIGN = 64  # bytes: a cache line (and an AVX-512 register)
KEEP = 4  # vectors kept per schedule: z and lambda of the solution just dropped, two spare


class Memory:
    """The array under pooled vectors, with its bytes and the offset at which
    a vector of the pool starts (computed once: reading an array's address
    costs a microsecond)."""

    __slots__ = ("raw", "bytes", "offset")

    def __init__(self, raw: Array, at: int) -> None:
        self.raw = raw
        self.bytes = memoryview(raw).cast("B")
        self.offset = -(raw.ctypes.data + 8 * at) % ALIGN  # bytes to skip

    @classmethod
    def new(cls, size: int, at: int) -> Memory:
        """Room for ``size`` entries with entry ``at`` aligned."""
        return cls(np.empty(size + ALIGN // 8 - 1), at)

    def vector(self, size: int) -> Array:
        """``size`` entries from the aligned offset, seen through the memoryview:
        views of the vector refer to it (numpy makes a view's base the first
        array up the chain whose base is not an array)."""
        vec: Array = np.frombuffer(self.bytes, dtype=np.float64, count=size,
                                   offset=self.offset)
        return vec


class Pool:
    """Recycled float64 vectors of one size, 64-byte aligned at ``aligned_at``.

    A vector from :meth:`take` hands its memory back to the pool when the
    last reference to it goes (a view of it, ``sol.z[:10]``, is one: see
    :func:`aligned_empty`), so nothing that is still read is ever reused.

    Examples
    --------
    >>> import gc
    >>> pool = Pool(3)
    >>> z = pool.take()
    >>> head = z[:2]
    >>> del z                 # the view still reads it: not back yet
    >>> len(pool.free)
    0
    >>> del head
    >>> _ = gc.collect()
    >>> len(pool.free)        # now its memory is back
    1
    """

    def __init__(self, size: int, aligned_at: int = 0) -> None:
        self.size = size
        self.aligned_at = aligned_at
        self.free: list[Memory] = []  # under vectors no longer referenced
        self.keep = KEEP  # (read here, not as a global: callbacks may run at exit)
        self._out: dict[int, tuple[weakref.ref[Array], Memory]] = {}  # under live ones

    def __getstate__(self) -> dict[str, int]:
        """Pickled empty: the recycled memory belongs to this process."""
        return {"size": self.size, "aligned_at": self.aligned_at}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["size"], state["aligned_at"])  # type: ignore[misc]

    def _memory(self) -> Memory:
        return Memory.new(self.size, self.aligned_at)

    def take(self) -> Array:
        """A vector of ``size`` entries, contents undefined (like np.empty)."""
        try:
            memory = self.free.pop()
        except IndexError:
            memory = self._memory()
        vec = memory.vector(self.size)
        ref = weakref.ref(vec, self._returned)
        self._out[id(ref)] = (ref, memory)
        return vec

    def _returned(self, ref: weakref.ref[Array]) -> None:
        """The last reference to a vector went: its memory comes back."""
        entry = self._out.pop(id(ref), None)
        if entry is not None and len(self.free) < self.keep:
            self.free.append(entry[1])

    def zeros(self) -> Array:
        """A vector of ``size`` zeros."""
        vec = self.take()
        vec.fill(0.0)
        return vec

    def poison(self, value: float = np.nan) -> None:
        """Fill the memory the next vectors will get with ``value`` (one new
        block if none is free): tests show that a solve writes every entry it
        reads."""
        if not self.free:
            self.free.append(self._memory())
        for memory in self.free:
            memory.raw.fill(value)


def write_flat(dest: Array, x: Any) -> None:
    """Write ``x`` into the flat vector ``dest`` in C order, with no temporary
    when ``x`` is not C-contiguous (``np.ravel`` would copy a Fortran-ordered
    matrix into a new array first).

    >>> dest = np.empty(4)
    >>> write_flat(dest, np.asfortranarray([[1.0, 2.0], [3.0, 4.0]]))
    >>> dest
    array([1., 2., 3., 4.])
    """
    dest.reshape(np.shape(x))[...] = x


def aligned_empty(size: int, at: int = 0) -> Array:
    """np.empty(size) placed so that entry ``at`` starts on a 64-byte boundary
    (a view through a memoryview, see :meth:`Memory.vector`)."""
    return Memory.new(size, at).vector(size)


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
