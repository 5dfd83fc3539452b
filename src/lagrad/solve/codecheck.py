"""Finiteness tests the generated code (:mod:`lagrad.solve.codegen`) can
leave out or make cheaper, with the same guarantee: every value and every
multiplier of a program solved by generated code is finite, or the caller
takes the path that names the first one that is not.

Two facts are used.

* A *finite map* (tanh, sigmoid, sin, cos, abs) gives a finite output for a
  finite input, elementwise: its output needs no test of its own when its
  argument is tested (or covered by a sum's test, see ``codegen._covered``).
* A matrix product $C = A^T G$ (or $G B^T$) of finite factors is finite when
  $\\|A\\|_F \\|G\\|_F$ is far below the largest double: by Cauchy-Schwarz
  every entry, and every partial sum of its terms in any order (a BLAS kernel,
  with or without fused multiply-adds), is at most $\\|a\\| \\|g\\| (1 + K u)$
  for columns $a$, $g$ of $K$ entries and the unit roundoff $u$. The sums of
  squares $\\|A\\|_F^2$ and $\\|G\\|_F^2$ are what the ordinary tests compute
  anyway (a finite sum of squares means finite entries), and they are over
  the factors, whose sizes add, where the product's size multiplies: for
  the gradient of a weight matrix $W$ ($n_{in} \\times n_{out}$) from a batch
  of $m$ rows, $m (n_{in} + n_{out})$ entries instead of $n_{in} n_{out}$.
  When the bound does not hold (huge or non-finite factors), the product is
  tested entry by entry as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lagrad.compile.schedule import Single
from lagrad.ir import elementwise
from lagrad.ir.structural import matmul

__all__ = ["FINITE_MAPS", "PRODUCT_BOUND", "finite_map_outputs", "product_factor",
           "frozen_squares"]

FINITE_MAPS = frozenset(id(p) for p in (elementwise.tanh, elementwise.sigmoid, elementwise.sin,
                                        elementwise.cos, elementwise.absolute))
"""Elementwise primitives (no parameters, no constant partials) whose output
is finite wherever their argument is."""

PRODUCT_BOUND = 1e300
"""A product's factors pass when $\\|A\\|_F \\|G\\|_F$ is at most this: a
margin of $10^8$ below the largest double covers the rounding of the product
($K u$ for any $K$ below $10^{15}$) and of the sums of squares."""


def finite_map_outputs(steps: Any) -> set[tuple[int, int]]:
    """The spans of the steps that apply a finite map to one variable (their
    outputs are finite when that variable's values are, which are tested)."""
    spans: set[tuple[int, int]] = set()
    for step in steps:
        prim = step.eq.primitive
        if id(prim) in FINITE_MAPS and prim.constant_partials is None and not step.eq.params \
                and len(step.template) == 1 and len(step.vslots) == 1:
            spans.add((step.start, step.stop))
    return spans


def product_factor(step: Single, pos: int, shape: tuple[int, ...]) -> int | None:
    """For the cotangent of argument ``pos`` of a matrix product ``a @ b`` of
    1-d or 2-d factors (``g b^T`` or ``a^T g``, of the argument's ``shape``, no
    batch dimensions to sum over), the position of the other factor; else
    None."""
    if step.eq.primitive is not matmul or len(step.template) != 2 or step.eq.params:
        return None
    shapes = [np.shape(x) for x in step.template]
    for p, _, _, s in step.vslots:
        shapes[p] = s
    if not all(1 <= len(s) <= 2 for s in shapes) or tuple(shapes[pos]) != tuple(shape):
        return None
    return 1 - pos


def frozen_squares(x: Any) -> float | None:
    """The sum of squares of a constant that cannot change (a program's
    frozen float64 copy: read-only down to the array that owns the memory),
    or None."""
    if type(x) is not np.ndarray or x.dtype != np.float64:
        return None
    arr: Any = x
    while arr is not None:
        if not isinstance(arr, np.ndarray) or arr.flags.writeable:
            return None
        arr = arr.base
    with np.errstate(all="ignore"):
        return float(np.vdot(x, x))
