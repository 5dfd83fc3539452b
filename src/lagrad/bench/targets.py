"""The benchmark targets (speed and accuracy goals per workload), checked against a run's rows.

Each check returns ``{"target", "status", "measured"}`` with status PASS,
FAIL, or "NOT MEASURED" when the run did not include the sizes it needs
(``--quick`` stops below the largest sizes; ``--only`` skips workloads).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["check_targets", "format_targets", "TARGETS"]

Rows = list[dict[str, Any]]
Result = dict[str, str]

# lagrad methods that are exact (direct, or iterative to tolerance), per workload
EXACT = {
    "scaling": {"gradient_s": "default", "backsub_s": "backsub"},
    "deq": {"default", "splu", "gmres", "bicgstab", "lgmres", "fixed_point", "dense", "newton",
            "anderson"},
    "pagerank": {"default", "fixed_point forward", "gmres", "bicgstab", "lgmres", "fixed_point",
                 "splu", "spsolve"},
    "blocks": {"default", "spsolve (global LU)", "splu (per block)", "gmres (per block)",
               "dense (whole system)"},
}


def _rows(results: Mapping[str, Any], name: str) -> Rows:
    entry = results.get(name) or {}
    return [r for r in entry.get("rows", []) if not r.get("skipped")]


def _result(target: str, ok: bool | None, measured: str) -> Result:
    status = "NOT MEASURED" if ok is None else "PASS" if ok else "FAIL"
    return {"target": target, "status": status, "measured": measured}


def _grad_over_forward(results: Mapping[str, Any]) -> Result:
    pairs = [(f"scaling n={r['n']}", r["grad_over_forward"]) for r in _rows(results, "scaling")
             if r.get("grad_over_forward") is not None]
    pairs += [("mlp", r["grad_over_forward"]) for r in _rows(results, "mlp")
              if r.get("grad_over_forward") is not None]
    if not pairs:
        return _result("gradient / forward <= 3 (scaling, every n; mlp)", None, "")
    worst = max(pairs, key=lambda p: p[1])
    return _result("gradient / forward <= 3 (scaling, every n; mlp)", worst[1] <= 3.0,
                   f"worst {worst[1]:.2f} at {worst[0]}")


def _modes(results: Mapping[str, Any]) -> Result:
    target = "reverse over forward-mode speedup >= d/2 for d >= 10 (modes)"
    pairs = [(r["d"], r["speedup"]) for r in _rows(results, "modes")
             if r["d"] >= 10 and r.get("speedup") is not None]
    if not pairs:
        return _result(target, None, "")
    worst = min(pairs, key=lambda p: p[1] / (p[0] / 2))
    return _result(target, all(s >= d / 2 for d, s in pairs),
                   f"worst: speedup {worst[1]:.1f} at d={worst[0]} (d/2 = {worst[0] / 2:g})")


def _scaling_million(results: Mapping[str, Any]) -> list[Result]:
    rows = [r for r in _rows(results, "scaling") if r["n"] >= 1_000_000]
    names = ("scaling n=10^6: gradient <= 0.1 s",
             "scaling n=10^6: build + forward + gradient <= 1.0 s",
             "scaling n=10^6: peak memory <= 1 GB")
    if not rows:
        return [_result(n, None, "n=10^6 not run") for n in names]
    r = rows[0]
    total = r["build_s"] + r["first_s"]
    peak = r.get("peak_mb")
    return [_result(names[0], r["gradient_s"] <= 0.1, f"{r['gradient_s']:.3f} s"),
            _result(names[1], total <= 1.0,
                    f"{total:.2f} s (build {r['build_s']:.2f} s by {r['builder']}, first "
                    f"forward + gradient {r['first_s']:.2f} s)"),
            _result(names[2], None if peak is None else peak <= 1024,
                    "unknown" if peak is None else f"{peak:.0f} MB")]


def _mlp_floor(results: Mapping[str, Any]) -> Result:
    rows = [r for r in _rows(results, "mlp") if r["layers"] == "784-256-256-10"]
    target = "mlp: gradient <= 1.1x the numpy floor"
    if not rows:
        return _result(target, None, "784-256-256-10 not run")
    r = rows[0]
    return _result(target, r["grad_over_floor"] <= 1.1,
                   f"{r['grad_over_floor']:.2f}x ({1e3 * r['gradient_s']:.2f} ms vs "
                   f"{1e3 * r['floor_gradient_s']:.2f} ms)")


def _deq(results: Mapping[str, Any]) -> list[Result]:
    rows = [r for r in _rows(results, "deq") if r["N"] >= 1000]
    names = ("deq N=1000, 3000: every direct or converged method within 1e-10 of dense",
             "deq N=1000, 3000: default gradient <= 1.1x the floor")
    sizes = sorted({r["N"] for r in rows})
    if not rows:
        return [_result(n, None, "N >= 1000 not run") for n in names]
    exact = [r for r in rows if r["method"] in EXACT["deq"] and r.get("error") is not None]
    worst = max(exact, key=lambda r: r["error"])
    default = [r for r in rows if r["method"] == "default"]
    ratios = ", ".join(f"N={r['N']}: {r['grad_over_floor']:.2f}x" for r in default)
    partial = "" if sizes == [1000, 3000] else f" (only N={sizes} run)"
    return [_result(names[0], worst["error"] <= 1e-10,
                    f"worst {worst['error']:.1e} ({worst['method']}, N={worst['N']}){partial}"),
            _result(names[1], all(r["grad_over_floor"] <= 1.1 for r in default),
                    ratios + partial)]


def _pagerank(results: Mapping[str, Any]) -> Result:
    target = "pagerank m=10^6: default gradient <= 1.1x the floor"
    rows = [r for r in _rows(results, "pagerank") if r["m"] >= 1_000_000
            and r["method"] == "default"]
    if not rows:
        return _result(target, None, "m=10^6 not run")
    r = rows[0]
    return _result(target, r["grad_over_floor"] <= 1.1,
                   f"{r['grad_over_floor']:.2f}x ({r['gradient_s']:.3f} s)")


def _blocks(results: Mapping[str, Any]) -> list[Result]:
    names = ("blocks B=10^5: default gradient <= 0.4 s", "blocks: default time linear in B")
    rows = [r for r in _rows(results, "blocks") if r["method"] == "default"
            and r.get("gradient_s") is not None]
    big = [r for r in rows if r["B"] >= 100_000]
    slope = rows[-1].get("slope") if rows else None
    largest = f"largest B run: {rows[-1]['B']} ({rows[-1]['gradient_s']:.2f} s)" if rows else ""
    first = _result(names[0], big[0]["gradient_s"] <= 0.4 if big else None,
                    f"{big[0]['gradient_s']:.2f} s" if big else largest)
    second = _result(names[1], None if slope is None else slope <= 1.15,
                     "" if slope is None else f"time ~ B^{slope:.2f}")
    return [first, second]


def _sparsejac(results: Mapping[str, Any]) -> Result:
    target = "sparsejac n=10^4: sparse Jacobian >= 100x faster than dense, and exact"
    rows = [r for r in _rows(results, "sparsejac") if r["n"] >= 10_000
            and r.get("speedup") is not None]
    if not rows:
        return _result(target, None, "n=10^4 not run")
    worst = min(rows, key=lambda r: r["speedup"])
    exact = all(r["error"] <= 1e-12 and r["missed"] == 0 for r in rows)
    return _result(target, worst["speedup"] >= 100 and exact,
                   f"worst {worst['speedup']:.0f}x ({worst['problem']}), max error "
                   f"{max(r['error'] for r in rows):.0e}")


def _jacobian(results: Mapping[str, Any]) -> Result:
    target = "jacobian with 100 rows <= 10 gradients (mlp and deq, one sweep), exact"
    rows = [r for r in _rows(results, "jacobian")
            if r.get("jac_over_grad") is not None and r["rows"] >= 100]
    if not rows or {r["problem"] for r in rows} != {"mlp", "deq"}:
        return _result(target, None, "100 rows not run")
    worst = max(rows, key=lambda r: r["jac_over_grad"])
    exact = all(r["error"] <= 1e-10 for r in rows)
    return _result(target, worst["jac_over_grad"] <= 10.0 and exact,
                   ", ".join(f"{r['problem']} {r['label']} {r['jac_over_grad']:.1f}x"
                             for r in rows) + f"; max error {max(r['error'] for r in rows):.0e}")


def _defaults(results: Mapping[str, Any]) -> Result:
    target = "default settings within 1.5x of the fastest exact lagrad method (every size)"
    worst: tuple[float, str] | None = None
    for row in _rows(results, "scaling"):
        if row.get("backsub_s") is not None:
            ratio = row["gradient_s"] / min(row["gradient_s"], row["backsub_s"])
            worst = max(worst or (0.0, ""), (ratio, f"scaling n={row['n']} vs backsub"))
    for name, size in (("deq", "N"), ("pagerank", "m"), ("blocks", "B")):
        groups: dict[Any, Rows] = {}
        for row in _rows(results, name):
            if row.get("method") in EXACT[name] and row.get("gradient_s") is not None:
                groups.setdefault(row[size], []).append(row)
        for key, group in groups.items():
            default = [r for r in group if r["method"] == "default"]
            if not default:
                continue
            # each method's own ratio to the default timed beside it, when it has one (a
            # ratio of medians taken minutes apart moves with the machine's speed)
            ratios = [(r.get("default_over_method",
                             default[0]["gradient_s"] / r["gradient_s"]), r["method"])
                      for r in group]
            ratio, best = max(ratios)
            worst = max(worst or (0.0, ""), (ratio, f"{name} {size}={key} vs {best}"))
    if worst is None:
        return _result(target, None, "")
    return _result(target, worst[0] <= 1.5, f"worst {worst[0]:.2f}x ({worst[1]})")


# lagrad ahead of a peer in the peers workload: (problem, size labels, peer, what it is)
AHEAD = (("scaling", ("n=1000000",), "casadi", "CasADi SX"),
         ("mlp", ("784-256-256-10 x 128",), "torch", "torch eager"),
         ("deq", ("N=1000", "N=3000"), "jaxopt", "jaxopt"),
         ("blocks", ("B=100000",), "jax", "JAX scan + custom_root"))


def _ahead(results: Mapping[str, Any]) -> list[Result]:
    """lagrad's default gradient faster than the named peer, timed interleaved with it."""
    peers = _rows(results, "peers")
    out = []
    for problem, labels, peer, name in AHEAD:
        target = f"{problem} {', '.join(labels)}: default gradient faster than {name} (peers)"
        rows = [r for r in peers if r.get("problem") == problem and r.get("peer") == peer
                and r.get("label") in labels and r.get("over_lagrad") is not None]
        if {r["label"] for r in rows} != set(labels):
            out.append(_result(target, None, f"{name} not run at every size"))
            continue
        agree = all("DISAGREES" not in str(r.get("note") or "") for r in rows)
        out.append(_result(target, agree and all(r["over_lagrad"] >= 1.0 for r in rows),
                           ", ".join(f"{r['label']}: {name} takes {r['over_lagrad']:.2f}x "
                                     "lagrad's time" for r in rows)
                           + ("" if agree else "; a peer DISAGREES")))
    return out


TARGETS: tuple[Callable[[Mapping[str, Any]], Result | list[Result]], ...] = (
    _grad_over_forward, _modes, _scaling_million, _mlp_floor, _deq, _pagerank, _blocks,
    _sparsejac, _jacobian, _defaults, _ahead)


def check_targets(results: Mapping[str, Any], level: str = "full") -> list[Result]:
    """Every target, evaluated on the rows of a run."""
    out: list[Result] = []
    for check in TARGETS:
        try:
            got = check(results)
        except (KeyError, TypeError, ValueError, IndexError) as err:  # a row missing data
            got = _result(check.__name__.strip("_"), False, f"could not check: {err!r}")
        out += got if isinstance(got, list) else [got]
    return out


def format_targets(targets: list[Result]) -> str:
    lines = ["targets:"]
    width = max(len(t["status"]) for t in targets) if targets else 4
    for t in targets:
        measured = f": {t['measured']}" if t["measured"] else ""
        lines.append(f"  {t['status']:<{width}}  {t['target']}{measured}")
    return "\n".join(lines)
