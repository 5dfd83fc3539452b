"""Program -> Schedule: one table of compilers by program type.

A general :class:`~lagrad.Program` is compiled equation by equation
(:func:`lagrad.compile.schedule.compile_schedule`); a
:class:`~lagrad.ir.bulk.BulkProgram` straight from its columns
(:func:`lagrad.compile.bulk.compile_bulk`). The result is cached per program
version, so a program solved many times is compiled once, with the garbage
collector paused (:mod:`lagrad.ir.gcpause`): a compile builds an object or more
per equation, and none of them is garbage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lagrad.compile.bulk import compile_bulk
from lagrad.compile.schedule import Schedule, compile_schedule
from lagrad.ir.bulk import BulkProgram
from lagrad.ir.gcpause import paused_gc
from lagrad.ir.program import Program

__all__ = ["compile_program", "COMPILERS"]

COMPILERS: dict[type, Callable[[Any], Schedule]] = {
    BulkProgram: compile_bulk,
    Program: compile_schedule,
}
"""The compiler of each program class; a subclass without an entry uses its
nearest base class's."""


def compile_program(program: Program) -> Schedule:
    """The schedule of ``program`` (cached per program version)."""
    schedule = program.cached_or_none("schedule")
    if schedule is not None:  # the common case: no GC pause (a context manager
        return schedule  # costs a few us, a sizeable part of a small program's solve)
    for cls in type(program).__mro__:
        compiler = COMPILERS.get(cls)
        if compiler is not None:
            with paused_gc():
                return program.cached("schedule", compiler)
    raise TypeError(f"no compiler for {type(program).__name__}")
