"""One table for a whole run: each headline workload's default gradient, its
floor and its fastest peer, all taken from the same run.

The workloads' own tables hold every method and size; this one keeps, per
workload and size, lagrad's default, the hand-written floor timed beside it
(or, for the Jacobian, one gradient of the same program) and, where the run
included the peers, the peer with the shortest time among those whose
gradient agreed with lagrad's. A peer's ratio is its own interleaved timing
against lagrad's in the peers workload, so it is a ratio within one run too.

Examples
--------
>>> results = {"deq": {"rows": [
...     {"N": 1000, "method": "default", "gradient_s": 0.012},
...     {"N": 1000, "method": "floor (numpy)", "gradient_s": 0.010}]},
...   "peers": {"rows": [
...     {"problem": "deq", "label": "N=1000", "peer": "jaxopt", "seconds": 0.018,
...      "over_lagrad": 1.5, "error": 1e-12, "method": "FixedPointIteration"}]}}
>>> row, = summary_rows(results)
>>> row["workload"], row["size"], round(row["over_floor"], 2), row["peer"]
('DEQ', 'N=1000', 1.2, 'jaxopt (FixedPointIteration)')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .core import Column, format_table

__all__ = ["summary_rows", "format_summary"]

Row = dict[str, Any]


@dataclass(frozen=True)
class _Headline:
    """Where one workload's headline figures live in its rows."""

    workload: str
    title: str
    size: Callable[[Row], str]  # the size label, as the peers workload writes it
    is_default: Callable[[Row], bool]
    is_floor: Callable[[Row], bool]
    time_key: str = "gradient_s"
    floor_key: str = "gradient_s"
    peer_problem: str = ""
    peer_label: Callable[[Row], str] | None = None


def _method(name: str) -> Callable[[Row], bool]:
    return lambda r: r.get("method") == name


def _floor_method(r: Row) -> bool:
    return str(r.get("method", "")).startswith("floor")


def _always(r: Row) -> bool:
    return True


HEADLINES = (
    _Headline("scaling", "scalar DAG", lambda r: f"n={r['n']}", _always, _always,
              floor_key="floor_gradient_s", peer_problem="scaling"),
    _Headline("mlp", "MLP", lambda r: f"{r['layers']} x {r['batch']}", _always, _always,
              floor_key="floor_gradient_s", peer_problem="mlp"),
    _Headline("deq", "DEQ", lambda r: f"N={r['N']}", _method("default"), _floor_method,
              peer_problem="deq"),
    _Headline("pagerank", "PageRank", lambda r: f"m={r['m']}", _method("default"),
              _floor_method, peer_problem="pagerank"),
    _Headline("blocks", "blocks chain", lambda r: f"B={r['B']}", _method("default"),
              _floor_method, peer_problem="blocks"),
    _Headline("blocks", "blocks independent", lambda r: f"B={r['B']}",
              _method("independent: default"), _method("independent: floor (numpy)")),
    _Headline("jacobian", "Jacobian", lambda r: f"{r['problem']} {r['label']}, {r['rows']} rows",
              _always, _always, time_key="jacobian_s", floor_key="gradient_s",
              peer_problem="jacobian"),
)


def _rows(results: Mapping[str, Any], name: str) -> list[Row]:
    entry = results.get(name) or {}
    return [r for r in entry.get("rows", []) if not r.get("skipped")]


def _best_peer(peers: list[Row], problem: str, label: str) -> Row | None:
    """The fastest peer that ran this problem and size and agreed with lagrad."""
    ran = [r for r in peers if r.get("problem") == problem and r.get("label") == label
           and r.get("peer") != "lagrad" and r.get("over_lagrad") is not None
           and "DISAGREES" not in str(r.get("note") or "")]
    return min(ran, key=lambda r: r["over_lagrad"]) if ran else None


def _headline_rows(spec: _Headline, rows: list[Row], peers: list[Row]) -> Iterator[Row]:
    floors = {spec.size(r): r for r in rows if spec.is_floor(r) and r.get(spec.floor_key)}
    for r in rows:
        if not spec.is_default(r) or r.get(spec.time_key) is None:
            continue
        size = spec.size(r)
        floor = floors.get(size)
        floor_s = floor.get(spec.floor_key) if floor else None
        out: Row = {"workload": spec.title, "size": size, "lagrad_s": r[spec.time_key],
                    "floor_s": floor_s,
                    "over_floor": r[spec.time_key] / floor_s if floor_s else None}
        peer = _best_peer(peers, spec.peer_problem, size)
        if peer is not None:
            method = f" ({peer['method']})" if peer.get("method") else ""
            out.update(peer=f"{peer['peer']}{method}", peer_over_lagrad=peer["over_lagrad"])
        yield out


def summary_rows(results: Mapping[str, Any]) -> list[Row]:
    """The summary's rows from a run's results (``{workload: {"rows": [...]}}``)."""
    peers = _rows(results, "peers")
    out: list[Row] = []
    for spec in HEADLINES:
        out += _headline_rows(spec, _rows(results, spec.workload), peers)
    return out


COLUMNS = [Column("workload", "workload"), Column("size", "size"),
           Column("lagrad_s", "lagrad ms", "{:.2f}", 1e3),
           Column("floor_s", "floor ms", "{:.2f}", 1e3),
           Column("over_floor", "/floor", "{:.2f}"),
           Column("peer", "fastest agreeing peer"),
           Column("peer_over_lagrad", "peer/lagrad", "{:.2f}")]


def format_summary(results: Mapping[str, Any]) -> str:
    """The summary table, or an empty string when the run had no headline workload."""
    rows = summary_rows(results)
    if not rows:
        return ""
    notes = ["lagrad: default settings, forward + gradient; floor: the hand-written numpy/scipy "
             "implementation timed beside it (Jacobian: one gradient of the same program)",
             "peer/lagrad: the peer's time over lagrad's, timed interleaved in the peers "
             "workload (above 1: lagrad is faster); '-' where the run had no peer for it"]
    return format_table("summary: every workload against its floor and its fastest peer",
                        COLUMNS, rows, notes)
