"""The ``peers`` benchmark workload: missing peers are skipped with a note; each
row is checked against lagrad (a wrong gradient is flagged, a failure noted,
build time kept out of the timing and not carried to the next peer); and,
where a peer is installed, each of its runners gives the gradient of an
independent reference (numpy floors, the dense DEQ solve, the PageRank
Neumann series) at the tiny sizes. The per-peer tests skip where the peer is
not installed (CI has none)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import numpy as np
import pytest

from lagrad.bench import peers as peers_module
from lagrad.bench.core import Context
from lagrad.bench.mlp import numpy_gradient
from lagrad.bench.peers import AGREE, PEERS, RUNNERS, SIZES, available_peers, peers


def _no_peer_imports(monkeypatch: pytest.MonkeyPatch, allowed: tuple[str, ...] = ()) -> None:
    """Make every peer but ``allowed`` fail to import (ImportError)."""
    for name in PEERS:
        if name not in allowed:
            monkeypatch.setitem(sys.modules, name, None)


def _floor_grad(problem: str, p: dict[str, Any]) -> Any:
    """An independent reference gradient for a problem built by the workload."""
    if problem == "scaling":
        return p["floor"].gradient(p["x"])[1]
    if problem == "mlp":
        return numpy_gradient(p["data"], p["labels"], p["params"])[1]
    if problem == "blocks":
        return p["blocks"].floor()
    return p[problem].reference()


# ---------------------------------------------------------------- no peers / stand-ins

def test_no_peer_installed_skips_each_with_a_note(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _no_peer_imports(monkeypatch)
    assert available_peers() == {}
    rows = peers(Context(level="tiny"))
    text = capsys.readouterr().out
    assert rows == []
    for name in PEERS:
        assert f"peers: {name} is not installed; skipped (pip install 'lagrad[peers]'" in text
    assert "or the CPU build of torch" in text
    assert "peers: no peer library is importable; nothing to compare" in text


def test_a_broken_install_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, *args: Any) -> Any:
        if name == "casadi":
            raise OSError("libcasadi.so: cannot open shared object file")
        if name in PEERS:
            raise ModuleNotFoundError(name)
        return real(name, *args)
    monkeypatch.setattr(peers_module.importlib, "import_module", fake)
    assert available_peers() == {}


def test_xla_is_pinned_to_one_thread_before_jax_is_imported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    monkeypatch.setattr(peers_module.importlib, "import_module",
                        lambda name, *a: (_ for _ in ()).throw(ImportError(name)))
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    available_peers()
    assert os.environ["XLA_FLAGS"] == ("--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=false"
                                       " intra_op_parallelism_threads=1")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    available_peers()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=true"  # the user's choice


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_peers_run_on_one_cpu_and_the_affinity_is_restored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = os.sched_getaffinity(0)
    seen: list[set[int]] = []

    def runner(problem: str, p: Any, mods: Any) -> Any:
        seen.append(set(os.sched_getaffinity(0)))
        raise NotImplementedError("records the affinity only")
    monkeypatch.setattr(peers_module, "available_peers", lambda: {"probe": object()})
    monkeypatch.setattr(peers_module, "RUNNERS", {"probe": runner})
    monkeypatch.setattr(peers_module, "PEERS", ("probe",))
    monkeypatch.setattr(peers_module, "SIZES", {"tiny": {"mlp": SIZES["tiny"]["mlp"]}})
    peers(Context(level="tiny"))
    assert seen and all(s == {min(before)} for s in seen)
    assert os.sched_getaffinity(0) == before


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_one_core_pins_threads_started_before_it() -> None:
    """XLA starts its thread pool once: a pool made before the peers ran must
    be pinned too, and everything gets its affinity back afterwards."""
    import threading

    from lagrad.bench.machine import one_core
    before = os.sched_getaffinity(0)
    go, done, seen = threading.Event(), threading.Event(), {}

    def worker() -> None:
        go.wait()
        seen["inside"] = os.sched_getaffinity(0)
        done.wait()
        seen["after"] = os.sched_getaffinity(0)
    thread = threading.Thread(target=worker)
    thread.start()
    with one_core() as cpu:
        go.set()
        while "inside" not in seen:
            thread.join(0.01)
    done.set()
    thread.join()
    assert cpu == min(before) and seen["inside"] == {cpu}
    assert seen["after"] == before and os.sched_getaffinity(0) == before


def test_stand_in_rows_wrong_gradients_failures_and_build_time(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """'good' returns the numpy floors (agrees with lagrad); 'bad' a perturbed
    gradient (flagged); 'slow' builds for a while, then fails while running."""
    def good(problem: str, p: Any, mods: Any) -> Any:
        if problem in ("deq", "pagerank"):
            raise NotImplementedError("no implicit solver here")
        p["build_s"] = 42.0
        return lambda: _floor_grad(problem, p)

    def bad(problem: str, p: Any, mods: Any) -> Any:
        ref = _floor_grad(problem, p)
        if problem in ("deq", "pagerank"):
            return lambda: tuple(1.01 * g for g in ref)  # 1% off
        return lambda: _floor_grad(problem, p)

    def fails(problem: str, p: Any, mods: Any) -> Any:
        def run() -> Any:
            raise FloatingPointError("overflow in step 3")
        return run

    monkeypatch.setattr(peers_module, "available_peers",
                        lambda: {"good": object(), "bad": object(), "fails": object()})
    monkeypatch.setattr(peers_module, "RUNNERS", {"good": good, "bad": bad, "fails": fails})
    monkeypatch.setattr(peers_module, "PEERS", ("good", "bad", "fails", "absent"))
    rows = peers(Context(level="tiny"))
    text = capsys.readouterr().out
    assert "peers: absent is not installed" in text and "peers: good is not" not in text
    by = {(r["problem"], r["peer"]): r for r in rows}
    assert set(by) == {(p, who) for p in SIZES["tiny"]
                       for who in ("lagrad", "good", "bad", "fails")}
    for problem in ("scaling", "mlp"):
        good_row = by[problem, "good"]
        assert good_row["error"] <= AGREE[problem] and "note" not in good_row
        assert good_row["build_s"] == 42.0  # reported beside the timing...
        assert good_row["seconds"] < 1.0  # ...not in it
        assert by[problem, "bad"]["build_s"] is None  # not carried over from 'good'
        assert by[problem, "good"]["over_lagrad"] == pytest.approx(
            good_row["seconds"] / good_row["lagrad_s"])
    for problem in ("deq", "pagerank"):
        assert by[problem, "good"]["note"] == "no implicit solver here"
        row = by[problem, "bad"]
        assert 5e-3 < row["error"] < 2e-2  # the 1% perturbation, measured against lagrad
        assert row["note"] == f"DISAGREES with lagrad (err > {AGREE[problem]:g})"
    assert by["mlp", "fails"]["note"] == "failed: FloatingPointError: overflow in step 3"
    assert "DISAGREES with lagrad" in text


def test_the_guard_skips_a_peer_at_larger_sizes(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import time

    def slow(problem: str, p: Any, mods: Any) -> Any:
        if problem != "scaling":
            raise NotImplementedError("scaling only")
        return lambda: time.sleep(0.2) or p["floor"].gradient(p["x"])[1]

    monkeypatch.setattr(peers_module, "available_peers", lambda: {"slow": object()})
    monkeypatch.setattr(peers_module, "RUNNERS", {"slow": slow})
    monkeypatch.setitem(peers_module.SIZES, "tiny", {"scaling": [100, 2000]})
    rows = peers(Context(level="tiny", budget=1.0))
    capsys.readouterr()
    small, large = [r for r in rows if r["peer"] == "slow"]
    assert small["seconds"] >= 0.2 and small["error"] <= AGREE["scaling"]
    assert large.get("seconds") is None and large.get("error") is None
    assert large["note"].startswith("skipped, took") and "> budget 1 s" in large["note"]


# ---------------------------------------------------------------- real peers (skip without)

CASES = [(peer, problem) for peer, problem in peers_module.METHODS]
SMALL = {"scaling": 200}  # fewer levels: jax compiles one scatter per (level, kind)


@pytest.mark.parametrize(("peer", "problem"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_peer_gradient_matches_an_independent_reference(peer: str, problem: str) -> None:
    pytest.importorskip(peer)
    if peer == "jaxopt":
        pytest.importorskip("jax")
    mods = available_peers()
    size = SMALL.get(problem, SIZES["tiny"][problem][0])
    p = peers_module._problem(problem, size)
    got = RUNNERS[peer](problem, p, mods)()
    want = _floor_grad(problem, p)
    gs = got if isinstance(got, tuple) else (got,)
    ws = want if isinstance(want, tuple) else (want,)
    assert len(gs) == len(ws)
    for g, w in zip(gs, ws):
        assert np.asarray(g).dtype == np.float64 and np.shape(g) == np.shape(w)
    assert peers_module.relative_error(got, want) <= AGREE[problem]


def test_peers_that_do_not_apply_say_so() -> None:
    for peer, problem in [(peer, problem) for peer in RUNNERS for problem in SIZES["tiny"]
                          if (peer, problem) not in peers_module.METHODS]:
        with pytest.raises(NotImplementedError):
            RUNNERS[peer](problem, {}, {})


def test_whole_workload_with_every_installed_peer(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    found = available_peers()
    if not set(found) & set(RUNNERS):
        pytest.skip("no peer installed")
    monkeypatch.setitem(SIZES["tiny"], "scaling", [SMALL["scaling"]])
    rows = peers(Context(level="tiny"))
    text = capsys.readouterr().out
    ran = [r for r in rows if r["peer"] != "lagrad" and r.get("seconds") is not None]
    assert {(r["peer"], r["problem"]) for r in ran} == {
        (peer, problem) for peer, problem in peers_module.METHODS if peer in found
        and (peer != "jaxopt" or "jax" in found)}
    assert all(r["error"] <= AGREE[r["problem"]] for r in ran), \
        [(r["peer"], r["problem"], r["error"]) for r in ran]
    assert "DISAGREES" not in text and "failed" not in text
    jax_rows = [r for r in ran if r["peer"] in ("jax", "jaxopt")]
    assert all(r["build_s"] > 0 for r in jax_rows)  # compile time, reported apart
