"""numpy's stacked linear algebra on traced values, one matrix at a time:
``per_matrix(fn, who, *args)`` applies a function of one matrix (solve, det,
slogdet, inv, cholesky, qr) to each matrix of a stack (..., m, n), with
numpy's broadcasting of the stacks' leading axes, and stacks the results
back. One equation per matrix: exact, and the factorization of each matrix
is its own primitive's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lagrad.errors import ProgramError
from lagrad.ir import ops
from lagrad.ir import primitives as P

__all__ = ["per_matrix"]

Shape = tuple[int, ...]


def _shape_of(x: Any) -> Shape:
    return x.shape if isinstance(x, P.Tracer) else np.shape(x)


def _pick(x: Any, index: tuple[int, ...], lead: Shape, core: int) -> Any:
    """The entry ``index`` of the stack ``lead`` that ``x`` (its last ``core``
    axes one item) broadcasts to, as numpy's stacked linalg reads it."""
    own = _shape_of(x)[:len(_shape_of(x)) - core]
    at = tuple(0 if n == 1 else i for n, i in zip(own, index[len(lead) - len(own):]))
    return x[at] if at else x


def _restack(outs: list[Any], lead: Shape) -> Any:
    """The results for each matrix of a stack, as one result of the stack's
    shape (tuples such as slogdet's and qr's, part by part)."""
    if isinstance(outs[0], tuple):
        parts = [_restack([o[k] for o in outs], lead) for k in range(len(outs[0]))]
        return type(outs[0])(*parts) if hasattr(outs[0], "_fields") else tuple(parts)
    return ops.reshape(ops.stack(outs, axis=0), lead + _shape_of(outs[0]))


def per_matrix(fn: Any, who: str, *args: Any, cores: tuple[int, ...] = (2,)) -> Any:
    """``fn`` of one matrix on each matrix of a stack: one equation per
    matrix (and per part), stacked back; numpy's broadcasting of the stacks."""
    lead = np.broadcast_shapes(*(_shape_of(x)[:len(_shape_of(x)) - c]
                                 for x, c in zip(args, cores)))
    if not math.prod(lead):
        raise ProgramError(f"{who}: an empty stack of matrices (shape {lead}) on traced values")
    return _restack([fn(*(_pick(x, i, lead, c) for x, c in zip(args, cores)))
                     for i in np.ndindex(*lead)], lead)
