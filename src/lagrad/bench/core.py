"""What every workload shares: the run context, timing, time budgets, tables.

Timing conventions (all workloads):

* every call is run once untimed first (warm-up; its result is kept to check
  correctness, and its time says whether repeats fit the budget);
* the calls compared with each other (lagrad's default and the numpy/scipy
  floor; each named method and the default) are then timed *interleaved*,
  round after round, so that they all see the same machine load, and the
  median of each is reported;
* a gradient time always includes the forward pass.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import lagrad

__all__ = ["Context", "Timing", "Guard", "Attempt", "attempt", "beside_ratio", "BESIDE",
           "time_calls", "format_table", "Column",
           "peak_memory", "relative_error", "keep", "SIZES"]

FAST_SECONDS = 1.0  # time_calls: target time of the timed rounds of fast calls
FAST_ROUNDS = 5  # ... with at most this many times the requested repeats

# sizes by run level; "tiny" is for the tests (hidden --tiny option)
SIZES: dict[str, dict[str, Any]] = {
    "repeats": {"tiny": 2, "quick": 3, "full": 7},
    # a single timed call longer than this at one size skips that method at the
    # larger sizes (predicted from its growth); a workload also stops adding
    # repeats once its calls take this long in total
    "budget": {"tiny": 2.0, "quick": 2.5, "full": 120.0},
    # the same for one-off costs: building a program and its first gradient
    "build_budget": {"tiny": 2.0, "quick": 10.0, "full": 600.0},
    # the timed rounds of a comparison a target is read from (lagrad's default
    # against its floor or a peer): at least this, so that even a call of a
    # second gets the requested repeats (a budget of 5 s gave a DEQ at N = 3000
    # two rounds, and its floor ratio moved by 20% from run to run)
    "comparison_budget": {"tiny": 2.0, "quick": 5.0, "full": 60.0},
}


@dataclass
class Context:
    """Run settings and output channels of one benchmark run."""

    level: str = "quick"  # "tiny", "quick" or "full"
    repeats: int | None = None
    budget: float | None = None
    stream: Any = None  # where tables go (default sys.stdout)
    progress_stream: Any = None  # where progress lines go (default sys.stderr)
    started: float = field(default_factory=time.perf_counter)
    transcript: list[str] = field(default_factory=list)  # every printed line, for tables.md

    def __post_init__(self) -> None:
        if self.level not in SIZES["repeats"]:
            raise ValueError(f"unknown level {self.level!r}")
        if self.repeats is None:
            self.repeats = SIZES["repeats"][self.level]
        if self.budget is None:
            self.budget = SIZES["budget"][self.level]

    def pick(self, sizes: Mapping[str, Any]) -> Any:
        """The entry of ``sizes`` (keys tiny/quick/full) for this run."""
        return sizes[self.level]

    def progress(self, message: str) -> None:
        stream = self.progress_stream or sys.stderr
        print(f"[{time.perf_counter() - self.started:7.1f} s] {message}", file=stream,
              flush=True)

    def print(self, text: str = "") -> None:
        self.transcript.append(text)
        print(text, file=self.stream or sys.stdout, flush=True)

    def guard(self) -> Guard:
        """A guard with the per-call budget."""
        assert self.budget is not None
        return Guard(self.budget)

    @property
    def comparison_budget(self) -> float:
        """The budget of the timed rounds of a comparison a target is read
        from: the run's, or more (SIZES["comparison_budget"])."""
        assert self.budget is not None
        return max(self.budget, SIZES["comparison_budget"][self.level])

    def build_guard(self) -> Guard:
        """A guard for one-off costs (build + first gradient): a larger budget."""
        assert self.budget is not None
        return Guard(max(self.budget, SIZES["build_budget"][self.level]))


# ------------------------------------------------------------------ timing

