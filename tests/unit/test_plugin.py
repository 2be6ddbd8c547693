"""The pytest plugin end to end with pytester: --hosts resolution, roles, waivers, declared
non-applicability, outcomes by type, exit codes, masking and report files. Hosts are the local
machine (testinfra local backend) and an SSH host that refuses connections (loopback port 1)."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET

import pytest

from audit.catalogue import load_catalogue
from audit.outcomes import COMPLIANT, COULD_NOT_AUDIT, NON_COMPLIANT, USAGE_ERROR

pytest_plugins = ["pytester"]
IDS = [r.id for r in load_catalogue().requirements]
REQ_A, REQ_B, REQ_C = IDS[0], IDS[1], IDS[2]
TODAY = dt.date.today()


@pytest.fixture
def audit(pytester):
    """A pytester project with the plugin, an inventory and a waiver file; returns a runner."""
    pytester.makeconftest("pytest_plugins = ['audit.plugin']")
    (pytester.path / "secret.txt").write_text("Sup3r-Secret-Value\n")

    def run(test_source: str, waivers: str = "waivers: []", extra_vars: str = "", *args: str):
        (pytester.path / "waivers.yml").write_text(waivers)
        (pytester.path / "inv.yml").write_text(f"""
all:
  vars:
    audit_waivers: waivers.yml
    audit_secrets: {{token: {{file: secret.txt}}}}
    {extra_vars}
  children:
    web: {{hosts: {{good: {{ansible_connection: local}}}}}}
    db_primary: {{hosts: {{down: {{ansible_host: 127.0.0.1, ansible_port: 1, ansible_user: nobody}}}}}}
""")
        pytester.makepyfile(test_checks=test_source)
        return pytester.runpytest_subprocess(
            "--hosts", str(pytester.path / "inv.yml"), f"--alluredir={pytester.path / 'allure'}",
            f"--junitxml={pytester.path / 'junit.xml'}", "-p", "no:cacheprovider", "-rA", *args)

    return run


def outcomes_json(pytester) -> dict:
    return json.loads((pytester.path / "outcomes.json").read_text())


def test_hosts_by_role_unreachable_host_and_absent_role_are_could_not_audit(audit):
    result = audit(f"""
import pytest
@pytest.mark.roles("web", "db_primary")
@pytest.mark.requirement("{REQ_A}")
def test_runs_everywhere(server):
    assert server.name in ("good", "down")

@pytest.mark.roles("redis")
@pytest.mark.requirement("{REQ_B}")
def test_on_absent_role(server):
    pass
""")
    result.assert_outcomes(passed=1, errors=2)
    out = result.stdout.str()
    assert "PASSED test_checks.py::test_runs_everywhere[good]" in out
    assert "could not audit down: SSH: 127.0.0.1:" in out
    assert "Connection refused" in out
    assert "could not audit inventory inv: no host in group redis" in out
    assert "audit_not_applicable" in out
    assert result.ret == COULD_NOT_AUDIT


def test_declared_not_applicable_is_skipped_with_its_reason(audit):
    result = audit(f"""
import pytest
@pytest.mark.roles("redis")
@pytest.mark.requirement("{REQ_B}")
def test_on_absent_role(server):
    pass
""", extra_vars=f"audit_not_applicable: {{{REQ_B}: 'no Redis in this deployment'}}")
    result.assert_outcomes(skipped=1)
    assert "not applicable (declared in the inventory): " in result.stdout.str()
    assert "no Redis in this deployment" in result.stdout.str()
    assert result.ret == COMPLIANT


def test_failure_is_non_compliance_secrets_masked_and_message_kept(audit, pytester):
    result = audit(f"""
import pytest
@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_A}")
def test_leaky(server, audit_session):
    value = audit_session.access.secret("token")
    assert value == "expected", f"the token was {{value}}, not the expected one"
