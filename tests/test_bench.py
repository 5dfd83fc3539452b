"""lagrad bench: every workload runs (at the hidden --tiny sizes), prints its table,
writes results.json with the expected keys and plots; the gradients it times
are right; the timing, budget, table and target helpers behave."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lagrad.bench import WORKLOADS, main
from lagrad.bench.core import Column, Context, Guard, format_table, time_calls
from lagrad.bench.dag import LevelPass, random_dag
from lagrad.bench.plots import write_plots
from lagrad.bench.summary import format_summary, summary_rows
from lagrad.bench.targets import check_targets, format_targets

TITLES = {"scaling": "scaling: random scalar DAGs", "modes": "modes: one program",
          "paths": "paths: stacked diamonds", "mlp": "mlp: tanh MLP",
          "deq": "deq: deep-equilibrium layer", "pagerank": "pagerank: implicit gradient",
          "blocks": "blocks: a chain of B cyclic blocks",
          "sparsejac": "sparsejac: sparse Jacobians by colouring",
          "jacobian": "jacobian: k rows in one sweep against one gradient", "peers": "peers"}
ROW_KEYS = {
    "scaling": {"n", "equations", "build_s", "first_s", "forward_s", "gradient_s",
                "grad_over_forward", "floor_build_s", "floor_gradient_s", "grad_over_floor",
                "peak_mb", "error"},
    "modes": {"d", "paths", "reverse_s", "forward_mode_s", "finite_differences_s",
              "path_sum_s", "floor_s", "speedup", "error_forward", "error_fd", "error_path"},
    "paths": {"depth", "paths", "reverse_s", "forward_mode_s", "path_sum_s", "floor_s",
              "error_path"},
    "mlp": {"layers", "batch", "forward_s", "gradient_s", "floor_gradient_s",
            "grad_over_floor", "error"},
    "deq": {"N", "method", "gradient_s"},
    "pagerank": {"m", "n", "method", "gradient_s"},
    "blocks": {"B", "method", "gradient_s"},
    "sparsejac": {"problem", "n", "method", "jacobian_s", "colours", "speedup", "error",
                  "missed"},
    "jacobian": {"problem", "label", "rows", "gradient_s", "jacobian_s", "row_by_row_s",
                 "jac_over_grad", "error", "fd_error", "method", "seconds"},
}
STATUSES = {"PASS", "FAIL", "NOT MEASURED"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each workload run once at the tiny sizes: (exit code, stdout, results, dir)."""
    return {}


