"""Pictures of programs, systems and solver convergence (the ``plot`` extra).

Everything here draws with matplotlib, imported only when a picture is made:
without it the drawing functions raise :class:`MissingExtraError`, which says
to ``pip install "lagrad[plot]"``. Each function returns the matplotlib
Figure. Given ``path`` it also writes a PNG there; the figure is then a plain
``matplotlib.figure.Figure`` that no GUI backend (and no ``pyplot`` state)
ever sees. Given ``ax``, it draws into that Axes. Without either, the figure
comes from ``pyplot`` (so ``plt.show()`` shows it); on a headless machine with
no backend chosen, the non-interactive "Agg" backend is selected first.
Nothing here calls ``plt.show()``.

* :func:`draw_program`: the dependency graph, layered left to right by level;
* :func:`spy_system`: the system matrix in program and in block order;
* :func:`plot_forward_convergence`, :func:`plot_adjoint_convergence`,
  :func:`plot_unrolled`: residual and error curves;
* :func:`save_program_plots`, :func:`save_study_plots`: the PNG files written
  by ``lagrad demo --plot DIR`` and ``lagrad study NAME --plot DIR``.

The data behind the pictures needs no matplotlib: :func:`program_layout`
(levels and positions) and :func:`adjoint_residual_histories`.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from lagrad.errors import LagradError
from lagrad.ir.program import Program

__all__ = ["MissingExtraError", "require_matplotlib", "ProgramLayout", "program_layout",
           "draw_program", "ADJOINT_METHODS", "FORWARD_METHODS"]
# spy_system is in lagrad.study.plot_spy; plot_forward_convergence,
# plot_adjoint_convergence, plot_unrolled, adjoint_residual_histories,
# save_program_plots and save_study_plots in lagrad.study.plot_curves: all are
# reachable from here too (module __getattr__ at the end: imported on first use,
# as those modules import this one)

Array = NDArray[np.float64]
ADJOINT_METHODS = ("fixed_point", "gmres", "bicgstab")
FORWARD_METHODS = ("newton", "fixed_point", "anderson")
DPI = 150
ZERO_FLOOR = 1e-17  # where a log axis shows a residual or error that is exactly 0
# colours: inputs, acyclic defined variables, then one per cyclic block
INPUT_COLOUR, INPUT_EDGE = "#c6dbef", "#3a6ea5"
PLAIN_COLOUR, PLAIN_EDGE = "#eeeeee", "#555555"
BLOCK_COLOURS = ("#e6550d", "#31a354", "#756bb1", "#d62728", "#8c564b", "#e377c2",
                 "#bcbd22", "#17becf")
METHOD_STYLES = {"newton": ("#d62728", "o"), "fixed_point": ("#1f77b4", "."),
                 "anderson": ("#2ca02c", "s"), "gmres": ("#9467bd", "^"),
                 "bicgstab": ("#ff7f0e", "v"), "lgmres": ("#8c564b", "x")}


class MissingExtraError(LagradError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def require_matplotlib() -> Any:
    """Import and return matplotlib, or raise :class:`MissingExtraError`."""
    try:
        import matplotlib  # the package itself first: a stale submodule must not hide it
        import matplotlib.figure  # noqa: F401
    except ImportError as err:
        raise MissingExtraError(
            "lagrad's pictures need matplotlib, which is not installed: "
            'pip install "lagrad[plot]" (or pip install matplotlib)') from err
    return matplotlib


def _figure(ax: Any, path: str | os.PathLike[str] | None, figsize: tuple[float, float],
            ncols: int = 1) -> tuple[Any, Any]:
    """(figure, axes) following the module's rules on ``ax`` and ``path``."""
    mpl = require_matplotlib()
    if ax is not None:
        axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        return axes[0].figure, (axes if ncols > 1 else axes[0])
    if path is not None:
        fig = mpl.figure.Figure(figsize=figsize, layout="constrained")
    else:
        chosen = getattr(mpl.rcParams, "_get_backend_or_none", lambda: "unknown")()
        if chosen is None and "matplotlib.pyplot" not in sys.modules and _headless():
            mpl.use("Agg")  # no backend chosen anywhere (rc file, MPLBACKEND, use())
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, (list(axes) if ncols > 1 else axes)


def _headless() -> bool:
    return sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _finish(fig: Any, path: str | os.PathLike[str] | None) -> Any:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return fig