""")
    result.assert_outcomes(failed=1)
    assert result.ret == NON_COMPLIANT
    assert "Sup3r-Secret-Value" not in result.stdout.str() + result.stderr.str()
    assert "••••••" in result.stdout.str()
    for path in [pytester.path / "junit.xml", *(pytester.path / "allure").glob("*")]:
        assert "Sup3r-Secret-Value" not in path.read_text(), path
    # the message in outcomes.json and JUnit is the assertion's own, masked, not "file:line: AssertionError"
    test = next(iter(outcomes_json(pytester)["tests"].values()))
    assert test["message"].startswith("the token was ••••••, not the expected one"), test
    case = ET.parse(pytester.path / "junit.xml").getroot().find(".//testcase")
    assert "the token was ••••••, not the expected one" in case.find("failure").get("message")
    results = [json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-result.json")]
    labels = {(lbl["name"], lbl["value"]) for lbl in results[0]["labels"]}
    assert ("requirement", REQ_A) in labels
    assert any(name == "severity" for name, _ in labels)
    assert any(name == "feature" for name, _ in labels)
    assert results[0]["links"][0]["url"].startswith("docs/guide/production-deployment-guide.md#")
    assert (pytester.path / "allure" / "environment.properties").read_text().count("inventory=inv")
    assert json.loads((pytester.path / "allure" / "categories.json").read_text())


def test_a_finding_in_a_fixture_is_non_compliance_not_an_error(audit, pytester):
    result = audit(f"""
import pytest
from audit.outcomes import NonCompliant

@pytest.fixture
def compose_file(server):
    raise NonCompliant("good: /opt/pynomaly/docker-compose.prod.yml is missing")

@pytest.fixture(scope="session")
def shared_facts():
    assert False, "the shared file says otherwise"

@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_A}")
def test_uses_the_file(server, compose_file):
    pass

@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_B}")
def test_first_user(server, shared_facts):
    pass

@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_C}")
def test_second_user(server, shared_facts):
    pass
""")
    result.assert_outcomes(failed=3)
    assert result.ret == NON_COMPLIANT
    tests = outcomes_json(pytester)["tests"]
    assert {t["category"] for t in tests.values()} == {"non-compliance"}
    assert any("docker-compose.prod.yml is missing" in t["message"] for t in tests.values())


def test_could_not_audit_and_suite_errors_are_told_apart(audit, pytester):
    result = audit(f"""
import pytest
from audit.outcomes import CouldNotAudit

@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_A}")
def test_replica_down(server):
    raise CouldNotAudit("db2", "PostgreSQL (port 5432)", "PostgreSQL refuses connections (is it running?)")

@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_B}")
def test_crashes(server):
    None.rstrip()
""")
    result.assert_outcomes(errors=2)
    assert result.ret == COULD_NOT_AUDIT
    tests = outcomes_json(pytester)["tests"]
    by_name = {n.split("::")[1]: t for n, t in tests.items()}
    assert by_name["test_replica_down[good]"]["category"] == "could-not-audit"
    assert by_name["test_replica_down[good]"]["message"] == (
        "could not audit db2: PostgreSQL (port 5432): PostgreSQL refuses connections (is it running?)")
    assert by_name["test_crashes[good]"]["category"] == "suite-error"
    assert all(t["outcome"] == "error" for t in tests.values())


def test_active_waiver_skips_and_expired_waiver_fails_with_its_date(audit):
    expired_on = TODAY - dt.timedelta(days=5)
    waivers = f"""
waivers:
  - {{requirement: {REQ_A}, justification: "accepted for the test", expires: {TODAY + dt.timedelta(days=5)}}}
  - {{requirement: {REQ_B}, justification: "was accepted last year", expires: {expired_on}}}
  - {{requirement: {REQ_C}, hosts: [other], justification: "only another host", expires: {TODAY}}}
"""
    result = audit(f"""
import pytest
@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_A}")
def test_waived(server):
    assert False, "must not run"

@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_B}")
def test_expired(server):
    pass

@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_C}")
def test_not_for_this_host(server):
    pass
""", waivers)
    result.assert_outcomes(passed=1, skipped=1, failed=1)
    out = result.stdout.str()
    assert f"waived: {REQ_A} until" in out
    assert "accepted for the test" in out
    assert f"waiver for {REQ_B} expired on {expired_on}" in out
    assert result.ret == NON_COMPLIANT


def test_expired_waiver_of_a_failing_check_says_both(audit, pytester):
    expired_on = TODAY - dt.timedelta(days=1)
    result = audit(f"""
