"""The fast paths of compiling and grouping a long traced loop, each against
the plain definition it replaces."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import lagrad
from lagrad.bench.blocks import BlockChain, BlockIndependent
from lagrad.compile.compiler import compile_program
from lagrad.compile.glue import _reader_counts, gather_of
from lagrad.compile.groups import CyclicGroup, grouped_steps
from lagrad.compile.schedule import CyclicBlock, Single, single_of
from lagrad.ir.blocks import dependency_edges, equation_edges, sorted_unique


@pytest.mark.parametrize("n", [0, 1, 2, 50, 5000])
def test_sorted_unique_is_numpy_unique(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.integers(-20, 20, n)
    assert np.array_equal(sorted_unique(a), np.unique(a))
    big = rng.integers(0, 10**12, n)
    assert np.array_equal(sorted_unique(big), np.unique(big))


def _programs() -> list[lagrad.Program]:
    return [BlockChain(9).trace(), BlockIndependent(7).trace()]


@pytest.mark.parametrize("k", [0, 1])
def test_equation_edges_in_equation_and_argument_order(k: int) -> None:
    program = _programs()[k]
    readers, reads = equation_edges(program.equations)
    want = [(eq.out, j) for eq in program.equations for _, j in eq.slots]
    assert list(zip(readers.tolist(), reads.tolist())) == want
    r2, s2 = dependency_edges(program)
    assert np.array_equal(r2[:len(readers)], readers) and np.array_equal(s2[:len(reads)], reads)


@pytest.mark.parametrize("k", [0, 1])
def test_reader_counts_count_each_equation_once(k: int) -> None:
    program = _programs()[k]
    counts = Counter(j for eq in program.equations for j in set(eq.parents))
    wanted = [v.index for v in program.variables][::3]
    assert _reader_counts(program, wanted) == {j: counts[j] for j in wanted}


@pytest.mark.parametrize("k", [0, 1])
def test_members_in_schedule_order(k: int) -> None:
    """Group members as the keyed sort defines them: level, schedule
    position (a follower taken out of a batch first), output."""
    program = _programs()[k]
    schedule = compile_program(program)
    groups = [s for s in grouped_steps(schedule) if isinstance(s, CyclicGroup)]
    assert groups
    rank = {id(s): n for n, s in enumerate(schedule.steps)}
    for group in groups:
        def key(s: object) -> tuple[int, int, int]:
            out = s.equations[0].out  # type: ignore[attr-defined]
            return (int(schedule.levels[out]), rank.get(id(s), -1), out)
        assert [id(m) for m in group.members] == [id(m) for m in sorted(group.members, key=key)]
    if k == 1:  # the running total's scalar products come out of a batch
        assert any(id(m) not in rank for g in groups for m in g.members)


def test_cyclic_block_steps_built_on_first_use_match_the_equations() -> None:
    schedule = compile_program(BlockChain(6).trace())
    for unit in (s for s in schedule.steps if isinstance(s, CyclicBlock)):
        steps = unit.interior + unit.closing
        assert tuple(s.eq for s in steps) == unit.equations
        for s in steps:
            ref = single_of(s.eq, schedule.index)
            assert (s.start, s.stop, s.shape, s.vslots, s.dslots, s.ufunc) == \
                (ref.start, ref.stop, ref.shape, ref.vslots, ref.dslots, ref.ufunc)
        assert [v.index for v in unit.unknowns] == [s.eq.out for s in unit.closing]


def test_gather_of_with_a_shared_numbering() -> None:
    program = BlockIndependent(5).trace()
    schedule = compile_program(program)
    feeders = [s for s in schedule.steps if isinstance(s, Single)
               and s.eq.primitive.name == "getitem"]
    assert len(feeders) == 5
    numbered: dict[int, object] = {}
    offsets = schedule.index.offsets
    for f in feeders:
        assert np.array_equal(gather_of(program, offsets, f, numbered),
                              gather_of(program, offsets, f))


def test_undefined_unknown_still_raises() -> None:
    p = lagrad.Program()
    x = p.input("x")
    p.unknown("u")
    p.output(lagrad.sin(x))
    with pytest.raises(lagrad.ProgramError, match="never defined"):
        p.solve(1.0)
