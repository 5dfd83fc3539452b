"""Groups of cyclic blocks of one structure, laid out to be solved together.

A traced loop of ``fixed_point`` calls makes B cyclic blocks that are the same
equations at shifted offsets (the constants may differ). Solving them one by
one costs one Python-level solve each; here they become one
:class:`CyclicGroup` whose equations run once for all B blocks (the
primitives' batched forms, :mod:`lagrad.ir.batching`).

An *element* of a group is one block with its *connectors*: the acyclic
equations on a path from another block of the same structure into it (in a
chain z_k = f(z_k, g(z_{k-1})), the g that carries z_{k-1} in). Elements
match when their equations match one by one: same primitive, same params,
same shapes, and arguments that are the same local variable, a constant of
the same shape, or an outer variable of the same shape. The *region* of a
group (its elements' variables) is one step of :func:`grouped_steps`:

* every element reads other elements only through their unknowns (what a
  ``fixed_point`` returns), so given all unknowns U one batched sweep over
  the element's equations evaluates the whole region; the region's Jacobian
  is block triangular with B diagonal blocks (n_U x n_U);
* every other outer variable is computed before the region and everything
  that reads the region comes after it.

Each element's local layout is [W | U]: connectors and interior variables in
evaluation order (W), then the unknowns (U); ``positions[k, i]`` is the flat
position of entry i of element k. The schedule's own ``steps`` are left as
they are (study, whole-matrix methods and named block methods use them);
:func:`grouped_steps` is the list that the default forward and multiplier
sweeps run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.glue import Glue, find_glue, gather_of, no_glue
from lagrad.compile.schedule import Batch, CyclicBlock, Schedule, Single
from lagrad.ir.blocks import sorted_unique
from lagrad.ir.gcpause import paused_gc
from lagrad.ir.primitives import Primitive, identity
from lagrad.ir.program import Equation, Program

__all__ = ["CyclicGroup", "Position", "Cross", "grouped_steps", "GROUP_MIN"]

Array = NDArray[np.float64]
GROUP_MIN = 4  # fewer blocks of one structure are solved one by one
_OUT, _PARENTS = attrgetter("out"), attrgetter("parents")
Key = tuple[Any, ...]


@dataclass(frozen=True, eq=False)
class Cross:
    """An outer argument that, for the elements in ``mask``, reads the unknowns
    of an earlier element ``source[k]`` at ``u`` (a slice of its U part)."""

    mask: NDArray[np.bool_]
    source: NDArray[np.intp]
    u: slice


@dataclass(frozen=True, eq=False)
class Position:
    """One equation of the element, for all B elements at once.

    ``args[a]`` is ("const", (B, *shape) array), ("local", slice, shape) into
    the element layout, or ("outer", (B, size) flat positions, shape, Cross or
    None). ``out`` is the output's slice of the element layout (of U for a
    closing equation)."""

    primitive: Primitive
    params: dict[str, Any]
    out: slice
    shape: tuple[int, ...]
    closing: bool
    args: tuple[tuple[Any, ...], ...]


@dataclass(eq=False)
class CyclicGroup:
    """B cyclic blocks of one structure and their connectors, as one step."""

    units: tuple[CyclicBlock, ...]
    connectors: tuple[Single, ...]
    members: tuple[Single | CyclicBlock, ...]  # the original steps, in schedule order
    positions: NDArray[np.intp]  # (B, n_W + n_U) flat positions of the element layout
    n_w: int
    n_u: int
    steps: tuple[Position, ...]
    n_unknowns: int = -1  # U = [unknowns | carries]: the unknowns' width (-1: all of U)
    split: tuple[tuple[Batch, Batch | None], ...] = ()  # batches whose followers joined
    cache: dict[str, Any] = field(default_factory=dict)  # solvers' reusable arrays

    def __post_init__(self) -> None:
        if self.n_unknowns < 0:
            self.n_unknowns = self.n_u

    @cached_property
    def unknown_ids(self) -> list[int]:
        """The unknowns' variable indices, element by element."""
        return [v.index for u in self.units for v in u.unknowns]

    @cached_property
    def block_numbers(self) -> tuple[int, ...]:
        """The units' block numbers, element by element."""
        return tuple(u.block.number for u in self.units)

    @property
    def size(self) -> int:
        return len(self.units)

    @property
    def name(self) -> str:
        first, last = self.units[0].block, self.units[-1].block
        return f"group of {self.size} blocks of one structure ({first.name} .. {last.name})"

    @property
    def u_positions(self) -> NDArray[np.intp]:
        return self.positions[:, self.n_w:]

    @property
    def chained(self) -> bool:
        """Some element reads another's unknowns (the Jacobian has coupling)."""
        return any(a[0] == "outer" and a[3] is not None for s in self.steps for a in s.args)

    @property
    def equations(self) -> tuple[Equation, ...]:
        return tuple(eq for m in self.members for eq in m.equations)

    def run(self, z: Array, out: Array | None = None) -> None:
        for m in self.members:
            m.run(z, out)

    def pullback(self, z: Array, lam: Array, into: Array | None = None) -> None:
        for m in self.members:
            m.pullback(z, lam, into)

    def pushforward(self, z: Array, zdot: Array, into: Array | None = None) -> None:
        for m in self.members:
            m.pushforward(z, zdot, into)

    def jacobian_entries(self, z: Array) -> list[tuple[Any, Any, Any]]:
        return [e for m in self.members for e in m.jacobian_entries(z)]


