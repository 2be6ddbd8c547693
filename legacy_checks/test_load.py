"""Guide: Monitoring Checklist > Application Health - "Error rate < 1%" and "Response time < 1s
(95th percentile)", measured under a declared load (opt-in: `pytest --hosts=NAME -m load`).

One Locust run per audit (loadtests/, in a subprocess: Locust must not be imported here) sends
the inventory's `audit_load` profile to the public URL: anonymous health and docs, an
authenticated API flow (one login per user, then the API with the bearer token) and static
files. Thresholds are the catalogue's expected values. NGINX limit_req rejections are counted
apart (neither errors nor hidden); a run whose generator CPU went above 90%, or that NGINX
rate-limited beyond 5%, cannot support a verdict (could not audit). NGINX's own
`$request_time` for the same requests is read back from the web host, when it logs it.
"""

from __future__ import annotations

import shlex

import pytest

from audit.evidence import attach, attach_file, compare, register_secret
from audit.inventory import LoadProfile, resolve_secret
from loadtests import runner

pytestmark = pytest.mark.load

TIMING_LOG = "/var/log/nginx/timing.log"  # reference deployment's extra log (provision/DEVIATIONS.md)


class LoadRun:
    """What one run measured, shared by the checks of this module."""

    def __init__(self, result: runner.LoadResult, nginx: dict | None):
        self.result, self.nginx = result, nginx
        self.applied = runner.applied_load(result)
        self.invalid = runner.invalid_reasons(result.cpu_max, result.samples, result.exit_code, result.log_tail)
        self._report_attached = False

    def evidence(self, summary: dict) -> None:
        attach("load applied", self.applied, kind="json")
        attach("per endpoint group", summary, kind="json")
        if self.nginx is not None:
            attach("Locust p95 vs NGINX $request_time p95", self.nginx, kind="json")
        for path in self.result.files():
            if path.suffix == ".html" and self._report_attached:
                continue
            attach_file(path)
        self._report_attached = True

    def assert_valid(self) -> None:
        if self.invalid:
            raise runner.InvalidRun("the load run is invalid (no verdict): " + "; ".join(self.invalid))

    def stated(self) -> str:
        a = self.applied
        return (f"{a['users']} users ({a['mode']}), {a['requests']} requests in {a['duration_s']} s "
                f"= {a['requests_per_s']} r/s, {a['rate_limited']} rejected by NGINX limit_req")


def _nginx_view(inventory, audit_context, result: runner.LoadResult) -> dict | None:
    """NGINX's $request_time for this run's requests (by the run's tag in the User-Agent)."""
    webs = inventory.hosts_with_role("web")
    if not webs:
        return None
    server = audit_context.server(webs[0].name)
    out = server.run(f"test -r {TIMING_LOG} && grep -F {shlex.quote(result.plan.tag)} {TIMING_LOG}", timeout=30)
    if out.rc not in (0, 1):
        return None
    lines = runner.nginx_request_times(out.stdout, result.plan.tag)
    return {"host": server.name, "log": TIMING_LOG, **runner.compare_with_nginx(result.samples, lines)}


@pytest.fixture(scope="module")
def load_run(inventory, audit_context, tmp_path_factory) -> LoadRun:
    profile = LoadProfile(**(inventory.setting("audit_load") or {}))
    plan = runner.LoadPlan(profile, inventory.setting("audit_public_url"), inventory.setting("audit_resolve") or {},
                           inventory.setting("audit_ca_bundle"), tmp_path_factory.mktemp("load"))
    username, password = resolve_secret(inventory, "app_username"), resolve_secret(inventory, "app_password")
    register_secret(username)
    register_secret(password)
    result = runner.run(plan, username, password)
    return LoadRun(result, _nginx_view(inventory, audit_context, result))


@pytest.mark.requirement("CHK-RESPONSE-TIME-P95")
def test_p95_response_time_under_declared_load(load_run, expected):
    """"Response time < 1s (95th percentile)": overall and per endpoint group, under the
    inventory's declared load (requests NGINX rate-limited are left out and reported)."""
    want = expected("CHK-RESPONSE-TIME-P95")
    summary = runner.summarize(load_run.result.samples, want["quantile"])
    key = f"p{round(want['quantile'] * 100)}_s"
    load_run.evidence(summary)
    compare(key, {g: v[key] for g, v in summary.items()}, f"< {want['max_seconds']} s in every group")
    load_run.assert_valid()
    slow = {g: v[key] for g, v in summary.items() if v[key] is not None and v[key] >= want["max_seconds"]}
    assert not slow, (f"{inventory_name(load_run)}: {key} >= {want['max_seconds']} s in {slow} "
                      f"under {load_run.stated()}")


@pytest.mark.requirement("CHK-ERROR-RATE")
def test_error_rate_under_declared_load(load_run, expected):
    """"Error rate < 1%": failed requests (5xx, timeouts, connection errors, unexpected 4xx)
    over served requests, overall and per endpoint group; NGINX limit_req rejections apart."""
    want = expected("CHK-ERROR-RATE")
    summary = runner.summarize(load_run.result.samples)
    load_run.evidence(summary)
    compare("error %", {g: v["error_percent"] for g, v in summary.items()},
            f"< {want['max_percent']} % in every group")
    load_run.assert_valid()
    bad = {g: f"{v['errors']}/{v['served']} ({v['error_percent']}%: {v['error_kinds']})"
           for g, v in summary.items() if v["error_percent"] is not None and v["error_percent"] >= want["max_percent"]}
    assert not bad, (f"{inventory_name(load_run)}: error rate >= {want['max_percent']}% in {bad} "
                     f"under {load_run.stated()}")


def inventory_name(load_run: LoadRun) -> str:
    return load_run.result.plan.base_url
