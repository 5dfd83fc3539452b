"""The worked example of the Lagrangian view (docs/lagrangian.md):

f(x) = exp(exp(x) + exp(x)^2) + sin(exp(x) + exp(x)^2).
"""

from __future__ import annotations

import math

from lagrad.ir import ops
from lagrad.ir.program import Program
from lagrad.ir.trace import trace


def _f(x):  # type: ignore[no-untyped-def]
    a = ops.exp(x)
    b = a ** 2
    c = a + b
    d = ops.exp(c)
    e = ops.sin(c)
    return d + e


def worked_example() -> Program:
    """The program a = exp(x); b = a^2; c = a + b; d = exp(c); e = sin(c);
    out = d + e, with its variables named as in docs/lagrangian.md.

    Examples
    --------
    >>> from lagrad.examples import worked_example, worked_example_derivative
    >>> sol = worked_example().solve(0.5)
    >>> bool(abs(sol.grad() - worked_example_derivative(0.5)) < 1e-12 * abs(sol.grad()))
    True
    """
    program = trace(_f, 0.0)
    for v, name in zip(program.variables[1:], ("a", "b", "c", "d", "e", "out")):
        v.name = name
    return program


def worked_example_derivative(x: float) -> float:
    """f'(x) in closed form: (exp(c) + cos(c)) (1 + 2a) a with a = exp(x), c = a + a^2."""
    a = math.exp(x)
    c = a + a * a
    return (math.exp(c) + math.cos(c)) * (1 + 2 * a) * a
