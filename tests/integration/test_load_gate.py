"""The load gate (checks/load.py, `-m load`) on the reference deployment: green when healthy,
each load drift turns exactly its requirement red (the drift matrix runs default checks only and
skips opt-in drifts), and a run is bounded: it stops at its request cap, also in distributed mode.

Short runs (10 s, a few users): the machine is shared. Drift runs use the anonymous and static
scenarios only, so that back-to-back runs do not exhaust NGINX's login limit (5 r/m per IP).
"""

from __future__ import annotations

import pytest

from audit.inventory import LoadProfile, load_inventory, resolve_secret
from loadtests import runner
from provision import drifts
from tests.integration.audit_runner import LOCAL_INVENTORY, inventory_variant, run_audit

pytestmark = pytest.mark.timeout(900)  # the shared deployment's lock may be held by a drift experiment

LOAD_DRIFTS = sorted(d.name for d in drifts.REGISTRY if d.opt_in == "load")
NO_LOGIN = {"anonymous": 2, "static": 1, "api": 0}


def load_audit(tmp_path, **profile):
    inventory = inventory_variant(tmp_path, audit_load={"run_time": 10, "users": 4, **profile})
    return run_audit(inventory, tmp_path / "out", "-m", "load", "checks/load.py", timeout=300)


def test_healthy_deployment_passes_the_load_gate(deployment, tmp_path):
    with drifts.lock():  # no one else's drift experiment (e.g. a TLS drift) during the run
        run = load_audit(tmp_path, run_time=20, weights={"anonymous": 1, "api": 1, "static": 1})
    assert run.exit_code == 0, run.explain()
    assert len(run.by_outcome("passed")) == 2, run.explain()


@pytest.mark.parametrize("name", LOAD_DRIFTS)
def test_load_drift_turns_exactly_its_requirement_red(deployment, tmp_path, name):
    drift = drifts.by_name(name)
    with drifts.applied(name):
        run = load_audit(tmp_path, weights=NO_LOGIN)
    assert run.exit_code == 1, run.explain()
    assert run.red_requirements() == set(drift.requirements), run.explain()
    assert not run.by_outcome("error"), run.explain()


def test_run_stops_at_its_request_cap_in_distributed_mode(deployment, tmp_path):
    inv = load_inventory(LOCAL_INVENTORY)
    profile = LoadProfile(users=4, users_per_process=2, max_requests=40, run_time=30, weights=NO_LOGIN)
    plan = runner.LoadPlan(profile, inv.setting("audit_public_url"), inv.setting("audit_resolve"),
                           inv.setting("audit_ca_bundle"), tmp_path)
    assert plan.processes == 2
    result = runner.run(plan, resolve_secret(inv, "app_username"), resolve_secret(inv, "app_password"))
    assert result.exit_code == 0, result.log_tail
    senders = [f for f in tmp_path.glob("samples-*.csv") if len(f.read_text().splitlines()) > 1]
    assert len(senders) == 2, "both workers sent requests"
    assert 0 < len(result.samples) <= 40
    assert result.duration < 25, f"the cap, not --run-time, should have ended the run ({result.duration:.1f} s)"
    assert not runner.invalid_reasons(result.cpu_max, result.samples, result.exit_code, result.log_tail)
