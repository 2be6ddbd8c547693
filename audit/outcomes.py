"""The suite's outcome types, how a check's result is classified, and the verdict of a run.

Checks and fixtures raise the suite's own types; the classification is by type, not by phase:

- `NonCompliant` (an AssertionError)  the deployment differs from the guide: failed (exit 1).
- `CouldNotAudit`                     the suite could not look: names the host, the service and
                                      why (exit 6). `HostUnreachable` is one of them.
- waived / not applicable             skipped with the reason (a waiver, or the inventory's
                                      `audit_not_applicable`); nothing is not applicable by
                                      inference.
- anything else                       a defect of the suite (exit 6, category "suite error").

A finding raised while a fixture gathers facts is still a finding: the plugin holds it back
until the check's call, so that it is reported as non-compliance, not as an error.
"""

from __future__ import annotations

import dataclasses
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

# categories (user property "category", outcomes.json, Allure categories)
NON_COMPLIANCE = "non-compliance"
EXPIRED_WAIVER = "expired-waiver"
NOT_AUDITED = "could-not-audit"
SUITE_ERROR = "suite-error"
WAIVED = "waived"
NOT_APPLICABLE = "not-applicable"
SUMMARY_KEY = pytest.StashKey[str]()
BLOCKING_SEVERITIES = {"blocker", "critical"}


class NonCompliant(AssertionError):
    """The deployment differs from the guide. The message says what, where, found and expected."""


class CouldNotAudit(Exception):
    """The suite could not audit something: `host` (None for the deployment as a whole), the
    `service` it tried to reach or read, and `why`, in the suite's words."""

    def __init__(self, host: str | None, service: str, why: str):
        self.host, self.service, self.why = host, service, why
        super().__init__(f"could not audit {f'{host}: ' if host else ''}{service}: {why}")

    def __reduce__(self):  # facts are cached across processes, failures included
        return (type(self), (self.host, self.service, self.why))


class HostUnreachable(CouldNotAudit):
    """The host itself cannot be reached or refuses the login (every check on it is affected)."""

    def __init__(self, host: str | None, why: str, service: str = "SSH"):
        super().__init__(host, service, why)

    def __reduce__(self):
        return (type(self), (self.host, self.why, self.service))


def is_finding(exc: BaseException | None) -> bool:
    return isinstance(exc, AssertionError | pytest.fail.Exception)


# Allure 2 reads categories.json from allure-results and puts a result in every category it
# matches; Allure 3 (allurerc.mjs passes this list as its `categories`) takes the first match,
# so the specific categories come before the general ones.
ALLURE_CATEGORIES = json.dumps([
    {"name": "Expired waiver", "matchedStatuses": ["failed"], "messageRegex": ".*waiver for .* expired.*"},
    {"name": "Non-compliance (the deployment differs from the guide)", "matchedStatuses": ["failed"]},
    {"name": "Could not audit (unreachable host or service, refused login, missing setting or role)",
     "matchedStatuses": ["broken"], "messageRegex": "[\\s\\S]*could not audit [\\s\\S]*"},
    {"name": "Suite error (a defect of the audit suite itself)", "matchedStatuses": ["broken"],
     "messageRegex": "^(?![\\s\\S]*could not audit )[\\s\\S]*"},
    {"name": "Waived", "matchedStatuses": ["skipped"], "messageRegex": ".*waived:.*"},
    {"name": "Not applicable (declared in the inventory)", "matchedStatuses": ["skipped"],
     "messageRegex": ".*not applicable.*"},
], indent=2)


def classify(report: pytest.TestReport, exc: BaseException | None) -> str | None:
    """The category of a non-passing phase report, or None when it passed."""
    if report.skipped:
        text = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "waived:" in text:
            return WAIVED
        return NOT_APPLICABLE if "not applicable" in text else None
    if not report.failed:
        return None
    if isinstance(exc, pytest.fail.Exception) and "waiver for" in str(exc) and "expired" in str(exc):
        return EXPIRED_WAIVER
    if is_finding(exc):
        return NON_COMPLIANCE
    if isinstance(exc, CouldNotAudit):
        return NOT_AUDITED
    return SUITE_ERROR


def mask_longrepr(longrepr, mask) -> bool:
    """Mask every string inside pytest's structured failure representation in place, so that the
    report keeps its shape (terminal, JUnit and outcomes.json still read the crash message).
    Returns True when something was masked."""
    changed = False

    def walk(obj, depth: int = 0):
        nonlocal changed
        if depth > 8 or obj is None:
            return obj
        if isinstance(obj, str):
            masked = mask(obj)
            changed |= masked != obj
            return masked
        if isinstance(obj, list):
            obj[:] = [walk(x, depth + 1) for x in obj]
            return obj
        if isinstance(obj, tuple):
            return tuple(walk(x, depth + 1) for x in obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name, None)
                new = walk(value, depth + 1)
                if new is not value:
                    object.__setattr__(obj, f.name, new)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):  # ExceptionChainRepr.chain etc.
            for key, value in list(vars(obj).items()):
                new = walk(value, depth + 1)
                if new is not value:
                    setattr(obj, key, new)
        return obj

    walk(longrepr)
    return changed


