"""Guide: Monitoring Checklist > Application Health - "Error rate < 1%" and "Response time < 1s
(95th percentile)", measured under a declared load (opt-in: `pytest --hosts=NAME -m load`).

One Locust run per audit (audit/probes/load.py, loadtests/: Locust runs in a subprocess) sends
the inventory's `audit_load` profile to the public URL: anonymous health and docs, an
authenticated API flow and static files. Thresholds are the catalogue's expected values. NGINX
limit_req rejections are counted apart (neither errors nor hidden); an invalid run (generator CPU
above 90%, rate-limited beyond 5%, failed) cannot support a verdict: could not audit.
"""

from __future__ import annotations

import pytest

from audit.probes.load import LoadRun, run_load

pytestmark = pytest.mark.load


@pytest.fixture(scope="module")
def load_run(audit_session, tmp_path_factory) -> LoadRun:
    """The module's one load run (an action: run once for both checks, never cached as a fact)."""
    return run_load(audit_session, tmp_path_factory.mktemp("load"))


@pytest.mark.requirement("CHK-RESPONSE-TIME-P95")
def check_p95_response_time_under_declared_load(judge, load_run):
    """"Response time < 1s (95th percentile)": overall and per endpoint group, under the
    inventory's declared load (requests NGINX rate-limited are left out and reported)."""
    want = judge.expected
    key = f"p{round(want['quantile'] * 100)}_s"
    summary = load_run.summary(want["quantile"])
    load_run.need_valid()
    found = {g: v[key] for g, v in summary.items() if v[key] is not None}
    judge.that("all" in found and all(v < want["max_seconds"] for v in found.values()), what=key, found=found,
               expected=f"< {want['max_seconds']} s in every group", where=load_run.stated())


@pytest.mark.requirement("CHK-ERROR-RATE")
def check_error_rate_under_declared_load(judge, load_run):
    """"Error rate < 1%": failed requests (5xx, timeouts, connection errors, unexpected 4xx)
    over served requests, overall and per endpoint group; NGINX limit_req rejections apart."""
    want = judge.expected
    summary = load_run.summary()
    load_run.need_valid()
    found = {g: f"{v['errors']}/{v['served']} ({v['error_percent']}%{': ' if v['error_kinds'] else ''}"
                f"{', '.join(v['error_kinds'])})" for g, v in summary.items() if v["error_percent"] is not None}
    bad = [g for g, v in summary.items() if (v["error_percent"] or 0) >= want["max_percent"]]
    judge.that("all" in found and not bad, what="errors/served (error %)", found=found, where=load_run.stated(),
               expected=f"< {want['max_percent']} % in every group", why=f"too many errors in {bad}" if bad else None)
