from __future__ import annotations

import os

# One BLAS thread: on a 2-core machine OpenBLAS threads fighting over cores make
# small dense solves 100x slower. Effective when numpy is not imported yet.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
