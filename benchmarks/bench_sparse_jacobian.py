"""Sparse Jacobians by colouring against the dense Jacobian.

Run as ``python benchmarks/bench_sparse_jacobian.py [--quick] [--out DIR]``
(the same as ``lagrad bench --only sparsejac``).

Problems (see :mod:`lagrad.bench.sparsejac`): a diagonal one, f(x) = sin(x) x
+ x^2, and a banded one, f(x)_i = x_{i+2} - 2 sin(x_{i+1}) + x_i^3, for n up
to 10^4 input entries. Each call ``jacobian(fn, sparse=True)(x)`` and
``jacobian(fn, mode="forward")(x)`` is timed whole (tracing, forward solve,
derivative solves), as interleaved medians; the table reports problem size,
the number of solves (colours for the sparse Jacobian, n for the dense one),
the ratio dense / sparse, and the sparse result's error against the dense one.
The target is a ratio >= 100 at n = 10^4.
"""

from __future__ import annotations

import os

# single-threaded BLAS unless the caller says otherwise (see bench_core.py);
# must happen before numpy is imported
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from lagrad.bench import main as bench_main  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """``--quick`` and ``--out DIR`` as for ``lagrad bench``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return bench_main(["--only", "sparsejac", *args])


if __name__ == "__main__":
    sys.exit(main())
