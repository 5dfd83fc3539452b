"""Convergence pictures of optimizer results (needs the ``plot`` extra)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from lagrad.errors import OptionError
from lagrad.optimize.result import OptimizeResult

__all__ = ["plot"]

AXES = ("iteration", "seconds", "evaluations")
PANELS = (("loss", "loss at x (constraints satisfied)"),
          ("violation", "constraint violation ||z - f(z)||"),
          ("dL_dz", "KKT: ||dL/dz|| (multiplier equations)"),
          ("dL_dx", "KKT: ||dL/dx|| (gradient in x)"))


def plot(results: OptimizeResult | Sequence[OptimizeResult], *, xaxis: str = "iteration",
         labels: Sequence[str] | None = None, path: str | os.PathLike[str] | None = None,
         title: str | None = None) -> Any:
    """Plot the histories of one or more results: loss, violation and KKT norms.

    Parameters
    ----------
    results : OptimizeResult or sequence of them
    xaxis : {"iteration", "seconds", "evaluations"}
        What the horizontal axes show.
    labels : sequence of str, optional
        One legend entry per result (default: the method names).
    path : str or path, optional
        Also save the figure there (PNG by the suffix).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Four panels; norms on log scales, where exact zeros (the violation of
        a method whose iterates satisfy the constraints) are not drawn; the
        loss on a log scale too when it stays positive.

    Raises
    ------
    ImportError
        matplotlib is not installed (``pip install "lagrad[plot]"``).
    OptionError
        ``xaxis`` is not one of "iteration", "seconds", "evaluations".
    """
    if xaxis not in AXES:
        raise OptionError(f"xaxis={xaxis!r}; choose one of {list(AXES)}")
    try:
        import matplotlib.figure
    except ImportError as err:
        raise ImportError("lagrad.optimize.plot needs matplotlib: "
                          'pip install "lagrad[plot]"') from err
    runs = [results] if isinstance(results, OptimizeResult) else list(results)
    names = list(labels) if labels is not None else [r.method for r in runs]
    fig = matplotlib.figure.Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, (field, label) in zip(axes, PANELS):
        values = [run.column(field) for run in runs]
        log = field != "loss" or all(np.all(v > 0) for v in values)
        for run, name, y in zip(runs, names, values):
            if log:  # an exact zero (a feasible iterate) has no place on a log axis
                y = np.where(y > 0, y, np.nan)
            ax.plot(run.column(xaxis), y, marker=".", label=name)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(xaxis)
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
