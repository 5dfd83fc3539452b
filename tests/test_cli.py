"""The `lagrad` command's own options and the package metadata it reports."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

import lagrad
from lagrad.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_option_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"lagrad {lagrad.__version__}"


def _project_field(name: str) -> str:
    """A string field of pyproject.toml's [project] table (tomllib needs 3.11)."""
    text = (ROOT / "pyproject.toml").read_text()
    table = text[text.index("[project]"):]
    match = re.search(rf'^{name} = "([^"]*)"', table, re.M)
    assert match, name
    return match.group(1)


def test_one_version_everywhere() -> None:
    assert _project_field("version") == lagrad.__version__ == metadata.version("lagrad")


def test_license_is_an_spdx_expression_with_its_file() -> None:
    assert _project_field("license") == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (Path(lagrad.__file__).parent / "py.typed").exists()


def test_user_facing_text_names_no_issue_numbers() -> None:
    texts = [p.read_text() for p in (ROOT / "src").rglob("*.py")]
    texts += [p.read_text() for p in (ROOT / "docs").rglob("*.md")] + [
        (ROOT / "README.md").read_text()]
    hits = [m.group(0) for t in texts for m in re.finditer(r"\bissue \d+\b", t)]
    assert not hits, hits
