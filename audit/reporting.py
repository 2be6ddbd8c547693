"""`AuditReporter`: the reporting process's part of an audit (the xdist controller, or the only
process): it tallies every check's outcome, decides the verdict and exit code, and writes the
requirement matrix, outcomes.json and Allure's metadata; at the end it masks secrets in every
report file and closes the shared SSH connections.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest

from audit import evidence, matrix, outcomes
from audit.catalogue import Catalogue
from audit.inventory import Inventory

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"
MAX_LISTED = 25  # requirements needing attention listed at the end of the run


def narrowed(config: pytest.Config) -> str | None:
    """How the run was narrowed on purpose (-k, -m, --deselect, paths other than checks/), or None."""
    why = []
    if config.getoption("keyword", default=""):
        why.append(f"-k {config.getoption('keyword')}")
    if config.getoption("markexpr", default=""):
        why.append(f"-m {config.getoption('markexpr')}")
    if config.getoption("deselect", default=None):
        why.append("--deselect")
    if getattr(config.option, "lf", False) or getattr(config.option, "failedfirst", False):
        why.append("--lf")
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        checks = (config.rootpath / "checks").resolve()
        paths = [a for a in config.args if Path(a.split("::")[0]).resolve() != checks]
        if paths:
            why.append("paths " + " ".join(paths))
    return ", ".join(why) or None


class AuditReporter:
    """See the module docstring; registered only in the reporting process."""

    def __init__(self, config: pytest.Config, catalogue: Catalogue, inventory: Inventory, transport_close):
        self.config = config
        self.catalogue = catalogue
        self.inventory = inventory
        self.tally = outcomes.Tally()
        self._close_transport = transport_close
        config.pluginmanager.register(self.tally, "audit-outcome-tally")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        yield
        summary = config.stash.get(outcomes.SUMMARY_KEY, None)
        if summary:
            terminalreporter.write_sep("=", "audit outcome")
            terminalreporter.write_line(summary)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        config = self.config
        partial = narrowed(config)
        checks_dir = config.rootpath / "checks"
        status = matrix.coverage(self.catalogue, self.tally.by_test, checks_dir)
        result = outcomes.verdict(self.tally, config.getoption("gate"), self.catalogue, status, partial)
        config.stash[outcomes.SUMMARY_KEY] = result.text
        if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED) \
                and (self.tally.by_test or exitstatus != pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = result.code
        alluredir = getattr(config.option, "allure_report_dir", None)
        if not alluredir:
            return
        self._write_allure_metadata(Path(alluredir))
        rows = matrix.build(self.catalogue, self.tally.by_test, checks_dir)
        out = Path(alluredir).parent
        headline = result.text.splitlines()[0]
        (out / "requirements.md").write_text(matrix.to_markdown(rows, headline))
        (out / "requirements.html").write_text(matrix.to_html(
            rows, meta={"summary": headline, **self.properties()}))
        (out / "requirements.json").write_text(json.dumps(rows, indent=1))
        (out / "outcomes.json").write_text(json.dumps(
            {"exit_code": result.code, "gate": config.getoption("gate") or "nightly", "summary": result.text,
             "partial": partial, "not_audited": result.not_audited,
             "coverage": dict(sorted(status.items())), "matrix": matrix.summary(rows),
             "tests": self.tally.by_test}, indent=1))
        todo = matrix.attention(rows)
        lines = [result.text, f"requirement matrix: {matrix.summary_line(rows)} -> {out / 'requirements.md'}"]
        lines += [f"  {r['status']:<7} {r['severity']:<8} {r['id']:<28} "
                  + " ".join(f"{h}={o}" for h, o in r["hosts"].items()) for r in todo[:MAX_LISTED]]
        if len(todo) > MAX_LISTED:
            lines.append(f"  ... {len(todo) - MAX_LISTED} more in {out / 'requirements.md'}")
        default = Path(alluredir).resolve() == (REPORTS / "allure-results").resolve()
        lines.append("HTML report: python -m reports" + ("" if default else f" --results {alluredir}"))
        config.stash[outcomes.SUMMARY_KEY] = "\n".join(lines)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        for target in (getattr(config.option, "allure_report_dir", None), getattr(config.option, "xmlpath", None)):
            if target and Path(target).exists():
                evidence.scrub_tree(target)
        self._close_transport()

    # ------------------------------------------------------------ metadata

    def properties(self) -> dict[str, str]:
        """What was audited, by which suite, under which gate: Allure's environment, the matrix header."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            suite_version = version("pynomaly-audit")
        except PackageNotFoundError:
            suite_version = "dev"
        inv = self.inventory
        props = {
            "inventory": f"{inv.name} ({inv.path})",
            "hosts": ", ".join(sorted(inv.hosts)),
            "suite.version": suite_version,
            "suite.git": _git_sha(),
            "gate": self.config.getoption("gate") or "nightly",
            "scope": narrowed(self.config) or "full",
            "audited.at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        for req_id, value in sorted((inv.setting("audit_expected") or {}).items()):
            props[f"override.{req_id}"] = repr(value)
        for key, reason in sorted((inv.setting("audit_not_applicable") or {}).items()):
            props[f"not-applicable.{key}"] = reason
        return {k: evidence.mask(str(v)) for k, v in props.items()}

    def _write_allure_metadata(self, alluredir: Path) -> None:
        """environment.properties (what was audited) and categories.json (why a check is not green).
        Allure 3 shows the properties as the report's metadata; it reads categories from its config
        (allurerc.mjs loads this categories.json)."""
        alluredir.mkdir(parents=True, exist_ok=True)
        props = {**self.properties(),
                 "requirement.matrix": "requirements.html (Global Attachments tab; requirements.md beside it)"}
        text = "\n".join(f"{k}={_escape_property(v)}" for k, v in props.items())
        (alluredir / "environment.properties").write_text(text + "\n")
        (alluredir / "categories.json").write_text(outcomes.ALLURE_CATEGORIES)


def write_transport_stats(alluredir: str | None, stats: dict, gathered: dict | None = None) -> None:
    """Every process: what it asked of each host, and the facts it gathered with the seconds each
    took (benchmarks read them)."""
    if alluredir and (stats or gathered):
        stats_dir = Path(alluredir).parent / "transport-stats"
        stats_dir.mkdir(parents=True, exist_ok=True)
        (stats_dir / f"{os.getpid()}.json").write_text(json.dumps(stats))
        if gathered:
            (stats_dir / f"facts-{os.getpid()}.json").write_text(json.dumps(
                {f"{probe}@{host}": round(seconds, 3) for (probe, host), seconds in gathered.items()}))


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False).stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _escape_property(value: str) -> str:
    """A Java .properties value (what Allure reads): backslashes, and line breaks kept on one line."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")
