"""The load gate's judging on captured outputs: per-request samples (as the locustfile writes
them), NGINX's timing log, the validity of a run, the plan, and the inventory's audit_load."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydantic import ValidationError

from audit.inventory import HostVars, LoadProfile
from audit.outcomes import CouldNotAudit
from audit.probes.load import LoadRun
from loadtests import runner
from loadtests.classify import is_rate_limited

ROOT = Path(__file__).resolve().parents[2]

# Captured from a run against the reference deployment (samples-<pid>.csv, then one drifted run).
HEALTHY_CSV = """t_end,group,name,status,ms,outcome,error
1795670615.727,login,login /api/v1/auth/login,200,175.69,ok,
1795670616.101,anonymous,anonymous /health,200,5.12,ok,
1795670616.402,static,static /static/app.css,200,1.20,ok,
1795670616.950,api,api /api/v1/me,200,4.40,ok,
1795670617.310,anonymous,anonymous /docs,200,3.11,ok,
1795670617.800,api,api /api/v1/health,200,5.02,ok,
1795670618.020,static,static /static/app.css,200,0.98,ok,
1795670618.400,api,api /api/v1/me,200,6.31,ok,
"""
SLOW_STATIC_CSV = HEALTHY_CSV + """1795670619.500,static,static /static/app.css,200,3007.1,ok,
1795670620.600,static,static /static/app.css,200,3000.4,ok,
"""
DOCS_502_CSV = HEALTHY_CSV + """1795670619.100,anonymous,anonymous /docs,502,2.01,error,HTTP 502
"""
RATE_LIMITED_CSV = HEALTHY_CSV + """1795670619.200,login,login /api/v1/auth/login [rate-limited],503,6.40,rate_limited,\
rejected by NGINX limit_req (503)
"""
GAVE_UP_CSV = HEALTHY_CSV + """1795670630.000,login,login gave up,0,0,gave_up,\
no token (login rejected by NGINX's login limit)
"""
NGINX_TIMING_LOG = """1795670263.365 0.000 503 "POST /api/v1/auth/login HTTP/1.1" "pynomaly-audit-load/35e35540e8"
1795670264.447 0.099 200 "POST /api/v1/auth/login HTTP/1.1" "pynomaly-audit-load/35e35540e8"
1795670265.001 0.004 200 "GET /api/v1/me HTTP/1.1" "pynomaly-audit-load/35e35540e8"
1795670265.101 0.006 200 "GET /docs HTTP/1.1" "pynomaly-audit-load/35e35540e8"
1795670270.637 0.000 503 "POST /api/v1/auth/login HTTP/1.1" "pynomaly-audit"
1795670245.197 0.000 400 "\\x15\\x03\\x01\\x00\\x02\\x02P" "-"
"""


def samples(text: str, tmp_path: Path) -> list[dict]:
    (tmp_path / "samples-1.csv").write_text(text)
    return runner.read_samples(tmp_path)


def test_percentile_is_nearest_rank():
    assert runner.percentile([], 0.95) is None
    assert runner.percentile([3.0], 0.95) == 3.0
    assert runner.percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
    assert runner.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0


def test_healthy_samples_are_fast_and_error_free(tmp_path):
    summary = runner.summarize(samples(HEALTHY_CSV, tmp_path))
    assert set(summary) == {"login", "anonymous", "static", "api", "all"}
    assert all(v["p95_s"] < 1 and v["error_percent"] == 0 for v in summary.values())
    assert summary["all"]["requests"] == 8


def test_slow_static_group_breaks_p95_of_its_group(tmp_path):
    summary = runner.summarize(samples(SLOW_STATIC_CSV, tmp_path))
    assert summary["static"]["p95_s"] > 3
    assert summary["api"]["p95_s"] < 1
    assert summary["static"]["error_percent"] == 0


def test_server_errors_count_in_their_group(tmp_path):
    summary = runner.summarize(samples(DOCS_502_CSV, tmp_path))
    assert summary["anonymous"]["errors"] == 1
    assert summary["anonymous"]["error_percent"] == pytest.approx(100 / 3, rel=1e-3)
    assert summary["anonymous"]["error_kinds"] == ["HTTP 502"]
    assert summary["static"]["error_percent"] == 0


def test_rate_limit_rejections_are_apart_from_latency_and_errors(tmp_path):
    rows = samples(RATE_LIMITED_CSV, tmp_path)
    summary = runner.summarize(rows)
    assert summary["login"] == {**summary["login"], "requests": 2, "served": 1, "errors": 0, "rate_limited": 1}
    assert summary["login"]["p95_s"] == 0.1757
    assert summary["all"]["rate_limited"] == 1
    # a retried login rejection does not invalidate the run
    assert runner.invalid_reasons({"master": 3.0}, rows, 0, "") == []


def test_user_without_token_invalidates_the_run(tmp_path):
    rows = samples(GAVE_UP_CSV, tmp_path)
    assert runner.summarize(rows)["login"]["requests"] == 1  # not a request
    reasons = runner.invalid_reasons({"master": 3.0}, rows, 0, "")
    assert len(reasons) == 1
    assert "got no token" in reasons[0]


def test_saturated_generator_invalidates_the_run(tmp_path):
    rows = samples(HEALTHY_CSV, tmp_path)
    assert runner.invalid_reasons({"master": 5.0, "worker-2": 89.0}, rows, 0, "") == []
    assert "CPU" in runner.invalid_reasons({"master": 5.0, "worker-2": 97.0}, rows, 0, "")[0]
    assert runner.invalid_reasons({}, rows, 0, "WARNING/root: CPU usage above 90%! This may constrain")


def test_mostly_rate_limited_or_empty_or_failed_run_is_invalid(tmp_path):
    limited = "\n".join(f"1795670620.{i:03d},api,api /api/v1/me [rate-limited],503,1.0,rate_limited,x"
                        for i in range(10))
    rows = samples(HEALTHY_CSV + limited + "\n", tmp_path)
    assert "limit_req" in runner.invalid_reasons({}, rows, 0, "")[0]
    assert runner.invalid_reasons({}, [], 0, "") == ["no request was recorded"]
    assert "exited with 1" in runner.invalid_reasons({}, rows[:3], 1, "boom")[0]


def test_a_run_that_recorded_nothing_is_could_not_audit_not_a_pass(tmp_path):
    """checks/load.py judges only a valid run (LoadRun.need_valid), and needs the overall ("all")
    group measured: a run without requests has neither."""
    empty = runner.LoadResult(plan(tmp_path), 0, 0.0, 1.0, [], {"master": 2.0}, "")
    run = LoadRun(empty, None)
    assert runner.summarize([])["all"]["p95_s"] is None
    assert runner.summarize([])["all"]["error_percent"] is None
    with pytest.raises(CouldNotAudit, match="no request was recorded"):
        run.need_valid()
    LoadRun(runner.LoadResult(plan(tmp_path), 0, 0.0, 1.0, samples(HEALTHY_CSV, tmp_path), {}, ""), None).need_valid()


def test_nginx_timing_log_is_filtered_by_the_run_tag():
    lines = runner.nginx_request_times(NGINX_TIMING_LOG, "35e35540e8")
    assert [(r["status"], r["path"], r["s"]) for r in lines] == [
        (503, "/api/v1/auth/login", 0.0), (200, "/api/v1/auth/login", 0.099),
        (200, "/api/v1/me", 0.004), (200, "/docs", 0.006)]
    assert runner.nginx_request_times(NGINX_TIMING_LOG, "another-run") == []


def test_locust_and_nginx_p95_are_compared_without_health(tmp_path):
    rows = samples(SLOW_STATIC_CSV, tmp_path)
    nginx = [{"s": s["ms"] / 1000 - 0.001} for s in rows if s["name"] != "anonymous /health"]
    cmp = runner.compare_with_nginx(rows, nginx)
    assert cmp["locust_requests"] == cmp["nginx_requests"] == 9
    assert cmp["difference_ms"] == pytest.approx(1.0)
    assert abs(cmp["difference_percent"]) < 1
    assert runner.compare_with_nginx(rows, [])["nginx_p95_s"] is None


def test_latency_chart_is_small_valid_svg(tmp_path):
    svg = runner.latency_svg(samples(SLOW_STATIC_CSV, tmp_path))
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert len(svg) < 5000
    assert ET.fromstring(runner.latency_svg([])).tag.endswith("svg")


def test_rate_limit_page_is_told_from_an_app_error():
    nginx_page = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<center>nginx</center>"
    assert is_rate_limited(503, "text/html", nginx_page)
    assert is_rate_limited(429, "text/html; charset=utf-8", nginx_page)
    assert not is_rate_limited(503, "application/json", '{"detail": "database unavailable"}')
    assert not is_rate_limited(502, "text/html", nginx_page.replace("503", "502"))
    assert not is_rate_limited(200, "text/html", "nginx")


def plan(tmp_path: Path, **profile) -> runner.LoadPlan:
    return runner.LoadPlan(LoadProfile(**profile), "https://pynomaly.test", {"pynomaly.test": "127.77.0.11"},
                           "/ca.pem", tmp_path)


def test_plan_runs_distributed_only_above_one_core_of_users(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    assert plan(tmp_path).processes == 1
    assert "--processes" not in plan(tmp_path).command()
    p = plan(tmp_path, users=8, users_per_process=3, wait=(2.0, 3.0))
    assert p.processes == 2  # 3 wanted, capped at the cores
    assert p.command()[p.command().index("--processes") + 1] == "2"
    assert p.environment("u", "secret-pw")["LOAD_APP_PASSWORD"] == "secret-pw"
    assert "secret-pw" not in " ".join(p.command())


def test_plan_refuses_a_profile_above_the_per_client_limit(tmp_path):
    plan(tmp_path).check()  # defaults: 2 API users / 0.5 s = 4 r/s < 10 r/s
    with pytest.raises(ValueError, match="per client"):
        plan(tmp_path, users=30, wait=(0.5, 1.0)).check()
    with pytest.raises(ValueError, match="weight"):
        plan(tmp_path, weights={"api": 0}).check()


def test_plan_names_only_weighted_scenarios(tmp_path):
    cmd = plan(tmp_path, weights={"anonymous": 1, "api": 0, "static": 2}).command()
    assert cmd[-2:] == ["AnonymousUser", "StaticUser"]
    assert "--run-time" in cmd
    assert cmd[cmd.index("--run-time") + 1] == "20s"


def test_inventory_audit_load_is_typed_with_safe_defaults():
    assert HostVars(audit_load={}).audit_load == LoadProfile()
    assert LoadProfile().run_time <= 30
    assert LoadProfile().users <= 10
    with pytest.raises(ValidationError):
        HostVars(audit_load={"users": 0})
    with pytest.raises(ValidationError):
        HostVars(audit_load={"weights": {"admin": 1}})
    with pytest.raises(ValidationError):
        HostVars(audit_load={"duration": 10})


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs an ssh client for the plugin")
def test_load_checks_are_opt_in(tmp_path):
    def collected(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "pytest", "--hosts=local", "--collect-only", "-q",
                               f"--alluredir={tmp_path / 'r'}", f"--junitxml={tmp_path / 'j.xml'}",
                               "-p", "no:cacheprovider", *args, "checks/load.py"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False).stdout

    assert "check_p95_response_time_under_declared_load" not in collected()
    assert "2 deselected" in collected()
    assert "check_p95_response_time_under_declared_load" in collected("-m", "load")
