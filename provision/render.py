"""Render template files: ``@@NAME@@`` tokens (safe next to nginx ``$x`` and ``{{ }}``)."""

from __future__ import annotations

import re
from pathlib import Path

TOKEN = re.compile(r"@@([A-Z][A-Z0-9_]*)@@")
FILES = Path(__file__).parent / "files"


def render_text(text: str, context: dict[str, str], where: str = "template") -> str:
    """Replace every token; an unknown token is an error (never ship a placeholder)."""
    missing = sorted({m for m in TOKEN.findall(text) if m not in context})
    if missing:
        raise KeyError(f"{where}: no value for {', '.join(missing)}")
    return TOKEN.sub(lambda m: str(context[m.group(1)]), text)


def render(relpath: str, context: dict[str, str]) -> bytes:
    """The file ``files/<relpath>`` rendered with ``context``."""
    return render_text((FILES / relpath).read_text(), context, relpath).encode()
