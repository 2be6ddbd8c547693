"""Reports and gates end to end: an audit with a known mix of outcomes (pass, non-compliance, a
minor gap, an active and an expired waiver, an unreachable host, an absent role) -> exit code per
gate, JUnit, requirement matrix (Markdown, HTML, JSON), and the Allure 3 HTML report, opened in
headless Chromium served from 127.0.0.1 with every other host unresolvable and a net log of what
the page requested."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from audit import matrix, report
from audit.catalogue import load_catalogue
from audit.outcomes import COMPLIANT, COULD_NOT_AUDIT, NON_COMPLIANT, USAGE_ERROR

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue()
_CRIT = [r.id for r in CATALOGUE.requirements if r.severity == "critical" and r.automatable]
_MINOR = [r.id for r in CATALOGUE.requirements if r.severity == "minor" and r.automatable]
PASS_REQ, EVERYWHERE_REQ, NONCOMPLIANT_REQ, WAIVED_REQ, EXPIRED_REQ, ABSENT_REQ = _CRIT[:6]
MINOR_REQ = _MINOR[0]
TODAY = dt.date.today()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

WAIVERS = f"""
waivers:
  - {{requirement: {WAIVED_REQ}, justification: "accepted for the test", expires: {TODAY + dt.timedelta(days=5)}}}
  - {{requirement: {EXPIRED_REQ}, justification: "was accepted last year", expires: {TODAY - dt.timedelta(days=5)}}}
"""
INVENTORY = """
all:
  vars:
    audit_waivers: waivers.yml
  children:
    web: {hosts: {good: {ansible_connection: local}}}
    db_primary: {hosts: {down: {ansible_host: 127.0.0.1, ansible_port: 1, ansible_user: nobody}}}
"""


def check(name: str, req: str, body: str = "pass", roles: str = '"web"') -> str:
    return f"""
@pytest.mark.roles({roles})
@pytest.mark.requirement("{req}")
def {name}(server):
    {body}