def message_of(report: pytest.TestReport, limit: int = 300) -> str:
    """The one-line reason of a failed phase: the exception's own message, masked."""
    from audit.evidence import mask

    props = dict(report.user_properties)
    crash = getattr(report.longrepr, "reprcrash", None)
    text = props.get("message") or (crash.message if crash is not None else "")
    if not text:
        lines = [line for line in str(report.longrepr).strip().splitlines() if line.strip()]
        text = lines[-1] if lines else ""
    for prefix in ("NonCompliant: ", "audit.outcomes.NonCompliant: ", "AssertionError: ",
                   "audit.outcomes.CouldNotAudit: ", "CouldNotAudit: ", "HostUnreachable: ",
                   "audit.outcomes.HostUnreachable: ", "Failed: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = " ".join(mask(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(eq=False)  # registered as a plugin: must stay hashable
class Tally:
    """Per-check outcomes seen by the reporting process; a pytest plugin (logreport hook)."""

    by_test: dict[str, dict] = field(default_factory=dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        entry = self.by_test.setdefault(report.nodeid, {"outcome": "passed", "requirements": "",
                                                         "host": None, "category": None})
        entry["requirements"] = props.get("requirements", entry["requirements"])
        entry["host"] = props.get("host", entry["host"])
        if "sides" in props:
            entry["sides"] = props["sides"]
        category = props.get("category")
        if report.failed:
            entry["outcome"] = "failed" if category in (NON_COMPLIANCE, EXPIRED_WAIVER) else "error"
            entry["category"] = category
            entry.setdefault("message", message_of(report))
        elif report.skipped:
            entry["outcome"] = "skipped"
            entry["category"] = category
            entry["reason"] = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)

    def counts(self) -> Counter:
        return Counter(e["outcome"] for e in self.by_test.values())


@dataclass
class Verdict:
    code: int
    text: str
    not_audited: list[str]


def verdict(tally: Tally, gate: str | None, catalogue, coverage: dict[str, str], partial: str | None = None) -> Verdict:
    """Exit code and headline of a run.

    nightly (the default) counts every failure; the pre-release gate counts only failures of
    blocker or critical requirements (or of a check naming none) and lists the others. Could not
    audit is exit 6 under both. Completeness: the headline says how many automatable
    requirements were audited (every check that declares one ran to a verdict on every host:
    passed, failed, waived or declared not applicable); the pre-release gate of a full run
    (not `partial`) exits 6 when a blocker or critical requirement was not audited. Advisories
    (ADV-*, beyond the guide) are reported apart and change the exit code only under
    `--gate=hardened`, which otherwise judges like nightly. Non-compliance (1) wins over
    could-not-audit (6)."""
    gate = gate or "nightly"
    blocking, lenient, advisory_findings, errors = [], [], [], 0
    counts: Counter = Counter()
    for nodeid, e in tally.by_test.items():
        reqs = [r for r in e["requirements"].split(",") if r]
        known = [catalogue.by_id[r] for r in reqs if r in catalogue.by_id]
        advisory = bool(known) and all(r.advisory for r in known)
        counts[("advisory " if advisory else "") + e["outcome"]] += 1
        if advisory and gate != "hardened":
            if e["outcome"] in ("failed", "error"):
                advisory_findings.append(f"  {nodeid} ({', '.join(reqs)}): {e['outcome']}")
            continue
        if e["outcome"] == "error":
            errors += 1
        if e["outcome"] != "failed":
            continue
        severities = {r.severity for r in known}
        if gate != "pre-release" or not severities or severities & BLOCKING_SEVERITIES:
            blocking.append(nodeid)
        else:
            worst = "normal" if "normal" in severities else "minor"
            lenient.append(f"  {nodeid} ({', '.join(reqs)}; {worst})")
    status = coverage  # requirement -> audited / not run / could not audit / uncovered (audit.matrix.coverage)
    automatable = [r for r in catalogue.requirements if r.automatable]
    audited = [r for r in automatable if status.get(r.id) == "audited"]
    missing = [r for r in automatable if status.get(r.id) != "audited"]
    must = [r for r in missing if r.severity in BLOCKING_SEVERITIES]
    incomplete = gate == "pre-release" and not partial and must
    if blocking:
        code = NON_COMPLIANT
    elif errors or incomplete:
        code = COULD_NOT_AUDIT
    else:
        code = COMPLIANT
    scope = f"PARTIAL ({partial}) " if partial else ""
    text = (f"{scope}{EXIT_CODES[code].upper()} (exit {code}, gate {gate}): audited {len(audited)} of "
            f"{len(automatable)} automatable requirements; checks: {counts['passed']} passed, "
            f"{counts['failed']} non-compliant, {counts['error']} could not audit, {counts['skipped']} skipped")
    advisories = sum(v for k, v in counts.items() if k.startswith("advisory "))
    if advisories:
        text += (f"; advisories: {counts['advisory passed']} passed, {counts['advisory failed']} findings, "
                 f"{counts['advisory error']} could not audit"
                 + ("" if gate == "hardened" else " (counted by --gate=hardened only)"))
    if partial:
        text += "\n  a partial run: its exit code judges only the checks that ran"
    if lenient:
        text += (f"\nnon-blocking failures (normal/minor; they do not fail the pre-release gate): {len(lenient)}\n"
                 + "\n".join(sorted(lenient)))
    if advisory_findings:
        text += (f"\nadvisories beyond the guide (they do not change this gate's exit code): {len(advisory_findings)}\n"
                 + "\n".join(sorted(advisory_findings)))
    if gate == "pre-release" and must and not partial:
        text += (f"\nnot audited, blocker or critical ({len(must)}; the pre-release gate needs every one, "
                 "opt-in checks included: --opt-in=all):\n"
                 + "\n".join(f"  {r.id} ({r.severity}): {status.get(r.id, 'not run')}" for r in must))
    return Verdict(code, text, [r.id for r in missing])
