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
    for name, entry in results["workloads"].items():
        if name not in PLOTS or not entry.get("rows"):
            continue
        x, how, y = PLOTS[name]
        series = _series(entry["rows"], x, how, y)
        if not series:
            lines.append(f"plot {name}: nothing to plot")
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        colors = plt.get_cmap("tab20").colors
        for k, (label, xs, ys) in enumerate(series):
            style: dict[str, Any] = {"marker": "o", "color": colors[(k + 2) % len(colors)]}
            if "floor" in label or "hand-written" in label or label.startswith("numpy"):
                forward_only = "forward" in label and "gradient" not in label \
                    and "backprop" not in label
                style.update(color="gray" if forward_only else "black",
                             linestyle=":" if forward_only else "--")
            elif label.startswith(("default", "lagrad forward + gradient", "reverse")):
                style.update(color="tab:blue", linewidth=2.5)
            elif label.startswith("unrolled"):
                style.update(linestyle=":")
            ax.plot(xs, ys, label=label, **style)
        ax.set_yscale("log")
        if name != "paths":  # depth on a linear axis: 2^depth shows as a line
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel("seconds (median)")
        ax.set_title(f"lagrad bench: {name} ({results.get('level', '')} run)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(directory, f"{name}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        lines.append(f"wrote {path}")
    return lines
