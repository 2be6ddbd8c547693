"""Evidence for Allure, with every known secret masked, and the masking itself.

Secrets are registered when the inventory's references are resolved; `mask()` replaces each
known value (and its URL-encoded form) wherever text leaves the suite: attachments, assertion
messages, logs, and a final scrub of the report files.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import allure

MASK = "••••••"
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
# key=value or key: value pairs whose key looks secret, in evidence taken from config files
SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|salt|key|requirepass|masterauth|auth)")


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked everywhere from now on."""
    global _pattern
    if not value or len(value) < 4:
        return
    for variant in {value, quote(value, safe=""), quote(value), json.dumps(value)[1:-1]}:
        _secrets.add(variant)
    _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def mask(text: Any) -> Any:
    """`text` with every registered secret replaced by a mask (non-strings pass through)."""
    if not isinstance(text, str) or _pattern is None:
        return text
    return _pattern.sub(MASK, text)


def mask_assignments(text: str) -> str:
    """Mask the values of secret-looking keys in `KEY=value` / `key value` config text."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^(\s*(?:export\s+)?)([A-Za-z_][\w.-]*)(\s*[=:]\s*|\s+)(.+)$", line)
        if m and SECRET_KEY.search(m.group(2)) and not line.lstrip().startswith("#"):
            line = f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}"
        out.append(line)
    return mask("\n".join(out))


def attach(name: str, content: Any, kind: str = "text") -> None:
    """Attach what a check saw to the Allure report (JSON for data, text otherwise), masked."""
    if kind == "json" or not isinstance(content, str):
        body = json.dumps(content, indent=2, sort_keys=True, default=str)
        allure.attach(mask(body), name=name, attachment_type=allure.attachment_type.JSON)
    elif kind == "html":
        allure.attach(mask(content), name=name, attachment_type=allure.attachment_type.HTML)
    else:
        allure.attach(mask(content), name=name, attachment_type=allure.attachment_type.TEXT)


def attach_file(path: str | Path, name: str | None = None) -> None:
    """Attach a local file (e.g. a CSV or HTML report) after masking its text."""
    path = Path(path)
    kinds = {".csv": allure.attachment_type.CSV, ".html": allure.attachment_type.HTML,
             ".json": allure.attachment_type.JSON, ".png": allure.attachment_type.PNG,
             ".svg": allure.attachment_type.SVG}
    atype = kinds.get(path.suffix, allure.attachment_type.TEXT)
    if atype in (allure.attachment_type.PNG,):
        allure.attach.file(str(path), name=name or path.name, attachment_type=atype)
    else:
        allure.attach(mask(path.read_text(errors="replace")), name=name or path.name, attachment_type=atype)


def compare(name: str, actual: Any, expected: Any) -> None:
    """Attach an actual-vs-expected table, the most common evidence."""
    attach(name, {"actual": actual, "expected": expected}, kind="json")


class MaskingFilter(logging.Filter):
    """Masks secrets in every log record that passes through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is not None:
            record.msg = mask(record.getMessage())
            record.args = ()
        return True


def scrub_tree(root: str | Path) -> int:
    """Mask secrets in a report file, or in every text file under a report folder."""
    if _pattern is None:
        return 0
    changed = 0
    root = Path(root)
    for path in (root.rglob("*") if root.is_dir() else [root]):
        if not path.is_file() or path.suffix in (".png", ".jpg", ".gz", ".zip"):
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        masked = mask(text)
        if masked != text:
            path.write_text(masked)
            changed += 1
    return changed
