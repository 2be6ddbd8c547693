"""Load (opt-in `load`; guide: Monitoring Checklist > Application Health, "Error rate < 1%" and
"Response time < 1s (95th percentile)" under a declared load).

`run_load` is an action, not a cached fact: one Locust run (loadtests/runner.py, in a subprocess:
Locust must not be imported here) sends the inventory's `audit_load` profile to the public URL,
then NGINX's own `$request_time` for the same requests is read back from the first web host,
when it logs it. A run whose generator CPU went above 90%, that NGINX rate-limited beyond 5%, or
that failed, cannot support a verdict (could not audit).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from audit.evidence import attach, attach_file
from audit.inventory import LoadProfile
from audit.outcomes import CouldNotAudit
from audit.settings import required
from loadtests import runner  # never imports Locust: it runs in a subprocess

TIMING_LOG = "/var/log/nginx/timing.log"  # reference deployment's extra log (provision/DEVIATIONS.md)


class LoadRun:
    """What one run measured, shared by the load checks."""

    def __init__(self, result: runner.LoadResult, nginx: dict | None):
        self.result, self.nginx = result, nginx
        self.applied = runner.applied_load(result)
        self.invalid = runner.invalid_reasons(result.cpu_max, result.samples, result.exit_code, result.log_tail)
        self._report_attached = False

    def summary(self, quantile: float = 0.95) -> dict[str, dict]:
        """Per endpoint group and overall ("all"): requests, errors, error %, the latency quantile;
        attached to the report with the load applied and the run's files."""
        summary = runner.summarize(self.result.samples, quantile)
        attach("load applied", self.applied, kind="json")
        attach("per endpoint group", summary, kind="json")
        if self.nginx is not None:
            attach("Locust p95 vs NGINX $request_time p95", self.nginx, kind="json")
        for path in self.result.files():
            if not (path.suffix == ".html" and self._report_attached):
                attach_file(path)
        self._report_attached = True
        return summary

    def need_valid(self) -> None:
        """Could not audit when the run cannot support a verdict."""
        if self.invalid:
            raise CouldNotAudit(None, "the load run", "invalid (no verdict): " + "; ".join(self.invalid))

    def stated(self) -> str:
        a = self.applied
        return (f"{self.result.plan.base_url}: {a['users']} users ({a['mode']}), {a['requests']} requests in "
                f"{a['duration_s']} s = {a['requests_per_s']} r/s, {a['rate_limited']} rejected by NGINX limit_req")


def nginx_view(session, result: runner.LoadResult) -> dict | None:
    """NGINX's $request_time for this run's requests (by the run's tag in the User-Agent)."""
    webs = session.inventory.hosts_with_role("web")
    if not webs:
        return None
    out = session.access.run(webs[0], f"$SUDO grep -F {shlex.quote(result.plan.tag)} {TIMING_LOG}",
                             timeout=30)
    if out.rc not in (0, 1):  # 2: no such log
        return None
    lines = runner.nginx_request_times(out.stdout, result.plan.tag)
    return {"host": webs[0].name, "log": TIMING_LOG, **runner.compare_with_nginx(result.samples, lines)}


def run_load(session, out_dir: Path) -> LoadRun:
    """One Locust run of the inventory's `audit_load` against `audit_public_url`."""
    inventory = session.inventory
    plan = runner.LoadPlan(LoadProfile(**(inventory.setting("audit_load") or {})),
                           required(inventory.setting("audit_public_url"), "all.vars.audit_public_url"),
                           inventory.setting("audit_resolve") or {}, inventory.setting("audit_ca_bundle"), out_dir)
    try:
        result = runner.run(plan, session.access.secret("app_username"), session.access.secret("app_password"))
    except (runner.InvalidRun, ValueError) as exc:
        raise CouldNotAudit(None, "the load run", str(exc)) from None
    return LoadRun(result, nginx_view(session, result))
