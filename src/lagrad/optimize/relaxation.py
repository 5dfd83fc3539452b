"""A program's constraints, relaxed: the objective (the output z_n, or a loss
on it), the residuals
c(z) = z - f(z) and their Jacobian (I - J) over the flat vector z, with the
inputs to optimize free and the other inputs fixed.

The optimizers of this package work on this object only. With A the rows of
(I - J) of the defining equations (an input has no constraint, so its row is
left out), phi(z) the objective (z_n, or ``loss(z_n)`` for a loss on a
non-scalar output) and L(z, lambda) = phi(z) - lambda^T c(z) the Lagrangian:

* dL/dlambda = -c(z): the constraint violation;
* dL/dz = e - A^T lambda with e = dphi/dz (e_n without a loss): on a
  defined variable, the residual of the multiplier equations; on a free
  input x, the gradient of L in x.

Both products with A^T use the program's own J at z: applied through the
schedule's vector-Jacobian products without assembling it
(``jacobian="matvec"``), or assembled as a sparse matrix (``"sparse"``).
At a relaxed z the value z_i of a defined variable differs from f_i(z_alpha(i)),
while a primitive's local derivative may be written in terms of its result
(tanh' = 1 - tanh^2); so each equation is differentiated at its parents'
values with its result set to f_i(z_alpha(i)), which is d f_i / d z_j at z.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.compile.compiler import compile_program
from lagrad.compile.schedule import Batch, CyclicBlock, Schedule, Single
from lagrad.errors import NonFiniteError, OptionError, ProgramError
from lagrad.ir.program import Program, Variable, require_program
from lagrad.ir.trace import trace
from lagrad.numeric import norm2
from lagrad.solve.linsolve import solve_system
from lagrad.solve.solution import Solution

__all__ = ["Relaxation", "KKTNorms", "JACOBIAN_MODES"]

Array = NDArray[np.float64]
JACOBIAN_MODES = ("sparse", "matvec")
"""How products with J are formed: assembled sparse J, or VJP sweeps."""


@dataclass(frozen=True)
class KKTNorms:
    """Norms of the Lagrangian's gradient at (z, lambda), absolute.

    ``violation`` = ||z - f(z)|| (= ||dL/dlambda||) over the defining
    equations; ``dL_dz`` = ||e_n - A^T lambda|| over the defined variables
    (the multiplier equations); ``dL_dx`` the same over the free inputs (zero
    at a stationary point of the loss in x).
    """

    violation: float
    dL_dz: float  # noqa: N815 (the maths' name)
    dL_dx: float  # noqa: N815


class Relaxation:
    """A program's objective and constraints over its flat vector z.

    Parameters
    ----------
    program : Program
        The program; its output is the objective, or the argument of ``loss``.
    fixed : mapping, optional
        Input name -> value for inputs held fixed (data); every other input
        is optimized.
    jacobian : {"sparse", "matvec"}
        How products with (I - J)^T are formed (see the module docstring).
    loss : callable, optional
        A function of the output written with lagrad operations, returning a
        scalar: the objective is ``loss(output)``. It is traced once into its
        own program and is never relaxed.

    Raises
    ------
    ProgramError
        The objective is not scalar, or ``fixed`` names a variable that is not
        an input, or a value has the wrong shape.
    OptionError
        ``jacobian`` is not one of :data:`JACOBIAN_MODES`.
    """

    def __init__(self, program: Program, fixed: Mapping[str, Any] | None = None,
                 jacobian: str = "matvec", loss: Callable[[Any], Any] | None = None
                 ) -> None:
        if jacobian not in JACOBIAN_MODES:
            raise OptionError(f"jacobian={jacobian!r}; choose one of {list(JACOBIAN_MODES)}")
        self.program = require_program(program, "lagrad.optimize")
        self.jacobian_mode = jacobian
        self.schedule: Schedule = compile_program(program)
        out = self.schedule.output_variable
        self.loss: Program | None = None
        if loss is not None:
            self.loss = trace(loss, np.zeros(out.shape))
            value = compile_program(self.loss).output_variable
            if value.size != 1:
                raise ProgramError(f"loss(output) has shape {value.shape}; the loss must "
                                   "return a scalar")
        elif out.size != 1:
            raise ProgramError(f"the output {out.name!r} has shape {out.shape}; an objective "
                               "to minimize must be a scalar (sum or average it, or pass a "
                               "loss on the output)")
        self.output_shape = out.shape
        self.fixed = _fixed_values(program, self.schedule.inputs, fixed or {})
        self.optimized: list[Variable] = [v for v in self.schedule.inputs
                                          if v.name not in self.fixed]
        if not self.optimized:
            raise ProgramError("every input is fixed: nothing to optimize")
        index = self.schedule.index
        n = self.schedule.size
        self.output_slice = index[out]
        inputs = np.zeros(n, dtype=bool)
        inputs[index.positions(self.schedule.inputs)] = True
        self.defined = ~inputs
        """Positions with a defining equation (the rows of c)."""
        self.x_positions = index.positions(self.optimized)
        free = self.defined.copy()
        free[self.x_positions] = True
        self.free = free
        """Positions optimized: the defined variables and the optimized inputs."""
        self.units = [(step, _outputs(step)) for unit in self.schedule.steps
                      for step in (unit.steps if isinstance(unit, CyclicBlock) else [unit])]
        """Every equation step (cyclic blocks opened) with its output positions."""

    # ------------------------------------------------------------- inputs
    def inputs(self, x: Any) -> list[Array]:
        """``x`` (one array for one optimized input; a sequence, one per
        optimized input; or a mapping by name) as a list of arrays."""
        names = [v.name for v in self.optimized]
        if isinstance(x, Mapping):
            missing = [n for n in names if n not in x]
            extra = [k for k in x if k not in names]
            if missing or extra:
                raise ProgramError(f"x0: missing {missing}, not optimized inputs {extra}; "
                                   f"the optimized inputs are {names}")
            parts = [x[n] for n in names]
        elif len(names) == 1 and not isinstance(x, (tuple, list)):
            parts = [x]
        else:
            parts = list(x) if isinstance(x, (tuple, list)) else [x]
            if len(parts) != len(names):
                raise ProgramError(f"x0 has {len(parts)} parts, the optimized inputs are "
                                   f"{names}: give one array per input")
        return [_shaped(v, p, "x0") for v, p in zip(self.optimized, parts)]

    def flat_x(self, x: Any) -> Array:
        return np.concatenate([p.ravel() for p in self.inputs(x)])

    def unflat_x(self, flat: Array) -> Any:
        """A flat x as one array (one optimized input) or a tuple of arrays."""
        parts, start = [], 0
        for v in self.optimized:
            parts.append(flat[start:start + v.size].reshape(v.shape).copy())
            start += v.size
        return parts[0] if len(parts) == 1 else tuple(parts)

    def solve(self, flat_x: Array, fixed: Mapping[str, Any] | None = None) -> Solution:
        """The program solved at x (and the fixed inputs, or ``fixed``)."""
        named = dict(self.fixed if fixed is None else fixed)
        start = 0
        for v in self.optimized:
            named[v.name] = flat_x[start:start + v.size].reshape(v.shape)
            start += v.size
        return self.program.solve(**named)

    # -------------------------------------------------------- constraints
    def residual(self, z: Array) -> Array:
        """c(z) = z - f(z), zero on the inputs."""
        fz = z.copy()
        with np.errstate(all="ignore"):
            for step in self.schedule.steps:
                step.run(z, out=fz)
        return z - fz

    def objective(self, z: Array) -> tuple[float, Array]:
        """phi(z) and dphi/dz (flat, nonzero on the output only)."""
        seed = np.zeros(z.size)
        out = z[self.output_slice]
        if self.loss is None:
            seed[self.output_slice] = 1.0
            return float(out[0]), seed
        sol = self.loss.solve(out.reshape(self.output_shape))
        seed[self.output_slice] = np.ravel(sol.grad())
        return float(sol.output), seed

    def evaluate(self, flat_x: Array, fixed: Mapping[str, Any] | None = None
                 ) -> tuple[Solution, float, Array]:
        """The program solved at x, the objective there and the exact
        multipliers of the objective (lambda; the entries of the inputs are the
        gradient in x)."""
        sol = self.solve(flat_x, fixed)
        if self.loss is None:
            return sol, float(sol.output), np.array(sol.multipliers().vector, dtype=float)
        value, seed = self.objective(sol.z)
        cotangent = seed[self.output_slice].reshape(self.output_shape)
        lam, _ = solve_system(sol.adjoint_system(cotangent))
        return sol, value, np.asarray(lam, dtype=float)

    def jacobian(self, z: Array, c: Array | None = None) -> sp.csr_matrix:
        """J[i, j] = d f_i / d z_j at z (sparse), with c = z - f(z) if known."""
        fz = z - (self.residual(z) if c is None else c)
        work = z.copy()
        rows, cols, vals = [], [], []
        with np.errstate(all="ignore"):
            for step, out in self.units:
                work[out] = fz[out]
                for r, col, v in step.jacobian_entries(work):
                    rows.append(np.asarray(r, dtype=np.intp).ravel())
                    cols.append(np.asarray(col, dtype=np.intp).ravel())
                    vals.append(np.asarray(v, dtype=float).ravel())
                work[out] = z[out]
        n = z.size
        if not rows:
            return sp.csr_matrix((n, n))
        jac = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(n, n))
        if not np.isfinite(jac.data).all():
            raise NonFiniteError("a local derivative is not finite at the relaxed point")
        return jac

    def rmatvec(self, z: Array, v: Array, c: Array | None = None) -> Array:
        """(I - J)^T v at z, for v zero on the inputs (c = z - f(z) if known).

        Raises NonFiniteError if the product is not finite."""
        if self.jacobian_mode == "sparse":
            return v - self.jacobian(z, c).T @ v
        fz = z - (self.residual(z) if c is None else c)
        work = z.copy()
        jt = np.zeros_like(v)
        with np.errstate(all="ignore"):
            for step, out in self.units:
                work[out] = fz[out]
                step.pullback(work, v, jt)
                work[out] = z[out]
        if not np.all(np.isfinite(jt)):
            raise NonFiniteError("J^T lambda is not finite at the relaxed point")
        return v - jt

    def lagrangian_gradient(self, z: Array, lam: Array, c: Array | None = None) -> Array:
        """dL/dz = e - A^T lambda at (z, lambda) (lambda zero on inputs)."""
        return self.objective(z)[1] - self.rmatvec(z, lam, c)

    def kkt(self, z: Array, lam: Array, c: Array | None = None) -> KKTNorms:
        """The norms of the Lagrangian's gradient at (z, lambda)."""
        c = self.residual(z) if c is None else c
        g = self.lagrangian_gradient(z, lam, c)
        return KKTNorms(norm2(c[self.defined]), norm2(g[self.defined]),
                        norm2(g[self.x_positions]))

    def multipliers(self, flat_x: Array) -> tuple[Solution, float, Array]:
        """The program solved at x, the objective, and the exact multipliers
        zero on the inputs (their entries there are the gradient, not a
        multiplier)."""
        sol, value, lam = self.evaluate(flat_x)
        lam[~self.defined] = 0.0
        return sol, value, lam


def _outputs(step: Single | Batch) -> slice | NDArray[np.intp]:
    return slice(step.start, step.stop) if isinstance(step, Single) else step.out


def _fixed_values(program: Program, inputs: Sequence[Variable],
                  fixed: Mapping[str, Any]) -> dict[str, Array]:
    names = {v.name: v for v in inputs}
    out = {}
    for key, value in fixed.items():
        if key not in names:
            raise ProgramError(f"fixed input {key!r}: the program's inputs are {sorted(names)}")
        out[key] = _shaped(names[key], value, "fixed input")
    return out


def _shaped(v: Variable, value: Any, role: str) -> Array:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise ProgramError(f"{role} {v.name!r} must be real numbers of shape {v.shape}: "
                           f"{err}") from err
    if arr.shape != v.shape:
        raise ProgramError(f"{role} {v.name!r} has shape {arr.shape}, the input has shape "
                           f"{v.shape}")
    return arr
