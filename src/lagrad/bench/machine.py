"""The machine a benchmark ran on, and BLAS pinned to one thread.

On a small shared machine a second BLAS thread waiting for a busy core turns a
2 ms matrix product into 30 ms: the benchmark measures lagrad, not thread
scheduling. The environment variables only act before numpy is imported, so
:func:`pin_blas_threads` also limits every BLAS library already loaded (numpy
and scipy each ship one) through threadpoolctl.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy
import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, which pin_blas_threads sets)
from threadpoolctl import threadpool_info, threadpool_limits

import lagrad

__all__ = ["pin_blas_threads", "blas_threads", "describe_machine", "machine_line",
           "BLAS_THREAD_VARIABLES"]

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def blas_threads() -> dict[str, int]:
    """Threads of each loaded BLAS library, by file name (threadpoolctl)."""
    return {os.path.basename(info["filepath"]): int(info["num_threads"])
            for info in threadpool_info() if info.get("user_api") == "blas"}


def pin_blas_threads(n: int = 1) -> dict[str, int]:
    """Use ``n`` BLAS threads from now on (also in child processes, unless the
    caller set the variables); returns the threads per library afterwards."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, str(n))
    threadpool_limits(limits=int(n), user_api="blas")  # kept: never restored
    return blas_threads()


def _threads() -> list[int]:
    """The ids of this process's threads (Linux), or [0]: the calling one."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _pin(cpus: set[int]) -> None:
    for tid in _threads():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:  # the thread ended meanwhile
            continue


@contextmanager
def one_core() -> Iterator[int | None]:
    """Run the body on one CPU (Linux): every thread of the process, those a
    library started already included, and those started inside, which inherit
    it. A library that starts threads of its own (XLA does, whatever its flags
    say) then gets one core's time, as BLAS does by :func:`pin_blas_threads`.
    Yields the CPU, or None where affinity cannot be set; every thread gets the
    previous affinity back afterwards."""
    get = getattr(os, "sched_getaffinity", None)
    if get is None or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = set(get(0))
    cpu = min(before)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        yield None
        return
    _pin({cpu})
    try:
        yield cpu
    finally:
        _pin(before)


def describe_machine() -> dict[str, Any]:
    """CPU, cores, OS, versions and BLAS threads, for the report and the JSON."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        if names:
            cpu = f"{names[0]} ({platform.machine()})"
    except OSError:
        pass
    affinity = getattr(os, "sched_getaffinity", None)
    memory = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    memory = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "uname": " ".join(platform.uname()[:3]),
            "cpus": len(affinity(0)) if affinity else os.cpu_count(),
            "memory_gib": memory, "load_average": load,
            "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "lagrad": lagrad.__version__,
            "blas_threads": blas_threads(),
            "blas_env": {k: os.environ.get(k) for k in BLAS_THREAD_VARIABLES}}


def machine_line(info: dict[str, Any]) -> str:
    """One or two lines describing the machine."""
    load = info.get("load_average")
    load_text = f", load {load[0]:.2f}" if load else ""
    threads = ", ".join(f"{k.split('-')[0]}={v}" for k, v in info["blas_threads"].items())
    return (f"machine: {info['cpu']}, {info['cpus']} CPUs, {info['memory_gib']} GiB, "
            f"{info['uname']}{load_text}\n"
            f"python {info['python']}, numpy {info['numpy']}, scipy {info['scipy']}, "
            f"lagrad {info['lagrad']}; BLAS threads: {threads or 'unknown'}")
