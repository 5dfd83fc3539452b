"""A run's printed report as Markdown: each table a Markdown table.

``lagrad bench --out DIR`` writes ``tables.md`` with it, ready to paste into
the documentation (wide console tables in code blocks cannot be read there).
The report's tables are those of :func:`lagrad.bench.core.format_table`: a
title line, a header, a line of dashes and right-aligned rows, each row as
wide as the dashes, then notes indented by two spaces.

Examples
--------
>>> text = '''modes: four ways
...   d  reverse ms  method
... -----------------------
...   1       0.246   a | b
...  10       0.227     fwd
...   times include the forward solve'''
>>> print(to_markdown(text))
**modes: four ways**
<BLANKLINE>
| d | reverse ms | method |
|---:|---:|---|
| 1 | 0.246 | a \\| b |
| 10 | 0.227 | fwd |
<BLANKLINE>
- times include the forward solve
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["to_markdown"]

_NUMBER = re.compile(r"^(-|skip|[-+]?[0-9][0-9.,e+\-^x]*%?)$")
_HEADER = re.compile(r"\S+(?: \S+)*")
_TARGET = re.compile(r"\s+(PASS|FAIL|NOT MEASURED)\s+(.*)")


def _text(text: str) -> str:
    """Escape what Markdown would read as emphasis."""
    return text.replace("*", "\\*")


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|") if text else " "


def _is_rule(line: str) -> bool:
    return bool(line) and set(line) == {"-"}


def _table(header: str, rule: str, rows: Sequence[str]) -> list[str]:
    """Cut each right-aligned row at the header's column ends."""
    names = list(_HEADER.finditer(header))
    ends = [m.end() for m in names[:-1]] + [len(rule)]
    starts = [0, *ends[:-1]]
    cells = [[row[s:e].strip() for s, e in zip(starts, ends)] for row in rows]
    align = []
    for k in range(len(names)):
        values = [c[k] for c in cells if c[k]]
        numeric = sum(bool(_NUMBER.match(v)) for v in values)
        align.append("---:" if values and numeric >= 0.8 * len(values) else "---")
    lines = ["| " + " | ".join(_cell(m.group()) for m in names) + " |",
             "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(_cell(v) for v in c) + " |" for c in cells]


def _section(lines: Sequence[str], i: int) -> tuple[list[str], int]:
    """The table starting at line i (its title) and its notes; the next line."""
    rule = lines[i + 2]
    j, rows = i + 3, []
    while j < len(lines) and len(lines[j]) == len(rule) and lines[j].strip():
        rows.append(lines[j])
        j += 1
    out = [f"**{_text(lines[i])}**", "", *_table(lines[i + 1], rule, rows)]
    notes = []
    while j < len(lines) and lines[j].startswith("  ") and lines[j].strip():
        notes.append(f"- {_text(lines[j].strip())}")
        j += 1
    return out + ([""] + notes if notes else []) + [""], j


def to_markdown(text: str) -> str:
    """The printed report ``text`` with its tables as Markdown tables, the
    targets as a list with their status in bold, and every other line (the
    machine, the run, the total) as a list item."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line and not line.startswith(" ") and i + 2 < len(lines) and _is_rule(lines[i + 2]):
            block, i = _section(lines, i)
            out += block
        elif line == "targets:":
            out += ["**targets:**", ""]
            i += 1
            while i < len(lines) and lines[i].startswith("  "):
                m = _TARGET.match(lines[i])
                out.append(f"- **{m.group(1)}** {_text(m.group(2))}" if m
                           else f"- {_text(lines[i].strip())}")
                i += 1
            out.append("")
        else:
            if line.strip():
                out.append(f"- {_text(line.strip())}")
            elif out and out[-1]:
                out.append("")
            i += 1
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)
