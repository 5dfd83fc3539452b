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
* *followers*: the equations downstream of the group that read only
  elements' variables (each goes to the latest element it reads), variables
  computed before the group and constants, with a batched form: Single steps,
  and equations of a scalar Batch (independent blocks share a level, so the
  scalar work after each of them is batched by level; the glue takes those
  equations out of the batch and leaves the rest of it a step). A follower
  that reads an earlier element's variable (``total`` of the previous
  iteration) makes that variable a *carry*: the group solves it with its
  unknowns, so the chain of ``total`` costs one sparse triangular solve.

Followers must agree across elements (the same equations, in the same order,
up to variable offsets); an element with more of them keeps the common
prefix and leaves the rest to run after the group (the last iteration often
has an extra equation: the loop's result). Leading elements that disagree
with the rest are left out of the group (the first iteration's
``total = 0.0 + ...`` reads a constant where the others read the previous
total). Anything else keeps the group as it was without glue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np

from lagrad.compile.schedule import Batch, CyclicBlock, Index, Single, batch_of, single_of
from lagrad.ir.blocks import equation_edges, sorted_unique
from lagrad.ir.primitives import getitem
from lagrad.ir.program import Equation, Program

__all__ = ["Glue", "find_glue", "gather_of", "no_glue"]

Element = tuple[CyclicBlock, list[Single]]
KeyFn = Callable[[Program, Sequence[Any], dict[int, int]], Any]


@dataclass(frozen=True)
class Glue:
    """Per element (in group order): its feeders and its followers. ``split``:
    each scalar :class:`Batch` some of whose equations became followers, with
    what is left of it (None if nothing). ``skip``: that many leading elements
    disagree with the rest and should be left out of the group (the first
    iteration's ``total = 0.0 + ...`` reads a constant where the others read
    the previous total)."""

    feeders: list[list[Single]]
    followers: list[list[Single]]
    split: tuple[tuple[Batch, Batch | None], ...] = ()
    skip: int = 0


def no_glue(n: int) -> Glue:
    """The glue of ``n`` elements that have none."""
    return Glue([[] for _ in range(n)], [[] for _ in range(n)])


def find_glue(program: Program, index: Index, steps: Sequence[Any],
              elements: Sequence[Element], key: KeyFn) -> Glue:
    """The glue of a group's elements; empty lists where none matches. ``key``
    is the structure of a list of equations (groups._equations_key)."""
    empty = no_glue(len(elements))
    owner = {}  # variable -> element
    for k, (unit, conns) in enumerate(elements):
        owner.update({v.index: k for v in unit.block.variables})
        owner.update({s.eq.out: k for s in conns})
    members = {id(s) for unit, conns in elements for s in (unit, *conns)}
    followers, skip, split = _followers(program, index, steps, members, dict(owner), elements,
                                        key)
    if skip:
        return Glue(empty.feeders, empty.followers, skip=skip)
    feeders = _feeders(program, steps, members, owner, elements)
    if followers is None and feeders is None:
        return empty
    return Glue(feeders or empty.feeders, followers or empty.followers,
                split if followers else ())


def _parents(step: Any) -> set[int]:
    inside = step.members if isinstance(step, CyclicBlock) else frozenset()
    return {j for eq in step.equations for j in eq.parents if j not in inside}


def _follows(eq: Equation, parents: set[int], owner: dict[int, int], late: set[int]
             ) -> int | None:
    """The element an equation follows (None: unrelated, or late, added to ``late``)."""
    reads = [owner[j] for j in parents if j in owner]
    if not reads and not parents & late:
        return None
    if parents & late or not eq.primitive.batchable(eq.params):
        late.add(eq.out)
        return None
    return max(reads)


def _followers(program: Program, index: Index, steps: Sequence[Any], members: set[int],
               owner: dict[int, int], elements: Sequence[Element], key: KeyFn
               ) -> tuple[list[list[Single]] | None, int, tuple[tuple[Batch, Batch | None], ...]]:
    """The followers per element, the leading elements to skip, and the split
    batches: a scalar Batch's equations are taken one by one (they share a
    level, so none reads another)."""
    found: list[list[Single]] = [[] for _ in elements]
    late: set[int] = set()  # downstream of the group, outside it
    batches: list[Batch] = []
    for step in steps:
        if id(step) in members:
            continue
        if isinstance(step, Batch) and step.lazy is None:
            taken = False
            for eq in step.eqs:
                ps = eq.parents
                if owner.keys().isdisjoint(ps) and late.isdisjoint(ps):
                    continue  # unrelated
                k = _follows(eq, set(ps), owner, late)
                if k is not None:
                    found[k].append(single_of(eq, index))
                    owner[eq.out], taken = k, True
            if taken:
                batches.append(step)
            continue
        if type(step) is Single:  # _follows, inline: most steps are Singles
            eq = step.eq
            ps = eq.parents
            if not late.isdisjoint(ps):
                late.add(eq.out)
                continue
            reads = [owner[j] for j in ps if j in owner]
            if not reads:
                continue  # unrelated to the group
            if not eq.primitive.batchable(eq.params):
                late.add(eq.out)
                continue
            k = max(reads)
            found[k].append(step)
            owner[eq.out] = k
            continue
        parents = _parents(step)  # a cyclic step outside the group, or a bulk batch
        if any(j in owner or j in late for j in parents):
            late.update(eq.out for eq in step.equations)
    chosen, skip = _agree(program, found, elements, key)
    if chosen is None:
        return None, skip, ()
    return chosen, 0, _split(index, batches, chosen)


def _agree(program: Program, found: list[list[Single]], elements: Sequence[Element],
           key: KeyFn) -> tuple[list[list[Single]] | None, int]:
    """The followers the elements agree on (each keeps the common prefix), or
    None and how many leading elements disagree (0: some later one does)."""
    if not any(found):
        return None, 0
    found = [sorted(f, key=_OUT) for f in found]  # trace order
    keys = [_key(program, elements[k], f, key) for k, f in enumerate(found)]
    common, _ = Counter(keys).most_common(1)[0]
    if common is None:
        return None, 0
    dropped: set[int] = set()
    disagree: list[int] = []
    for k, f in enumerate(found):
        if keys[k] == common:
            continue
        n = len(common)
        if len(f) < n or _key(program, elements[k], f[:n], key) != common:
            disagree.append(k)
            continue
        dropped.update(s.eq.out for s in f[n:])
        found[k] = f[:n]
    if disagree:
        leading = disagree == list(range(len(disagree)))
        return None, len(disagree) if leading and len(disagree) < len(found) // 2 else 0
    if any(j in dropped for f in found for s in f for j in s.eq.parents):
        return None, 0
    return found, 0


_OUT = attrgetter("eq.out")


def _split(index: Index, batches: list[Batch], chosen: list[list[Single]]
           ) -> tuple[tuple[Batch, Batch | None], ...]:
    """Each batch some of whose equations are followers, with the rest of it."""
    taken = {id(s.eq) for f in chosen for s in f}
    out = []
    for batch in batches:
        rest = [eq for eq in batch.eqs if id(eq) not in taken]
        if len(rest) < len(batch.eqs):
            out.append((batch, batch_of(rest, index) if rest else None))
    return tuple(out)


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
    out = program.output_or_none
    output = None if out is None else out.index
    by_out = {s.eq.out: s for s in steps if isinstance(s, Single)
              and s.eq.primitive is getitem and id(s) not in members}
    readers = _reader_counts(program, list(by_out))
    found: list[list[Single]] = []
    pattern = None
    for unit, conns in elements:
        mine, shape = [], []
        eqs = [s.eq for s in conns] + list(unit.equations)
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


def _reader_counts(program: Program, wanted: list[int]) -> dict[int, int]:
    """For each variable in ``wanted``, how many equations read it (an
    equation reading it twice counts once)."""
    n = len(program.variables)
    readers, reads = equation_edges(program.equations)
    table = np.zeros(n, dtype=bool)
    table[np.asarray(wanted, dtype=np.intp)] = True
    hit = table[reads]
    pairs = sorted_unique(readers[hit].astype(np.int64) * n + reads[hit])
    counts = np.bincount(pairs % n, minlength=n)
    return dict(zip(wanted, counts[np.asarray(wanted, dtype=np.intp)].tolist()))


def gather_of(program: Program, offsets: Any, feeder: Single,
              numbered: dict[int, Any] | None = None) -> Any:
    """The flat positions a feeder ``getitem`` selects from its source.
    ``numbered`` keeps each source's array of flat positions for the next
    feeder of the same source (B feeders of a source of size B: linear, not
    quadratic)."""
    src = program.variables[feeder.eq.args[0]]
    numbers = None if numbered is None else numbered.get(src.index)
    if numbers is None:
        numbers = offsets[src.index] + np.arange(src.size).reshape(src.shape)
        if numbered is not None:
            numbered[src.index] = numbers
    return np.ravel(numbers[feeder.eq.params["index"]])
