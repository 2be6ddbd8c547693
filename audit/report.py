"""The HTML report: reports/allure-results -> reports/html with Allure 3 (Node.js, no JVM), offline.

`python -m reports` (or `tox -e report`) runs this. Allure 3 is the npm package pinned in
tools/package.json and installed by scripts/bootstrap.sh into tools/node_modules; its settings
are in allurerc.mjs (report name, categories, the requirement matrix as a global attachment,
and `historyPath`: reports/history/history.jsonl keeps the trend between runs).

Allure's report pages carry a Google Tag Manager (analytics) script tag that Allure 3 has no
switch for: it is removed here, and a Content-Security-Policy that only allows the report's own
files is added, so that viewing the report reaches no outside host. The result is checked: a
script, style, image or frame that would load from a host other than the local one is an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from audit import matrix

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"
ALLURE = ROOT / "tools" / "node_modules" / ".bin" / "allure"
CONFIG = ROOT / "allurerc.mjs"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
# Only the report's own files, inline code (Allure's loader and data), data: and blob: URLs.
CSP = ("default-src 'self' data: blob: 'unsafe-inline' 'unsafe-eval'; "
       "connect-src 'self' data: blob:; form-action 'none'; base-uri 'self'")

OK, FAILED = 0, 2


class ReportError(Exception):
    """The report could not be generated (tool missing, no results, Allure failed)."""


# ---------------------------------------------------------------- offline: strip and verify

_ANALYTICS_TAG = re.compile(
    r"""<script\b[^>]*\bsrc\s*=\s*["']https?://[^"']*(?:googletagmanager|google-analytics)[^"']*["'][^>]*>"""
    r"""\s*</script>\s*""", re.IGNORECASE)
_INLINE_SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script>\s*", re.IGNORECASE | re.DOTALL)


def strip_analytics(page: str) -> str:
    """Remove the analytics loader (`<script src=googletagmanager...>`) and the inline `gtag(...)`
    set-up script that follows it; nothing else of the page changes."""
    page = _ANALYTICS_TAG.sub("", page)
    return _INLINE_SCRIPT.sub(lambda m: "" if re.search(r"\bgtag\s*\(|dataLayer", m.group(1)) else m.group(0),
                              page)


def add_csp(page: str, policy: str = CSP) -> str:
    """Put a Content-Security-Policy meta tag first in <head> (once)."""
    if 'http-equiv="Content-Security-Policy"' in page:
        return page
    tag = f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
    return re.sub(r"(<head\b[^>]*>)", lambda m: m.group(1) + "\n    " + tag, page, count=1, flags=re.IGNORECASE)


_FETCHING_ATTRS = {"src", "href", "srcset", "data", "poster", "action", "formaction", "background"}
_FETCHING_TAGS = {"script", "link", "img", "iframe", "frame", "embed", "object", "source", "audio", "video",
                  "track", "image", "use", "input", "form", "base", "meta"}


def is_local_url(url: str) -> bool:
    """True unless `url` names a host other than the local one (relative, data:, blob: are local)."""
    parts = urlsplit(url.strip())
    if parts.scheme and parts.scheme.lower() not in ("http", "https", "ws", "wss", "ftp"):
        return True  # data:, blob:, javascript:, mailto:, about:
    if not parts.netloc:
        return True  # relative to the report
    host = (parts.hostname or "").lower()
    return host in LOCAL_HOSTS or host.startswith("127.")


class _UrlCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _FETCHING_TAGS:
            return
        for name, value in attrs:
            if value is None:
                continue
            if tag == "meta" and name == "content" and dict(attrs).get("http-equiv", "").lower() == "refresh":
                value = value.partition("=")[2] or value
            elif name not in _FETCHING_ATTRS:
                continue
            for candidate in (value.split(",") if name == "srcset" else [value]):
                url = candidate.strip().split(" ")[0]
                if url:
                    self.found.append((tag, name, url))

    handle_startendtag = handle_starttag


def outside_urls(page: str) -> list[str]:
    """`tag attr=url` for every script/link/img/frame/... URL of the page that names an outside host."""
    collector = _UrlCollector()
    collector.feed(page)
    return [f"<{tag} {attr}={url}>" for tag, attr, url in collector.found if not is_local_url(url)]


def make_offline(output: Path) -> list[str]:
    """Strip analytics from and add the CSP to every HTML page of the report; return what is still
    outside (empty when the report is offline)."""
    problems = []
    for page_path in sorted(output.rglob("*.html")):
        if "data" in page_path.relative_to(output).parts[:1]:
            continue  # attachments: kept as the audit wrote them (the matrix has its own CSP)
        page = page_path.read_text(encoding="utf-8")
        fixed = add_csp(strip_analytics(page))
        if fixed != page:
            page_path.write_text(fixed, encoding="utf-8")
        problems += [f"{page_path.relative_to(output)}: {u}" for u in outside_urls(fixed)]
    return problems