@dataclass
class Timing:
    """Median and all measurements of one call; ``value`` is its warm-up result."""

    median: float
    times: list[float]
    value: Any
    warmup: float

    @property
    def repeats(self) -> int:
        return len(self.times)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def time_calls(calls: Mapping[str, Callable[[], Any]], repeats: int,
               budget: float) -> dict[str, Timing]:
    """Warm up every call, then time them interleaved; median per call.

    Each round runs the calls in a fresh order (a shuffle seeded by the
    round's number, so a run is reproducible): in a fixed order a call always
    follows the same other call and inherits its cache state (enough to
    bias a 1 ms matrix product's median on the reference machine).

    Repeats are reduced so that the timed rounds take at most half of
    ``budget`` seconds; with no room for any, the warm-up time is the
    measurement (then ``Timing.repeats`` is 1 and ``times`` holds the warm-up).
    """
    warm = {name: _timed(fn) for name, fn in calls.items()}
    round_seconds = max(sum(t for t, _ in warm.values()), 1e-9)
    # fast calls get more rounds (up to FAST_ROUNDS x repeats, about FAST_SECONDS in
    # all): their medians are noisy on a loaded machine; slow ones fewer, within budget
    rounds = min(max(repeats, min(int(FAST_SECONDS / round_seconds), FAST_ROUNDS * repeats)),
                 int(0.5 * budget / round_seconds))
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls.items())
    for r in range(rounds):
        random.Random(r).shuffle(order)
        for name, fn in order:
            times[name].append(_timed(fn)[0])
    out = {}
    for name, (t, value) in warm.items():
        measured = times[name] or [t]
        out[name] = Timing(statistics.median(measured), measured, value, t)
    return out


class Guard:
    """Skip a method at larger sizes once its predicted time exceeds the budget.

    ``record(key, work, seconds)`` after each measurement; ``reason(key,
    work)`` is None when the call may run, else why it is skipped. ``work``
    is any measure that the time is proportional to (n, n**3, paths * depth).
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.last: dict[str, tuple[float, float, str]] = {}
        self.stopped: dict[str, str] = {}

    def record(self, key: str, work: float, seconds: float, label: str = "") -> None:
        self.last[key] = (float(work), float(seconds), label or f"{work:g}")

    def stop(self, key: str, reason: str) -> None:
        self.stopped[key] = reason

    def reason(self, key: str, work: float) -> str | None:
        if key in self.stopped:
            return self.stopped[key]
        if key not in self.last:
            return None
        w0, t0, label = self.last[key]
        predicted = t0 * float(work) / max(w0, 1e-300)
        if predicted > self.budget:
            return (f"took {t0:.3g} s at {label}: predicted {predicted:.3g} s > budget "
                    f"{self.budget:g} s")
        return None


# ------------------------------------------------------------------ tables

@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: str | Callable[[Any], str] = "{}"
    scale: float = 1.0  # values are multiplied by this before formatting (s -> ms)


def _cell(column: Column, row: Mapping[str, Any]) -> str:
    value = row.get(column.key)
    if value is None:
        return "skip" if row.get(f"{column.key}_skipped") or row.get("skipped") else "-"
    if isinstance(value, str):
        return value
    if callable(column.fmt):
        return column.fmt(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        value = value * column.scale if column.scale != 1.0 else value
    return column.fmt.format(value)


def format_table(title: str, columns: Sequence[Column], rows: Iterable[Mapping[str, Any]],
                 notes: Sequence[str] = ()) -> str:
    """A plain-text table: title, header, rule, one line per row, notes."""
    rows = list(rows)
    cells = [[_cell(c, r) for c in columns] for r in rows]
    widths = [max([len(c.header)] + [len(row[k]) for row in cells])
              for k, c in enumerate(columns)]
    head = "  ".join(c.header.rjust(w) for c, w in zip(columns, widths))
    lines = [title, head, "-" * len(head)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    lines += [f"  {note}" for note in notes]
    return "\n".join(lines)


def fmt_sci(value: float) -> str:
    return f"{value:.1e}"


def fmt_pow10(value: float) -> str:
    """10^k when value is a power of ten, else the number."""
    k = math.log10(value) if value > 0 else 0.0
    return f"10^{round(k)}" if value > 0 and abs(k - round(k)) < 1e-9 and k >= 2 \
        else f"{value:g}"


# ------------------------------------------------------------------ memory

def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmHWM", "VmRSS")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def peak_memory(fn: Callable[[], Any]) -> tuple[Any, float | None]:
    """Run ``fn``; return its result and the growth of the peak resident set
    size while it ran, in bytes (None where /proc cannot tell: not Linux).

    The kernel's high-water mark is reset first (``/proc/self/clear_refs``), so
    earlier, larger runs do not hide this one.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _status()["VmRSS"]
    except (OSError, KeyError):
        return fn(), None
    value = fn()
    try:
        return value, float(_status()["VmHWM"] - before)
    except (OSError, KeyError):
        return value, None


