"""The Prerequisites checks over SSH against the reference deployment: pass, fail, unreachable."""

from __future__ import annotations

import pytest

from audit.outcomes import COULD_NOT_AUDIT
from tests.integration.audit_runner import inventory_variant, run_audit

pytestmark = pytest.mark.integration
# the checks, and the minimum versions (catalogue value rows, judged by checks/values.py)
SELECT = ["checks/prerequisites.py", "checks/values.py", "-k", "prerequisites or VERSION"]


@pytest.fixture(scope="module")
def healthy(deployment, tmp_path_factory):
    return run_audit("local", tmp_path_factory.mktemp("prereq-healthy"), *SELECT)


def test_healthy_deployment_passes_apart_from_waivers(healthy):
    assert healthy.exit_code == 0, healthy.explain()
    assert healthy.by_outcome("passed"), healthy.explain()
    waived = healthy.by_outcome("skipped")
    assert all("waived:" in t.get("reason", "") for t in waived.values()), waived
    # every reference host was audited over SSH
    hosts = {t["host"] for t in healthy.tests.values()}
    assert {"web1", "db1", "db2", "cache1", "cache2", "cache3", "engine"} <= hosts


# a raised version (and every other expectation no drift can break): test_expectations_raised.py


def test_unreachable_host_errors_for_that_host_only(deployment, tmp_path):
    inv = inventory_variant(tmp_path, hosts={"web": {"ghost1": {"ansible_host": "127.77.0.99"}}})
    run = run_audit(inv, tmp_path / "out", *SELECT)
    assert run.exit_code == COULD_NOT_AUDIT, run.explain()
    errors = run.by_outcome("error")
    assert errors
    assert {t["host"] for t in errors.values()} == {"ghost1"}, run.explain()
    assert "could not audit ghost1: SSH: 127.77.0.99" in run.stdout
    assert {t["host"] for t in run.by_outcome("passed").values()} >= {"web1", "db1"}
