"""Guide: Monitoring Checklist > Application Health - "Error rate < 1%" and "Response time < 1s
(95th percentile)", measured under load (opt-in: `pytest --hosts=NAME -m load`).

Two profiles of the inventory's `audit_load` (audit/probes/load.py, loadtests/: Locust's
distributed mode, its master in a subprocess, one worker per `loadgen` host and client address):
- `gate` holds the load declared for production for its run time; the first two checks judge
  its p95 and error rate against the catalogue (`-k "not capacity"` runs only these);
- `step` raises the load step by step until a target is missed or a bound is reached, and
  reports the capacity with its chart; the capacity checks judge that the targets held at every
  step up to the declared production load (`-k capacity` runs only these).
NGINX limit_req rejections are counted apart (neither errors nor hidden); a run or a step that
cannot support a verdict (a worker lost or above 90% CPU, rejections beyond 5%, no worker) is
could not audit, with the cause.
"""

from __future__ import annotations

import pytest

from audit.marks import per_requirement
from audit.probes.load import LoadRun, run_load

pytestmark = pytest.mark.load


@pytest.fixture(scope="module")
def gate_run(audit_session, tmp_path_factory) -> LoadRun:
    """The gate profile's one run (an action: run once for both checks, never cached as a fact)."""
    return run_load(audit_session, "gate", tmp_path_factory.mktemp("load-gate"))


@pytest.fixture(scope="module")
def step_run(audit_session, tmp_path_factory) -> LoadRun:
    """The step profile's one run (the capacity search)."""
    return run_load(audit_session, "step", tmp_path_factory.mktemp("load-step"))


@pytest.mark.requirement("CHK-RESPONSE-TIME-P95")
def check_p95_response_time_under_declared_load(judge, gate_run):
    """"Response time < 1s (95th percentile)": overall and per endpoint group, while the declared
    production load is held (requests NGINX rate-limited are left out and reported)."""
    want = judge.expected
    key = f"p{round(want['quantile'] * 100)}_s"
    summary = gate_run.summary(want["quantile"])
    gate_run.need_valid()
    found = {g: v[key] for g, v in summary.items() if v[key] is not None}
    judge.that("all" in found and all(v < want["max_seconds"] for v in found.values()), what=key, found=found,
               expected=f"< {want['max_seconds']} s in every group", where=gate_run.stated())


@pytest.mark.requirement("CHK-ERROR-RATE")
def check_error_rate_under_declared_load(judge, gate_run):
    """"Error rate < 1%": failed requests (5xx, timeouts, connection errors, unexpected 4xx)
    over served requests, overall and per endpoint group; NGINX limit_req rejections apart."""
    want = judge.expected
    summary = gate_run.summary()
    gate_run.need_valid()
    found = {g: f"{v['errors']}/{v['served']} ({v['error_percent']}%{': ' if v['error_kinds'] else ''}"
                f"{', '.join(v['error_kinds'])})" for g, v in summary.items() if v["error_percent"] is not None}
    bad = [g for g, v in summary.items() if (v["error_percent"] or 0) >= want["max_percent"]]
    judge.that("all" in found and not bad, what="errors/served (error %)", found=found, where=gate_run.stated(),
               expected=f"< {want['max_percent']} % in every group", why=f"too many errors in {bad}" if bad else None)


@per_requirement("CHK-RESPONSE-TIME-P95", "CHK-ERROR-RATE")
def check_capacity_reaches_declared_load(judge, step_run, req_id):
    """The capacity curve (the step profile): the requirement's target held at every measured step
    up to the declared production load, and the search went at least that far. The capacity (the
    highest step that met both targets), the chart and NGINX's view are in the evidence."""
    step_run.attach()
    step_run.need_valid()
    declared = step_run.declared_rps()
    key, limit, unit = (("p95_s", step_run.plan.targets["p95_s"], " s") if req_id == "CHK-RESPONSE-TIME-P95"
                        else ("error_percent", step_run.plan.targets["error_percent"], "%"))
    rows = step_run.steps_up_to(declared, key, limit)
    found = {f"step {r['step']} ({r['rps']} r/s)": r[key] for r in rows}
    bad = [name for name, value in found.items() if value is None or value >= limit]
    judge.that(bool(found) and not bad, what=f"{key} per step up to {declared:g} requests/s", found=found,
               expected=f"< {limit:g}{unit} at every step", where=step_run.stated(),
               why=f"missed at {', '.join(bad)}; {step_run.capacity_words()}" if bad else None)