# ---------------------------------------------------------------- generation


def allure_command() -> list[str]:
    """The Allure 3 CLI from tools/node_modules (installed by scripts/bootstrap.sh)."""
    if not ALLURE.exists():
        raise ReportError(f"Allure 3 is not installed ({ALLURE} missing): run `bash scripts/bootstrap.sh`")
    if shutil.which("node") is None:
        raise ReportError("node is not installed: run `bash scripts/bootstrap.sh`")
    return [str(ALLURE)]


def render_matrix(results: Path) -> Path | None:
    """requirements.html beside allure-results: the audit writes it; (re)written from
    requirements.json here only when it is missing or older (results from another tool)."""
    source, target = results.parent / "requirements.json", results.parent / "requirements.html"
    if not source.exists():
        return None
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    meta = {}
    outcome = results.parent / "outcomes.json"
    if outcome.exists():
        meta["summary"] = json.loads(outcome.read_text()).get("summary", "").partition("\n")[0]
    target.write_text(matrix.to_html(json.loads(source.read_text()), meta=meta))
    return target


def _safe_clean(output: Path) -> None:
    if not output.exists():
        return
    if any(output.iterdir()) and not (output / "index.html").exists():
        raise ReportError(f"{output} is not empty and holds no report: not overwriting it")
    shutil.rmtree(output)


def generate(results: Path = REPORTS / "allure-results", output: Path = REPORTS / "html",
             history: Path | None = REPORTS / "history" / "history.jsonl", *, single_file: bool = False,
             name: str | None = None) -> dict:
    """Generate the report; return {"output", "seconds", "stats", "index"}. Raises ReportError."""
    results, output = results.resolve(), output.resolve()
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise ReportError(f"no Allure results in {results}: run the audit first (pytest --hosts=NAME)")
    command = allure_command()
    render_matrix(results)
    _safe_clean(output)
    env = {**os.environ, "AUDIT_RESULTS_DIR": str(results), "AUDIT_REPORT_DIR": str(output),
           "AUDIT_SINGLE_FILE": "1" if single_file else "0", "NO_COLOR": "1", "ALLURE_NO_ANALYTICS": "true"}
    if history is None:
        env["AUDIT_HISTORY"] = ""  # allurerc.mjs: no history
    else:
        history = history.resolve()
        history.parent.mkdir(parents=True, exist_ok=True)
        env["AUDIT_HISTORY"] = str(history)
    if name:
        env["AUDIT_REPORT_NAME"] = name
    args = [*command, "generate", "--config", str(CONFIG), "--output", str(output), str(results)]
    started = time.monotonic()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0 or not (output / "index.html").exists():
        raise ReportError(f"allure generate failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    for extra in ("requirements.html", "requirements.md", "requirements.json", "outcomes.json", "junit.xml"):
        source = results.parent / extra
        if source.exists():  # beside index.html too, so a published report links to them
            shutil.copy2(source, output / extra)
    problems = make_offline(output)
    if problems:
        raise ReportError("the report would load from outside hosts:\n  " + "\n  ".join(problems))
    seconds = time.monotonic() - started
    stats = {}
    summary = output / "summary.json"
    if summary.exists():
        stats = json.loads(summary.read_text()).get("stats", {})
    return {"output": output, "index": output / "index.html", "seconds": seconds, "stats": stats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports",
        description="Turn the audit's Allure results into an HTML report (Allure 3, offline, with history).")
    parser.add_argument("--results", type=Path, default=REPORTS / "allure-results",
                        help="Allure results folder (default: reports/allure-results)")
    parser.add_argument("--output", "-o", type=Path, default=REPORTS / "html",
                        help="report folder (default: reports/html); replaced on every run")
    parser.add_argument("--history", type=Path, default=REPORTS / "history" / "history.jsonl",
                        help="Allure 3 history file kept between runs (default: reports/history/history.jsonl)")
    parser.add_argument("--no-history", action="store_true", help="do not read or extend the history")
    parser.add_argument("--single-file", action="store_true",
                        help="one self-contained index.html (opens from disk, no web server needed)")
    parser.add_argument("--name", help="report name (default: Pynomaly deployment audit)")
    args = parser.parse_args(argv)
    try:
        done = generate(args.results, args.output, None if args.no_history else args.history,
                        single_file=args.single_file, name=args.name)
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return FAILED
    stats = done["stats"]
    counts = ", ".join(f"{k} {stats[k]}" for k in ("passed", "failed", "broken", "skipped", "total") if k in stats)
    print(f"report: {done['index']} ({counts}) in {done['seconds']:.1f} s")
    if not args.single_file:
        print("report: view it with `tools/node_modules/.bin/allure open reports/html` or any static web server "
              "(a folder report does not open from disk; --single-file does)")
    return OK


if __name__ == "__main__":
    sys.exit(main())