"""


PASS = check("test_compliant", PASS_REQ)
EVERYWHERE = check("test_reachable_everywhere", EVERYWHERE_REQ, 'assert server.name in ("good", "down")',
                   roles='"web", "db_primary"')
NONCOMPLIANT = check("test_non_compliant", NONCOMPLIANT_REQ, 'assert 64 >= 100, "disk is 64 GB"')
MINOR = check("test_minor_gap", MINOR_REQ, 'assert 2 >= 8, "2 cores"')
WAIVED = check("test_waived", WAIVED_REQ, 'assert False, "must not run"')
EXPIRED = check("test_expired_waiver", EXPIRED_REQ)
ABSENT = check("test_absent_role", ABSENT_REQ, roles='"redis"')
MIX = "import pytest\n" + PASS + EVERYWHERE + NONCOMPLIANT + MINOR + WAIVED + EXPIRED + ABSENT
# what the mix gives, per check and host (a role with no host is could-not-audit: "broken")
EXPECTED_TESTS = {"passed": 2, "failed": 3, "broken": 2, "skipped": 1, "total": 8}


def write_project(path: Path, source: str) -> None:
    (path / "conftest.py").write_text("pytest_plugins = ['audit.plugin']\n")
    (path / "waivers.yml").write_text(WAIVERS)
    (path / "inv.yml").write_text(INVENTORY)
    (path / "test_checks.py").write_text(source)


def audit_args(path: Path, *extra: str) -> list[str]:
    return ["--hosts", str(path / "inv.yml"), f"--alluredir={path / 'reports' / 'allure-results'}",
            f"--junitxml={path / 'reports' / 'junit.xml'}", "-p", "no:cacheprovider", "-rA", *extra]


def needs(tool: str | None, what: str) -> None:
    """Skip when a tool is absent; in CI (CI=true) that is a failure: bootstrap installs it."""
    if tool:
        return
    message = f"{what} is not installed: `bash scripts/bootstrap.sh` installs it"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# ---------------------------------------------------------------- gates and exit codes


@pytest.mark.parametrize(("gate", "source", "code", "listed"), [
    ("nightly", MIX, NON_COMPLIANT, False),
    ("pre-release", MIX, NON_COMPLIANT, True),
    ("pre-release", "import pytest\n" + PASS + MINOR + WAIVED, COMPLIANT, True),
    ("nightly", "import pytest\n" + PASS + MINOR + WAIVED, NON_COMPLIANT, False),
    ("pre-release", "import pytest\n" + EVERYWHERE + MINOR, COULD_NOT_AUDIT, True),
    ("nightly", "import pytest\n" + EVERYWHERE + WAIVED + ABSENT, COULD_NOT_AUDIT, False),
    ("pre-release", "import pytest\n" + PASS + WAIVED + ABSENT, COULD_NOT_AUDIT, False),
])
def test_gate_exit_codes_of_a_narrowed_run(pytester, gate, source, code, listed):
    """A run narrowed to some checks (here: a path) says PARTIAL, and its exit code judges what ran."""
    write_project(pytester.path, source)
    result = pytester.runpytest_subprocess(*audit_args(pytester.path, f"--gate={gate}", "test_checks.py"))
    out = result.stdout.str()
    assert result.ret == code, out
    verdict = {COMPLIANT: "COMPLIANT", NON_COMPLIANT: "NON-COMPLIANT", COULD_NOT_AUDIT: "COULD NOT AUDIT"}[code]
    assert f"PARTIAL (paths test_checks.py) {verdict} (exit {code}, gate {gate})" in out
    # pre-release lists the failures below critical that it did not count (nightly counts them all)
    assert ("non-blocking failures (normal/minor" in out) is listed
    if listed:
        assert f"test_checks.py::test_minor_gap[good] ({MINOR_REQ}; minor)" in out
    outcome = json.loads((pytester.path / "reports" / "outcomes.json").read_text())
    assert (outcome["exit_code"], outcome["gate"]) == (code, gate)


def test_full_pre_release_run_needs_every_blocker_and_critical_requirement(pytester):
    """Not narrowed: the pre-release gate exits 6 and lists what it did not audit, although every
    check that ran passed; nightly judges what ran and says how much was audited."""
    write_project(pytester.path, "import pytest\n" + PASS + WAIVED)
    result = pytester.runpytest_subprocess(*audit_args(pytester.path, "--gate=pre-release"))
    out = result.stdout.str()
    assert result.ret == COULD_NOT_AUDIT, out
    automatable = sum(r.automatable for r in CATALOGUE.requirements)
    assert f"COULD NOT AUDIT (exit 6, gate pre-release): audited 2 of {automatable} automatable requirements" in out
    assert "not audited, blocker or critical" in out
    assert f"  {NONCOMPLIANT_REQ} (critical): uncovered" in out
    outcome = json.loads((pytester.path / "reports" / "outcomes.json").read_text())
    assert PASS_REQ not in outcome["not_audited"]
    assert WAIVED_REQ not in outcome["not_audited"]
    assert outcome["coverage"][PASS_REQ] == "audited"
    nightly = pytester.runpytest_subprocess(*audit_args(pytester.path))
    assert nightly.ret == COMPLIANT
    assert f"COMPLIANT (exit 0, gate nightly): audited 2 of {automatable}" in nightly.stdout.str()


def test_unknown_gate_is_a_usage_error(pytester):
    write_project(pytester.path, "import pytest\n" + PASS)
    result = pytester.runpytest_subprocess(*audit_args(pytester.path, "--gate=weekly"))
    assert result.ret == USAGE_ERROR
    assert "invalid choice: 'weekly'" in result.stderr.str()


# ---------------------------------------------------------------- one audit, every report


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> dict:
    """The mix, audited once (nightly, with two xdist workers as `-n auto` does), then the HTML
    report generated twice (history) and once as a single file."""
    path = tmp_path_factory.mktemp("audit")
    write_project(path, MIX)
    proc = subprocess.run([sys.executable, "-m", "pytest", *audit_args(path, "-n", "2")], cwd=path,
                          capture_output=True, text=True, timeout=120, check=False)
    reports = path / "reports"
    done = {"path": path, "reports": reports, "proc": proc}
    if report.ALLURE.exists():
        history = reports / "history" / "history.jsonl"
        done["first"] = report.generate(reports / "allure-results", reports / "html", history)
        done["html"] = report.generate(reports / "allure-results", reports / "html", history)
        cli = subprocess.run([sys.executable, "-m", "reports", "--single-file", "--no-history",
                              "--results", str(reports / "allure-results"), "--output", str(reports / "single")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        done["cli"] = cli
    return done


def test_audit_output_ends_with_the_outcome_and_the_matrix_line(audited):
    proc = audited["proc"]
    assert proc.returncode == NON_COMPLIANT, proc.stdout
    tail = proc.stdout[proc.stdout.index("audit outcome"):]
    assert "NON-COMPLIANT (exit 1, gate nightly): audited 5 of " in tail  # all but the two errors
    assert "checks: 2 passed, 3 non-compliant, 2 could not audit, 1 skipped" in tail
    counts = matrix.summary(json.loads((audited["reports"] / "requirements.json").read_text()))
    assert f"requirement matrix: {', '.join(f'{k} {v}' for k, v in counts.items())}" in tail
    assert re.search(rf"failed\s+critical\s+{NONCOMPLIANT_REQ}\s+good=failed", tail)
    assert re.search(rf"error\s+critical\s+{EVERYWHERE_REQ}\s+down=error good=passed", tail)


def test_junit_has_one_testcase_per_check_and_host(audited):
    suite = ET.parse(audited["reports"] / "junit.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert sorted(cases) == sorted([
        "test_compliant[good]", "test_reachable_everywhere[good]", "test_reachable_everywhere[down]",
        "test_non_compliant[good]", "test_minor_gap[good]", "test_waived[good]", "test_expired_waiver[good]",
        "test_absent_role[no-host]"])

    def kind(case):
        return [child.tag for child in case if child.tag in ("failure", "error", "skipped")]

    assert kind(cases["test_compliant[good]"]) == []
    assert kind(cases["test_non_compliant[good]"]) == ["failure"]
    assert kind(cases["test_expired_waiver[good]"]) == ["failure"]
    assert "expired" in cases["test_expired_waiver[good]"].find("failure").get("message")
    assert kind(cases["test_reachable_everywhere[down]"]) == ["error"]
    assert "could not audit down: SSH" in cases["test_reachable_everywhere[down]"].find("error").get("message")
    assert kind(cases["test_waived[good]"]) == ["skipped"]
    assert "waived:" in cases["test_waived[good]"].find("skipped").get("message")
    assert kind(cases["test_absent_role[no-host]"]) == ["error"]
    assert "no host in group redis" in cases["test_absent_role[no-host]"].find("error").get("message")
    props = {p.get("name"): p.get("value") for p in cases["test_non_compliant[good]"].iter("property")}
    assert props == {"requirements": NONCOMPLIANT_REQ, "host": "good"}
    totals = [suite.get(k) for k in ("tests", "failures", "errors", "skipped")]
    assert totals == ["8", "3", "2", "1"]


def test_requirement_matrix_counts_and_rows(audited):
    reports = audited["reports"]
    rows = {r["id"]: r for r in json.loads((reports / "requirements.json").read_text())}
    assert len(rows) == len(CATALOGUE.requirements) + len(CATALOGUE.advisories)
    status = {req: rows[req]["status"] for req in
              (PASS_REQ, EVERYWHERE_REQ, NONCOMPLIANT_REQ, MINOR_REQ, WAIVED_REQ, EXPIRED_REQ, ABSENT_REQ)}
    assert status == {PASS_REQ: "passed", EVERYWHERE_REQ: "error", NONCOMPLIANT_REQ: "failed", MINOR_REQ: "failed",
                      WAIVED_REQ: "waived", EXPIRED_REQ: "failed", ABSENT_REQ: "error"}
    assert rows[EVERYWHERE_REQ]["hosts"] == {"down": "error", "good": "passed"}
    assert "test_checks::test_reachable_everywhere" in rows[EVERYWHERE_REQ]["checks"]
    assert "accepted for the test" in rows[WAIVED_REQ]["note"]
    assert f"waiver for {EXPIRED_REQ} expired" in rows[EXPIRED_REQ]["note"]
    assert "disk is 64 GB" in rows[NONCOMPLIANT_REQ]["note"]

    ran = {PASS_REQ, EVERYWHERE_REQ, NONCOMPLIANT_REQ, MINOR_REQ, WAIVED_REQ, EXPIRED_REQ, ABSENT_REQ}
    automatable = {r.id for r in CATALOGUE.requirements if r.automatable}
    # the project has no checks/ directory: nothing is declared, what did not run is uncovered
    expected = {"passed": 1, "failed": 3, "error": 2, "waived": 1, "not applicable": 0, "not run": 0,
                "uncovered": len(automatable - ran),
                "not automatable": len(CATALOGUE.requirements) - len(automatable),
                "total": len(CATALOGUE.requirements)}
    assert matrix.summary(list(rows.values())) == expected

    md = (reports / "requirements.md").read_text()
    assert "| failed | 3 |" in md
    assert "| waived | 1 |" in md
    assert "## Needs attention (5)" in md
    assert f"| {EVERYWHERE_REQ} | critical | error | down=error good=passed |" in md

    page = (reports / "requirements.html").read_text()
    shown = dict(re.findall(r'<tr class="count" data-status="([^"]+)"><th>[^<]+</th><td>(\d+)</td>', page))
    assert {k: int(v) for k, v in shown.items()} == expected
    assert report.outside_urls(page) == []
    assert "NON-COMPLIANT (exit 1, gate nightly)" in page


# ---------------------------------------------------------------- the HTML report


@pytest.fixture(scope="module")
def html_report(audited) -> dict:
    needs(report.ALLURE.exists() or None, f"Allure 3 ({report.ALLURE.relative_to(ROOT)})")
    return audited


def test_report_is_generated_offline_with_history(html_report):
    done = html_report["html"]
    output = done["output"]
    assert {k: v for k, v in done["stats"].items() if k in EXPECTED_TESTS} == EXPECTED_TESTS
    assert done["seconds"] < 30
    history = (html_report["reports"] / "history" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2  # one line per generated report: the trend survives between runs
    results = [json.loads(f.read_text()) for f in (output / "data" / "test-results").glob("*.json")]
    assert len(results) == EXPECTED_TESTS["total"]
    assert all(len(r["history"]) == 1 for r in results)  # each check's result in the first report
    for name in ("requirements.html", "requirements.md", "junit.xml"):
        assert (output / name).exists(), name
    pages = list(output.rglob("*.html"))
    for page in pages:
        if page.relative_to(output).parts[0] == "data":
            continue
        text = page.read_text()
        assert "googletagmanager" not in text, page
        assert "gtag(" not in text, page
        assert report.outside_urls(text) == [], page
    index = (output / "index.html").read_text()
    assert 'http-equiv="Content-Security-Policy"' in index
    env = json.loads((output / "widgets" / "allure_environment.json").read_text())
    assert {e["name"] for e in env} >= {"inventory", "hosts", "gate", "requirement.matrix"}
    categories = json.loads((output / "widgets" / "categories.json").read_text())
    names = {n["name"]: n["statistic"]["total"] for n in categories["nodes"].values() if n["type"] == "category"}
    assert names["Expired waiver"] == 1
    assert names["Non-compliance (the deployment differs from the guide)"] == 2
    assert names["Could not audit (unreachable host or service, refused login, missing setting or role)"] == 2
    assert names["Waived"] == 1
    assert "Suite error (a defect of the audit suite itself)" not in names
    attachments = json.loads((output / "widgets" / "globals.json").read_text())["attachments"]
    assert {a["name"] for a in attachments} == {"requirements.html", "requirements.md"}


def test_single_file_report_from_the_command_line(html_report):
    cli = html_report["cli"]
    assert cli.returncode == 0, cli.stderr
    assert "passed 2, failed 3, broken 2, skipped 1, total 8" in cli.stdout
    single = html_report["reports"] / "single"
    assert not (single / "data").exists()
    text = (single / "index.html").read_text()
    assert "googletagmanager" not in text
    assert report.outside_urls(text) == []


def test_offline_filters():
    page = """<html><head><link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'%3E">
    <script src="app.js"></script>
    <script async src="https://www.googletagmanager.com/gtag/js?id=G-X"></script>
    <script>
        window.dataLayer = window.dataLayer || [];
        function gtag(){dataLayer.push(arguments);}
        gtag('config', 'G-X');
    </script>
    <script>window.allure = {};</script></head><body><a href="https://allurereport.org">Allure</a></body></html>"""
    assert report.outside_urls(page) == ["<script src=https://www.googletagmanager.com/gtag/js?id=G-X>"]
    clean = report.add_csp(report.strip_analytics(page))
    assert report.outside_urls(clean) == []
    assert "gtag" not in clean
    assert '<script src="app.js"></script>' in clean
    assert "window.allure = {};" in clean
    assert clean.count("Content-Security-Policy") == 1
    assert report.outside_urls('<img src="//cdn.example.net/x.png"><link href="http://127.0.0.1:8000/a.css">'
                               '<iframe src="https://evil.example/"></iframe>') == [
        "<img src=//cdn.example.net/x.png>", "<iframe src=https://evil.example/>"]


def test_report_without_results_is_an_error(tmp_path, capsys):
    assert report.main(["--results", str(tmp_path / "none"), "--output", str(tmp_path / "html")]) == report.FAILED
    assert "no Allure results" in capsys.readouterr().err


# ---------------------------------------------------------------- in the browser


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def served(html_report):
    """The report folder on a web server bound to 127.0.0.1 (a folder report needs one)."""
    handler = functools.partial(_Quiet, directory=str(html_report["html"]["output"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def open_in_chromium(url: str, workdir: Path) -> tuple[str, list[dict], float]:
    """Load `url` in headless Chromium; every host name but 127.0.0.1 is unresolvable, and the net
    log records each request. Returns the rendered DOM, the requests the page made, seconds."""
    needs(CHROMIUM, "chromium (Debian's package)")
    netlog = workdir / "netlog.json"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-features=AutofillServerCommunication,MediaRouter,OptimizationHints",
            f"--user-data-dir={workdir / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            f"--log-net-log={netlog}", "--net-log-capture-mode=Default", "--virtual-time-budget=15000",
            "--window-size=1400,1000", "--dump-dom", url]
    started = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, page_requests(json.loads(netlog.read_text())), seconds


def page_requests(log: dict) -> list[dict]:
    """The URL requests in a Chromium net log that the page made (its document and whatever it
    loaded); the browser's own background requests have no initiating origin and are left out."""
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    found = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start or "url" not in params:
            continue
        if params.get("request_type") == "main frame" or params.get("initiator", "not an origin") != "not an origin":
            found.append(params)
    return found


