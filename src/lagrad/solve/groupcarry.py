"""Running sums carried along a group, taken out of its Newton solve.

A group's U part holds its elements' unknowns and then its *carries*: the
variables a later element reads (compile/glue.py). A carry that only
accumulates, ``total_k = total_{k-1} + X_k`` with nothing else reading it,
does not feed the unknowns, so Newton need not solve for it: the unknowns
are solved alone (their *core*: U's leading ``n`` columns), and then

* forward: ``total = cumsum(X)`` over the elements (the first element's
  ``total_{-1}`` is its value from outside the group), the same sums in the
  same order as element by element;
* adjoint: ``total_k`` is read by ``total_{k+1}`` with coefficient one, so its
  multiplier is the suffix sum of the right-hand sides,
  $\\lambda_k = \\sum_{j \\ge k} c_j$;
* tangent: the cumulative sum of the tangents of ``X``.

Such carries must be U's trailing columns (the layout puts carries after the
unknowns); the leading ones that do not qualify stay in the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.groups import CyclicGroup, Position
from lagrad.ir.primitives import add

__all__ = ["Core", "core_of", "prefix_sums", "suffix_sums"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Core:
    """What a group's Newton solve covers: U's first ``n`` columns (the rest
    are running sums), the steps they need (``needed[p]``), how far back an
    element reads among them (``reach``, 0: no coupling)."""

    n: int
    needed: tuple[bool, ...]
    reach: int

    @property
    def chained(self) -> bool:
        return self.reach > 0


def core_of(group: CyclicGroup) -> Core:
    """The group's core (cached in ``group.cache``)."""
    found = group.cache.get("core")
    if found is None:
        n = _core_width(group)
        found = group.cache["core"] = Core(n, _needed(group, n), _reach(group, n))
    return found


def _overlaps(a: slice, start: int, stop: int) -> bool:
    return a.start < stop and start < a.stop


def _running_sum(group: CyclicGroup, p: int) -> bool:
    """Step ``p`` closes a carry as ``previous element's carry + X`` (X not
    read from a carry), and nothing else reads that carry."""
    step = group.steps[p]
    if step.primitive is not add or len(step.args) != 2:
        return False
    s, e = step.out.start, step.out.stop
    own = [a for a, arg in enumerate(step.args) if arg[0] == "outer" and arg[3] is not None
           and (arg[3].u.start, arg[3].u.stop) == (s, e)]
    if len(own) != 1:
        return False
    cross = step.args[own[0]][3]
    b = group.size
    if cross.mask[0] or not cross.mask[1:].all() \
            or not np.array_equal(cross.source[1:], np.arange(b - 1)):
        return False
    other = step.args[1 - own[0]]
    if not _plain_operand(group, other, step.shape) or step.args[own[0]][2] != step.shape:
        return False
    return not any(_reads(group, q, a, arg, s, e) for q, st in enumerate(group.steps)
                   for a, arg in enumerate(st.args) if (q, a) != (p, own[0]))


def _plain_operand(group: CyclicGroup, arg: tuple[Any, ...], shape: tuple[int, ...]) -> bool:
    """A W slot, a constant or an outside value of the carry's own shape."""
    if arg[0] == "const":
        return tuple(arg[1].shape[1:]) == shape
    if arg[0] == "local":
        return arg[1].start < group.n_w and tuple(arg[2]) == shape
    return arg[3] is None and tuple(arg[2]) == shape


def _reads(group: CyclicGroup, q: int, a: int, arg: tuple[Any, ...], s: int, e: int) -> bool:
    """Argument ``a`` of step ``q`` reads U columns [s, e) (of its own or another element)."""
    if arg[0] == "local":
        return _overlaps(arg[1], group.n_w + s, group.n_w + e)
    return arg[0] == "outer" and arg[3] is not None and _overlaps(arg[3].u, s, e)


def _core_width(group: CyclicGroup) -> int:
    """U's leading columns that Newton solves: all but the trailing running sums."""
    closing = sorted((s.out.start, p) for p, s in enumerate(group.steps) if s.closing)
    n = group.n_u
    for start, p in reversed(closing):
        step = group.steps[p]
        if start < group.n_unknowns or step.out.stop != n or not _running_sum(group, p):
            break
        n = start
    return n


def _needed(group: CyclicGroup, n: int) -> tuple[bool, ...]:
    """Per step: it closes a core column or feeds (through W) one that does."""
    steps: tuple[Position, ...] = group.steps
    needed = [False] * len(steps)
    live: set[int] = set()  # W slots some needed step reads
    for p in range(len(steps) - 1, -1, -1):
        step = steps[p]
        if step.closing:
            needed[p] = step.out.stop <= n
        else:
            needed[p] = step.out.start in live
        if needed[p]:
            live.update(arg[1].start for arg in step.args
                        if arg[0] == "local" and arg[1].start < group.n_w)
    return tuple(needed)


def _reach(group: CyclicGroup, n: int) -> int:
    """How many places back an element reads the core (0: no coupling)."""
    return max((int(np.max(np.nonzero(a[3].mask)[0] - a[3].source[a[3].mask]))
                for s in group.steps for a in s.args
                if a[0] == "outer" and a[3] is not None and a[3].u.start < n), default=0)


def prefix_sums(v: Array) -> Array:
    """The running sums over the elements (axis 0), in order."""
    return np.cumsum(v, axis=0)


def suffix_sums(c: Array) -> Array:
    """The multipliers of running sums: sums over this element and the later ones."""
    return np.cumsum(c[::-1], axis=0)[::-1]
