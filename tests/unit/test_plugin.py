"""The pytest plugin end to end with pytester: --hosts resolution, roles, waivers, outcomes,
exit codes, masking and report files. Hosts are the local machine (testinfra local backend)
and an SSH host that refuses connections (loopback port 1)."""

from __future__ import annotations

import datetime as dt
import json

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


def test_hosts_by_role_and_unreachable_host_errors_only_itself(audit):
    result = audit(f"""
import pytest
@pytest.mark.roles("web", "db_primary")
@pytest.mark.requirement("{REQ_A}")
def test_runs_everywhere(server):
    assert server.run("echo hi").stdout.strip() == "hi"

@pytest.mark.roles("redis")
@pytest.mark.requirement("{REQ_B}")
def test_on_absent_role(server):
    pass
""")
    result.assert_outcomes(passed=1, errors=1, skipped=1)
    out = result.stdout.str()
    assert "PASSED test_checks.py::test_runs_everywhere[good]" in out
    assert "could not audit: down (127.0.0.1):" in out
    assert "Connection refused" in out
    assert "role redis absent from inventory inv" in out
    assert result.ret == COULD_NOT_AUDIT


def test_failure_is_non_compliance_and_secrets_are_masked(audit, pytester):
    result = audit(f"""
import pytest
@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_A}")
def test_leaky(server, secret):
    value = secret("token")
    assert value == "expected", f"token was {{value}}"
""")
    result.assert_outcomes(failed=1)
    assert result.ret == NON_COMPLIANT
    assert "Sup3r-Secret-Value" not in result.stdout.str() + result.stderr.str()
    assert "••••••" in result.stdout.str()
    for path in [pytester.path / "junit.xml", *(pytester.path / "allure").glob("*")]:
        assert "Sup3r-Secret-Value" not in path.read_text(), path
    results = [json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-result.json")]
    labels = {(lbl["name"], lbl["value"]) for lbl in results[0]["labels"]}
    assert ("requirement", REQ_A) in labels
    assert any(name == "severity" for name, _ in labels)
    assert any(name == "feature" for name, _ in labels)
    assert results[0]["links"][0]["url"].startswith("docs/guide/production-deployment-guide.md#")
    assert (pytester.path / "allure" / "environment.properties").read_text().count("inventory=inv")
    assert json.loads((pytester.path / "allure" / "categories.json").read_text())


def test_active_waiver_skips_and_expired_waiver_fails(audit):
    waivers = f"""
waivers:
  - {{requirement: {REQ_A}, justification: "accepted for the test", expires: {TODAY + dt.timedelta(days=5)}}}
  - {{requirement: {REQ_B}, justification: "was accepted last year", expires: {TODAY - dt.timedelta(days=5)}}}
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
    assert f"waiver for {REQ_B} expired on" in out
    assert result.ret == NON_COMPLIANT


def test_all_green_is_compliant(audit):
    result = audit(f"""
import pytest
@pytest.mark.roles("web")
@pytest.mark.requirement("{REQ_A}")
def test_ok(server, expected):
    assert expected("{REQ_A}") == 42
""", extra_vars=f"audit_expected: {{{REQ_A}: 42}}")
    result.assert_outcomes(passed=1)
    assert result.ret == COMPLIANT
    assert "COMPLIANT (exit 0" in result.stdout.str()


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


def test_unknown_inventory_name_lists_the_available_ones(pytester):
    pytester.makeconftest("pytest_plugins = ['audit.plugin']")
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess("--hosts=nosuch")
    assert result.ret == USAGE_ERROR
    assert "unknown inventory 'nosuch': available are local, prod, staging" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_checks_without_inventory_is_a_usage_error(pytester):
    pytester.makeconftest("pytest_plugins = ['audit.plugin']")
    pytester.makepyfile(test_x=f'import pytest\n@pytest.mark.requirement("{REQ_A}")\ndef test_x(): pass')
    result = pytester.runpytest_subprocess()
    assert result.ret == USAGE_ERROR
    assert "the checks need an inventory: run `pytest --hosts=NAME`" in result.stderr.str()
