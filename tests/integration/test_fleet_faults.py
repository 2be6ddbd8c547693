"""Faults of the fleet flavour's shape (issue 18): the audit account's sudo asks for a password,
or sudo is missing: could-not-audit for that host naming sudo, at once (never waiting for a
password); a systemd unit that is masked or failed: non-compliance, with the unit's state in the
evidence."""

from __future__ import annotations

import contextlib
import time

import pytest

from provision import containers, docker_engine, drifts
from tests.integration.audit_runner import run_audit
from tests.integration.flavours import FLEET

BOUND_S = 90
SUDOERS = "/etc/sudoers.d/auditor"


def sh(host: str, cmd: str) -> str:
    return containers.run(docker_engine.client_or_none().containers.get(f"fleet-{host}"), cmd)[1]


@contextlib.contextmanager
def fault(host: str, apply: str, heal: str):
    with FLEET.selected(), drifts.lock():
        sh(host, apply)
        try:
            yield
        finally:
            sh(host, heal)


def timed(tmp_path, *args):
    start = time.monotonic()
    run = run_audit(FLEET.inventory, tmp_path / "out", *args)
    elapsed = time.monotonic() - start
    assert elapsed < BOUND_S, f"the audit took {elapsed:.0f} s: something waited (a password prompt?)"
    return run


@pytest.mark.parametrize(("apply", "heal", "said"), [
    (f"cp -p {SUDOERS} /root/auditor.sudoers && sed -i 's/NOPASSWD: //' {SUDOERS}",
     f"cp -p /root/auditor.sudoers {SUDOERS}", "password"),
    ("mv /usr/bin/sudo /root/sudo.moved", "mv /root/sudo.moved /usr/bin/sudo", "sudo"),
], ids=["asks-for-a-password", "missing"])
def test_sudo_that_cannot_be_used_is_could_not_audit_naming_sudo(fleet_deployment, tmp_path, apply, heal, said):
    with fault("cache3", apply, heal):
        run = timed(tmp_path, "checks/prerequisites.py")
    errors = run.by_outcome("error")
    assert errors, run.explain()
    assert {t["host"] for t in errors.values()} == {"cache3"}, run.explain()
    for test in errors.values():
        assert test["message"].startswith("could not audit cache3: sudo: "), test
        assert said in test["message"], test
    assert run.by_outcome("passed"), "the other hosts are still audited"


@pytest.mark.parametrize(("apply", "heal", "state"), [
    ("systemctl mask --now fail2ban", "systemctl unmask fail2ban && systemctl start fail2ban", "masked"),
    # a unit whose start fails: its configuration broken, then restarted
    ("cp -p /etc/fail2ban/jail.local /root/jail.local && echo '[sshd]' >> /etc/fail2ban/jail.local && "
     "echo 'bantime = not-a-time' >> /etc/fail2ban/jail.local && (systemctl restart fail2ban || true) && "
     "for i in $(seq 30); do systemctl is-failed -q fail2ban && break; sleep 1; done",
     "cp -p /root/jail.local /etc/fail2ban/jail.local && systemctl reset-failed fail2ban && systemctl restart fail2ban",
     "failed"),
], ids=["masked", "failed"])
def test_a_unit_masked_or_failed_is_non_compliant_with_its_state(fleet_deployment, tmp_path, apply, heal, state):
    with fault("db2", apply, heal):
        run = timed(tmp_path, "checks/checklist.py", "-k", "services")
    failed = {n: t for n, t in run.by_outcome("failed").items() if "CHK-SERVICES-RUNNING" in t["requirements"]}
    assert set(t["host"] for t in failed.values()) == {"db2"}, run.explain()
    message = next(iter(failed.values()))["message"]
    assert "fail2ban" in message, message
    assert state in message, message
    evidence = [p.read_text() for p in (run.reports / "allure-results").glob("*-attachment.json")]
    assert any("fail2ban" in text and state in text for text in evidence), "the unit's state is in the evidence"
    assert not run.by_outcome("error"), run.explain()


def test_up_starts_a_unit_found_stopped(fleet_deployment):
    """`provision --flavour fleet up` brings the fleet up, it does not only wait for it: a unit
    that something stopped (fail2ban on db1 here) is started again."""
    from provision.fleet import deploy

    with FLEET.selected(), drifts.lock():
        sh("db1", "systemctl stop fail2ban")
        assert containers.run(docker_engine.client_or_none().containers.get("fleet-db1"),
                              "systemctl is-active fail2ban", check=False)[1].strip() == "inactive"
        deploy.up()
        assert sh("db1", "systemctl is-active fail2ban").strip() == "active"