def run_workload(name: str, runs: dict[str, Any], tmp_path_factory: Any,
                 capsys: pytest.CaptureFixture[str]) -> tuple[int, str, dict[str, Any], Path]:
    if name not in runs:
        out = tmp_path_factory.mktemp(name)
        code = main(["--only", name, "--tiny", "--out", str(out)])
        text = capsys.readouterr().out
        runs[name] = (code, text, json.loads((out / "results.json").read_text()), out)
    return runs[name]


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_runs_prints_and_writes_json(name: str, runs: dict[str, Any],
                                              tmp_path_factory: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, text, results, out = run_workload(name, runs, tmp_path_factory, capsys)
    assert code == 0
    assert TITLES[name] in text
    assert "targets:" in text and "machine:" in text
    assert {"format", "date", "level", "machine", "workloads", "targets", "seconds"} <= set(results)
    assert results["level"] == "tiny"
    assert {"cpu", "cpus", "numpy", "blas_threads"} <= set(results["machine"])
    entry = results["workloads"][name]
    assert entry["error"] is None
    assert list(results["workloads"]) == [name]
    assert all(t["status"] in STATUSES for t in results["targets"])
    if name == "peers":
        return
    rows = entry["rows"]
    assert rows
    present = set().union(*(r.keys() for r in rows))
    assert ROW_KEYS[name] <= present, ROW_KEYS[name] - present
    assert (out / f"{name}.png").stat().st_size > 1000


@pytest.mark.parametrize("name", ["modes", "deq"])
def test_tables_md_holds_each_table_as_markdown(name: str, runs: dict[str, Any],
                                                tmp_path_factory: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """tables.md has the printed tables as Markdown tables: one row per printed
    row, with as many cells as the header, and no console rules left."""
    _, text, results, out = run_workload(name, runs, tmp_path_factory, capsys)
    markdown = (out / "tables.md").read_text()
    assert f"**{TITLES[name]}" in markdown
    assert not re.search(r"^-{10,}$", markdown, re.M)
    tables = re.findall(r"(?:^\|.*\n)+", markdown, re.M)  # the workload's, then the summary
    table = tables[0].splitlines()
    header = table[0]
    cells = header.count(" | ") + 1
    assert all(ln.replace("\\|", "").count("|") == cells + 1 for ln in table)
    assert len(table) - 2 == len(results["workloads"][name]["rows"])
    if name == "deq":  # the run's summary: the default row per size, as a Markdown table too
        assert "**summary: every workload" in markdown and len(tables) == 2
    assert "**PASS**" in markdown or "**FAIL**" in markdown or "NOT MEASURED" in markdown


def test_peers_missing_are_noted(runs: dict[str, Any], tmp_path_factory: Any,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, text, _, _ = run_workload("peers", runs, tmp_path_factory, capsys)
    from lagrad.bench.peers import PEERS, available_peers

    found = available_peers()
    for peer in PEERS:
        assert (f"peers: {peer} is not installed" in text) == (peer not in found)


def test_timed_gradients_are_right(runs: dict[str, Any], tmp_path_factory: Any,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The workloads check what they time against floors and references."""
    for name in ("scaling", "mlp"):
        rows = run_workload(name, runs, tmp_path_factory, capsys)[2]["workloads"][name]["rows"]
        # a loaded machine may skip sizes over the time budget: those rows carry no error
        timed = [r for r in rows if "error" in r]
        assert timed and all(r["error"] < 1e-10 for r in timed), rows
    modes = run_workload("modes", runs, tmp_path_factory, capsys)[2]["workloads"]["modes"]
    for r in modes["rows"]:
        assert r["error_forward"] < 1e-10 and r["error_path"] < 1e-10 and r["error_fd"] < 1e-5
    paths = run_workload("paths", runs, tmp_path_factory, capsys)[2]["workloads"]["paths"]
    assert [r["paths"] for r in paths["rows"]] == [2 ** r["depth"] for r in paths["rows"]]
    for name in ("deq", "pagerank", "blocks"):
        rows = run_workload(name, runs, tmp_path_factory, capsys)[2]["workloads"][name]["rows"]
        exact = [r for r in rows if r.get("error") is not None
                 and not str(r["method"]).startswith("unrolled")]
        assert exact and all(r["error"] < 1e-8 for r in exact), exact
    deq = run_workload("deq", runs, tmp_path_factory, capsys)[2]["workloads"]["deq"]["rows"]
    unrolled = [r["error"] for r in deq if str(r["method"]).startswith("unrolled")]
    assert unrolled[0] > unrolled[-1]  # more iterations, smaller error
    for row in deq:  # each named adjoint method reports its own solve, not the default's
        if row["method"] in ("gmres", "bicgstab", "splu") and row.get("gradient_s"):
            assert f"adj {row['method']} " in row["detail"], row


def test_unknown_workload_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--only", "nonsense", "--tiny"])
    assert err.value.code == 2
    assert "unknown workload 'nonsense'" in capsys.readouterr().err


def test_only_takes_comma_separated_names_in_suite_order(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    assert main(["--only", "paths,modes", "--tiny", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["workloads"]) == ["modes", "paths"]
    capsys.readouterr()


# ---------------------------------------------------------------- helpers

def test_time_calls_interleaves_and_takes_medians() -> None:
    order: list[str] = []
    calls = {"a": lambda: order.append("a") or 1, "b": lambda: order.append("b") or 2}
    t = time_calls(calls, repeats=3, budget=10.0)
    assert t["a"].value == 1 and t["b"].value == 2
    assert order[:2] == ["a", "b"]  # the warm-up
    rounds = [order[i:i + 2] for i in range(2, len(order), 2)]
    assert all(sorted(r) == ["a", "b"] for r in rounds)  # every round runs each call once
    assert t["a"].repeats == len(rounds) >= 3 and t["a"].median >= 0.0


def test_time_calls_varies_the_order_of_each_round() -> None:
    """No call always runs first or always follows the same other call."""
    order: list[str] = []
    calls = {k: (lambda k=k: order.append(k)) for k in "abc"}
    time_calls(calls, repeats=20, budget=10.0)
    rounds = [tuple(order[i:i + 3]) for i in range(3, len(order), 3)]
    assert len(rounds) >= 20 and all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert {r[0] for r in rounds} == {"a", "b", "c"}
    assert len(set(rounds)) >= 4


def test_time_calls_respects_the_budget() -> None:
    import time

    t = time_calls({"slow": lambda: time.sleep(0.05)}, repeats=5, budget=0.01)
    assert t["slow"].repeats == 1  # only the warm-up fits
    assert t["slow"].median >= 0.05


def test_comparisons_get_their_own_budget() -> None:
    """A comparison a target is read from gets the level's comparison budget
    when the run's is smaller (a one-second call then gets its repeats)."""
    from lagrad.bench.core import SIZES, Context

    full = SIZES["comparison_budget"]["full"]
    assert Context(level="full", budget=5.0).comparison_budget == full
    assert Context(level="full", budget=2 * full).comparison_budget == 2 * full
    assert Context(level="tiny").comparison_budget == SIZES["budget"]["tiny"]
    t = time_calls({"call": lambda: None, "second": lambda: None}, repeats=4,
                   budget=Context(level="full", budget=1e-9).comparison_budget)
    assert t["call"].repeats >= 4


def test_guard_predicts_and_skips() -> None:
    guard = Guard(budget=1.0)
    assert guard.reason("m", 10) is None
    guard.record("m", 10, 0.2, "n=10")
    assert guard.reason("m", 40) is None  # predicted 0.8 s
    assert "predicted 2 s > budget 1 s" in guard.reason("m", 100)
    guard.stop("m", "failed")
    assert guard.reason("m", 1) == "failed"


def test_format_table_marks_skips_and_notes() -> None:
    rows = [{"n": 1, "t": 0.5}, {"n": 2, "t": None, "t_skipped": True}, {"n": 3}]
    text = format_table("title", [Column("n", "n"), Column("t", "t ms", "{:.1f}", 1e3)], rows,
                        ["a note"])
    lines = text.splitlines()
    assert lines[0] == "title" and "500.0" in lines[3]
    assert lines[4].split() == ["2", "skip"] and lines[5].split() == ["3", "-"]
    assert lines[-1].strip() == "a note"


def test_level_pass_floor_matches_lagrad() -> None:
    import lagrad
    from lagrad.bench.dag import build_program

    dag = random_dag(300, n_inputs=4, seed=3)
    x = dag.inputs(seed=4)
    out, grad = LevelPass(dag).gradient(x)
    program, _ = build_program(dag)
    sol = program.solve(*x)
    assert abs(float(sol.output) - out) <= 1e-12 * abs(out)
    np.testing.assert_allclose(np.asarray(sol.grad()), grad, rtol=1e-10, atol=1e-12)
    # every equation reaches the output: no variable other than the output is unread
    read = np.zeros(dag.n_variables, dtype=bool)
    read[dag.a] = True
    read[dag.b[dag.b >= 0]] = True
    assert np.flatnonzero(~read).tolist() == [dag.n_variables - 1]
    assert isinstance(program, lagrad.Program)


def test_targets_pass_and_fail_on_synthetic_rows() -> None:
    results = {"scaling": {"rows": [
        {"n": 10**6, "grad_over_forward": 2.0, "gradient_s": 0.05, "build_s": 0.3,
         "first_s": 0.4, "peak_mb": 2000.0, "builder": "bulk"}]},
        "mlp": {"rows": [{"layers": "784-256-256-10", "grad_over_forward": 3.5,
                          "grad_over_floor": 1.05, "gradient_s": 2e-3,
                          "floor_gradient_s": 1.9e-3}]}}
    got = {t["target"]: t for t in check_targets(results)}
    assert got["scaling n=10^6: gradient <= 0.1 s"]["status"] == "PASS"
    assert got["scaling n=10^6: build + forward + gradient <= 1.0 s"]["status"] == "PASS"
    assert got["scaling n=10^6: peak memory <= 1 GB"]["status"] == "FAIL"
    ratio = got["gradient / forward <= 3 (scaling, every n; mlp)"]
    assert ratio["status"] == "FAIL" and "3.50 at mlp" in ratio["measured"]
    assert got["mlp: gradient <= 1.1x the numpy floor"]["status"] == "PASS"
    assert got["pagerank m=10^6: default gradient <= 1.1x the floor"]["status"] == "NOT MEASURED"
    assert "FAIL" in format_targets(list(got.values()))


def test_plots_are_skipped_with_a_note_without_matplotlib(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    lines = write_plots({"workloads": {"paths": {"rows": [{"depth": 1, "reverse_s": 1.0}]}}},
                        str(tmp_path))
    assert lines == ["plots skipped: matplotlib is not installed (pip install 'lagrad[plot]')"]
    assert not list(tmp_path.iterdir())


def test_context_rejects_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown level"):
        Context(level="huge")


def test_peers_side_by_side_with_a_stand_in_peer(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The peers workload with a stand-in for torch (numpy floors as its gradients):
    a row per problem beside lagrad's, errors against lagrad, failures as notes."""
    from lagrad.bench import peers as peers_module
    from lagrad.bench.mlp import numpy_gradient

    def stand_in(problem: str, p: Any, mods: Any) -> Any:
        if problem in ("deq", "blocks", "jacobian"):
            raise NotImplementedError("no implicit solver here")
        if problem == "pagerank":
            raise RuntimeError("boom")
        if problem == "scaling":
            return lambda: p["floor"].gradient(p["x"])[1]
        return lambda: numpy_gradient(p["data"], p["labels"], p["params"])[1]

    monkeypatch.setattr(peers_module, "available_peers", lambda: {"torch": object()})
    monkeypatch.setitem(peers_module.RUNNERS, "torch", stand_in)
    rows = peers_module.peers(Context(level="tiny"))
    text = capsys.readouterr().out
    assert "peers: jax is not installed" in text and "peers: torch is not" not in text
    by = {(r["problem"], r["peer"]): r for r in rows}
    assert set(by) == {(p, who) for p in ("scaling", "mlp", "deq", "pagerank", "blocks",
                                          "jacobian") for who in ("lagrad", "torch")}
    for problem in ("scaling", "mlp"):
        assert by[problem, "torch"]["error"] < 1e-10
        assert by[problem, "torch"]["over_lagrad"] > 0
    assert by["deq", "torch"]["note"] == "no implicit solver here"
    assert by["pagerank", "torch"]["note"] == "setup failed: RuntimeError: boom"
    assert "peers: the same problems through other libraries" in text


def test_plots_read_as_figures(tmp_path: Path) -> None:
    """One size only: bars with their times, not dots on a log axis; peers: one
    panel per problem, each with its own legend."""
    pytest.importorskip("matplotlib")
    from matplotlib import image

    rows = [{"batch": 128, "gradient_s": 4e-3, "forward_s": 2e-3, "floor_gradient_s": 3e-3,
             "floor_forward_s": 1e-3}]
    sizes = ((10, 1.0), (100, 9.0))
    peers = [{"problem": p, "series": f"{who} {p}", "size": n, "seconds": t}
             for p in ("deq", "mlp") for who in ("lagrad", "jax") for n, t in sizes]
    lines = write_plots({"level": "quick", "workloads": {"mlp": {"rows": rows},
                                                        "peers": {"rows": peers}}}, str(tmp_path))
    assert lines == [f"wrote {tmp_path / 'mlp.png'}", f"wrote {tmp_path / 'peers.png'}"]
    one, two = (image.imread(tmp_path / f) for f in ("mlp.png", "peers.png"))
    assert two.shape[1] > one.shape[1]  # two panels side by side


def _peer(problem: str, label: str, peer: str, over: float, note: str | None = None
          ) -> dict[str, Any]:
    return {"problem": problem, "label": label, "peer": peer, "over_lagrad": over,
            "seconds": over * 0.01, "method": "m", "note": note}


def test_peer_targets_read_the_peers_rows() -> None:
    rows = [_peer("deq", "N=1000", "jaxopt", 1.3), _peer("deq", "N=3000", "jaxopt", 0.9),
            _peer("mlp", "784-256-256-10 x 128", "torch", 1.2),
            _peer("blocks", "B=100000", "jax", 2.0, note="DISAGREES with lagrad")]
    got = {t["target"].split(":")[0]: t for t in check_targets({"peers": {"rows": rows}})}
    assert got["deq N=1000, N=3000"]["status"] == "FAIL"  # slower than jaxopt at N=3000
    assert "N=3000: jaxopt takes 0.90x" in got["deq N=1000, N=3000"]["measured"]
    assert got["mlp 784-256-256-10 x 128"]["status"] == "PASS"
    assert got["blocks B=100000"]["status"] == "FAIL"  # faster, but the peer disagrees
    assert got["scaling n=1000000"]["status"] == "NOT MEASURED"


def test_summary_takes_default_floor_and_fastest_agreeing_peer() -> None:
    results = {
        "pagerank": {"rows": [{"m": 10**6, "method": "default", "gradient_s": 0.22},
                              {"m": 10**6, "method": "gmres", "gradient_s": 0.5},
                              {"m": 10**6, "method": "floor (scipy)", "gradient_s": 0.2}]},
        "jacobian": {"rows": [{"problem": "mlp", "label": "784-256-256", "rows": 100,
                               "jacobian_s": 0.004, "gradient_s": 0.001}]},
        "peers": {"rows": [_peer("pagerank", "m=1000000", "jax", 0.8, note="DISAGREES"),
                           _peer("pagerank", "m=1000000", "jaxopt", 1.4),
                           _peer("pagerank", "m=1000000", "torch", 1.1),
                           _peer("jacobian", "mlp 784-256-256, 100 rows", "jax", 0.5)]}}
    rank, jac = summary_rows(results)
    assert (rank["workload"], rank["size"]) == ("PageRank", "m=1000000")
    assert rank["over_floor"] == pytest.approx(1.1)
    assert rank["peer"] == "torch (m)" and rank["peer_over_lagrad"] == 1.1  # jax disagreed
    assert jac["over_floor"] == pytest.approx(4.0) and jac["peer_over_lagrad"] == 0.5
    table = format_summary(results)
    assert table.splitlines()[0].startswith("summary:") and "torch (m)" in table
    assert format_summary({}) == ""


def test_a_method_is_timed_beside_the_default() -> None:
    """attempt(..., beside=) times lagrad's default interleaved with the
    method, every round, and the row keeps the ratio of their medians."""
    from lagrad.bench.core import BESIDE, attempt, beside_ratio

    order: list[str] = []
    ctx = Context(level="tiny")
    got = attempt(ctx, Guard(budget=10.0), "m", 1.0, "n=1",
                  lambda: order.append("m"), repeats=4, beside=lambda: order.append("d"))
    assert got.timing is not None and got.beside is not None
    rounds = [sorted(order[i:i + 2]) for i in range(0, len(order), 2)]
    assert rounds == [["d", "m"]] * len(rounds) and len(rounds) >= 5  # warm-up + 4 rounds
    assert got.beside.repeats == got.timing.repeats
    assert beside_ratio(got) == {"default_over_method": got.beside.median / got.timing.median}
    assert BESIDE != "m" and beside_ratio(attempt(ctx, Guard(10.0), "m", 1.0, "", lambda: 0)) == {}


def test_the_defaults_target_reads_ratios_timed_beside() -> None:
    """The default's time over the fastest method's is read from the ratio
    timed beside each method when the rows have it, not from medians taken
    minutes apart."""
    from lagrad.bench.targets import check_targets

    def status(rows: list[dict[str, Any]]) -> tuple[str, str]:
        found = [t for t in check_targets({"deq": {"rows": rows}})
                 if t["target"].startswith("default settings within 1.5x")]
        return found[0]["status"], found[0]["measured"]
    drifted = [{"N": 100, "method": "default", "gradient_s": 3.0e-3},
               {"N": 100, "method": "fixed_point", "gradient_s": 1.0e-3}]
    assert status(drifted)[0] == "FAIL"  # 3x, from medians of two moments
    drifted[1]["default_over_method"] = 1.1  # timed side by side: 1.1x
    assert status(drifted) == ("PASS", "worst 1.10x (deq N=100 vs fixed_point)")
    drifted[1]["default_over_method"] = 1.7
    assert status(drifted) == ("FAIL", "worst 1.70x (deq N=100 vs fixed_point)")
