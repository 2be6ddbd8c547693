"""Outcome categories, the verdict of a run and its exit code.

- failed          the deployment is non-compliant (an assertion about it did not hold)
- broken / error  the suite could not audit (host unreachable, auth refused, tool missing)
- skipped         waived, or the role is absent from the inventory; always with a reason
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import pytest

COMPLIANT = 0
NON_COMPLIANT = 1
USAGE_ERROR = 4  # pytest's own code for a usage error (bad inventory, waiver file, option)
COULD_NOT_AUDIT = 6
EXIT_CODES = {COMPLIANT: "compliant", NON_COMPLIANT: "non-compliant", USAGE_ERROR: "usage error",
              COULD_NOT_AUDIT: "could not audit"}

NON_COMPLIANCE = "non-compliance"
NOT_AUDITED = "could-not-audit"
WAIVED = "waived"
SUMMARY_KEY = pytest.StashKey[str]()

# Allure 2 reads categories.json from allure-results and puts a result in every category it
# matches; Allure 3 (allurerc.mjs passes this list as its `categories`) takes the first match,
# so the specific categories come before the general ones.
ALLURE_CATEGORIES = json.dumps([
    {"name": "Expired waiver", "matchedStatuses": ["failed"], "messageRegex": ".*waiver for .* expired.*"},
    {"name": "Non-compliance (the deployment differs from the guide)", "matchedStatuses": ["failed"]},
    {"name": "Could not audit (unreachable host, refused login, missing tool)",
     "matchedStatuses": ["broken"]},
    {"name": "Waived", "matchedStatuses": ["skipped"], "messageRegex": ".*waived:.*"},
    {"name": "Not applicable (role absent)", "matchedStatuses": ["skipped"],
     "messageRegex": ".*absent from inventory.*"},
], indent=2)
BLOCKING_SEVERITIES = {"blocker", "critical"}


def classify(report: pytest.TestReport, exc: BaseException | None) -> str | None:
    """The category of a non-passing phase report, or None when it passed."""
    if report.skipped:
        text = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        return WAIVED if "waived:" in text else None
    if not report.failed:
        return None
    if report.when == "call" and isinstance(exc, (AssertionError, pytest.fail.Exception)):
        return NON_COMPLIANCE
    return NOT_AUDITED


def _message(report: pytest.TestReport, limit: int = 300) -> str:
    """The one-line reason of a failed phase (the exception's message), masked."""
    from audit.evidence import mask

    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message
    else:
        lines = [line for line in str(report.longrepr).strip().splitlines() if line.strip()]
        text = lines[-1] if lines else ""
    text = " ".join(mask(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(eq=False)  # registered as a plugin: must stay hashable
class Tally:
    """Per-test outcomes seen by the reporting process; a pytest plugin (logreport hook)."""

    by_test: dict[str, dict] = field(default_factory=dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        entry = self.by_test.setdefault(report.nodeid, {"outcome": "passed", "requirements": "",
                                                         "host": None, "category": None})
        entry["requirements"] = props.get("requirements", entry["requirements"])
        entry["host"] = props.get("host", entry["host"])
        category = props.get("category")
        if report.failed:
            entry["outcome"] = "failed" if category == NON_COMPLIANCE else "error"
            entry["category"] = category
            entry.setdefault("message", _message(report))
        elif report.skipped:
            entry["outcome"] = "skipped"
            entry["category"] = category
            entry["reason"] = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)

    def counts(self) -> Counter:
        return Counter(e["outcome"] for e in self.by_test.values())


def verdict(tally: Tally, gate: str | None, catalogue) -> tuple[int, str]:
    """Exit code and a summary. nightly (the default) counts every failure as blocking; the
    pre-release gate counts only failures of blocker or critical requirements (a failed check
    naming no catalogued requirement counts too), lists the others, and nothing may be broken.
    Non-compliance (1) wins over could-not-audit (6)."""
    gate = gate or "nightly"
    counts = tally.counts()
    blocking, lenient = [], []
    for nodeid, e in tally.by_test.items():
        if e["outcome"] != "failed":
            continue
        reqs = [r for r in e["requirements"].split(",") if r]
        severities = {catalogue.by_id[r].severity for r in reqs if r in catalogue.by_id}
        if gate != "pre-release" or not severities or severities & BLOCKING_SEVERITIES:
            blocking.append(nodeid)
        else:
            worst = "normal" if "normal" in severities else "minor"
            lenient.append(f"  {nodeid} ({', '.join(reqs)}; {worst})")
    if blocking:
        code = NON_COMPLIANT
    elif counts["error"]:
        code = COULD_NOT_AUDIT
    else:
        code = COMPLIANT
    text = (f"{EXIT_CODES[code].upper()} (exit {code}, gate {gate}): "
            f"{counts['passed']} passed, {counts['failed']} non-compliant, {counts['error']} could not audit, "
            f"{counts['skipped']} skipped")
    if lenient:
        text += (f" ({len(lenient)} non-blocking failures below critical)\n"
                 f"non-blocking failures (normal/minor; they do not fail the pre-release gate):\n"
                 + "\n".join(sorted(lenient)))
    return code, text
