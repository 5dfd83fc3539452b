"""Blocks: the strongly connected components of the dependency graph.

Ordered topologically, the blocks make I - J block triangular: back-substitution
between blocks, a linear solve only inside a cyclic block. An acyclic program
is the case where every block is one variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import networkx as nx


class Variable(Protocol):
    """What a block needs of a program's variable."""

    index: int
    kind: str
    name: str
    size: int


class Program(Protocol):
    """What :func:`find_blocks` needs of a program."""

    @property
    def variables(self) -> Any: ...

    @property
    def graph(self) -> nx.DiGraph: ...

__all__ = ["Block", "find_blocks"]


@dataclass(frozen=True, eq=False)
class Block:
    """One strongly connected component.

    Attributes
    ----------
    number : int
        Position in topological order.
    variables : tuple of Variable
        Its variables, in program order.
    cyclic : bool
        True when the block has a cycle (more than one variable, or a
        variable whose equation reads itself).
    """

    number: int
    variables: tuple[Variable, ...]
    cyclic: bool

    @property
    def size(self) -> int:
        """Number of scalar entries (flat size) of the block."""
        return sum(v.size for v in self.variables)

    @property
    def unknowns(self) -> tuple[Variable, ...]:
        """The variables declared with ``program.unknown`` (the tear set)."""
        return tuple(v for v in self.variables if v.kind == "unknown")

    @property
    def name(self) -> str:
        """How errors and reports name it: ``block 3 (z)``."""
        names = [v.name for v in (self.unknowns or self.variables)]
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        return f"block {self.number} ({shown})"

    def __repr__(self) -> str:
        kind = "cyclic" if self.cyclic else "acyclic"
        return f"Block({self.number}, {kind}, size={self.size}, variables={len(self.variables)})"


def find_blocks(program: Program) -> list[Block]:
    """The blocks of ``program`` in topological order (networkx SCCs)."""
    variables = program.variables
    if not any(v.kind == "unknown" for v in variables):
        # only unknowns can be read before they are defined, so without them
        # creation order is topological and every block is one variable
        return [Block(v.index, (v,), False) for v in variables]
    graph = program.graph
    condensed = nx.condensation(graph)
    blocks = []
    for number, c in enumerate(nx.topological_sort(condensed)):
        members = sorted(condensed.nodes[c]["members"])
        cyclic = len(members) > 1 or graph.has_edge(members[0], members[0])
        blocks.append(Block(number, tuple(variables[j] for j in members), cyclic))
    return blocks