class _Metadata(HTMLParser):
    """Allure Awesome's summary counters: data-testid="metadata-item-<status>" -> its number."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.tabs: dict[str, int] = {}
        self._item: str | None = None
        self._tab: str | None = None

    def handle_starttag(self, tag, attrs):
        testid = dict(attrs).get("data-testid") or ""
        if testid.startswith("metadata-item-"):
            self._item = testid.removeprefix("metadata-item-")
        elif testid.startswith("nav-tab-"):
            self._tab = testid.removeprefix("nav-tab-")

    def handle_data(self, data):
        if data.strip().isdigit():
            if self._item and self._item not in self.counts:
                self.counts[self._item] = int(data.strip())
                self._item = None
            elif self._tab and self._tab not in self.tabs:
                self.tabs[self._tab] = int(data.strip())
                self._tab = None


def visible_counts(dom: str) -> _Metadata:
    parser = _Metadata()
    parser.feed(dom)
    parser.counts = {k: v for k, v in parser.counts.items() if k in EXPECTED_TESTS}
    return parser


def test_browser_shows_the_counts_and_reaches_no_outside_host(served, tmp_path):
    dom, requests, seconds = open_in_chromium(f"{served}/index.html", tmp_path)
    shown = visible_counts(dom)
    assert shown.counts == EXPECTED_TESTS, shown.counts
    assert shown.tabs.get("globalAttachments") == 2  # the requirement matrix (HTML and Markdown)
    for name in ("test_reachable_everywhere[down]", "test_non_compliant[good]", "test_expired_waiver[good]"):
        assert name in dom
    hosts = {urlsplit(r["url"]).hostname for r in requests}
    assert len(requests) > 5  # the page, its script and its data files: the log does see the page
    assert hosts == {"127.0.0.1"}, sorted(r["url"] for r in requests)
    print(f"chromium: {shown.counts} in {seconds:.1f} s, {len(requests)} requests, all to 127.0.0.1")


def test_single_file_report_opens_from_disk(html_report, tmp_path):
    index = html_report["reports"] / "single" / "index.html"
    dom, requests, _ = open_in_chromium(index.as_uri(), tmp_path)
    assert visible_counts(dom).counts == EXPECTED_TESTS
    assert [r["url"] for r in requests if urlsplit(r["url"]).scheme in ("http", "https", "ws", "wss")] == []


def test_net_log_catches_an_outside_request(tmp_path):
    """The control: an unprocessed Allure page (with its analytics tag) is caught requesting a
    Google host, so an empty list above means the report requested none."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        '<html><body><p>probe</p><script async src="https://www.googletagmanager.com/gtag/js?id=G-X"></script>'
        "</body></html>")
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _, requests, _ = open_in_chromium(f"http://127.0.0.1:{server.server_address[1]}/index.html", tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert "www.googletagmanager.com" in {urlsplit(r["url"]).hostname for r in requests}
