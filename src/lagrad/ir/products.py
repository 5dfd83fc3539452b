"""numpy's ``inner`` and ``vdot`` on traced values, written with tensordot
and matmul (``lagrad.linalg`` has ``multi_dot`` and ``matrix_power``).

>>> import numpy as np, lagrad
>>> float(lagrad.vdot(np.ones((2, 2)), np.arange(4.0)))
6.0
"""

from __future__ import annotations

import math
from typing import Any

from lagrad.errors import ProgramError
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import shape_of

__all__ = ["inner", "vdot"]


def inner(a: Any, b: Any) -> Any:
    """Sum of products over the last axes, as :func:`numpy.inner` (a scalar
    operand multiplies)."""
    sa, sb = shape_of(a), shape_of(b)
    if not sa or not sb:
        return P.mul(a, b)
    if sa[-1] != sb[-1]:
        raise ProgramError(f"inner: the last axes of shapes {sa} and {sb} differ")
    return ops.tensordot(a, b, axes=([len(sa) - 1], [len(sb) - 1]))


def vdot(a: Any, b: Any) -> Any:
    """The dot product of the flattened arrays, as :func:`numpy.vdot` (real values)."""
    na, nb = math.prod(shape_of(a)), math.prod(shape_of(b))
    if na != nb:
        raise ProgramError(f"vdot: {na} and {nb} entries; the arrays must have as many")
    return ops.matmul(ops.reshape(a, (na,)), ops.reshape(b, (nb,)))