def _light(colour: str, amount: float = 0.6) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


# ------------------------------------------------------------------ layout

@dataclass(frozen=True)
class ProgramLayout:
    """Where :func:`draw_program` puts each node.

    Nodes are variable indices, or ``("block", number)`` for a condensed
    cyclic block. ``feedback`` lists the edges that close cycles (into an
    unknown from its own block, self-loops included); the other edges go
    from a lower level to a higher one.
    """

    graph: nx.DiGraph
    level: dict[Any, int]
    position: dict[Any, tuple[float, float]]
    block: dict[Any, int]  # node -> block number
    cyclic: tuple[int, ...]  # numbers of the cyclic blocks
    feedback: frozenset[tuple[Any, Any]]


def program_layout(program: Program, condense: bool = False) -> ProgramLayout:
    """Levels and positions of the dependency graph, left to right.

    A block (strongly connected component) occupies consecutive levels after
    every block it reads: a one-variable block sits one level after its
    latest parent (its level is the longest path from the inputs); a cyclic
    block, cut at its unknowns, is laid out by longest path inside it. In
    each level nodes are ordered by the barycentre heuristic (mean position
    of their neighbours), which keeps edge crossings few. With ``condense``,
    each cyclic block is one node.

    Examples
    --------
    >>> import lagrad
    >>> p = lagrad.trace(lambda x: lagrad.exp(x) * x, 0.0)
    >>> layout = program_layout(p)
    >>> [layout.level[v.index] for v in p.variables]
    [0, 1, 2]
    """
    blocks = program.blocks
    g = program.graph
    block_of = {v.index: b.number for b in blocks for v in b.variables}
    cyclic = tuple(b.number for b in blocks if b.cyclic)
    unknowns = {v.index for v in program.variables if v.kind == "unknown"}
    if condense:
        g, block_of = _condensed(program, g, block_of, set(cyclic))
    feedback = {(a, b) for a, b in g.edges
                if a == b or (b in unknowns and block_of[a] == block_of[b])}
    cut = nx.DiGraph(g)
    cut.remove_edges_from(feedback)
    while not nx.is_directed_acyclic_graph(cut):  # only unknowns close cycles; be safe
        edge = nx.find_cycle(cut)[-1][:2]
        feedback.add(edge)
        cut.remove_edge(*edge)
    level = _levels(cut, block_of)
    order = _barycentre_order(cut, level, block_of)
    position = {}
    for nodes in order.values():
        for rank, node in enumerate(nodes):
            position[node] = (float(level[node]), (len(nodes) - 1) / 2.0 - rank)
    return ProgramLayout(g, level, position, block_of, cyclic, frozenset(feedback))


def _condensed(program: Program, g: nx.DiGraph, block_of: dict[Any, int],
               cyclic: set[int]) -> tuple[nx.DiGraph, dict[Any, int]]:
    def node(j: int) -> Any:
        return ("block", block_of[j]) if block_of[j] in cyclic else j
    h = nx.DiGraph()
    for j, data in g.nodes(data=True):
        if block_of[j] not in cyclic:
            h.add_node(j, **data)
    for b in cyclic:
        h.add_node(("block", b), name=f"block {b}", kind="block")
    h.add_edges_from((node(a), node(b)) for a, b in g.edges if node(a) != node(b))
    return h, {n: (n[1] if isinstance(n, tuple) else block_of[n]) for n in h.nodes}


def _levels(cut: nx.DiGraph, block_of: dict[Any, int]) -> dict[Any, int]:
    """Block start = after every block it reads; inside, longest path from its sources."""
    members: dict[int, list[Any]] = {}
    for n in cut.nodes:
        members.setdefault(block_of[n], []).append(n)
    inner: dict[Any, int] = {}
    start: dict[int, int] = {}
    width: dict[int, int] = {}
    for b in sorted(members):
        nodes = members[b]
        sub = cut.subgraph(nodes)
        for n in nx.topological_sort(sub):
            inner[n] = max((inner[p] + 1 for p in sub.predecessors(n)), default=0)
        width[b] = 1 + max(inner[n] for n in nodes)
        parents = {block_of[p] for n in nodes for p in cut.predecessors(n)} - {b}
        start[b] = max((start[c] + width[c] for c in parents), default=0)
    return {n: start[block_of[n]] + inner[n] for n in cut.nodes}