def grouped_steps(schedule: Schedule) -> list[Any]:
    """The schedule's steps with every group of same-structure cyclic blocks
    (at least GROUP_MIN) replaced by one :class:`CyclicGroup` (cached)."""
    cached = schedule.extras.get("grouped")
    if cached is None:
        with paused_gc():  # as the compile: many objects, none of them garbage
            cached = schedule.extras["grouped"] = _group(schedule)
    return cached


# --------------------------------------------------------------- recognition

def _group(schedule: Schedule) -> list[Any]:
    steps = list(schedule.steps)
    units = [s for s in steps if isinstance(s, CyclicBlock)]
    if len(units) < GROUP_MIN:
        return steps
    program = schedule.program
    by_shape: dict[Key, list[CyclicBlock]] = defaultdict(list)
    for unit in units:
        key = _unit_key(program, unit)
        if key is not None:
            by_shape[key].append(unit)
    for candidates in by_shape.values():
        if len(candidates) < GROUP_MIN:
            continue
        for group in _groups_of(schedule, steps, candidates):
            steps = _place(program, steps, group)
    return steps


def _unit_key(program: Program, unit: CyclicBlock) -> Key | None:
    """What must agree for blocks to be grouped before their connectors are
    looked at: the declared options, and the block's own equations."""
    if any(u.index in program.init_sources for u in unit.unknowns):
        return None  # started from a computed value: solved on its own
    options = tuple(repr(program.block_options.get(u.index)) for u in unit.unknowns)
    local = {v.index: n for n, v in enumerate(unit.block.variables)}
    key = _equations_key(program, unit.equations, local)
    return None if key is None else (options, key)


def _equations_key(program: Program, eqs: Sequence[Equation], local: dict[int, int]
                   ) -> Key | None:
    """The structure of a list of equations; None when one cannot be batched."""
    out: list[Key] = []
    variables = program.variables
    for eq in eqs:
        if not eq.primitive.batchable(eq.params):
            return None
        params = _freeze(eq.params) if eq.params else ()
        if params is None:
            return None
        args = tuple([("l", local[a]) if isinstance(a, int) and a in local
                      else ("o", variables[a].shape) if isinstance(a, int)
                      else ("c", np.shape(a)) for a in eq.args])
        out.append((eq.primitive.name, id(eq.primitive), params, variables[eq.out].shape,
                    eq.kind, args))
    return tuple(out)


def _freeze(params: dict[str, Any]) -> Key | None:
    items = []
    for k, v in sorted(params.items()):
        if isinstance(v, np.ndarray):
            v = ("array", v.shape, v.dtype.str, v.tobytes())
        try:
            hash(v)
        except TypeError:
            return None
        items.append((k, v))
    return tuple(items)


