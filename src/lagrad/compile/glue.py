"""The acyclic equations of a loop body around a group's blocks ("glue").

A traced loop ``for k: z = fixed_point(f, z0, z, c[k]); total = total + g(z)``
repeats more than its cyclic block: the ``c[k]`` that feeds it and the
``g(z)`` and ``total + ...`` that follow it run once per iteration as well.
Left outside the group they cost one Python step each per block in every
sweep, and ``total`` is a chain B steps deep that no level batching can
shorten. Here they join their element of the group (compile/groups.py):

* *feeders*: a ``getitem`` of a variable computed before the group (``c[k]``),
  read by one element only. Each element selects other entries, so the
  feeder becomes a gather of the source's flat positions, not a batched
  ``getitem``;
* *followers*: the Single equations downstream of the group that read only
  elements' variables (each goes to the latest element it reads), variables
  computed before the group and constants, with a batched form. A follower
  that reads an earlier element's variable (``total`` of the previous
  iteration) makes that variable a *carry*: the group solves it with its
  unknowns, so the chain of ``total`` costs one sparse triangular solve.

Followers must agree across elements (the same equations, in the same order,
up to variable offsets); an element with more of them keeps the common
prefix and leaves the rest to run after the group (the last iteration often
has an extra equation: the loop's result). Anything else keeps the group as
it was without glue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lagrad.compile.schedule import CyclicBlock, Single
from lagrad.ir.primitives import getitem
from lagrad.ir.program import Program

__all__ = ["Glue", "find_glue", "gather_of", "no_glue"]

Element = tuple[CyclicBlock, list[Single]]
KeyFn = Callable[[Program, Sequence[Any], dict[int, int]], Any]


@dataclass(frozen=True)
class Glue:
    """Per element (in group order): its feeders and its followers."""

    feeders: list[list[Single]]
    followers: list[list[Single]]


def no_glue(n: int) -> Glue:
    """The glue of ``n`` elements that have none."""
    return Glue([[] for _ in range(n)], [[] for _ in range(n)])


def find_glue(program: Program, steps: Sequence[Any], elements: Sequence[Element],
              key: KeyFn) -> Glue:
    """The glue of a group's elements; empty lists where none matches. ``key``
    is the structure of a list of equations (groups._equations_key)."""
    empty = no_glue(len(elements))
    owner = {}  # variable -> element
    for k, (unit, conns) in enumerate(elements):
        owner.update({v.index: k for v in unit.block.variables})
        owner.update({s.eq.out: k for s in conns})
    members = {id(s) for unit, conns in elements for s in (unit, *conns)}
    followers = _followers(program, steps, members, dict(owner), elements, key)
    feeders = _feeders(program, steps, members, owner, elements)
    if followers is None and feeders is None:
        return empty
    return Glue(feeders or empty.feeders, followers or empty.followers)


def _parents(step: Any) -> set[int]:
    inside = step.members if isinstance(step, CyclicBlock) else frozenset()
    return {j for eq in step.equations for j in eq.parents if j not in inside}


def _followers(program: Program, steps: Sequence[Any], members: set[int],
               owner: dict[int, int], elements: Sequence[Element], key: KeyFn
               ) -> list[list[Single]] | None:
    found: list[list[Single]] = [[] for _ in elements]
    late: set[int] = set()  # downstream of the group, outside it
    for step in steps:
        if id(step) in members:
            continue
        parents = _parents(step)
        reads = [owner[j] for j in parents if j in owner]
        if not reads and not parents & late:
            continue
        if (parents & late or not isinstance(step, Single)
                or not step.eq.primitive.batchable(step.eq.params)):
            late.update(eq.out for eq in step.equations)
            continue
        k = max(reads)
        found[k].append(step)
        owner[step.eq.out] = k
    if not any(found):
        return None
    found = [sorted(f, key=lambda s: s.eq.out) for f in found]  # trace order
    keys = [_key(program, elements[k], f, key) for k, f in enumerate(found)]
    common, _ = Counter(keys).most_common(1)[0]
    if common is None:
        return None
    dropped: set[int] = set()
    for k, f in enumerate(found):
        if keys[k] == common:
            continue
        n = len(common)
        if len(f) < n or _key(program, elements[k], f[:n], key) != common:
            return None
        dropped.update(s.eq.out for s in f[n:])
        found[k] = f[:n]
    if any(j in dropped for f in found for s in f for j in s.eq.parents):
        return None
    return found


def _key(program: Program, element: Element, follow: list[Single], key: KeyFn) -> Any:
    unit, conns = element
    local = {s.eq.out: n for n, s in enumerate(conns)}
    for v in unit.block.variables:
        local[v.index] = len(local)
    outs = {s.eq.out for s in follow}
    for s in follow:
        if any(j in outs and j >= s.eq.out for j in s.eq.parents):
            return None  # trace order is not an evaluation order: nothing to compare
        local[s.eq.out] = len(local)
    return key(program, [s.eq for s in follow], local)


def _feeders(program: Program, steps: Sequence[Any], members: set[int],
             owner: dict[int, int], elements: Sequence[Element]
             ) -> list[list[Single]] | None:
    readers: Counter[int] = Counter(j for step in steps for eq in step.equations
                                    for j in set(eq.parents))
    out = program.output_or_none
    output = None if out is None else out.index
    by_out = {s.eq.out: s for s in steps if isinstance(s, Single)
              and s.eq.primitive is getitem and id(s) not in members}
    found: list[list[Single]] = []
    pattern = None
    for unit, conns in elements:
        mine, shape = [], []
        eqs = [s.eq for s in conns] + [s.eq for s in unit.interior + unit.closing]
        for p, eq in enumerate(eqs):
            for a, j in enumerate(eq.args):
                s = by_out.get(j) if isinstance(j, int) else None
                if s is None or readers[j] != 1 or j == output \
                        or s.eq.args[0] in owner:
                    continue
                mine.append(s)
                shape.append((p, a, program.variables[s.eq.args[0]].shape,
                              program.variables[j].shape))
        if pattern is None:
            pattern = shape
        if shape != pattern:
            return None
        found.append(mine)
    if not pattern:
        return None
    return found


def gather_of(program: Program, offsets: Any, feeder: Single) -> Any:
    """The flat positions a feeder ``getitem`` selects from its source."""
    src = program.variables[feeder.eq.args[0]]
    flat = np.arange(src.size).reshape(src.shape)[feeder.eq.params["index"]]
    return offsets[src.index] + np.ravel(flat)
