"""Where each variable lives in the flat vector z: :class:`Index`.

Every value of a program sits in one float64 vector z, the concatenation of
its flattened variables in program order; multipliers and tangents use the
same layout. The index maps a variable (or its name) to its slice, a flat
position back to its variable, and values per variable to values per entry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from operator import itemgetter
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir.program import Program, Variable

__all__ = ["Index", "as_slice", "merged_runs"]

Array = NDArray[np.float64]


class Index:
    """Variable -> slice of the flat vector z, in program order."""

    def __init__(self, program: Program, offsets: NDArray[np.intp] | None = None) -> None:
        if offsets is None:
            sizes = [v.size for v in program.variables]
            offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.intp)
            self.variables: Sequence[Variable] = tuple(program.variables)
        else:  # given by a compiler that knows the sizes (a bulk program: all scalars)
            self.variables = program.variables  # a frozen, lazily materialized sequence
        self.offsets = offsets
        self.size = int(self.offsets[-1])
        self.program = program

    @cached_property
    def bounds(self) -> list[int]:
        """The offsets as Python ints (reading numpy scalars one by one is slow)."""
        return self.offsets.tolist()

    def slice(self, j: int) -> slice:
        bounds = self.bounds
        return slice(bounds[j], bounds[j + 1])

    def __getitem__(self, v: Variable | str) -> slice:
        if isinstance(v, str):
            v = self.program.variable(v)
        elif not isinstance(v, Variable):
            raise ProgramError(f"{v!r} is not a variable: index with a variable or its name")
        elif v.program is not self.program:
            raise ProgramError(f"variable {v.name!r} belongs to another program")
        if v.index >= len(self.variables):
            raise ProgramError(f"variable {v.name!r} was added to the program after this was "
                               "computed; solve the program again")
        return self.slice(v.index)

    def __iter__(self) -> Iterator[Variable]:
        return iter(self.variables)

    def __len__(self) -> int:
        return len(self.variables)

    def items(self) -> Iterator[tuple[Variable, slice]]:
        return ((v, self.slice(v.index)) for v in self.variables)

    def take(self, vec: Array, variables: Sequence[Variable]) -> tuple[Any, ...]:
        """Copies of ``vec``'s entries for each of ``variables``, in its shape (a
        numpy scalar for a 0-d variable)."""
        return tuple(vec[self.slice(v.index)].reshape(v.shape)[()] if not v.shape
                     else vec[self.slice(v.index)].reshape(v.shape).copy() for v in variables)

    def positions(self, variables: Sequence[Variable]) -> NDArray[np.intp]:
        """Flat positions of ``variables``' entries, in order."""
        parts = [np.arange(self.offsets[v.index], self.offsets[v.index + 1]) for v in variables]
        return np.concatenate(parts).astype(np.intp) if parts else np.zeros(0, np.intp)

    def owner(self, position: int) -> Variable:
        """The variable whose slice contains flat ``position``."""
        return self.variables[int(self.owners(np.array([position]))[0])]

    def owners(self, positions: NDArray[np.intp]) -> NDArray[np.intp]:
        """The number of the variable owning each flat position."""
        return np.searchsorted(self.offsets, positions, side="right") - 1

    def starts(self) -> NDArray[np.intp]:
        """The flat position of each variable's first entry, in program order."""
        return self.offsets[:-1]

    def spread(self, per_variable: NDArray[Any]) -> NDArray[Any]:
        """A value per variable repeated over its flat positions (per position)."""
        return np.repeat(per_variable[:len(self.offsets) - 1], np.diff(self.offsets))

    def mark(self, mask: NDArray[np.bool_], j: int) -> None:
        """Set ``mask`` on the flat positions of variable number ``j``."""
        mask[self.slice(j)] = True


def as_slice(positions: NDArray[np.intp]) -> slice | NDArray[np.intp]:
    """``positions`` as a slice when they are consecutive, else as they are."""
    if positions.size and positions[-1] - positions[0] + 1 == positions.size \
            and bool(np.all(np.diff(positions) == 1)):
        return slice(int(positions[0]), int(positions[-1]) + 1)
    return positions


def merged_runs(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Merge sorted, adjacent (start, stop) spans into maximal runs."""
    runs: list[list[int]] = []
    for start, stop in sorted(spans, key=itemgetter(0)):
        if runs and runs[-1][1] == start:
            runs[-1][1] = stop
        else:
            runs.append([start, stop])
    return tuple((a, b) for a, b in runs)
