"""The ``lagrad`` command: ``lagrad demo [--plot DIR]``, ``lagrad study NAME [--plot DIR]``,
``lagrad bench [--quick] [--only NAME] [--out DIR]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lagrad import __version__
from lagrad.errors import LagradError
from lagrad.examples import worked_example, worked_example_derivative


def demo(x: float = 0.5, plot_dir: str | None = None) -> int:
    """Walk through the worked example of the Lagrangian view and print every step.

    With ``plot_dir``, also write graph.png and spy.png there.
    """
    if plot_dir is not None and not _can_plot():
        return 1
    program = worked_example()
    print("f(x) = exp(exp(x) + exp(x)^2) + sin(exp(x) + exp(x)^2)\n")
    print("The program (one equation z_i = f_i(z_alpha(i)) per line):")
    print(program)
    sol = program.solve(x)
    print(f"\nForward pass (dL/dlambda = 0) at x = {x}:")
    for v in program.variables:
        print(f"  {v.name:>4} = {float(sol[v]): .12g}")
    system = sol.adjoint_system()
    names = [v.name for v in program.variables]
    print("\nThe multiplier system (I - J)^T lambda = e_n, assembled:")
    with np.printoptions(precision=4, suppress=True, linewidth=120):
        print("      " + "".join(f"{n:>10}" for n in names))
        for n, row in zip(names, system.matrix.toarray()):
            print(f"{n:>6}" + "".join(f"{v:10.4g}" for v in row))
        print("   e_n" + "".join(f"{v:10.4g}" for v in system.rhs))
    lam, info = system.solve("backsub")
    print(f"\nMultipliers by back-substitution ({info.method}, residual {info.residual:.1e}):")
    for n, value in zip(names, lam):
        print(f"  lambda_{n:<4} = {value: .12g}")
    g = float(sol.grad())
    exact = worked_example_derivative(x)
    print(f"\nGradient  d out/dx = lambda_x = {g:.15g}")
    print(f"Analytic  f'(x)               = {exact:.15g}")
    print(f"Relative difference           = {abs(g - exact) / abs(exact):.1e}")
    kkt = sol.kkt_residuals()
    print(f"\nKKT residuals: |dL/dlambda| = {kkt.dL_dlambda:.1e}, |dL/dz| = {kkt.dL_dz:.1e}")
    print(f"Lagrangian at the solution = {sol.lagrangian():.12g} (the output: "
          f"{float(sol.output):.12g})")
    if plot_dir is not None:
        from lagrad.study.plot_curves import save_program_plots

        title = "The worked example: f(x) = exp(exp(x) + exp(x)^2) + sin(exp(x) + exp(x)^2)"
        _print_paths(save_program_plots(program, system, plot_dir, title=title))
    return 0


def _can_plot() -> bool:
    """True if matplotlib imports; otherwise say which extra to install."""
    from lagrad.study.plot import MissingExtraError, require_matplotlib

    try:
        require_matplotlib()
    except MissingExtraError as err:
        print(f"lagrad: {err}", file=sys.stderr)
        return False
    return True


def _print_paths(paths: Sequence[Any]) -> None:
    print("\nPictures written:")
    for path in paths:
        print(f"  {path}")


def study_command(name: str | None, list_only: bool, plot_dir: str | None = None) -> int:
    """``lagrad study NAME [--plot DIR]`` / ``lagrad study --list``."""
    from lagrad.examples import EXAMPLES
    from lagrad.study.examples import study
    from lagrad.study.studies import STUDIES, SUMMARIES

    if list_only or name is None:
        print("Cyclic examples (solvers, diagnostics, unrolled baseline):")
        for key, make in EXAMPLES.items():
            doc = (make.__doc__ or "").strip().splitlines()[0]
            print(f"{key:<10} {doc}")
        print("\nWorked studies (each against an independent reference):")
        for key, summary in SUMMARIES.items():
            print(f"{key:<10} {summary}")
        return 0
    if name not in EXAMPLES and name not in STUDIES:
        print(f"lagrad study: unknown example {name!r}; choose one of "
              f"{sorted(EXAMPLES) + sorted(STUDIES)}", file=sys.stderr)
        return 2
    if plot_dir is not None and not _can_plot():
        return 1
    if name in STUDIES:
        if plot_dir is not None:
            Path(plot_dir).mkdir(parents=True, exist_ok=True)
        try:
            result = STUDIES[name](plot_dir=plot_dir)
        except LagradError as err:  # a missing optional dependency (scikit-learn)
            print(f"lagrad study {name}: {err}", file=sys.stderr)
            return 1
        if result["paths"]:
            _print_paths(result["paths"])
        return 0
    example = EXAMPLES[name]()
    result = study(example)
    if plot_dir is not None:
        from lagrad.study.plot_curves import save_study_plots

        _print_paths(save_study_plots(example, plot_dir, rows=result["unrolled"],
                                      backward=result["backward"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lagrad", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lagrad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="the worked example of the Lagrangian view, step by step")
    p_demo.add_argument("--x", type=float, default=0.5, help="the input (default 0.5)")
    p_demo.add_argument("--plot", metavar="DIR", help="also write graph.png and spy.png into "
                                                      "DIR (needs the plot extra)")
    p_study = sub.add_parser("study", help="solvers, diagnostics and the unrolled baseline "
                                           "on a cyclic example, or a worked study")
    p_study.add_argument("name", nargs="?", help="the example (see --list)")
    p_study.add_argument("--list", action="store_true", help="list the examples")
    p_study.add_argument("--plot", metavar="DIR", help="also write graph.png, spy.png, "
                         "forward_convergence.png, adjoint_convergence.png, unrolled.png and "
                         "backward_modes.png into DIR for an example, or the study's "
                         "pictures (needs the plot extra)")
    sub.add_parser("bench", add_help=False,
                   help="the benchmark suite (lagrad bench --help for its options)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the suite parses its own options
        from lagrad.bench import main as bench_main

        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.x, args.plot)
    if args.command == "study":
        return study_command(args.name, args.list, args.plot)
    return 2  # pragma: no cover (argparse rejects other commands)


if __name__ == "__main__":
    sys.exit(main())
