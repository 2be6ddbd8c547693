"""The load checks (checks/load.py, `-m load`) on the reference deployment, in Locust's distributed
mode from two `loadgen` worker hosts (two client addresses, `python -m provision loadgen up 2`):

- healthy: the `gate` profile (the declared 40 requests/s) passes, and a short `step` run (20 and
  40 requests/s) reports a capacity;
- each load drift (provision/drifts/load.py, skipped by the drift matrix) turns exactly its
  requirement red through the `gate` profile;
- faults: an unreachable worker host, a worker killed mid-run and a master that gets no worker end
  as could-not-audit with the cause, and no worker process is left on the hosts.

Bounded for CI: short holds (10 s gate, 8 s steps), about 3 minutes in all. Every load run and
drift holds the deployment's drift lock (other experiments share the deployment). The longer
capacity runs are opt-in: loadtests/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from audit.probes.load import LoadRun
from loadtests import runner
from provision import drifts
from tests.integration.audit_runner import ROOT, inventory_variant, run_audit

pytestmark = pytest.mark.timeout(900)  # the shared deployment's lock may be held by a drift experiment

LOAD_DRIFTS = sorted(d.name for d in drifts.REGISTRY if d.opt_in == "load")
LOADGEN_INVENTORY = ROOT / ".state" / "loadgen" / "inventory.yml"
WORKERS = ("lg1", "lg2")
# short: the declared 40 r/s (2 addresses) held 10 s; steps 20 and 40 r/s held 8 s each
PROFILE = {"gate": {"requests_per_s": 40, "run_time": 10, "max_requests": 1500},
           "step": {"start_rps": 20, "step_rps": 20, "max_rps": 40, "settle": 3, "hold": 8, "max_time": 60,
                    "max_requests": 3000},
           "spawn_rate": 10, "worker_wait": 15}
GATE_ONLY = ("-k", "not capacity")


def provision_loadgen(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "provision", "loadgen", *args], cwd=ROOT, check=True, timeout=600,
                   capture_output=True, text=True)


def locust_on(worker: str) -> list[str]:
    """Locust processes on a loadgen host (its container), as `pid command` lines."""
    out = subprocess.run(["docker", "exec", worker, "pgrep", "-af", "[l]ocust"], capture_output=True, text=True,
                         timeout=30, check=False)
    return out.stdout.splitlines()


@pytest.fixture(scope="module")
def loadgen(deployment):
    """Two worker hosts for the module; removed at its end."""
    provision_loadgen("up", str(len(WORKERS)))
    try:
        yield LOADGEN_INVENTORY
    finally:
        provision_loadgen("down")


def load_audit(tmp_path: Path, inventory: Path, *args: str, **extra):
    variant = inventory_variant(tmp_path, base=inventory, audit_load=PROFILE, **extra)
    start = time.monotonic()
    run = run_audit(variant, tmp_path / "out", "-m", "load", *args, "checks/load.py", timeout=300)
    run.seconds = time.monotonic() - start
    return run


def attachment(run, name: str):
    """The first report attachment called `name` (JSON), from the Allure results."""
    results = run.reports / "allure-results"
    for path in results.glob("*-result.json"):
        for att in json.loads(path.read_text()).get("attachments", []):
            if att["name"] == name:
                return json.loads((results / att["source"]).read_text())
    raise AssertionError(f"no attachment {name!r} in {results}")


def no_worker_left() -> None:
    for worker in WORKERS:
        assert locust_on(worker) == [], f"a Locust process is left on {worker}"


def test_healthy_deployment_passes_the_gate_and_the_step_run_reports_a_capacity(loadgen, tmp_path):
    with drifts.lock():
        run = load_audit(tmp_path, loadgen)
    assert run.exit_code == 0, run.explain()
    assert len(run.by_outcome("passed")) == 4, run.explain()  # gate: p95, errors; step: both up to 40 r/s
    applied = attachment(run, "load applied")
    assert applied["client_addresses"] == 2
    assert set(applied["workers_reporting"]) == set(WORKERS)
    assert applied["worker_processes_left_behind"] == "none"
    capacity = attachment(run, "capacity")
    assert capacity["capacity_rps"] > 20, capacity  # at least the first step, held from two addresses
    assert capacity["limited_by"], capacity
    assert run.seconds < 150, f"the gate and step runs took {run.seconds:.0f} s"
    no_worker_left()


@pytest.mark.parametrize("name", LOAD_DRIFTS)
def test_load_drift_turns_exactly_its_requirement_red(loadgen, tmp_path, name):
    drift = drifts.by_name(name)
    with drifts.applied(name):  # holds the lock
        run = load_audit(tmp_path, loadgen, *GATE_ONLY)
    assert run.exit_code == 1, run.explain()
    assert run.red_requirements() == set(drift.requirements), run.explain()
    assert not run.by_outcome("error"), run.explain()
    no_worker_left()


def test_an_unreachable_worker_host_is_could_not_audit_and_leaves_no_worker(loadgen, tmp_path):
    lg1 = yaml.safe_load(loadgen.read_text())["all"]["children"]["loadgen"]["hosts"]["lg1"]
    gone = {**lg1, "ansible_host": "127.77.0.209"}  # nothing listens there (no lg9)
    with drifts.lock():
        run = load_audit(tmp_path, loadgen, *GATE_ONLY, hosts={"loadgen": {"lg9": gone}})
    errors = run.by_outcome("error")
    assert len(errors) == 2, run.explain()
    assert not run.by_outcome("passed"), run.explain()
    assert "could not audit lg9: the load generator (SSH)" in run.stdout, run.stdout[-3000:]
    assert "Connection refused" in run.stdout, run.stdout[-3000:]
    assert run.seconds < 60, f"the failure took {run.seconds:.0f} s to show"
    no_worker_left()


def test_a_worker_that_dies_mid_run_is_could_not_audit_and_leaves_no_worker(loadgen, tmp_path):
    """lg2's worker is killed (SIGKILL, by its pid on lg2) a few seconds into the gate: the run ends
    as could-not-audit naming lg2, before its planned end, and no worker is left on either host."""
    variant = inventory_variant(tmp_path, base=loadgen, audit_load=PROFILE)
    out = tmp_path / "out"
    with drifts.lock():
        start = time.monotonic()
        results: list = []
        audit = threading.Thread(target=lambda: results.append(
            run_audit(variant, out, "-m", "load", *GATE_ONLY, "checks/load.py", timeout=300)))
        audit.start()
        killed = None
        while killed is None and time.monotonic() - start < 60:
            found = [ln for ln in locust_on("lg2") if "--worker" in ln and not ln.split()[1].startswith("timeout")]
            if found:
                time.sleep(4)  # running: connected, spawning users
                killed = found[0].split()[0]
                subprocess.run(["docker", "exec", "lg2", "kill", "-9", killed], check=True, timeout=30)
            time.sleep(0.5)
        audit.join(timeout=300)
    assert killed, "the worker on lg2 never started"
    run = results[0]
    errors = run.by_outcome("error")
    assert len(errors) == 2, run.explain()
    assert "the worker on lg2 ended during the run" in run.stdout, run.stdout[-3000:]
    assert time.monotonic() - start < 60, "the run went on without its worker"
    no_worker_left()


def test_a_master_without_workers_is_could_not_audit_and_leaves_nothing(loadgen, tmp_path):
    """The master expects the two workers, none connects (no fleet starts them): it gives up after
    `worker_wait`, the run has the cause, and no Locust process of the run is left here or there."""
    from audit.inventory import LoadProfile, load_inventory, resolve_secret
    from audit.outcomes import CouldNotAudit

    inv = load_inventory(loadgen)
    profile = LoadProfile(**{**PROFILE, "worker_wait": 5})
    plan = runner.LoadPlan(profile, "gate", inv.setting("audit_public_url"), inv.setting("audit_resolve"),
                           inv.setting("audit_ca_bundle"), tmp_path,
                           workers=[runner.WorkerHost(w, {}) for w in WORKERS])
    start = time.monotonic()
    with drifts.lock():
        result = runner.run(plan, resolve_secret(inv, "app_username"), resolve_secret(inv, "app_password"))
    assert time.monotonic() - start < 60
    assert runner.run_failure(result) == "no worker connected to the master within 5 s (expected lg1, lg2)"
    with pytest.raises(CouldNotAudit, match="no worker connected"):
        LoadRun(result, None, None).need_valid()
    here = subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True, text=True, check=False).stdout
    assert "locust" not in here, here
    no_worker_left()
