"""Large inputs read in place from the caller's arrays instead of copied into z.

The flat vector z holds every variable, inputs included, so a solve starts by
copying each input into it. For a parameter as large as a DEQ layer's W (N^2
entries) that copy is a pass over twice its memory, and a second copy of W then
competes for the cache with the one the caller holds: on z = tanh(W z + U x + b)
at N = 1000 it cost about a fifth of the whole gradient.

An input that only the equations of cyclic blocks read (and that is large,
C-contiguous float64) is therefore *borrowed*: the block's iterations bind the
caller's array where the equations read it (:mod:`lagrad.solve.bound`), and its
slice of z is left unwritten until something reads z directly. An acyclic
array program run from its flat plan (:mod:`lagrad.solve.flatplan`: an MLP's
loss) borrows every large input: the plan's forward pass and multiplier sweep
read it where they gather arguments. Anything that
does (a Newton step assembling J, a residual check, ``sol.z``, ``sol["W"]``)
goes through :meth:`Borrowed.fill` first, which copies it then, once.

The caller's array is read, not copied: modifying it in place between
``program.solve`` and the Solution's last use changes what that Solution
computes (as for any function that keeps a reference to its argument).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.groups import grouped_steps
from lagrad.compile.schedule import CyclicBlock, Schedule, Single

__all__ = ["Borrowed", "borrowable", "borrow", "lend", "finite_outside", "BORROW_MIN"]

Array = NDArray[np.float64]
Span = tuple[int, int]
BORROW_MIN = 1 << 15  # entries from which an input is worth not copying (256 KiB)


class Borrowed:
    """Inputs of one solve left in the caller's arrays: ``arrays`` maps each
    input's span (start, stop) of z to its flat values; :meth:`fill` writes
    them into z (once), after which nothing is borrowed any more."""

    def __init__(self, arrays: dict[Span, Array]) -> None:
        self.arrays = arrays
        # spans whose values a block's products have shown finite (see
        # :meth:`lagrad.solve.nonlinear.BlockMap.certify_borrowed`): the final
        # check of the solve skips them
        self.finite: set[Span] = set()

    def fill(self, z: Array) -> None:
        """Copy the borrowed inputs into their slices of ``z`` (once)."""
        for (a, b), x in self.arrays.items():
            z[a:b] = x
        self.arrays = {}

    def run(self, step: Single, z: Array) -> None:
        """:meth:`Single.run` into z, borrowed inputs read from the caller's arrays."""
        eq, args = step.eq, self.gather(step, z)
        target = z[step.start:step.stop]
        if step.ufunc:
            eq.primitive.value(*args, out=target.reshape(step.shape))
        else:
            target[...] = np.ravel(eq.primitive.value(*args, **eq.params))

    def gather(self, step: Single, z: Array) -> list[Any]:
        """The step's arguments, borrowed inputs from the caller's arrays."""
        args = step.gather(z)
        if self.arrays:
            for pos, a, b, shape in step.vslots:
                x = self.arrays.get((a, b))
                if x is not None:
                    args[pos] = x.reshape(shape)
        return args


def borrowable(schedule: Schedule) -> frozenset[Span]:
    """Spans of the inputs that may be borrowed (cached on the schedule): at
    least BORROW_MIN entries, read by no equation outside a cyclic block, in a
    program whose steps are all single equations or (ungrouped) cyclic blocks
    and that takes no starting point from another variable."""
    extras = schedule.extras
    if "borrowable" not in extras:
        extras["borrowable"] = _find(schedule)
    return extras["borrowable"]


def _find(schedule: Schedule) -> frozenset[Span]:
    program, index = schedule.program, schedule.index
    steps = grouped_steps(schedule)
    if program.init_sources or schedule.scalar or \
            not all(type(s) in (Single, CyclicBlock) for s in steps):
        return frozenset()
    spans = {(int(index.offsets[v.index]), int(index.offsets[v.index + 1]))
             for v in schedule.inputs if v.size >= BORROW_MIN}
    for step in steps:
        if not isinstance(step, CyclicBlock):
            spans -= {(a, b) for _, a, b, _ in step.vslots}
    return frozenset(spans)


def borrow(schedule: Schedule, inputs: Sequence[Array]) -> Borrowed | None:
    """The inputs of this solve to leave in the caller's arrays (None: none)."""
    spans = borrowable(schedule)
    if not spans:
        return None
    index = schedule.index
    return lend(spans, [((int(index.offsets[v.index]), int(index.offsets[v.index + 1])), x)
                        for v, x in zip(schedule.inputs, inputs)])


def lend(spans: frozenset[Span], inputs: Sequence[tuple[Span, Any]]) -> Borrowed | None:
    """Of ``inputs`` ((span, value) pairs), those whose span is in ``spans``
    and whose value is a C-contiguous float64 array, borrowed (None: none)."""
    arrays: dict[Span, Array] = {}
    for span, x in inputs:
        if span in spans and isinstance(x, np.ndarray) and x.dtype == np.float64 \
                and x.flags.c_contiguous:
            arrays[span] = x.reshape(-1)
    return Borrowed(arrays) if arrays else None


def finite_outside(z: Array, borrowed: Borrowed | None, finite: Any) -> bool:
    """``finite`` (a test of one array) holds for z, its borrowed spans read
    from the caller's arrays instead (those in ``borrowed.finite``, shown
    finite during the solve, are not read again)."""
    if borrowed is None or not borrowed.arrays:
        return bool(finite(z))
    start = 0
    for (a, b), x in sorted(borrowed.arrays.items()):
        if not (finite(z[start:a]) and ((a, b) in borrowed.finite or finite(x))):
            return False
        start = b
    return bool(finite(z[start:]))