def _barycentre_order(cut: nx.DiGraph, level: dict[Any, int], block_of: dict[Any, int],
                      sweeps: int = 4) -> dict[int, list[Any]]:
    def key(n: Any) -> tuple[int, int]:
        return (block_of[n], n[1] if isinstance(n, tuple) else n)
    columns: dict[int, list[Any]] = {}
    for n in sorted(cut.nodes, key=key):
        columns.setdefault(level[n], []).append(n)
    rank = {n: float(i) for nodes in columns.values() for i, n in enumerate(nodes)}
    for sweep in range(sweeps):
        forward = sweep % 2 == 0
        for lev in sorted(columns, reverse=not forward):
            def centre(n: Any, forward: bool = forward) -> float:
                near = list(cut.predecessors(n) if forward else cut.successors(n))
                return float(np.mean([rank[m] for m in near])) if near else rank[n]
            columns[lev].sort(key=lambda n: (centre(n), rank[n]))
            rank.update({n: float(i) for i, n in enumerate(columns[lev])})
    return columns


# ------------------------------------------------------------------ graph

def draw_program(program: Program, ax: Any = None, path: str | os.PathLike[str] | None = None,
                 *, condense: bool | None = None, max_nodes: int = 60,
                 figsize: tuple[float, float] | None = None, title: str | None = None) -> Any:
    """Draw the dependency graph of ``program``, layered left to right.

    Parameters
    ----------
    program : Program
    ax : matplotlib Axes, optional
        Draw into it (default: a new figure).
    path : str or Path, optional
        Also save the figure there as PNG.
    condense : bool, optional
        Draw each cyclic block as one node. Default: when the program has
        more than ``max_nodes`` variables.
    max_nodes : int
        Above this many nodes, only inputs, unknowns, the output and
        condensed blocks are labelled.
    figsize, title : optional
        Figure size in inches (default: from the number of levels and
        nodes per level) and title.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    x is the level (see :func:`program_layout`). Inputs are blue squares,
    unknowns diamonds, the output has a black ring. Each cyclic block has its
    own colour: its nodes, a halo around them, its edges, and its feedback
    edges (dashed, curved: the edges into an unknown that close the cycle).

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from lagrad.examples import worked_example
    >>> fig = draw_program(worked_example(), ax=Figure().subplots())
    >>> fig.axes[0].get_xlabel()
    'level (longest path from the inputs)'
    """
    require_matplotlib()
    n_vars = len(program.variables)
    if condense is None:
        condense = n_vars > max_nodes and any(b.cyclic for b in program.blocks)
    layout = program_layout(program, condense=condense)
    nodes = list(layout.graph.nodes)
    n_levels = 1 + max(layout.level.values(), default=0)
    tallest = max((sum(1 for n in nodes if layout.level[n] == k) for k in range(n_levels)),
                  default=1)
    small = len(nodes) > max_nodes
    if figsize is None:
        figsize = (float(np.clip(1.15 * n_levels + 2.0, 6.0, 22.0)),
                   float(np.clip(0.8 * tallest + 2.2, 3.6, 16.0)))
    fig, ax = _figure(ax, path, figsize)
    colours = {b: BLOCK_COLOURS[k % len(BLOCK_COLOURS)] for k, b in enumerate(layout.cyclic)}
    radius = 5.0 if small else 15.0  # points
    ax.set_xlim(-0.6, n_levels - 0.4)
    ys = [y for _, y in layout.position.values()] or [0.0]
    ax.set_ylim(min(ys) - 0.9, max(ys) + 0.9)
    _draw_edges(ax, layout, colours, radius, small)
    _draw_nodes(ax, program, layout, colours, radius, small)
    if n_levels <= 30:
        ax.set_xticks(range(n_levels))
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=20, integer=True))
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_yticks([])
    ax.set_xlabel("level (longest path from the inputs)")
    ax.set_ylabel("variables of each level")
    n_cyc = len(layout.cyclic)
    what = f"{n_vars} variables, {program.graph.number_of_edges()} edges, " \
           f"{n_cyc} cyclic block{'s' if n_cyc != 1 else ''}"
    if condense:
        what += " (drawn condensed)"
    name = f" of {program.name!r}" if program.name else ""
    ax.set_title(title or f"Dependency graph{name}: {what}")
    _graph_legend(ax, program, layout, colours)
    return _finish(fig, path)


