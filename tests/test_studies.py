"""The worked studies of ``lagrad study``: each against its independent
reference, at small sizes."""

from __future__ import annotations

import numpy as np
import pytest

from lagrad.cli import main
from lagrad.study.bptt import bptt_gradient, rnn_problem, rnn_program
from lagrad.study.control import costates, make_lqr, riccati
from lagrad.study.edelman import CASES, analyse
from lagrad.study.qp_layer import closed_form_gradient, qp_problem, qp_program
from lagrad.study.studies import STUDIES, SUMMARIES

QUIET = {"write": lambda line: None, "small": True}


@pytest.mark.parametrize("make", CASES, ids=lambda m: m.__name__)
def test_edelman_networks_are_triangular_and_match_finite_differences(make):
    row = analyse(make())
    assert row["strictly_lower"] and row["upper_triangular"]
    assert row["fd_error"] < 1e-6
    assert row["backsub_residual"] < 1e-12


def test_lqr_multipliers_are_the_costates_and_optimum_is_riccati():
    p = make_lqr(horizon=6)
    u = np.random.default_rng(1).standard_normal((6, 1))
    sol = p.program.solve(u)
    lam, grad = costates(p, u)
    assert np.allclose([sol.multipliers()[x] for x in p.states], lam, atol=1e-12)
    assert np.allclose(sol.grad(), grad, atol=1e-12)
    out = STUDIES["lqr"](write=lambda line: None)  # the default run: T = 30
    assert out["horizon"] == 30
    assert out["costate_error"] < 1e-12 and out["gradient_error"] < 1e-12
    lbfgs_row = out["rows"][0]
    assert lbfgs_row["u_error"] < 1e-4 and abs(lbfgs_row["gap"]) < 1e-8
    # Riccati cost from the recursion equals the program's cost at the Riccati controls
    u_star, cost = riccati(make_lqr(horizon=8))
    assert float(make_lqr(horizon=8).program.solve(u_star).output) == pytest.approx(cost)
    cost = out["riccati_cost"]
    for row in out["rows"][1:]:  # the relaxed methods end no better than the optimum
        assert row["cost"] >= cost * (1 - 1e-9)
    for row in out["rows"][1:]:  # both relaxed methods reach the Riccati optimum
        assert abs(row["gap"]) < 1e-9 and row["u_error"] < 1e-4, row
    al = out["rows"][2]
    assert al["method"] == "augmented_lagrangian" and al["result"].success


def test_qp_layer_gradient_matches_the_closed_form_and_finite_differences():
    problem = qp_problem(n=4, m=2, seed=3)
    program = qp_program(problem)
    args = [problem[k] for k in ("P", "q", "A", "b")]
    grads = program.solve(*args).grad()
    ref = closed_form_gradient(problem)
    for g, k in zip(grads, ("P", "q", "A", "b")):
        assert np.allclose(g, ref[k], atol=1e-10), k
    eps, i = 1e-6, 1  # one finite difference in q, independent of both
    dq = np.zeros(4)
    dq[i] = eps
    up = float(program.solve(args[0], args[1] + dq, args[2], args[3]).output)
    down = float(program.solve(args[0], args[1] - dq, args[2], args[3]).output)
    assert (up - down) / (2 * eps) == pytest.approx(ref["q"][i], abs=1e-7)
    out = STUDIES["qp_layer"](**QUIET)
    assert max(out["errors"].values()) < 1e-10
    assert out["learned"].fun < 1e-12


def test_bptt_matches_the_multiplier_system_and_reports_memory():
    problem = rnn_problem(steps=7)
    grads = rnn_program(problem).solve(problem["W"], problem["U"], problem["b"]).grad()
    ref = bptt_gradient(problem)
    for g, r in zip(grads, ref[:3]):
        assert np.allclose(g, r, atol=1e-12)
    rows = STUDIES["bptt"](**QUIET)["rows"]
    assert all(r["error"] < 1e-12 for r in rows)
    short, long = rows
    assert long["bptt_bytes"] > short["bptt_bytes"] and long["lagrad_bytes"] > \
        short["lagrad_bytes"]
    assert short["lagrad_bytes"] > short["bptt_bytes"]  # it keeps every intermediate


def test_digits_three_ways():
    pytest.importorskip("sklearn")
    out = STUDIES["digits"](**QUIET)
    assert out["gradient_error"] < 1e-12
    # 200 training images, 1597 held out; chance is 0.1. At this size SGD reaches 0.855,
    # the penalty 0.822 and the augmented Lagrangian 0.842: each must stay near its mark
    sgd, penalty, al = out["rows"]
    for row in out["rows"]:
        assert row["test_accuracy"] >= 0.78, row
        assert row["seconds"] > 0
    assert [r["method"] for r in out["rows"]] == ["SGD, exact gradient", "quadratic penalty",
                                                   "augmented Lagrangian"]
    assert al["test_accuracy"] >= penalty["test_accuracy"] - 0.03  # comparable to the penalty
    assert al["train_accuracy"] >= 0.95 and penalty["train_accuracy"] >= 0.95
    relaxed = out["results"][1:]
    assert all(r.history[-1].violation < r.history[1].violation for r in relaxed)


def test_cli_lists_and_runs_the_studies(capsys, tmp_path):
    assert main(["study", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in STUDIES) and set(SUMMARIES) == set(STUDIES)
    assert main(["study", "qp_layer"]) == 0
    assert "closed form" in capsys.readouterr().out
    pytest.importorskip("matplotlib")
    assert main(["study", "edelman", "--plot", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("edelman_*.png"))) == 3
    assert main(["study", "nope"]) == 2