import pytest
@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_A}")
def test_still_broken(server):
    assert False, "still 2 cores"
""", f"waivers: [{{requirement: {REQ_A}, justification: accepted for a while, expires: {expired_on}}}]")
    result.assert_outcomes(failed=1)
    message = next(iter(outcomes_json(pytester)["tests"].values()))["message"]
    assert "still 2 cores" in message
    assert f"expired on {expired_on}" in message


def test_judge_binds_the_expected_value_and_shows_overrides(audit):
    result = audit(f"""
import pytest
@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_A}")
def test_ok(server, judge):
    judge.equal(42, what="the answer", where="here")
""", extra_vars=f"audit_expected: {{{REQ_A}: 42}}")
    result.assert_outcomes(passed=1)
    assert result.ret == COMPLIANT
    assert "COMPLIANT (exit 0" in result.stdout.str()


def test_judge_never_passes_on_nothing(audit):
    result = audit(f"""
import pytest
@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_A}")
def test_empty(server, judge):
    judge.that(True, what="rows", found=[], expected="one row")
""")
    result.assert_outcomes(failed=1)
    assert "good: rows: nothing found; guide: one row" in result.stdout.str()


def test_narrowed_run_says_partial(audit):
    result = audit(f"""
import pytest
@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_A}")
def test_a(server):
    pass

@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_B}")
def test_b(server):
    pass
""", "waivers: []", "", "-k", "test_a")
    result.assert_outcomes(passed=1)
    assert result.ret == COMPLIANT
    assert "PARTIAL (-k test_a) COMPLIANT (exit 0" in result.stdout.str()


def test_opt_in_checks_are_deselected_unless_chosen(audit):
    source = f"""
import pytest
@pytest.mark.roles("web")
@pytest.mark.burst
@pytest.mark.requirement("{REQ_A}")
def test_burst(server):
    pass
"""
    result = audit(source)
    assert result.ret == 5  # no check selected
    result = audit(source, "waivers: []", "", "--opt-in=burst")
    result.assert_outcomes(passed=1)
    assert "PARTIAL" not in result.stdout.str()
    assert audit(source, "waivers: []", "", "--opt-in=nonsense").ret == USAGE_ERROR


@pytest.mark.parametrize(("source", "waivers", "message"), [
    ('import pytest\n@pytest.mark.requirement("NOT-A-REQ")\ndef test_x(): pass', "waivers: []",
     "not in the catalogue"),
    ("def test_x(): pass", "waivers: [{requirement: X}]", "waivers.yml: waivers.0"),
])
def test_usage_errors(audit, source, waivers, message):
    result = audit(source, waivers)
    assert result.ret == USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_bad_settings_and_empty_reasons_are_usage_errors(audit):
    result = audit("def test_x(): pass", "waivers: []", "audit_settings: {deployment_network: not-a-cidr}")
    assert result.ret == USAGE_ERROR
    assert "all.vars.audit_settings.deployment_network" in result.stderr.str()
    result = audit("def test_x(): pass", "waivers: []", f"audit_not_applicable: {{{REQ_A}: ''}}")
    assert result.ret == USAGE_ERROR
    assert f"{REQ_A}: give the reason" in result.stderr.str()


def test_unknown_inventory_name_lists_the_available_ones(pytester):
    pytester.makeconftest("pytest_plugins = ['audit.plugin']")
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess("--hosts=nosuch")
    assert result.ret == USAGE_ERROR
    assert "unknown inventory 'nosuch': available are " in result.stderr.str()
    assert "local" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_checks_without_inventory_is_a_usage_error(pytester):
    pytester.makeconftest("pytest_plugins = ['audit.plugin']")
    pytester.makepyfile(test_x=f'import pytest\n@pytest.mark.requirement("{REQ_A}")\ndef test_x(): pass')
    result = pytester.runpytest_subprocess()
    assert result.ret == USAGE_ERROR
    assert "the checks need an inventory: run `pytest --hosts=NAME`" in result.stderr.str()