def _node_label(program: Program, layout: ProgramLayout, node: Any) -> tuple[str, str]:
    if isinstance(node, tuple):
        block = program.blocks[node[1]]
        names = ", ".join(v.name for v in block.unknowns)
        return f"B{node[1]}", f"{names}: {len(block.variables)} vars"
    v = program.variables[node]
    eq = program.equation(v)
    what = "" if eq is None or v.kind == "unknown" else eq.primitive.name
    if eq is not None and eq.kind == "root":
        what = "root"
    return v.name, " ".join(t for t in (what, str(v.shape) if v.shape else "") if t)


def _draw_nodes(ax: Any, program: Program, layout: ProgramLayout, colours: dict[int, str],
                radius: float, small: bool) -> None:
    """One scatter per style (fast for thousands of nodes), then the labels."""
    try:
        output: Any = program.output_variable.index
    except LagradError:
        output = None
    size = (2 * radius) ** 2
    groups: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
    for node, xy in layout.position.items():
        kind = layout.graph.nodes[node].get("kind", "defined")
        block = layout.block[node]
        if block in colours:
            face, edge = _light(colours[block], 0.55), colours[block]
            groups.setdefault(("halo", _light(colours[block], 0.75)), []).append(xy)
        elif kind == "input":
            face, edge = INPUT_COLOUR, INPUT_EDGE
        else:
            face, edge = PLAIN_COLOUR, PLAIN_EDGE
        marker = {"input": "s", "unknown": "D"}.get(kind, "o")
        scale = {"D": 0.8, "s": 0.85}.get(marker, 1.0) * (1.6 if kind == "block" else 1.0)
        groups.setdefault(("node", marker, face, edge, scale), []).append(xy)
        if node == output:
            groups.setdefault(("ring",), []).append(xy)
        if not (small and kind == "defined" and node != output):
            _label_node(ax, program, layout, node, radius, small, node == output)
    for key, points in groups.items():
        x, y = np.array(points).T
        if key[0] == "halo":
            ax.scatter(x, y, s=size * 2.6, color=key[1], zorder=1, linewidths=0)
        elif key[0] == "ring":
            ax.scatter(x, y, s=size * 1.9, facecolors="none", edgecolors="black",
                       linewidths=1.6, zorder=3)
        else:
            _, marker, face, edge, scale = key
            ax.scatter(x, y, s=size * scale, marker=marker, color=face, edgecolors=edge,
                       linewidths=1.3, zorder=3, gid="node")


def _label_node(ax: Any, program: Program, layout: ProgramLayout, node: Any, radius: float,
                small: bool, is_output: bool) -> None:
    """The name inside the node (or above it when long), the details below it."""
    x, y = layout.position[node]
    kind = layout.graph.nodes[node].get("kind", "defined")
    name, below = _node_label(program, layout, node)
    fits = len(name) <= 4 and not small
    ax.annotate(name, (x, y), xytext=(0, 0) if fits else (0, radius + 4),
                textcoords="offset points", ha="center", va="center" if fits else "bottom",
                fontsize=8.5 if len(name) <= 3 else 7.5, zorder=4,
                fontweight="bold" if kind in ("input", "unknown") else "normal")
    if below and not small:
        ax.annotate(below, (x, y), xytext=(0, -radius * (1.45 if is_output else 1.2)),
                    textcoords="offset points", ha="center", va="top", fontsize=6.5,
                    color="#444444", zorder=4)


