"""Version strings as tools print them ("nginx version: nginx/1.22.1", "Redis server v=7.0.15")."""

from __future__ import annotations

import re

from packaging.version import InvalidVersion, Version

_NUMBER = re.compile(r"(?<![\w.])v?=?(\d+(?:\.\d+){0,3})")


def find_version(text: str, after: str | None = None) -> Version | None:
    """The first dotted version number in `text` (after the marker `after`, when given)."""
    if after and after in text:
        text = text.split(after, 1)[1]
    for match in _NUMBER.finditer(text or ""):
        try:
            return Version(match.group(1))
        except InvalidVersion:
            continue
    return None


def at_least(found: Version | None, minimum: str) -> bool:
    return found is not None and found >= Version(str(minimum))
