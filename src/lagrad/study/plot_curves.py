"""Solver convergence and unrolled-error curves, and the PNG sets written by
``lagrad demo --plot DIR`` and ``lagrad study NAME --plot DIR`` (the ``plot``
extra). Figures, ``path`` and ``ax`` behave as described in :mod:`lagrad.study.plot`,
which also re-exports these functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from lagrad.compile.jacobian import block_matrix
from lagrad.compile.schedule import CyclicBlock
from lagrad.errors import LagradError
from lagrad.examples.base import Example
from lagrad.ir.program import Program
from lagrad.solve.solution import Solution
from lagrad.solve.system import System
from lagrad.study.examples import UNROLL_KS, compare_backward
from lagrad.study.plot import (
    ADJOINT_METHODS,
    FORWARD_METHODS,
    METHOD_STYLES,
    ZERO_FLOOR,
    Array,
    _figure,
    _finish,
    draw_program,
    require_matplotlib,
)
from lagrad.study.plot_spy import spy_system
from lagrad.study.unroll import compare_unrolled

__all__ = ["plot_forward_convergence", "adjoint_residual_histories", "plot_adjoint_convergence",
           "plot_unrolled", "plot_backward", "save_program_plots", "save_study_plots"]


def plot_forward_convergence(solution: Solution | Mapping[str, Solution],
                             path: str | os.PathLike[str] | None = None, *, ax: Any = None,
                             failures: Mapping[str, str] | None = None,
                             figsize: tuple[float, float] = (7.5, 4.8)) -> Any:
    """Residual against iteration of each cyclic block's forward solve (log y).

    Exact zeros are drawn at :data:`ZERO_FLOOR` (1e-17).

    Parameters
    ----------
    solution : Solution or mapping of label -> Solution
        One solution, or several (e.g. one per forward method) drawn together.
    path : str or Path, optional
        Also save the figure there as PNG.
    ax : matplotlib Axes, optional
    failures : mapping of label -> message, optional
        Methods that failed, listed on the picture.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _figure(ax, path, figsize)
    solutions = dict(solution) if isinstance(solution, Mapping) else {"": solution}
    drawn = 0
    for label, sol in solutions.items():
        several = len(sol.diagnostics) > 1
        for diag in sol.diagnostics.values():
            res = _positive(diag.residuals)
            colour, marker = METHOD_STYLES.get(diag.method, (None, "."))
            name = diag.method if label in ("", diag.method) else f"{label} ({diag.method})"
            name += f", {diag.block}" if several else ""
            ax.semilogy(np.arange(res.size), res, marker=marker, ms=4 if res.size < 60 else 2,
                        color=colour, label=f"{name}: {_plural(diag.iterations, 'iteration')}")
            drawn += 1
    for method, message in (failures or {}).items():
        colour, _ = METHOD_STYLES.get(method, ("#8b0000", "x"))
        ax.plot([], [], ls="", marker="x", color=colour, label=f"{method}: {message}")
    _notes(ax, None, drawn, "no cyclic block: nothing to iterate")
    ax.set_xlabel("iteration")
    ax.set_ylabel("residual ||z_U - G(z_U)|| (unknowns)")
    ax.set_title("Forward solve of the cyclic blocks")
    ax.grid(True, which="major", alpha=0.3)
    if drawn or failures:
        _legend_below(ax)
    return _finish(fig, path)


def _legend_below(ax: Any, **options: Any) -> None:
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False,
              **options)


