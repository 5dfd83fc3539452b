"""The ``lagrad`` command: ``lagrad demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from .examples import worked_example, worked_example_derivative


def demo(x: float = 0.5) -> int:
    """Walk through MATH.md section 6 with the library and print every step."""
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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lagrad", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="the worked example of MATH.md, step by step")
    p_demo.add_argument("--x", type=float, default=0.5, help="the input (default 0.5)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.x)
    return 2  # pragma: no cover (argparse rejects other commands)


if __name__ == "__main__":
    sys.exit(main())
