"""Pictures: the missing-extra error, the layout and residual data (no
matplotlib needed), and the figures and PNG files (matplotlib needed)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest

import lagrad
from lagrad.cli import main
from lagrad.errors import LagradError
from lagrad.examples import EXAMPLES, worked_example
from lagrad.study import plot, plot_curves
from lagrad.study.plot import MissingExtraError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cyclic_program() -> lagrad.Program:
    """x -> [z = tanh(W z + x)] -> sum(z^2), plus an acyclic side branch."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 4))
    w *= 0.7 / np.linalg.norm(w, 2)
    p = lagrad.Program("small deq")
    x = p.input("x", 4)
    z = p.unknown("z", 4)
    p.define(z, lagrad.tanh(w @ z + x))
    p.output(lagrad.sum(z * z) + lagrad.sum(lagrad.exp(x)))
    return p


def test_plot_module_answers_for_the_pictures_of_its_siblings() -> None:
    from lagrad.study import plot_spy

    assert plot.spy_system is plot_spy.spy_system
    assert plot.plot_unrolled is plot_curves.plot_unrolled
    assert plot.save_study_plots is plot_curves.save_study_plots
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        plot.nothing_here  # noqa: B018


def root_program() -> lagrad.Program:
    """A root constraint: its unknown reads itself (a self-loop)."""
    p = lagrad.Program("root")
    a = p.input("a")
    w = p.unknown("w", 2)
    p.root(w, 3.0 * w - a)
    p.output(lagrad.sum(w))
    return p


# ------------------------------------------------------ without matplotlib

@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError


@pytest.mark.usefixtures("no_matplotlib")
@pytest.mark.parametrize("draw", [
    lambda: worked_example().draw(),
    lambda: plot.draw_program(worked_example(), path="never.png"),
    lambda: worked_example().solve(0.5).adjoint_system().spy(),
    lambda: plot_curves.plot_forward_convergence(cyclic_program().solve(np.ones(4))),
    lambda: plot_curves.plot_adjoint_convergence(cyclic_program().solve(np.ones(4))),
    lambda: plot_curves.plot_unrolled([]),
], ids=["draw", "draw_program", "spy", "forward", "adjoint", "unrolled"])
def test_missing_matplotlib_names_the_extra(draw: Any) -> None:
    with pytest.raises(MissingExtraError, match=r'pip install "lagrad\[plot\]"') as info:
        draw()
    assert isinstance(info.value, LagradError)
    assert isinstance(info.value, ImportError)
    assert not Path("never.png").exists()


@pytest.mark.usefixtures("no_matplotlib")
@pytest.mark.parametrize("argv", [["demo", "--plot"], ["study", "mdp", "--plot"]])
def test_cli_without_matplotlib_fails_before_working(argv: list[str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, str(tmp_path / "pictures")]) == 1
    captured = capsys.readouterr()
    assert 'pip install "lagrad[plot]"' in captured.err
    assert captured.out == ""  # nothing computed or printed
    assert not (tmp_path / "pictures").exists()


def test_text_views_need_no_matplotlib(no_matplotlib: None) -> None:
    p = cyclic_program()
    assert "cyclic" in p.summary()
    assert "cond_2" in p.solve(np.ones(4)).adjoint_system().summary()


# ------------------------------------------------------ layout (no matplotlib)

def test_levels_are_longest_paths_from_the_inputs() -> None:
    p = worked_example()  # x -> a -> b -> c -> d, e -> out, and a -> c
    layout = plot.program_layout(p)
    assert {p.variables[n].name: k for n, k in layout.level.items()} == \
        {"x": 0, "a": 1, "b": 2, "c": 3, "d": 4, "e": 4, "out": 5}
    assert not layout.feedback
    ys = {layout.position[n][1] for n in layout.graph if layout.level[n] == 4}
    assert len(ys) == 2  # d and e do not overlap


@pytest.mark.parametrize("make", [cyclic_program, root_program,
                                  *(lambda f=f: f().program for f in EXAMPLES.values())])
def test_feedback_edges_close_every_cycle(make: Any) -> None:
    p = make()
    layout = plot.program_layout(p)
    g = p.graph
    unknowns = {v.index for v in p.variables if v.kind == "unknown"}
    assert layout.feedback <= set(g.edges)
    assert all(b in unknowns for _, b in layout.feedback)  # only edges into unknowns
    for a, b in set(g.edges) - layout.feedback:
        assert layout.level[a] < layout.level[b]  # every other edge goes right
    cut = nx.DiGraph(g)
    cut.remove_edges_from(layout.feedback)
    assert nx.is_directed_acyclic_graph(cut)
    # positions are distinct
    assert len(set(layout.position.values())) == len(p.variables)