def _plural(k: int, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def adjoint_residual_histories(solution: Solution,
                               methods: Sequence[str] = ADJOINT_METHODS, *,
                               maxiter: int = 200, rtol: float = 1e-14
                               ) -> dict[str, dict[str, Array]]:
    """Relative residual against iteration of iterative adjoint solves in each cyclic block.

    For each cyclic block S = U + I (unknowns U, interior I) with A = I - J_SS,
    the adjoint block system A^T lambda_S = b_S (b_S = A^T lambda_S from the
    exact multipliers) is reduced to the unknowns, as lagrad's iterative
    methods do: (I - dG/dz_U)^T lambda_U = c with the Schur complement
    A_UU - A_UI A_II^-1 A_IU = I - dG/dz_U. Each method starts from 0:
    "fixed_point" is the Neumann iteration lambda <- lambda + (c - R lambda),
    "gmres" (restart 20), "bicgstab" and "lgmres" are scipy's. Needs no
    matplotlib.

    Returns
    -------
    dict
        ``{block name: {method: residuals}}``; residuals[k] = ||c - R x_k|| / ||c||
        (starting at 1), stopping at ``rtol``, ``maxiter`` or divergence.
        Also ``"direct"``: the residual of the exact (sparse LU) multipliers.

    Examples
    --------
    >>> import lagrad
    >>> p = lagrad.Program()
    >>> a = p.input("a", shape=2)
    >>> z = p.unknown("z", shape=2)
    >>> p.define(z, 0.5 * z + a)
    >>> p.output(lagrad.sum(z))
    >>> h = adjoint_residual_histories(p.solve([1.0, 2.0]), ["fixed_point"])["block 1 (z)"]
    >>> [float(r) for r in h["fixed_point"][:4]]
    [1.0, 0.5, 0.25, 0.125]
    """
    system = solution.adjoint_system()
    lam = solution.multipliers().vector
    z = system.values
    out = {}
    for unit in system.schedule.steps:
        if not isinstance(unit, CyclicBlock):
            continue
        a = block_matrix(unit, z, z.size).tocsr()
        x = lam[unit.s_index]
        op, c, x_u = _reduced_adjoint(unit, a, a.T @ x, x)
        scale = float(np.linalg.norm(c))
        if scale == 0.0:
            continue  # the output does not depend on this block
        hist = {m: _HISTORY[m](op, c, scale, maxiter, rtol) for m in methods}
        hist["direct"] = np.array([float(np.linalg.norm(c - op.matvec(x_u))) / scale])
        out[unit.block.name] = hist
    return out


def _reduced_adjoint(unit: CyclicBlock, a: Any, b: Array, x: Array
                     ) -> tuple[spla.LinearOperator, Array, Array]:
    pos_u = np.searchsorted(unit.s_index, unit.u_index)
    pos_i = np.searchsorted(unit.s_index, unit.i_index)
    a_uu = a[pos_u][:, pos_u]
    if pos_i.size == 0:
        return spla.aslinearoperator(a_uu.T), b[pos_u], x[pos_u]
    a_ui, a_iu = a[pos_u][:, pos_i], a[pos_i][:, pos_u]
    lu = spla.splu(a[pos_i][:, pos_i].tocsc())  # unit triangular up to order: never singular

    def matvec(v: Array) -> Array:
        return a_uu.T @ v - a_iu.T @ lu.solve(a_ui.T @ v, trans="T")
    n = pos_u.size
    c = b[pos_u] - a_iu.T @ lu.solve(b[pos_i], trans="T")
    return spla.LinearOperator((n, n), matvec=matvec, dtype=float), c, x[pos_u]


def _neumann_history(op: spla.LinearOperator, c: Array, scale: float, maxiter: int,
                     rtol: float) -> Array:
    x = np.zeros_like(c)
    res = []
    for _ in range(maxiter + 1):
        r = c - op.matvec(x)
        res.append(float(np.linalg.norm(r)) / scale)
        if res[-1] <= rtol or not np.isfinite(res[-1]) or res[-1] > 1e8:
            break
        x = x + r
    return np.array(res)


def _krylov_history(solver: Callable[..., Any], residual_callback: bool) -> Callable[..., Array]:
    def run(op: spla.LinearOperator, c: Array, scale: float, maxiter: int,
            rtol: float) -> Array:
        res = [1.0]

        def record(arg: Any) -> None:
            res.append(float(arg) if residual_callback else
                       float(np.linalg.norm(c - op.matvec(arg))) / scale)
        kwargs: dict[str, Any] = {"callback": record, "rtol": rtol, "atol": 0.0}
        if solver is spla.gmres:
            kwargs.update(callback_type="pr_norm", restart=20, maxiter=maxiter // 20 + 1)
        else:
            kwargs["maxiter"] = maxiter
        x, _ = solver(op, c, **kwargs)
        final = float(np.linalg.norm(c - op.matvec(x))) / scale
        if not residual_callback and final < res[-1] and len(res) <= maxiter:
            res.append(final)  # converged inside an iteration, after its last callback
        return np.array(res[:maxiter + 1])
    return run


_HISTORY: dict[str, Callable[..., Array]] = {
    "fixed_point": _neumann_history, "gmres": _krylov_history(spla.gmres, True),
    "bicgstab": _krylov_history(spla.bicgstab, False),
    "lgmres": _krylov_history(spla.lgmres, False)}


def plot_adjoint_convergence(solution: Solution, path: str | os.PathLike[str] | None = None,
                             *, ax: Any = None, methods: Sequence[str] = ADJOINT_METHODS,
                             maxiter: int = 200, figsize: tuple[float, float] = (7.5, 4.8)
                             ) -> Any:
    """Adjoint residual against iteration in each cyclic block (log y).

    One curve per iterative method (see :func:`adjoint_residual_histories`),
    and a star for the direct sparse LU solve, which lagrad uses by default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _figure(ax, path, figsize)
    histories = adjoint_residual_histories(solution, methods, maxiter=maxiter)
    several = len(histories) > 1
    top = 1.0
    for block, hist in histories.items():
        for method, res in hist.items():
            suffix = f", {block}" if several else ""
            if method == "direct":
                ax.semilogy([1], _positive(res), ls="", marker="*", ms=12,
                            color="black", label=f"splu (direct, one solve){suffix}: "
                                                 f"{res[0]:.1e}")
                continue
            colour, marker = METHOD_STYLES.get(method, (None, "."))
            end = "diverges" if not np.isfinite(res[-1]) or res[-1] > 1 else \
                _plural(res.size - 1, "iteration")
            top = max(top, float(np.nanmax(_positive(res))))
            ax.semilogy(np.arange(res.size), _positive(res), marker=marker,
                        ms=4 if res.size < 60 else 2, color=colour,
                        label=f"{method}{suffix}: {end}")
    _notes(ax, None, len(histories), "no cyclic block: back-substitution, no iteration")
    ax.set_xlabel("iteration (matrix-free products with (dG/dz_U)^T)")
    ax.set_ylabel("relative residual of the block's adjoint")
    ax.set_title("Adjoint solve (I - dG/dz_U)^T lambda_U = c in each cyclic block")
    ax.grid(True, which="major", alpha=0.3)
    if top > 1e3:  # diverging curves: keep the converging ones readable
        ax.set_ylim(top=1e3)
    if histories:
        _legend_below(ax)
    return _finish(fig, path)


def plot_unrolled(rows: Sequence[Any], path: str | os.PathLike[str] | None = None, *,
                  ax: Any = None, implicit_entries: int | None = None,
                  failures: Mapping[str, str] | None = None,
                  figsize: tuple[float, float] = (7.5, 4.8)) -> Any:
    """Unrolled gradient error (log y) and storage against K (log x).

    Parameters
    ----------
    rows : sequence of :class:`lagrad.study.unroll.UnrolledRow`
        From :func:`lagrad.compare_unrolled`.
    implicit_entries : int, optional
        Entries the implicit (cyclic) program stores, drawn as a line.
    failures : mapping of label -> message, optional
        Values of K whose unrolled gradient could not be computed.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _figure(ax, path, figsize)
    ax.set_xlabel("unrolled iterations K")
    ax.set_ylabel("relative gradient error (vs implicit)")
    ax.set_title("Unrolled K iterations vs the implicit gradient")
    if not rows:
        _notes(ax, failures, 0, "no unrolled gradient to show")
        ax.set_xticks([])
        ax.set_yticks([])
        return _finish(fig, path)
    ks = np.array([r.iterations for r in rows], dtype=float)
    err = _positive([r.error for r in rows])
    lines = ax.loglog(ks, err, marker="o", color="#d62728", label="gradient error (left axis)")
    twin = ax.twinx()
    lines += twin.loglog(ks, [r.entries for r in rows], marker="s", ls="--", color="#555555",
                         label="entries stored, unrolled (right axis)")
    if implicit_entries is not None:
        lines.append(twin.axhline(implicit_entries, color="#1f77b4", ls=":",
                                  label=f"entries stored, implicit: {implicit_entries}"))
    stored = [r.entries for r in rows] + ([implicit_entries] if implicit_entries else [])
    twin.set_ylim(min(stored) / 1.6, max(stored) * 1.6)
    twin.set_ylabel("entries stored")
    for label, message in (failures or {}).items():
        lines += ax.plot([], [], ls="", marker="x", color="#8b0000", label=f"{label}: {message}")
    ax.set_xticks(ks, [str(int(k)) for k in ks])
    ax.xaxis.set_minor_locator(_null_locator())
    ax.grid(True, which="major", alpha=0.3)
    _legend_below(ax, handles=lines, ncol=1 if failures else 2)
    return _finish(fig, path)


def _null_locator() -> Any:
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _positive(values: Sequence[float] | Array) -> Array:
    """Values for a log axis: exact zeros at :data:`ZERO_FLOOR`, NaN and inf left out."""
    v = np.asarray(values, dtype=float)
    return np.where(~np.isfinite(v), np.nan, np.where(v > 0, v, ZERO_FLOOR))


def _notes(ax: Any, failures: Mapping[str, str] | None, drawn: int, empty: str) -> None:
    lines = [] if drawn else [empty]
    lines += [f"{k}: {msg}" for k, msg in (failures or {}).items()]
    if lines:
        ax.text(0.02, 0.03 if drawn else 0.5, "\n".join(lines), transform=ax.transAxes,
                fontsize=8, va="bottom" if drawn else "center", color="#8b0000",
                wrap=True)


# ------------------------------------------------------------------ files

def plot_backward(rows: Sequence[Any], path: str | os.PathLike[str] | None = None, *,
                  ax: Any = None, figsize: tuple[float, float] = (7.5, 4.8)) -> Any:
    """Gradient error (log y) against cost (products through the cyclic
    blocks, log x) of each backward mode.

    Parameters
    ----------
    rows : sequence of :class:`lagrad.study.examples.BackwardRow`
        From :func:`lagrad.study.examples.compare_backward`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _figure(ax, path, figsize)
    ax.set_xlabel("products through the cyclic blocks for the gradient (the error "
                  "estimate takes 1-5 more)")
    ax.set_ylabel("relative gradient error (vs implicit)")
    ax.set_title("Backward modes: error against cost")
    styles = {"implicit": ("*", "-", "#1f77b4"), "phantom": ("D", "", "#2ca02c"),
              "jfb": ("x", "", "#ff7f0e"), "unrolled": ("o", "-", "#d62728"),
              "neumann": ("s", "--", "#9467bd")}
    for mode, (marker, ls, color) in styles.items():
        mine = [r for r in rows if r.mode == mode]
        if not mine:
            continue
        cost = [max(r.products, 1) for r in mine]
        ax.loglog(cost, _positive([r.error for r in mine]), marker=marker, ls=ls or "none",
                  color=color, label=mode + ("" if mode in ("implicit", "phantom", "jfb") else
                                             " (K = " + ", ".join(str(r.steps) for r in mine)
                                             + ")"))
    if not rows:
        _notes(ax, None, 0, "no backward mode to show")
    ax.grid(True, which="major", alpha=0.3)
    _legend_below(ax, ncol=2)
    return _finish(fig, path)


def save_program_plots(program: Program, system: System, directory: str | os.PathLike[str],
                       *, title: str | None = None) -> list[Path]:
    """Write graph.png (:func:`draw_program`, with ``title``) and spy.png
    (:func:`spy_system`) into ``directory`` (created if missing)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "graph.png", folder / "spy.png"]
    draw_program(program, path=paths[0], title=title)
    spy_system(system, path=paths[1])
    return paths


def save_study_plots(example: Example, directory: str | os.PathLike[str],
                     rows: Sequence[Any] | None = None,
                     backward: Sequence[Any] | None = None) -> list[Path]:
    """Write the six pictures of ``lagrad study NAME --plot DIR``.

    graph.png, spy.png (of the adjoint system), forward_convergence.png (each
    forward method that converges), adjoint_convergence.png, unrolled.png
    (``rows`` from :func:`lagrad.compare_unrolled`, computed if not given) and
    backward_modes.png (``backward`` from
    :func:`lagrad.study.examples.compare_backward`, computed if not given).
    """
    require_matplotlib()

    folder = Path(directory)
    sol = example.solve()
    paths = save_program_plots(example.program, sol.adjoint_system(), folder)
    solutions, failures = {}, {}
    for method in FORWARD_METHODS:
        try:
            solutions[method] = example.solve(method=method)
        except LagradError as err:  # e.g. plain iteration of a non-contractive map
            message = str(err).split(";")[0]
            if message.startswith("block"):
                message = message.split(": ", 1)[-1]
            failures[method] = message.removeprefix(method + " ")
    paths.append(folder / "forward_convergence.png")
    plot_forward_convergence(solutions, path=paths[-1], failures=failures)
    paths.append(folder / "adjoint_convergence.png")
    plot_adjoint_convergence(sol, path=paths[-1])
    failed: dict[str, str] = {}
    if not rows:  # not given, or the whole table failed: try each K alone
        rows, failed = _unrolled_rows(example, UNROLL_KS)
    paths.append(folder / "unrolled.png")
    plot_unrolled(rows, path=paths[-1], failures=failed,
                  implicit_entries=sum(v.size for v in example.program.variables))
    paths.append(folder / "backward_modes.png")
    plot_backward(compare_backward(sol, write=lambda _: None) if backward is None
                  else backward, path=paths[-1])
    return paths


def _unrolled_rows(example: Example, ks: Sequence[int]) -> tuple[list[Any], dict[str, str]]:
    """compare_unrolled one K at a time, keeping the Ks that work."""

    program = example.program
    inputs = [example.inputs[v.name] for v in program.inputs]
    reference = None
    if all(v.name in example.reference for v in program.inputs):
        reference = [np.asarray(example.reference[v.name]) for v in program.inputs]
    rows, failures = [], {}
    for k in ks:
        try:
            rows += compare_unrolled(program, inputs, [k], reference)
        except LagradError as err:  # e.g. a root whose plain iteration diverges
            failures[f"K = {k}"] = str(err).split(";")[0]
    return rows, failures
