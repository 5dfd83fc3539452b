"""Blocks: the strongly connected components of the dependency graph.

Ordered topologically, the blocks make I - J block triangular: back-substitution
between blocks, a linear solve only inside a cyclic block. An acyclic program
is the case where every block is one variable.

The components are found on arrays (``scipy.sparse.csgraph``), not on a graph
of Python objects: a traced loop of 10^5 fixed points has 10^6 variables.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import connected_components


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
    def equations(self) -> Any: ...

    @property
    def init_sources(self) -> dict[int, int]: ...

__all__ = ["Block", "find_blocks", "dependency_edges", "equation_edges", "strong_components",
           "order_components", "sorted_unique"]


@dataclass(frozen=True, eq=False, slots=True)  # slots: an acyclic variable is a block
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
    """The blocks of ``program`` in topological order.

    The order is the completion order of a depth-first search that visits the
    variables in program order and, from each, first the variables it reads:
    a block comes right after everything it depends on, and an acyclic
    program keeps its program order.
    """
    variables = program.variables
    if not any(v.kind == "unknown" for v in variables):
        # only unknowns can be read before they are defined, so without them
        # creation order is topological and every block is one variable
        return [Block(v.index, (v,), False) for v in variables]
    readers, reads = dependency_edges(program)
    n_comp, label = strong_components(len(variables), readers, reads)
    order = np.argsort(label, kind="stable")  # by component, program order inside
    bounds = np.concatenate([[0], np.cumsum(np.bincount(label, minlength=n_comp))]).tolist()
    cyclic = np.diff(bounds) > 1
    cyclic[label[readers[readers == reads]]] = True  # a variable that reads itself
    ordered = [variables[j] for j in order.tolist()]
    flags = cyclic.tolist()
    return [Block(c, tuple(ordered[bounds[c]:bounds[c + 1]]), flags[c]) for c in range(n_comp)]


def dependency_edges(program: Program) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(reader, read) pairs: equation ``reader`` reads variable ``read``, or
    unknown ``reader`` starts its solve from the value of ``read`` (the edges
    of ``program.graph``, reversed)."""
    readers, reads = equation_edges(program.equations)
    sources = program.init_sources
    if sources:
        readers = np.concatenate([readers, np.fromiter(sources.keys(), np.intp, len(sources))])
        reads = np.concatenate([reads, np.fromiter(sources.values(), np.intp, len(sources))])
    return readers, reads


def equation_edges(equations: Sequence[Any]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(reader, read) pairs of the equations: ``eq.out`` and each of its
    ``eq.parents``, in equation then argument order (the iteration runs in
    C: a traced loop has 10^6 equations)."""
    n = len(equations)
    outs = np.fromiter(map(attrgetter("out"), equations), np.intp, n)
    parents = list(map(attrgetter("parents"), equations))
    counts = np.fromiter(map(len, parents), np.intp, n)
    reads = np.fromiter(chain.from_iterable(parents), np.intp, int(counts.sum()))
    return np.repeat(outs, counts), reads


def strong_components(n: int, readers: NDArray[np.intp], reads: NDArray[np.intp]
                      ) -> tuple[int, NDArray[np.intp]]:
    """The strongly connected components of a dependency graph, in order.

    Parameters
    ----------
    n : int
        Number of nodes (variables).
    readers, reads : ndarray of int
        The edges: node ``readers[k]`` reads node ``reads[k]``.

    Returns
    -------
    n_comp : int
        Number of components.
    label : ndarray of int
        The component of each node, numbered in topological order of the
        dependencies: a component after every component it reads.

    Notes
    -----
    scipy's Pearce search starts at node 0, 1, ... and numbers a component
    when it is complete, after everything it reaches: on the graph from readers
    to what they read, that is the order wanted (the order of recursive
    Tarjan reading the parents in program order). Its documentation does not
    promise the numbering, so it is checked on the edges; if it fails, the
    components are ordered by a topological sort of the condensation.
    """
    # each row's parents once (scipy's search goes wrong on repeated entries)
    # and in descending order: the search pushes them all and takes the last
    # pushed first, so it reads them in program order
    keys = sorted_unique(readers.astype(np.int64) * n + (n - 1 - reads))
    rows, cols = keys // n, n - 1 - keys % n
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    # (float64 data: scipy converts other types, sorting the rows on the way)
    graph = sp.csr_matrix((np.ones(len(cols)), cols, indptr), shape=(n, n))
    n_comp, label = connected_components(graph, directed=True, connection="strong")
    label = label.astype(np.intp)
    a, b = label[readers], label[reads]
    if bool(np.all(a >= b)):
        return n_comp, label
    return n_comp, order_components(n_comp, label, a, b)


def sorted_unique(a: NDArray[Any]) -> NDArray[Any]:
    """``np.unique(a)`` of a 1-d array, by a sort. numpy 2's hash-based unique
    of integers slows down badly on large arrays (1.4 s against 0.15 s for
    the 2.6 * 10^6 edges of 10^5 traced fixed points)."""
    s = np.sort(a)
    if s.size == 0:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def order_components(n_comp: int, label: NDArray[np.intp], a: NDArray[np.intp],
                     b: NDArray[np.intp]) -> NDArray[np.intp]:
    """Relabel components so that every component comes after those it reads.

    Parameters
    ----------
    n_comp : int
        Number of components.
    label : ndarray of int
        The component of each node.
    a, b : ndarray of int
        Per edge, the component that reads and the component read.

    Returns
    -------
    ndarray of int
        The new component of each node (Kahn's algorithm, the lowest old
        label first among the components whose reads are all placed).
    """
    across = a != b
    a, b = a[across], b[across]
    waiting = np.bincount(a, minlength=n_comp)  # components read, not yet placed
    by_read = sp.csr_matrix((np.ones(len(a), np.int32), (b, a)), shape=(n_comp, n_comp))
    indptr, indices = by_read.indptr.tolist(), by_read.indices.tolist()
    counts = waiting.tolist()
    ready = [c for c in range(n_comp) if counts[c] == 0]
    heapq.heapify(ready)
    new = [0] * n_comp
    for rank in range(n_comp):
        c = heapq.heappop(ready)
        new[c] = rank
        for r in indices[indptr[c]:indptr[c + 1]]:
            counts[r] -= 1
            if counts[r] == 0:
                heapq.heappush(ready, r)
    return np.asarray(new, dtype=np.intp)[label]