# ------------------------------------------------------------------ checks

def keep(last: dict[str, Any], key: str, sol: Any) -> Any:
    """Remember ``sol`` under ``key`` (to read its diagnostics after timing); return it."""
    last[key] = sol
    return sol


def relative_error(got: Any, want: Any) -> float:
    """max |got - want| / max |want| over all arrays of (tuples of) results."""
    gs = got if isinstance(got, (tuple, list)) else (got,)
    ws = want if isinstance(want, (tuple, list)) else (want,)
    if len(gs) != len(ws):
        raise ValueError(f"{len(gs)} results against {len(ws)} references")
    num = max(float(np.max(np.abs(np.asarray(g, dtype=float) - np.asarray(w, dtype=float))))
              for g, w in zip(gs, ws))
    den = max(float(np.max(np.abs(np.asarray(w, dtype=float)))) for w in ws)
    return num / max(den, 1e-300)


@dataclass
class Attempt:
    """The outcome of :func:`attempt`: a timing, or why there is none."""

    timing: Timing | None = None
    skipped: str | None = None  # the guard's reason
    failed: str | None = None  # the error a lagrad call raised
    beside: Timing | None = None  # the call timed interleaved with it, if any

    @property
    def note(self) -> str | None:
        return self.skipped and f"skipped, {self.skipped}" or \
            self.failed and f"failed: {self.failed}"


BESIDE = "default, beside"  # the key of attempt()'s ``beside`` call (not a method's name)


def attempt(ctx: Context, guard: Guard, key: str, work: float, label: str,
            fn: Callable[[], Any], repeats: int | None = None,
            beside: Callable[[], Any] | None = None) -> Attempt:
    """Time ``fn`` unless the guard predicts it exceeds the budget; a lagrad
    error (no convergence, singular system, too large) is recorded, not raised.
    With ``beside`` (lagrad's default call), that call is timed interleaved
    with ``fn`` (``Attempt.beside``), so that their ratio is of one stretch of
    time: the machine's speed can drift by a third within a minute."""
    reason = guard.reason(key, work)
    if reason:
        return Attempt(skipped=reason)
    calls = {key: fn} if beside is None else {key: fn, BESIDE: beside}
    try:
        timed = time_calls(calls, repeats or ctx.repeats or 1, ctx.budget or 1.0)
        timing = timed[key]
    except (lagrad.LagradError, MemoryError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        guard.stop(key, f"failed at {label}")
        return Attempt(failed=f"{type(err).__name__}: {message[:160]}")
    guard.record(key, work, timing.warmup if timing.repeats == 1 else timing.median, label)
    return Attempt(timing=timing, beside=timed.get(BESIDE))


def beside_ratio(got: Attempt) -> dict[str, float]:
    """The row entry of an attempt timed beside lagrad's default: the default's
    median over the method's, both from the same rounds (empty without one)."""
    if got.timing is None or got.beside is None:
        return {}
    return {"default_over_method": got.beside.median / got.timing.median}
