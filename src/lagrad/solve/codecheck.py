"""The finiteness tests of the generated code (:mod:`lagrad.solve.codegen`),
as source lines, and those it can leave out or make cheaper with the same
guarantee: every value and every multiplier of a program solved by generated
code is finite, or the caller takes the path that names the first one that
is not.

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
from lagrad.solve.codeinline import Source

__all__ = ["FINITE_MAPS", "PRODUCT_BOUND", "finite_map_outputs", "product_factor",
           "frozen_squares", "check_finite", "check_product", "bounded_products",
           "spread_by_constants"]

Slot = tuple[int, int, int, tuple[int, ...], bool]  # (position, start, stop, shape, first)

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


def spread_by_constants(steps: Any, inputs: Any) -> set[tuple[int, int]]:
    """The spans of ``inputs`` whose values need no test of their own: the
    variable factor of a matrix product ``c @ x`` (or ``x @ c``) whose
    constant factor ``c`` is frozen, with every entry finite and nonzero
    (1-d or 2-d factors, a non-empty product). Each entry of ``x`` then
    enters a whole column (row) of the product with a nonzero factor, so
    inf or NaN there makes an entry of the product inf or NaN (inf times
    nonzero is inf, NaN times anything NaN, and no other term of a sum
    cancels either), and the product's test, or the test of the sum that
    covers it, catches it; the first-failure scan then names the input.
    (The first layer's weights of an MLP: 784 x 256 entries not read.)"""
    spans: set[tuple[int, int]] = set()
    wanted = set(inputs)
    for step in steps:
        if step.eq.primitive is not matmul or step.eq.params or len(step.template) != 2 \
                or len(step.vslots) != 1 or step.stop == step.start:
            continue
        (pos, a, b, shape), = step.vslots
        constant = step.template[1 - pos]
        if (a, b) not in wanted or not 1 <= len(shape) <= 2 or \
                frozen_squares(constant) is None or not 1 <= constant.ndim <= 2:
            continue
        with np.errstate(all="ignore"):
            if np.isfinite(constant).all() and constant.all():
                spans.add((a, b))
    return spans


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


# ------------------------------------------------- the tests, as generated source


def check_finite(src: Source, vec: str, squares: str | None = None) -> str | None:
    """Emit flatplan's finiteness test of an array (its sum of squares, then
    each entry when that is not finite): return None when an entry is not.
    With ``squares``, the sum of squares is kept under that name (returned)."""
    total = f"vdot({vec}, {vec})"
    if squares is not None:
        src.emit(f"{squares} = {total}")
        total = squares
    src.emit(f"if not isfinite({total}) and not {src.name(np.isfinite, 'f')}({vec}).all():")
    src.emit("    return None")
    return squares


def check_product(src: Source, step: Single, out: tuple[str, int], g: str,
                  squares: str | None, other: int, factor: str) -> None:
    """Emit the test of ``out`` (name, size), a product of the cotangent ``g``
    and argument ``other`` of ``step`` (``factor``): it passes when the
    factors' Frobenius norms bound it far from overflow, else ``out``'s own
    test decides (see the module notes). ``squares``: g's sum of
    squares if already computed; a frozen constant's is computed here, once.
    When the factors' entries outnumber the product's, the product is tested."""
    name, size = out
    constant = step.template[other]
    known = frozen_squares(constant) if constant is not None else None
    factor_size = int(np.size(constant)) if constant is not None else \
        next(b - a for p, a, b, _ in step.vslots if p == other)
    work = (factor_size if known is None else 0) + \
        (step.stop - step.start if squares is None else 0)
    floats = constant is None or (type(constant) is np.ndarray and constant.dtype == np.float64)
    if work >= size or not floats:  # (an integer sum of squares could wrap around)
        check_finite(src, name)
        return
    qa = src.name(known, "k") if known is not None else f"vdot({factor}, {factor})"
    qg = squares or f"vdot({g}, {g})"
    src.emit(f"if not sqrt({qa}) * sqrt({qg}) <= {PRODUCT_BOUND!r} and not "
             f"isfinite(vdot({name}, {name})) and not {src.name(np.isfinite, 'f')}"
             f"({name}).all():")
    src.emit("    return None")


def bounded_products(sweep: list[tuple[Single, list[Slot]]], grads: dict[tuple[int, int], str]
                     ) -> dict[tuple[int, int], tuple[Single, int]]:
    """The gradients tested by the bound on their factors (see the module
    notes): an input's whose only contribution is one
    factor's cotangent of a matrix product, of the input's shape. By span:
    the product's step and the position of its other factor."""
    count: dict[tuple[int, int], int] = {}
    for _, slots in sweep:
        for slot in slots:
            count[slot[1:3]] = count.get(slot[1:3], 0) + 1
    found: dict[tuple[int, int], tuple[Single, int]] = {}
    for step, slots in sweep:
        for pos, a, b, shape, first in slots:
            other = product_factor(step, pos, shape) if (a, b) in grads else None
            if other is not None and first and count[(a, b)] == 1:
                found[(a, b)] = (step, other)
    return found