def test_root_self_loop_is_a_feedback_edge() -> None:
    p = root_program()
    w = p["w"].index
    assert (w, w) in plot.program_layout(p).feedback


def test_condensed_layout_has_one_node_per_cyclic_block() -> None:
    p = cyclic_program()
    layout = plot.program_layout(p, condense=True)
    cyclic = [b for b in p.blocks if b.cyclic]
    acyclic_vars = sum(len(b.variables) for b in p.blocks if not b.cyclic)
    assert layout.graph.number_of_nodes() == acyclic_vars + len(cyclic)
    assert ("block", cyclic[0].number) in layout.graph
    assert nx.is_directed_acyclic_graph(layout.graph) and not layout.feedback


def test_adjoint_histories_of_a_scalar_contraction() -> None:
    # z = 0.5 z + a: the reduced adjoint operator is 1 - 0.5, so the Neumann
    # iteration's residual halves at every step; GMRES is exact in one step
    p = lagrad.Program()
    a = p.input("a", 2)
    z = p.unknown("z", 2)
    p.define(z, 0.5 * z + a)
    p.output(lagrad.sum(z))
    [(name, hist)] = plot_curves.adjoint_residual_histories(p.solve([1.0, 2.0]),
                                                      ["fixed_point", "gmres"]).items()
    assert name == "block 1 (z)"
    k = np.arange(hist["fixed_point"].size)
    np.testing.assert_allclose(hist["fixed_point"], 0.5 ** k, rtol=1e-12)
    assert hist["fixed_point"][-1] <= 1e-14
    assert hist["gmres"][0] == 1.0 and hist["gmres"][-1] < 1e-14 and hist["gmres"].size == 2
    assert hist["direct"][0] < 1e-15


@pytest.mark.parametrize("method", ["fixed_point", "gmres", "bicgstab", "lgmres"])
def test_adjoint_histories_converge_to_the_exact_multipliers(method: str) -> None:
    # the reduced system is built from lagrad's multipliers; its residual at
    # them ("direct") must vanish and each iteration must drive it to ~0
    hist = plot_curves.adjoint_residual_histories(cyclic_program().solve(np.ones(4)), [method],
                                           maxiter=300)["block 1 (z)"]
    assert hist["direct"][0] < 1e-13
    assert hist[method][0] == pytest.approx(1.0)
    assert hist[method][-1] < 1e-10


def test_adjoint_histories_stop_on_divergence() -> None:
    p = lagrad.Program()
    a = p.input("a")
    z = p.unknown("z")
    p.define(z, 2.0 * z + a)  # a root of z = 2 z + a exists, plain iteration diverges
    p.output(z)
    hist = plot_curves.adjoint_residual_histories(p.solve(1.0), ["fixed_point"], maxiter=500)
    res = hist["block 1 (z)"]["fixed_point"]
    assert res.size < 100 and res[-1] > 1e8


# ------------------------------------------------------ with matplotlib

@pytest.fixture
def mpl() -> Any:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    yield matplotlib
    import matplotlib.pyplot as plt

    plt.close("all")


def labelled(ax: Any) -> bool:
    return bool(ax.get_xlabel() and ax.get_ylabel() and ax.get_title())


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def nodes_drawn(ax: Any) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if c.get_gid() == "node")


@pytest.mark.parametrize("make", [worked_example, cyclic_program, root_program])
def test_draw_program_draws_every_variable(mpl: Any, make: Any, tmp_path: Path) -> None:
    p = make()
    fig = p.draw(path=tmp_path / "graph.png")
    assert isinstance(fig, mpl.figure.Figure)
    [ax] = fig.axes
    assert labelled(ax)
    assert nodes_drawn(ax) == len(p.variables)
    assert ax.get_legend() is not None
    width, height = png_size(tmp_path / "graph.png")
    assert 600 <= width <= 4000 and 300 <= height <= 3000


def test_draw_program_into_given_axes_and_condensed(mpl: Any) -> None:
    p = cyclic_program()
    fig = mpl.figure.Figure()
    ax = fig.subplots()
    assert plot.draw_program(p, ax=ax, condense=True) is fig
    n_acyclic = sum(len(b.variables) for b in p.blocks if not b.cyclic)
    assert nodes_drawn(ax) == n_acyclic + 1
    assert "condensed" in ax.get_title()


def test_large_program_is_condensed_by_default(mpl: Any) -> None:
    p = lagrad.Program()
    x = p.input("x", 2)
    acc = x
    for k in range(4):
        z = p.unknown(f"z{k}", 2)
        e = z
        for _ in range(10):
            e = lagrad.tanh(0.3 * e + acc)
        p.define(z, e)
        acc = z
    p.output(lagrad.sum(acc))
    assert len(p.variables) > 60
    fig = plot.draw_program(p)
    assert nodes_drawn(fig.axes[0]) == 2 + 4  # x, the output, four blocks


