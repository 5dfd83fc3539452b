"""Log-log PNG plots of a run's results (needs matplotlib: the ``plot`` extra)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["write_plots", "PLOTS"]

# workload -> (x key, how series are formed, y), y in seconds
#   ("columns", [(key, label), ...]): one series per column
#   ("method", key): one series per value of row["method"]
PLOTS: dict[str, tuple[str, str, Any]] = {
    "scaling": ("n", "columns", [("gradient_s", "lagrad forward + gradient"),
                                 ("forward_s", "lagrad forward"),
                                 ("floor_gradient_s", "numpy floor forward + gradient"),
                                 ("floor_forward_s", "numpy floor forward"),
                                 ("build_s", "lagrad build")]),
    "modes": ("d", "columns", [("reverse_s", "reverse (lagrad)"),
                               ("forward_mode_s", "forward mode (d tangent solves)"),
                               ("finite_differences_s", "finite differences (2d solves)"),
                               ("path_sum_s", "path sum (flat formula)"),
                               ("floor_s", "numpy backprop floor")]),
    "paths": ("depth", "columns", [("reverse_s", "reverse (lagrad)"),
                                   ("forward_mode_s", "forward mode"),
                                   ("path_sum_s", "path sum (flat formula)"),
                                   ("floor_s", "hand-written chain rule")]),
    "mlp": ("batch", "columns", [("gradient_s", "lagrad forward + gradient"),
                                 ("forward_s", "lagrad forward"),
                                 ("floor_gradient_s", "numpy forward + backprop"),
                                 ("floor_forward_s", "numpy forward")]),
    "deq": ("N", "method", "gradient_s"),
    "pagerank": ("m", "method", "gradient_s"),
    "blocks": ("B", "method", "gradient_s"),
    "sparsejac": ("n", "method", "jacobian_s"),
    "jacobian": ("rows", "method", "seconds"),
    "peers": ("size", "series", "seconds"),
}


def _series(rows: list[dict[str, Any]], x: str, how: str, y: Any
            ) -> list[tuple[str, list[float], list[float]]]:
    out = []
    if how == "columns":
        for key, label in y:
            pts = [(r[x], r[key]) for r in rows
                   if isinstance(r.get(x), (int, float)) and isinstance(r.get(key), (int, float))]
            if pts:
                out.append((label, [p[0] for p in pts], [p[1] for p in pts]))
        return out
    names: list[str] = []
    for r in rows:
        if r.get(how) is not None and r[how] not in names:
            names.append(r[how])
    for name in names:
        pts = [(r[x], r[y]) for r in rows if r.get(how) == name
               and isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))]
        if pts:
            out.append((str(name), [p[0] for p in pts], [p[1] for p in pts]))
    return out


# peers: one colour per library in every panel
PEER_COLOURS = {"jax": "tab:orange", "jaxopt": "tab:green", "autograd": "tab:red",
                "torch": "tab:purple", "casadi": "tab:brown"}


def _style(label: str, k: int, colors: Any) -> dict[str, Any]:
    """Floors black or grey and dashed, lagrad's default thick blue, each peer
    library its own colour."""
    colour = PEER_COLOURS.get(label.split(" ", 1)[0], colors[(k + 2) % len(colors)])
    style: dict[str, Any] = {"marker": "o", "color": colour}
    if "floor" in label or "hand-written" in label or label.startswith("numpy"):
        forward_only = "forward" in label and "gradient" not in label and "backprop" not in label
        style.update(color="gray" if forward_only else "black",
                     linestyle=":" if forward_only else "--")
    elif label.startswith(("default", "lagrad forward + gradient", "reverse")) or \
            (label.startswith("lagrad ") and "forward" not in label):  # peers: "lagrad deq"
        style.update(color="tab:blue", linewidth=2.5)
    elif label.startswith("unrolled"):
        style.update(linestyle=":")
    return style


def _draw_lines(ax: Any, series: list[tuple[str, list[float], list[float]]], x: str,
                log_x: bool, colors: Any) -> None:
    for k, (label, xs, ys) in enumerate(series):
        ax.plot(xs, ys, label=label, **_style(label, k, colors))
    ax.set_yscale("log")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("seconds (median)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _ms(value: float) -> str:
    """Milliseconds with three significant digits, without an exponent."""
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def _draw_bars(ax: Any, series: list[tuple[str, list[float], list[float]]], x: str,
               colors: Any) -> None:
    """One size only: a bar per series, labelled with its time (dots on a log
    axis would say nothing)."""
    labels = [label for label, _, _ in series]
    ms = [ys[0] * 1e3 for _, _, ys in series]
    bar_colors = [_style(label, k, colors)["color"] for k, label in enumerate(labels)]
    ax.barh(range(len(ms)), ms, color=bar_colors)
    ax.set_yticks(range(len(ms)), labels, fontsize=8)
    ax.invert_yaxis()
    for k, value in enumerate(ms):
        ax.annotate(f" {_ms(value)} ms", (value, k), va="center", fontsize=8)
    ax.set_xlabel(f"milliseconds (median) at {x} = {series[0][1][0]:g}")
    if min(ms) > 0 and max(ms) / min(ms) > 50:  # a linear axis would hide the short bars
        ax.set_xscale("log")
        ax.set_xlim(min(ms) / 2, max(ms) * 8)
    else:
        ax.set_xlim(0, max(ms) * 1.25)
    ax.grid(True, axis="x", alpha=0.3)


def _panels(rows: list[dict[str, Any]], name: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """The peers workload: one panel per problem (deq, mlp, ...), so that each
    legend holds lagrad and its peers on that problem only."""
    if name != "peers":
        return [("", rows)]
    problems: list[str] = []
    for r in rows:
        if r.get("problem") is not None and r["problem"] not in problems:
            problems.append(r["problem"])
    return [(str(p), [r for r in rows if r.get("problem") == p]) for p in problems]


def write_plots(results: Mapping[str, Any], directory: str) -> list[str]:
    """One PNG per workload in ``directory``; returns lines saying what was written
    or why plots were skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["plots skipped: matplotlib is not installed (pip install 'lagrad[plot]')"]
    lines = []
    colors = plt.get_cmap("tab20").colors
    for name, entry in results["workloads"].items():
        if name not in PLOTS or not entry.get("rows"):
            continue
        x, how, y = PLOTS[name]
        panels = [(title, _series(rows, x, how, y)) for title, rows in _panels(entry["rows"], name)]
        panels = [(title, series) for title, series in panels if series]
        if not panels:
            lines.append(f"plot {name}: nothing to plot")
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels) ** 0.5 + 2, 4.5),
                                 squeeze=False)
        for ax, (title, series) in zip(axes[0], panels):
            if all(len(xs) == 1 for _, xs, _ in series) and \
                    len({xs[0] for _, xs, _ in series}) == 1:
                _draw_bars(ax, series, x, colors)
            else:
                _draw_lines(ax, series, x, name != "paths", colors)  # paths: 2^depth is a line
            ax.set_title(title or f"lagrad bench: {name} ({results.get('level', '')} run)",
                         fontsize=10)
        fig.tight_layout()
        path = os.path.join(directory, f"{name}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        lines.append(f"wrote {path}")
    return lines
