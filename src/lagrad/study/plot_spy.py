"""The system matrix's sparsity as a picture (the ``plot`` extra): see
:mod:`lagrad.study.plot` for how figures, ``path`` and ``axes`` behave."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.solve.system import System
from lagrad.study.plot import BLOCK_COLOURS, _figure, _finish, _light
from lagrad.study.summary import is_triangular  # one triangularity test

__all__ = ["spy_system"]


def spy_system(system: System, path: str | os.PathLike[str] | None = None, *,
               axes: Sequence[Any] | None = None, figsize: tuple[float, float] = (12.0, 6.6),
               markersize: float | None = None, title: str | None = None) -> Any:
    """Sparsity of the system matrix, in program order and in block order.

    Parameters
    ----------
    system : System
        An adjoint ((I - J)^T) or tangent ((I - J)) system.
    path : str or Path, optional
        Also save the figure there as PNG.
    axes : pair of matplotlib Axes, optional
        Draw into them (default: a new figure with two panels).
    figsize, markersize, title : optional

    Returns
    -------
    matplotlib.figure.Figure
        Left: the matrix with variables in program order (triangular when
        the program is acyclic). Right: rows and columns permuted so that
        variables are grouped by block in topological order
        (:attr:`lagrad.System.permutation`): block triangular, with the
        cyclic blocks as shaded squares on the diagonal. Entries inside a
        cyclic block have its colour in both panels.
    """
    fig, (left, right) = _figure(axes, path, figsize, ncols=2)
    a = system.matrix.tocoo()
    n = a.shape[0]
    program = system.schedule.program
    perm = system.permutation
    where = np.empty_like(perm)
    where[perm] = np.arange(perm.size)
    owner = np.empty(n, dtype=np.intp)  # block number of each flat position
    for block in program.blocks:
        for v in block.variables:
            owner[system.index.slice(v.index)] = block.number
    cyclic = [b for b in program.blocks if b.cyclic]
    colours = {b.number: BLOCK_COLOURS[k % len(BLOCK_COLOURS)] for k, b in enumerate(cyclic)}
    adjoint = system.orientation.transposed
    minus_j = "-J^T" if adjoint else "-J"
    # one colour per kind of entry: the diagonal (I), -J between blocks, -J inside each block
    diagonal = a.row == a.col
    inside = np.where((owner[a.row] == owner[a.col]) & ~diagonal, owner[a.row], -1)
    kinds = [(diagonal, "#a3adbf", "diagonal (1 - J_ii)"),
             (~diagonal & ~np.isin(inside, list(colours)), "#1f2d4d",
              f"{minus_j} entries (between blocks)")]
    kinds += [(inside == b, colour, f"{minus_j} entries inside cyclic {program.blocks[b].name}")
              for b, colour in colours.items()]
    ms = markersize or float(np.clip(0.8 * 330.0 / max(n, 1), 0.5, 40.0))
    handles = []
    for ax, rows, cols in ((left, a.row, a.col), (right, where[a.row], where[a.col])):
        handles = [ax.plot(cols[mask], rows[mask], ls="", marker="s", ms=ms, color=colour,
                           mew=0, label=label)[0] for mask, colour, label in kinds]
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.xaxis.set_label_position("top")
        ax.xaxis.tick_top()
        ax.set_xlabel(f"column: entry of {'lambda' if adjoint else 'zdot'} (flat position)")
        ax.set_ylabel("row: " + ("multiplier equation dL/dz_i = 0" if adjoint else
                                 "tangent equation of z_i"))
    _spy_ticks(left, system, list(program.variables))
    _spy_ticks(right, system, [v for b in program.blocks for v in b.variables], perm=where)
    _spy_blocks(right, system, where, colours)
    side = "upper" if adjoint else "lower"
    off = a.tocsr() - _diag(a)
    off.eliminate_zeros()
    tri = f"{side} triangular" if is_triangular(off, side) else "not triangular (cycles)"
    left.set_title(f"program order: {tri}", fontsize=11)
    blocks = f"{len(program.blocks)} blocks, " + (
        f"{len(cyclic)} cyclic (shaded)" if cyclic else "none cyclic: the same as program order")
    right.set_title(f"block order: block {side} triangular\n{blocks}", fontsize=11)
    name = "(I - J)^T lambda = e" if adjoint else "(I - J) zdot = e"
    fig.suptitle(title or f"{system.kind} system {name}: {n} x {n}, {a.nnz} stored "
                 "nonzeros", fontsize=12)
    constrained = type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
    fig.legend(handles=handles, loc="outside lower center" if constrained else "lower center",
               ncol=min(3, len(handles)), fontsize=9, frameon=False, markerscale=8.0 / ms)
    return _finish(fig, path)


def _diag(a: Any) -> Any:
    return sp.diags(a.tocsr().diagonal())


def _spy_ticks(ax: Any, system: System, variables: list[Any],
               perm: NDArray[np.intp] | None = None) -> None:
    """Variable names at their (first) position when there are few, else numbers."""
    if len(variables) > 24:
        return
    starts, names = [], []
    for v in variables:
        sl = system.index.slice(v.index)
        first = int(sl.start if perm is None else perm[sl.start])
        starts.append(first + (v.size - 1) / 2.0)
        names.append(v.name)
    ax.set_xticks(starts, names, rotation=90, fontsize=8)
    ax.set_yticks(starts, names, fontsize=8)
    if len(variables) <= 60:
        for v in variables[1:]:
            sl = system.index.slice(v.index)
            edge = (sl.start if perm is None else int(perm[sl.start])) - 0.5
            ax.axhline(edge, color="#cccccc", lw=0.5, zorder=0)
            ax.axvline(edge, color="#cccccc", lw=0.5, zorder=0)


def _spy_blocks(ax: Any, system: System, where: NDArray[np.intp],
                colours: dict[int, str]) -> None:
    from matplotlib.patches import Rectangle

    for block in system.schedule.program.blocks:
        if block.number not in colours:
            continue
        first = min(int(where[system.index.slice(v.index).start]) for v in block.variables)
        size = block.size
        ax.add_patch(Rectangle((first - 0.5, first - 0.5), size, size, lw=1.2,
                               edgecolor=colours[block.number],
                               facecolor=_light(colours[block.number], 0.8), zorder=0))
