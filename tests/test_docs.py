"""Every example in README.md, docs/*.md and the docstrings runs as a doctest.

The documentation site (mkdocs.yml, docs/) is checked too: every code block
is a doctest or a shell command, every page is in the navigation, every module
is in the API reference, and (when the ``docs`` extra is installed) the site
builds with ``mkdocs build --strict``.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lagrad

ROOT = Path(__file__).resolve().parents[1]
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
MODULES = sorted(m.name for m in pkgutil.walk_packages(lagrad.__path__, "lagrad."))
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```\s*$", re.M | re.S)
LANGUAGES = {"python": "doctest", "console": "shell", "text": "text"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_markdown_examples(path: Path) -> None:
    result = doctest.testfile(str(path), module_relative=False, optionflags=FLAGS)
    assert result.failed == 0


def test_markdown_files_have_examples() -> None:
    assert doctest.testfile(str(ROOT / "README.md"), module_relative=False,
                            optionflags=FLAGS).attempted >= 5


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS)
    assert result.failed == 0


# ------------------------------------------------------------- the site

def _fenced_blocks(path: Path) -> list[tuple[str, str, int]]:
    text = path.read_text()
    return [(m["lang"], m["body"], text.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(text)]


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_code_blocks_are_run(path: Path) -> None:
    """A ```python block is a doctest (so it runs), a ```console block holds
    only shell commands, a ```text block plain text (no doctest); nothing else.
    Maths is typeset: $...$ and $$...$$, not code blocks."""
    parser = doctest.DocTestParser()
    for lang, body, line in _fenced_blocks(path):
        where = f"{_rel(path)}:{line}"
        assert lang in LANGUAGES, \
            f"{where}: code block language {lang!r}; use one of {sorted(LANGUAGES)}"
        if lang == "python":
            assert body.lstrip().startswith(">>> "), f"{where}: a python block must be a doctest"
            assert parser.get_examples(body), f"{where}: no doctest example in the block"
            # without it, doctest reads the closing fence as expected output
            assert body.endswith("\n\n"), f"{where}: end the block with a blank line before ```"
        elif lang == "console":
            commands = [ln for ln in body.splitlines() if ln.strip()]
            assert commands and all(ln.startswith("$ ") for ln in commands), \
                f"{where}: a console block holds only '$ ' command lines"
        else:
            assert ">>>" not in body, f"{where}: a doctest in a text block would not run"


# ------------------------------------------------------------- maths and references

# Maths written as ASCII in prose (how the docs spelled it before they were
# typeset): each is a formula that belongs between $...$.
ASCII_MATHS = re.compile(r"lambda_|zdot|z_alpha|\(I - J\)\^T lambda|dL/d(?:z|lambda)|J\[i, j\]")
PROSE_CODE = re.compile(r"^```.*?^```|^    .*?$|`[^`\n]*`|\$\$.*?\$\$|\$(?:[^$\n]|\n(?!\n))*\$",
                        re.M | re.S)
SITE_PAGES = sorted((ROOT / "docs").glob("**/*.md"))


@pytest.mark.parametrize("path", SITE_PAGES, ids=_rel)
def test_maths_is_typeset(path: Path) -> None:
    """Prose outside code and $...$ holds no ASCII formulas."""
    prose = PROSE_CODE.sub("", path.read_text())
    found = sorted(set(ASCII_MATHS.findall(prose)))
    assert not found, f"{_rel(path)}: write {found} as maths ($...$)"


def test_mkdocs_typesets_maths() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"pymdownx\.arithmatex:\s*\n\s*generic: true", config)
    assert "mathjax" in config
    assert (ROOT / "docs" / "javascripts" / "mathjax.js").exists()


@pytest.mark.parametrize("path", DOCS + [ROOT / "CHANGELOG.md"], ids=_rel)
def test_docs_stand_alone(path: Path) -> None:
    """No file outside the project, no issue tracker numbers."""
    text = path.read_text()
    for outside in ("MATH.md", "ARCHITECTURE.md", "STYLE.md", "../shared"):
        assert outside not in text, f"{_rel(path)} refers to {outside}, outside the project"
    assert not re.search(r"\bissues?\b", text, re.I), f"{_rel(path)} mentions an issue"


def test_navigation_lists_every_page() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    nav = config[config.index("\nnav:"):config.index("\ntheme:")]
    listed = set(re.findall(r":\s*(\S+\.md)\s*$", nav, re.M))
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").glob("**/*.md")}
    assert listed == pages, \
        f"in nav only: {sorted(listed - pages)}; missing: {sorted(pages - listed)}"


def _documented_modules() -> list[str]:
    api = sorted((ROOT / "docs" / "api").glob("*.md"))
    return [m for p in api for m in re.findall(r"^::: (\S+)\s*$", p.read_text(), re.M)]


@pytest.mark.parametrize("name", MODULES)
def test_api_reference_covers_module(name: str) -> None:
    documented = _documented_modules()
    covered = name in documented or any(name.startswith(f"{d}.") for d in documented)
    assert covered, f"{name} is not in the API reference: add '::: {name}' to a page in docs/api/"


def test_api_reference_names_real_modules() -> None:
    for name in _documented_modules():
        importlib.import_module(name)


def test_readme_names_the_build_command() -> None:
    command = 'pip install -e ".[docs]" && mkdocs build --strict'
    assert command in (ROOT / "README.md").read_text()
    assert command in (ROOT / "docs" / "index.md").read_text()


def test_site_builds_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="needs the docs extra: pip install -e '.[docs]'")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert "WARNING" not in log, log
    assert (tmp_path / "site" / "lagrangian" / "index.html").exists()