def test_pyplot_figure_when_no_path_or_axes(mpl: Any) -> None:
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    fig = worked_example().draw()
    assert len(plt.get_fignums()) == before + 1 and fig.number in plt.get_fignums()
    assert plot.draw_program(worked_example(), path=None, ax=fig.axes[0]) is fig


def entries(ax: Any) -> list[Any]:
    """The spy markers (not the grid lines between variables)."""
    return [line for line in ax.get_lines() if line.get_marker() == "s"]


@pytest.mark.parametrize("kind", ["adjoint", "tangent"])
def test_spy_system_draws_every_entry_in_both_orders(mpl: Any, kind: str) -> None:
    sol = cyclic_program().solve(np.ones(4))
    system = sol.adjoint_system() if kind == "adjoint" else sol.tangent_system(np.ones(4))
    fig = system.spy()
    left, right = fig.axes
    assert labelled(left) and labelled(right)
    assert "program order: not triangular" in left.get_title()
    nnz = system.matrix.nnz
    for ax in (left, right):
        assert sum(line.get_xdata().size for line in entries(ax)) == nnz
    # the right panel is block triangular: block(row) <= block(col) for the adjoint
    owner_in_block_order = np.concatenate(
        [[b.number] * b.size for b in system.schedule.program.blocks])
    rows = np.concatenate([line.get_ydata() for line in entries(right)]).astype(int)
    cols = np.concatenate([line.get_xdata() for line in entries(right)]).astype(int)
    if kind == "adjoint":
        assert np.all(owner_in_block_order[rows] <= owner_in_block_order[cols])
    else:
        assert np.all(owner_in_block_order[rows] >= owner_in_block_order[cols])


def test_spy_of_an_acyclic_program_is_triangular(mpl: Any, tmp_path: Path) -> None:
    system = worked_example().solve(0.5).adjoint_system()
    fig = plot.spy_system(system, path=tmp_path / "spy.png")
    assert "upper triangular" in fig.axes[0].get_title()
    assert png_size(tmp_path / "spy.png")[0] > 800


def test_forward_convergence_has_one_curve_per_solution(mpl: Any) -> None:
    p = cyclic_program()
    sols = {m: p.solve(np.ones(4), method=m) for m in ("newton", "fixed_point", "anderson")}
    fig = plot_curves.plot_forward_convergence(sols, failures={"other": "diverges"})
    [ax] = fig.axes
    assert labelled(ax) and ax.get_yscale() == "log"
    curves = [line for line in ax.get_lines() if line.get_xdata().size]
    assert len(curves) == 3
    for line, sol in zip(curves, sols.values(), strict=True):
        [diag] = sol.diagnostics.values()
        # exact zeros (Newton can hit them) are drawn at the floor 1e-17
        np.testing.assert_array_equal(line.get_ydata(), np.maximum(diag.residuals, 1e-17))
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "other: diverges" in texts


def test_adjoint_convergence_plot(mpl: Any) -> None:
    fig = plot_curves.plot_adjoint_convergence(cyclic_program().solve(np.ones(4)))
    [ax] = fig.axes
    assert labelled(ax) and ax.get_yscale() == "log"
    assert len(ax.get_lines()) == len(plot.ADJOINT_METHODS) + 1  # + the direct solve


def test_unrolled_plot_shows_the_rows(mpl: Any) -> None:
    p = cyclic_program()
    rows = lagrad.compare_unrolled(p, [np.ones(4)], [1, 5, 20])
    fig = plot_curves.plot_unrolled(rows, implicit_entries=50)
    ax = fig.axes[0]
    assert labelled(ax) and ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [r.error for r in rows])
    assert fig.axes[1].get_ylabel() == "entries stored"
    assert labelled(plot_curves.plot_unrolled([]).axes[0])  # nothing to show, still labelled


def test_cli_study_plot_writes_six_pictures(mpl: Any, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "dir"
    assert main(["study", "mdp", "--plot", str(out)]) == 0
    printed = capsys.readouterr().out
    names = ["graph.png", "spy.png", "forward_convergence.png", "adjoint_convergence.png",
             "unrolled.png", "backward_modes.png"]
    for name in names:
        assert png_size(out / name)[0] > 500
        assert str(out / name) in printed
    assert "Gradient error against the reference" in printed  # the study is still printed


def test_cli_demo_plot_writes_graph_and_spy(mpl: Any, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--plot", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.png", "spy.png"]
    assert str(tmp_path / "graph.png") in printed
    assert main(["demo"]) == 0
    assert "Pictures written" not in capsys.readouterr().out
