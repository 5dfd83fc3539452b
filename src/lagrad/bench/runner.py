"""``lagrad bench``: run the workloads, print their tables, check the targets,
write results.json and plots."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from .blocks import blocks
from .core import SIZES, Context
from .deq import deq
from .machine import describe_machine, machine_line, pin_blas_threads
from .markdown import to_markdown
from .mlp import mlp
from .modes import modes, paths
from .multirhs import jacobian
from .pagerank import pagerank
from .peers import peers
from .plots import write_plots
from .scaling import scaling
from .sparsejac import sparsejac
from .summary import format_summary
from .targets import check_targets, format_targets

__all__ = ["main", "run", "WORKLOADS"]


def _workloads() -> dict[str, Callable[[Context], list[dict[str, Any]]]]:
    return {"scaling": scaling, "modes": modes, "paths": paths, "mlp": mlp, "deq": deq,
            "pagerank": pagerank, "blocks": blocks, "sparsejac": sparsejac,
            "jacobian": jacobian, "peers": peers}


WORKLOADS = ("scaling", "modes", "paths", "mlp", "deq", "pagerank", "blocks", "sparsejac",
             "jacobian", "peers")
"""Workload names, in the order a full run takes them."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lagrad bench",
        description="Benchmarks: lagrad against hand-written numpy/scipy floors, naive "
                    "baselines and peers. Prints one table per workload and checks the "
                    "targets set for each workload.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes and fewer repeats (under 2 minutes)")
    parser.add_argument("--only", metavar="NAME", action="append", default=None,
                        help="run only this workload (repeatable, or comma-separated): "
                             + ", ".join(WORKLOADS))
    parser.add_argument("--out", metavar="DIR",
                        help="write results.json, the tables as Markdown (tables.md) and, "
                             "with matplotlib, PNG plots to DIR")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per measurement (default: 3 quick, 7 full)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds one call may take before larger sizes of that method "
                             "are skipped (default: 2.5 quick, 120 full)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # for tests
    return parser


def _select(parser: argparse.ArgumentParser, only: list[str] | None) -> list[str]:
    if not only:
        return list(WORKLOADS)
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    return [n for n in WORKLOADS if n in names]


def _jsonable(value: Any) -> Any:
    """Rows hold numbers, strings, booleans and None; numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, float) and math.isnan(value):  # NaN is not JSON
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def run(names: Sequence[str], ctx: Context) -> dict[str, Any]:
    """Run the named workloads; returns the results (as written to results.json)."""
    info = describe_machine()
    ctx.print(machine_line(info))
    ctx.print(f"run: {ctx.level}, median of up to {ctx.repeats} interleaved repeats, "
              f"budget {ctx.budget:g} s per call; workloads: {', '.join(names)}\n")
    table = _workloads()
    results: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        ctx.progress(f"{name}: start")
        try:
            rows = table[name](ctx)
            error = None
        except Exception as err:  # noqa: BLE001 (a failing workload is reported; the rest run)
            rows = []
            error = f"{type(err).__name__}: {err}"
            ctx.print(f"{name}: FAILED with {error}")
            traceback.print_exc(file=sys.stderr)
        seconds = time.perf_counter() - t0
        results[name] = {"rows": rows, "seconds": seconds, "error": error}
        ctx.progress(f"{name}: done in {seconds:.1f} s")
        ctx.print()
    summary = format_summary(results)
    if summary:
        ctx.print(summary + "\n")
    targets = check_targets(results, ctx.level)
    ctx.print(format_targets(targets))
    total = time.perf_counter() - ctx.started
    ctx.print(f"\ntotal {total:.1f} s")
    return _jsonable({"format": 1, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                      "level": ctx.level, "repeats": ctx.repeats, "budget": ctx.budget,
                      "machine": info, "workloads": results, "targets": targets,
                      "seconds": total})


def main(argv: Sequence[str] | None = None) -> int:
    """``lagrad bench [--quick] [--only NAME] [--out DIR]``; returns the exit status
    (0, or 1 when a workload failed)."""
    parser = _parser()
    args = parser.parse_args(argv)
    names = _select(parser, args.only)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.budget is not None and not args.budget > 0:
        parser.error(f"--budget must be positive, got {args.budget}")
    level = "tiny" if args.tiny else "quick" if args.quick else "full"
    pin_blas_threads(1)
    ctx = Context(level=level, repeats=args.repeats, budget=args.budget)
    assert set(SIZES["repeats"]) >= {level}
    results = run(names, ctx)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "results.json")
        with open(path, "w") as fh:
            json.dump(results, fh, indent=1)
        tables = os.path.join(args.out, "tables.md")
        with open(tables, "w") as fh:
            fh.write(to_markdown("\n".join(ctx.transcript)) + "\n")
        ctx.print(f"wrote {path}")
        ctx.print(f"wrote {tables}")

        for line in write_plots(results, args.out):
            ctx.print(line)
    failed = [n for n, r in results["workloads"].items() if r["error"]]
    return 1 if failed else 0
