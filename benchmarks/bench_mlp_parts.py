"""Where the MLP gradient (the ``mlp`` workload's problem) spends its time
beside its numpy floor: lagrad's generated forward steps and multiplier
sweep, and the Python of ``program.solve`` around them, against the floor's
forward pass and its backward pass (the floor's gradient minus its forward),
all timed interleaved in one process; and the same gradient with the
cotangents of tanh made by the partials rule (a second program traced while
``codeinline.PARTIALS_IN_PLACE`` is empty), as the generated code did before
it made them in place.

Run: ``python benchmarks/bench_mlp_parts.py [ROUNDS]`` (default 300; BLAS on
one thread). Prints the median of each part in ms.
"""

from __future__ import annotations

import sys

import lagrad
from lagrad.bench.core import time_calls
from lagrad.bench.machine import pin_blas_threads
from lagrad.bench.mlp import lagrad_loss, make_mlp, numpy_gradient, numpy_loss
from lagrad.compile import compile_program
from lagrad.solve import codeinline
from lagrad.solve.codegen import SWEEP_AFTER


def main(rounds: int = 300) -> None:
    pin_blas_threads(1)
    data, labels, params = make_mlp((784, 256, 256, 10), 128)
    saved = dict(codeinline.PARTIALS_IN_PLACE)
    codeinline.PARTIALS_IN_PLACE.clear()
    try:  # the generated code is made after SWEEP_AFTER gradients
        by_rule = lagrad.trace(lagrad_loss(data, labels), *params)
        for _ in range(SWEEP_AFTER + 2):
            by_rule.solve(*params).grad()
    finally:
        codeinline.PARTIALS_IN_PLACE.update(saved)
    program = lagrad.trace(lagrad_loss(data, labels), *params)
    for _ in range(SWEEP_AFTER + 2):
        program.solve(*params).grad()
    extras = compile_program(program).extras
    forward, sweep = extras.get("forward_code"), extras.get("sweep")
    if not forward or not sweep:
        raise SystemExit("the generated forward code or sweep was not made")
    z = program.solve(*params).z
    times = time_calls({
        "lagrad solve + grad": lambda: program.solve(*params).grad(),
        "... partials by rule": lambda: by_rule.solve(*params).grad(),
        "lagrad solve": lambda: program.solve(*params),
        "generated forward": lambda: forward(z, {}),
        "generated sweep": lambda: sweep(z, {}),
        "floor forward": lambda: numpy_loss(data, labels, params),
        "floor gradient": lambda: numpy_gradient(data, labels, params),
    }, repeats=rounds, budget=1e9)  # every round runs
    ms = {name: t.median * 1e3 for name, t in times.items()}
    for name, value in ms.items():
        print(f"{name:22s} {value:7.3f} ms")
    print(f"{'floor backward':22s} {ms['floor gradient'] - ms['floor forward']:7.3f} ms "
          "(gradient minus forward)")
    print(f"{'solve around forward':22s} {ms['lagrad solve'] - ms['generated forward']:7.3f} ms")
    print(f"lagrad / floor: {ms['lagrad solve + grad'] / ms['floor gradient']:.3f}")
    print(f"in place / by rule: {ms['lagrad solve + grad'] / ms['... partials by rule']:.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