def _groups_of(schedule: Schedule, steps: list[Any], candidates: list[CyclicBlock]
               ) -> list[CyclicGroup]:
    """Split blocks of one structure by their connectors; lay out each group."""
    program = schedule.program
    owner = _owners(steps)
    found = _connectors(program, steps, candidates, owner)
    by_key: dict[Key, list[tuple[CyclicBlock, list[Single]]]] = defaultdict(list)
    for unit in candidates:
        conns = found.get(unit.block.number)
        if conns is None:
            continue
        local: dict[int, int] = {}
        for s in conns:
            local[s.eq.out] = len(local)
        for v in unit.block.variables:
            local[v.index] = len(local)
        key = _equations_key(program, [s.eq for s in conns], local)
        if key is not None:
            by_key[key].append((unit, conns))
    groups = []
    for elements in by_key.values():
        if len(elements) >= GROUP_MIN:
            glue = find_glue(program, schedule.index, steps, elements, _equations_key)
            if glue.skip:  # the first iterations differ: they run on their own
                elements = elements[glue.skip:]
                glue = find_glue(program, schedule.index, steps, elements, _equations_key)
                if glue.skip or len(elements) < GROUP_MIN:
                    continue
            group = _layout(schedule, elements, glue)
            if group is None and (any(glue.feeders) or any(glue.followers)):
                group = _layout(schedule, elements, no_glue(len(elements)))
            if group is not None:
                groups.append(group)
    return groups


def _owners(steps: list[Any]) -> dict[int, Any]:
    """Variable -> the step that computes it (Single and cyclic steps only)."""
    owner: dict[int, Any] = {}
    for step in steps:
        if type(step) is Single:
            owner[step.eq.out] = step
        elif not isinstance(step, Batch):  # scalar batches are never connectors
            for eq in step.equations:
                owner[eq.out] = step
    return owner


def _connectors(program: Program, steps: list[Any], candidates: list[CyclicBlock],
                owner: dict[int, Any]) -> dict[int, list[Single]]:
    """Each candidate block's connectors (by block number), in evaluation
    order; a block with a cyclic or batched step on such a path is left out."""
    numbers = {u.block.number for u in candidates}
    reach = {v.index for u in candidates for v in u.block.variables}  # candidates and desc
    desc: set[int] = set()  # downstream of a candidate, outside the candidates
    for step in steps:
        if type(step) is Single:  # most steps: one equation, no members
            eq = step.eq
            if not reach.isdisjoint(eq.parents):
                desc.add(eq.out)
                reach.add(eq.out)
            continue
        if isinstance(step, CyclicBlock) and step.block.number in numbers:
            continue
        eqs = step.equations
        inside = step.members if isinstance(step, CyclicBlock) else frozenset()
        if any(j in reach for eq in eqs for j in eq.parents if j not in inside):
            desc.update(eq.out for eq in eqs)
            reach.update(eq.out for eq in eqs)
    found: dict[int, list[Single]] = {}
    for unit in candidates:
        stack = [j for eq in unit.equations for j in eq.parents if j not in unit.members]
        seen: set[int] = set()
        conns: list[Single] | None = []
        while stack:
            j = stack.pop()
            if j in seen or j not in desc:
                continue
            seen.add(j)
            step = owner.get(j)
            if not isinstance(step, Single):
                conns = None
                break
            conns.append(step)
            stack.extend(step.eq.parents)
        if conns is not None:
            found[unit.block.number] = sorted(conns, key=lambda s: s.eq.out)
    return found


# -------------------------------------------------------------------- layout

def _element_vars(unit: CyclicBlock, conns: list[Single], feed: list[Single],
                  follow: list[Single]) -> list[int]:
    """The element's variables: feeders, connectors, interior, followers, unknowns."""
    return [s.eq.out for s in feed + conns] + \
        [v.index for v in unit.block.variables if v.kind != "unknown"] + \
        [s.eq.out for s in follow] + [u.index for u in unit.unknowns]


