"""The benchmark suite of ``lagrad bench``, runnable from a checkout.

``python benchmarks/bench_suite.py [--quick] [--only NAME] [--out DIR]`` is
``lagrad bench ...``; the workloads live in :mod:`lagrad.bench`.
"""

from __future__ import annotations

import os
import sys

# one BLAS thread before numpy loads (lagrad.bench.main also pins it afterwards)
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from lagrad.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