def _draw_edges(ax: Any, layout: ProgramLayout, colours: dict[int, str], radius: float,
                small: bool) -> None:
    from matplotlib.collections import LineCollection

    pos = layout.position
    plain = []
    as_lines = small and layout.graph.number_of_edges() > 300
    for a, b in layout.graph.edges:
        inside = layout.block[a] == layout.block[b] and layout.block[a] in colours
        colour = colours[layout.block[a]] if inside else "#777777"
        if (a, b) in layout.feedback:
            if a == b:  # a root constraint's unknown reads itself
                x, y = pos[a]
                ax.annotate("", xy=(x + 0.12, y + 0.12), xytext=(x - 0.12, y + 0.12),
                            arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.3,
                                            ls="--", connectionstyle="arc3,rad=-1.6"),
                            zorder=2)
                continue
            ax.annotate("", xy=pos[b], xytext=pos[a],
                        arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.5, ls="--",
                                        shrinkA=radius + 2, shrinkB=radius + 2,
                                        connectionstyle="arc3,rad=0.35"), zorder=2)
        elif as_lines:
            plain.append((pos[a], pos[b]))
        else:
            bend = _clear_bend(ax, layout, a, b, radius) if not small else 0.0
            ax.annotate("", xy=pos[b], xytext=pos[a],
                        arrowprops=dict(arrowstyle="-|>", color=colour,
                                        lw=1.3 if inside else 0.9,
                                        shrinkA=radius + 1, shrinkB=radius + 2,
                                        connectionstyle=f"arc3,rad={bend}"), zorder=2)
    if plain:
        ax.add_collection(LineCollection(plain, colors="#999999", linewidths=0.4, zorder=1))


def _clear_bend(ax: Any, layout: ProgramLayout, a: Any, b: Any, radius: float) -> float:
    """The ``arc3`` curvature of the first curve a -> b that misses every other node.

    Works in display units, as matplotlib's ``arc3`` does: the control point
    sits at the chord's midpoint, moved by ``rad`` times the chord along its
    normal; the quadratic Bezier curve is sampled and checked against nodes.
    """
    if layout.level[b] - layout.level[a] <= 1:
        return 0.0
    to_px = ax.transData.transform
    others = [n for n in layout.position if n not in (a, b)
              and layout.level[a] < layout.level[n] < layout.level[b]]
    if not others:
        return 0.0
    centres = to_px(np.array([layout.position[n] for n in others]))
    p0, p2 = to_px(np.array([layout.position[a], layout.position[b]]))
    clearance = 1.6 * radius * ax.figure.dpi / 72.0
    t = np.linspace(0.05, 0.95, 30)[:, None]
    box = ax.bbox
    best, best_gap = 0.0, -1.0
    for rad in (0.0, 0.15, -0.15, 0.3, -0.3, 0.45, -0.45):
        mid = (p0 + p2) / 2 + rad * np.array([p2[1] - p0[1], p0[0] - p2[0]])
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * mid + t ** 2 * p2
        if curve[:, 1].min() < box.y0 or curve[:, 1].max() > box.y1:
            continue  # it would leave the axes
        gap = float(np.min(np.linalg.norm(curve[:, None, :] - centres[None], axis=2)))
        if gap > clearance:
            return rad
        if gap > best_gap:
            best, best_gap = rad, gap
    return best


def _graph_legend(ax: Any, program: Program, layout: ProgramLayout,
                  colours: dict[int, str]) -> None:
    from matplotlib.lines import Line2D

    def marker(m: str, face: Any, edge: str, label: str, size: float = 9) -> Any:
        return Line2D([], [], ls="", marker=m, markersize=size, markerfacecolor=face,
                      markeredgecolor=edge, label=label)
    kinds = {layout.graph.nodes[n].get("kind") for n in layout.graph.nodes}
    handles = [marker("s", INPUT_COLOUR, INPUT_EDGE, "input"),
               marker("o", PLAIN_COLOUR, PLAIN_EDGE, "defined (acyclic)")]
    if "unknown" in kinds:
        handles.append(marker("D", "white", "#333333", "unknown (closes a cycle)", 8))
    handles.append(marker("o", "none", "black", "output", 12))
    for b, colour in colours.items():
        block = program.blocks[b]
        handles.append(marker("o", _light(colour, 0.55), colour,
                              f"cyclic {block.name}: {len(block.variables)} variables, "
                              f"{block.size} entries"))
    if layout.feedback:
        handles.append(Line2D([], [], color="#333333", ls="--", lw=1.4,
                              label="feedback edge (into an unknown)"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncol=min(3, len(handles)), fontsize=8, frameon=False)


_ELSEWHERE = {"spy_system": "lagrad.study.plot_spy",
              **{name: "lagrad.study.plot_curves" for name in (
                  "plot_forward_convergence", "plot_adjoint_convergence", "plot_unrolled",
                  "plot_backward", "adjoint_residual_histories", "save_program_plots",
                  "save_study_plots")}}


def __getattr__(name: str) -> Any:
    """The pictures defined in the sibling modules, as attributes of this one."""
    module = _ELSEWHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
