"""MkDocs hook: render the Sphinx roles used in lagrad's docstrings.

Docstrings say :func:`lagrad.trace`, :meth:`solve`, :class:`~lagrad.System`.
mkdocstrings passes the role name through as text (":func:" before the code),
so this hook removes it. A fully qualified ``lagrad.`` name becomes an
optional cross-reference (a link when the API reference documents it, plain
code otherwise); ``~`` keeps only the last component as the title.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|data|attr|exc|obj|const):"
                  r"<code>(~?)([^<]+)</code>")


def _replace(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    title = target.rsplit(".", 1)[-1] if tilde else target
    if target.startswith("lagrad."):
        return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'
    return f"<code>{title}</code>"


def on_page_content(html: str, **_: Any) -> str:
    return ROLE.sub(_replace, html)