def _find(ids: NDArray[np.intp]) -> Any:
    """A lookup of region variables: ``find(read)`` gives, per entry of the
    variable numbers ``read``, the element k and column t where ``ids[k, t]``
    is it (-1, -1 where none is). The entries of ``ids`` are distinct."""
    n = ids.shape[1]
    flat = ids.ravel()
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]

    def find(read: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        pos = np.minimum(np.searchsorted(ranked, read), len(ranked) - 1)
        where = np.where(ranked[pos] == read, order[pos], -1)
        hit = where >= 0
        return np.where(hit, where // n, -1), np.where(hit, where % n, -1)
    return find


def _columns(eqs: list[list[Equation]]) -> list[list[NDArray[np.intp] | None]]:
    """Per position p and argument a, the variable each element reads there
    (None for a constant): the elements' equations match one by one."""
    out = []
    for p, eq in enumerate(eqs[0]):
        out.append([np.array([row[p].args[a] for row in eqs], dtype=np.intp)
                    if isinstance(arg, int) else None for a, arg in enumerate(eq.args)])
    return out


def _carried(ids: NDArray[np.intp], columns: list[list[NDArray[np.intp] | None]],
             n_unknowns: int) -> tuple[list[int], int] | None:
    """The columns of ``ids`` in layout order, [W | unknowns | carries], and
    the number of W columns: a carry is a variable another element reads;
    None if an element reads a later one."""
    find = _find(ids)
    reader = np.arange(ids.shape[0])
    carry: set[int] = set()
    for column in columns:
        for read in column:
            if read is None:
                continue
            k, t = find(read)
            other = (k >= 0) & (k != reader)
            if bool(np.any(k[other] > reader[other])):
                return None
            carry.update(t[other].tolist())
    n = ids.shape[1]
    unknowns = list(range(n - n_unknowns, n))
    w = [t for t in range(n - n_unknowns) if t not in carry]
    return w + unknowns + sorted(carry - set(unknowns)), len(w)


def _layout(schedule: Schedule, elements: list[tuple[CyclicBlock, list[Single]]],
            glue: Glue) -> CyclicGroup | None:
    program, offsets = schedule.program, schedule.index.offsets
    variables = program.variables
    rows = [_element_vars(u, c, glue.feeders[k], glue.followers[k])
            for k, (u, c) in enumerate(elements)]
    ids = np.array(rows, dtype=np.intp)  # (B, n_vars)
    if len(sorted_unique(ids.ravel())) != ids.size:
        return None  # a connector shared by two elements
    eqs = [[s.eq for s in glue.feeders[k] + c] + list(u.equations) +
           [s.eq for s in glue.followers[k]] for k, (u, c) in enumerate(elements)]
    columns = _columns(eqs)
    carried = _carried(ids, columns, len(elements[0][0].unknowns))
    if carried is None:
        return None
    ids = ids[:, carried[0]]
    sizes = [variables[j].size for j in ids[0]]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    n_w = int(starts[carried[1]])
    n_u = int(starts[-1]) - n_w
    positions = np.empty((len(elements), int(starts[-1])), dtype=np.intp)
    for t, size in enumerate(sizes):
        positions[:, starts[t]:starts[t + 1]] = offsets[ids[:, t]][:, None] + np.arange(size)
    find = _find(ids)
    first = dict(zip(ids[0].tolist(), range(len(sizes))))
    n_feed = len(glue.feeders[0])
    steps = []
    for p, eq in enumerate(eqs[0]):
        column = [row[p] for row in eqs]
        slot = first[eq.out]
        out = slice(int(starts[slot]), int(starts[slot + 1]))
        closing = out.start >= n_w
        if closing:
            out = slice(out.start - n_w, out.stop - n_w)
        if p < n_feed:
            numbered: dict[int, Any] = {}
            gather = np.array([gather_of(program, offsets, feeders[p], numbered)
                               for feeders in glue.feeders])
            shape = variables[eq.out].shape
            steps.append(Position(identity, {}, out, shape, closing,
                                  (("outer", gather, shape, None),)))
            continue
        args = []
        for a, arg in enumerate(eq.args):
            made = _arg(column, a, arg, first, starts, offsets, variables,
                        (find, columns[p][a]), n_w)
            if made is None:
                return None
            args.append(made)
        steps.append(Position(eq.primitive, dict(eq.params), out, variables[eq.out].shape,
                              closing, tuple(args)))
    units = tuple(u for u, _ in elements)
    conns = tuple(s for _, c in elements for s in c)
    glued = tuple(s for k in range(len(elements)) for s in glue.feeders[k] + glue.followers[k])
    members = _in_order(schedule, units + conns + glued)
    n_unknowns = sum(u.size for u in units[0].unknowns)
    return CyclicGroup(units, conns, members, positions, n_w, n_u, tuple(steps),
                       n_unknowns=n_unknowns, split=glue.split)


def _in_order(schedule: Schedule, members: tuple[Any, ...]) -> tuple[Any, ...]:
    """``members`` in schedule order: by level, then schedule position; a
    follower taken out of a batch (not a schedule step) goes first in its
    level (whose steps never read each other), by output. The schedule's
    steps are in level order, so those among them are picked in one pass and
    only the others are sorted and put in place by bisection."""
    levels = schedule.levels.tolist()

    def level(s: Any) -> int:
        return levels[s.eq.out if type(s) is Single else s.equations[0].out]
    wanted = set(map(id, members))
    ranked = [s for s in schedule.steps if id(s) in wanted]
    if len(ranked) == len(members):
        return tuple(ranked)
    found = set(map(id, ranked))
    extra = sorted((m for m in members if id(m) not in found),
                   key=lambda s: (level(s), s.equations[0].out))
    if len(ranked) + len(extra) != len(members):  # a member listed twice
        rank = {id(s): n for n, s in enumerate(schedule.steps)}
        return tuple(sorted(members, key=lambda s: (level(s), rank.get(id(s), -1),
                                                    s.equations[0].out)))
    at = np.searchsorted([level(s) for s in ranked], [level(s) for s in extra], side="left")
    out: list[Any] = []
    done = 0
    for step, here in zip(extra, at.tolist()):
        out += ranked[done:here]
        out.append(step)
        done = here
    return tuple(out + ranked[done:])


def _arg(column: list[Equation], a: int, arg: Any, first: dict[int, int], starts: Any,
         offsets: Any, variables: Any, region: tuple[Any, NDArray[np.intp] | None], n_w: int
         ) -> tuple[Any, ...] | None:
    """Argument ``a`` of one position, for every element (see Position);
    ``region``: the lookup of :func:`_find` and the variables read here."""
    if not isinstance(arg, int):
        vals = [eq.args[a] for eq in column]
        shape = np.shape(arg)
        if all(v is arg for v in vals):
            return ("const", np.broadcast_to(np.asarray(arg, dtype=float), (len(vals),) + shape))
        # Fortran order, like the element layout of values: an elementwise step
        # with a per-element constant then runs over one layout, not a transpose
        return ("const", np.asfortranarray(np.stack([np.asarray(v, dtype=float) for v in vals])))
    shape = variables[arg].shape
    if arg in first:
        t = first[arg]
        return ("local", slice(int(starts[t]), int(starts[t + 1])), shape)
    find, read = region
    assert read is not None
    gather = offsets[read][:, None] + np.arange(variables[arg].size)
    m, t = find(read)
    mask = m >= 0
    if not mask.any():
        return ("outer", gather, shape, None)
    k = np.flatnonzero(mask)
    lo = np.asarray(starts)[t[k]] - n_w
    hi = np.asarray(starts)[t[k] + 1] - n_w
    if np.any(m[k] >= k) or lo[0] < 0 or np.any(lo != lo[0]) or np.any(hi != hi[0]):
        return None  # reads a later element, or a non-unknown of another element
    source = np.where(mask, m, 0).astype(np.intp)
    return ("outer", gather, shape, Cross(mask, source, slice(int(lo[0]), int(hi[0]))))


def _place(program: Program, steps: list[Any], group: CyclicGroup) -> list[Any]:
    """``steps`` with the group's members replaced by the group: what does not
    depend on the region before it, what does after (the list stays
    topological); unchanged if the region reads something that depends on it.
    A batch some of whose equations joined the group is replaced by the rest."""
    rest = {id(batch): left for batch, left in group.split}
    if len(rest) > sum(1 for s in steps if id(s) in rest):
        return steps  # another group split that batch already
    steps = [rest.get(id(s), s) for s in steps]
    steps = [s for s in steps if s is not None]
    members = set(map(id, group.members))
    member_eqs = list(chain.from_iterable(m.equations for m in group.members))
    region = set(map(_OUT, member_eqs))
    late = set(region)
    before: list[Any] = []
    after: list[Any] = []
    for step in steps:
        if id(step) in members:
            continue
        if type(step) is Single:  # most steps: one equation
            if late.isdisjoint(step.eq.parents):
                before.append(step)
            else:
                late.add(step.eq.out)
                after.append(step)
            continue
        eqs = step.equations
        if any(not late.isdisjoint(eq.parents) for eq in eqs):
            late.update(eq.out for eq in eqs)
            after.append(step)
        else:
            before.append(step)
    outer = set(chain.from_iterable(map(_PARENTS, member_eqs))) - region
    if outer & late:
        return steps
    return before + [group] + after
