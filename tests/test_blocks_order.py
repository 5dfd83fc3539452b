"""The blocks of a program (strongly connected components, ir/blocks.py)
against networkx's components, and their order against a plain recursive
Tarjan search (every block after the blocks it reads, program order
otherwise); self-loops, programs without cycles, and the fallback ordering."""

from __future__ import annotations

import re

import networkx as nx
import numpy as np
import pytest

import lagrad
from lagrad.ir.blocks import find_blocks, order_components, strong_components


def random_program(seed: int, n_unknowns: int = 6, n_ops: int = 40) -> lagrad.Program:
    """Inputs, unknowns, random sums and products of earlier variables, then
    every unknown defined by a random later variable (cycles where it reads
    back)."""
    rng = np.random.default_rng(seed)
    p = lagrad.Program()
    pool = [p.input(f"x{k}") for k in range(3)]
    unknowns = [p.unknown(f"u{k}") for k in range(n_unknowns)]
    pool += unknowns
    for _ in range(n_ops):
        a, b = (pool[int(k)] for k in rng.integers(0, len(pool), 2))
        pool.append(0.3 * lagrad.sin(a) + b if rng.random() < 0.5 else a * b)
    for u in unknowns:
        p.define(u, pool[int(rng.integers(3 + n_unknowns, len(pool)))])
    p.output(pool[-1])
    return p


def reference_order(p: lagrad.Program) -> list[tuple[int, ...]]:
    """Tarjan's algorithm, recursive, on the graph from each variable to what
    it reads: starting from the variables in program order, reading parents
    in program order, a component is listed when its search finishes."""
    g = p.graph
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    order: list[tuple[int, ...]] = []

    def visit(v: int) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g.predecessors(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                members.append(w)
                if w == v:
                    break
            order.append(tuple(sorted(members)))

    for v in p.variables:
        if v.index not in index:
            visit(v.index)
    return order


@pytest.mark.parametrize("seed", range(20))
def test_blocks_are_the_components_in_dependency_order(seed: int) -> None:
    p = random_program(seed)
    blocks = find_blocks(p)
    got = [tuple(v.index for v in b.variables) for b in blocks]
    g = p.graph
    assert sorted(got) == sorted(tuple(sorted(c)) for c in nx.strongly_connected_components(g))
    where = {j: k for k, members in enumerate(got) for j in members}
    assert all(where[a] <= where[b] for a, b in g.edges)
    assert [b.number for b in blocks] == list(range(len(blocks)))
    for b in blocks:
        members = [v.index for v in b.variables]
        assert b.cyclic == (len(members) > 1 or g.has_edge(members[0], members[0]))
    assert got == reference_order(p)


def test_a_root_that_reads_only_its_unknown_is_a_cyclic_block_of_one() -> None:
    p = lagrad.Program()
    x = p.input("x")
    z = p.unknown("z")
    p.root(z, x - 2.0)  # recorded as z = z - (x - 2): z reads itself
    p.output(z * x)
    blocks = p.blocks
    (own,) = [b for b in blocks if any(v is z for v in b.variables)]
    assert own.cyclic and len(own.variables) == 1
    with pytest.raises(lagrad.SingularSystemError, match=re.escape(own.name)):
        p.solve(3.0)  # the residual does not depend on z


def test_unknowns_without_cycles_keep_program_order() -> None:
    p = lagrad.Program()
    x = p.input("x")
    u = p.unknown("u")
    y = lagrad.sin(x)  # created after u, read by u's equation
    p.define(u, 2.0 * y)
    p.output(u + x)
    blocks = p.blocks
    assert not any(b.cyclic for b in blocks)
    names = [b.variables[0].name for b in blocks]
    assert names.index(y.name) < names.index("u")  # u after what it reads
    assert names[0] == "x" and names[-1] == p.output_variable.name
    assert float(p.solve(0.3).grad()) == pytest.approx(2.0 * np.cos(0.3) + 1.0)


def test_order_components_puts_readers_after_what_they_read() -> None:
    # a chain 0 <- 1 <- 2 <- 3 (each reads the one before), labelled backwards
    readers, reads = np.array([1, 2, 3]), np.array([0, 1, 2])
    label = np.array([3, 2, 1, 0])
    new = order_components(4, label, label[readers], label[reads])
    assert new.tolist() == [0, 1, 2, 3]
    n, ok = strong_components(4, readers, reads)
    assert n == 4 and ok.tolist() == [0, 1, 2, 3]
    # a 2-cycle read by a third node, read from a source
    n, lab = strong_components(4, np.array([1, 2, 1, 3]), np.array([2, 1, 0, 2]))
    assert n == 3 and lab[1] == lab[2] and lab[0] < lab[1] < lab[3]


def test_a_program_without_equations_has_one_block_per_variable() -> None:
    p = lagrad.Program()
    p.input("x")
    p.unknown("u")  # not defined yet: no edges at all
    blocks = p.blocks
    assert [(b.number, b.variables[0].name, b.cyclic) for b in blocks] == [
        (0, "x", False), (1, "u", False)]
