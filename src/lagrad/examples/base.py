"""The Example record every example function returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.ir.program import Program

__all__ = ["Example"]


@dataclass(frozen=True)
class Example:
    """A program, the inputs to solve it at, and its reference gradient.

    Attributes
    ----------
    name : str
        Short name (``lagrad study NAME``).
    program : Program
        The constraint program (cyclic blocks included).
    inputs : dict
        Input name -> value; ``program.solve(**example.inputs)`` solves it.
    reference : dict
        Input name -> the gradient of the output with respect to that input,
        computed independently of lagrad (closed form or a dense numpy solve).
    description : str
        One line on what is computed and how the reference is obtained.
    solve_options : dict
        Keyword options for ``program.solve`` (forward method, tol, ...).
    """

    name: str
    program: Program
    inputs: dict[str, NDArray[np.float64]]
    reference: dict[str, NDArray[np.float64]]
    description: str = ""
    solve_options: Mapping[str, Any] = field(default_factory=dict)

    def solve(self, **options: Any) -> Any:
        """``program.solve`` at the example's inputs and options."""
        return self.program.solve(**{**self.inputs, **self.solve_options, **options})

    def gradient_error(self, solution: Any = None, **grad_options: Any) -> float:
        """Largest relative error of lagrad's gradient against the reference."""
        sol = self.solve() if solution is None else solution
        lam = sol.multipliers(**grad_options)
        worst = 0.0
        for name, ref in self.reference.items():
            got = np.asarray(lam[name])
            worst = max(worst, float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300)))
        return worst
