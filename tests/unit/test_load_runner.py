"""The load checks' planning and judging on captured outputs: the master's files (samples.csv,
cpu.csv, events.jsonl, in the formats of loadtests/locustfile.py), NGINX's timing log, the
schedule of the two profiles, the validity of steps and runs, the capacity, the charts, the
plan's commands and the inventory's audit_load."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from audit.inventory import HostVars, LoadProfile, load_inventory
from audit.outcomes import CouldNotAudit
from audit.probes.load import LoadRun, SshFleet
from loadtests import runner, schedule
from loadtests.classify import is_rate_limited
from loadtests.schedule import Schedule, Step, StepStats

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"

# The master's samples.csv (captured from a step run from lg1/lg2, trimmed): step 0 settle/hold,
# step 1 hold with a slow static file, an NGINX rejection and a 502.
SAMPLES = """t_end,group,name,status,ms,outcome,error,step,phase,worker
1795797725.101,login,login /api/v1/auth/login,200,175.69,ok,,0,settle,lg1
1795797725.300,anonymous,anonymous /health,200,5.12,ok,,0,settle,lg2
1795797728.402,static,static /static/app.css,200,1.20,ok,,0,hold,lg1
1795797728.950,api,api /api/v1/me,200,4.40,ok,,0,hold,lg2
1795797729.310,anonymous,anonymous /docs,200,3.11,ok,,0,hold,lg1
1795797729.800,api,api /api/v1/health,200,5.02,ok,,0,hold,lg2
1795797730.020,static,static /static/app.css,200,0.98,ok,,0,hold,lg1
1795797730.400,api,api /api/v1/me,200,6.31,ok,,0,hold,lg2
1795797739.500,static,static /static/app.css,200,3007.1,ok,,1,hold,lg1
1795797740.600,static,static /static/app.css,200,3000.4,ok,,1,hold,lg2
1795797741.100,anonymous,anonymous /docs,502,2.01,error,HTTP 502,1,hold,lg1
1795797741.200,api,api /api/v1/me [rate-limited],503,6.40,rate_limited,rejected by NGINX limit_req (503),1,hold,lg2
1795797742.200,anonymous,anonymous /health,200,4.40,ok,,1,hold,lg2
"""
CPU = """t,worker,step,phase,cpu
1795797728.5,lg1,0,hold,3.0
1795797728.6,lg2,0,hold,4.0
1795797740.5,lg1,1,hold,12.0
1795797740.6,lg2,1,hold,96.0
"""
EVENTS = """{"t": 1795797721.513, "event": "master", "pid": 17218, "python": "3.11.7"}
{"t": 1795797724.53, "event": "workers", "connected": 2}
{"t": 1795797724.531, "event": "phase", "step": 0, "phase": "settle", "users": 8, "target_rps": 8.0}
{"t": 1795797728.012, "event": "phase", "step": 0, "phase": "hold", "users": 8, "target_rps": 8.0}
{"t": 1795797736.02, "event": "phase", "step": 1, "phase": "settle", "users": 16, "target_rps": 16.0}
{"t": 1795797738.964, "event": "phase", "step": 1, "phase": "hold", "users": 16, "target_rps": 16.0}
{"t": 1795797746.975, "event": "phase", "step": 2, "phase": "settle", "users": 24, "target_rps": 24.0}
{"t": 1795797749.9, "event": "stop", "why": "step 2 (16 users) could not be measured honestly", "step": 2}
{"t": 1795797749.9, "event": "stopped", "requests": 13, "why": "...", "workers": ["lg1", "lg2"]}
{"t": 1795797749.95, "event": "worker_lost", "workers": ["a wor
"""
# NGINX's timing log (captured on web1): this run's lines carry the tag and /<step><phase>.
NGINX_TIMING_LOG = """1795797728.500 0.001 200 "GET /static/app.css HTTP/1.1" "pynomaly-audit-load/abc5c2334a/0h"
1795797728.949 0.004 200 "GET /api/v1/me HTTP/1.1" "pynomaly-audit-load/abc5c2334a/0h"
1795797729.309 0.003 200 "GET /docs HTTP/1.1" "pynomaly-audit-load/abc5c2334a/0h"
1795797725.100 0.099 200 "POST /api/v1/auth/login HTTP/1.1" "pynomaly-audit-load/abc5c2334a/0s"
1795797741.199 0.000 503 "GET /api/v1/me HTTP/1.1" "pynomaly-audit-load/abc5c2334a/1h"
1795797270.637 0.000 503 "POST /api/v1/auth/login HTTP/1.1" "pynomaly-audit"
1795797245.197 0.000 400 "\\x15\\x03\\x01\\x00\\x02\\x02P" "-"
"""


def write_run(tmp_path: Path, samples: str = SAMPLES, cpu: str = CPU, events: str = EVENTS) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "samples.csv").write_text(samples)
    (tmp_path / "cpu.csv").write_text(cpu)
    (tmp_path / "events.jsonl").write_text(events)
    return tmp_path


def plan(tmp_path: Path, kind: str = "step", workers: int = 2, **profile) -> runner.LoadPlan:
    hosts = [runner.WorkerHost(f"lg{n}", {"pynomaly.test": "172.28.77.11"}) for n in range(1, workers + 1)]
    return runner.LoadPlan(LoadProfile(**profile), kind, "https://pynomaly.test", {"pynomaly.test": "127.77.0.11"},
                           "/ca.pem", tmp_path, workers=hosts, targets={"p95_s": 1.0, "error_percent": 1.0},
                           tag="abc5c2334a")


def result(tmp_path: Path, kind: str = "step", failure: str | None = None, log: str = "", exit_code: int = 0,
           **profile) -> runner.LoadResult:
    out = write_run(tmp_path)
    p = plan(tmp_path, kind, step={"start_rps": 8, "step_rps": 8, "hold": 8, "settle": 3}, **profile)
    return runner.LoadResult(p, exit_code, 1795797721.0, 1795797750.0,
                             runner.read_csv(out / "samples.csv", runner.SAMPLE_TYPES),
                             runner.read_csv(out / "cpu.csv", runner.CPU_TYPES),
                             runner.read_events(out / "events.jsonl"),
                             {"master": 4.0}, 55.0, log, failure)


# ---------------------------------------------------------------- reading and summarizing

def test_percentile_is_nearest_rank():
    assert schedule.percentile([], 0.95) is None
    assert schedule.percentile([3.0], 0.95) == 3.0
    assert schedule.percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
    assert schedule.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0


def test_the_masters_files_are_read_and_a_cut_line_is_skipped(tmp_path):
    r = result(tmp_path)
    assert len(r.samples) == 13
    assert r.samples[0]["step"] == 0
    assert r.samples[0]["worker"] == "lg1"
    assert isinstance(r.samples[0]["ms"], float)
    assert isinstance(r.samples[0]["status"], int)
    assert [e["event"] for e in r.events][-1] == "stopped"  # the last line was cut by a kill: skipped
    (tmp_path / "cut.csv").write_text("t,worker,step,phase,cpu\n1795797740.6,lg2,1,hol")
    assert runner.read_csv(tmp_path / "cut.csv", runner.CPU_TYPES) == []
    assert runner.read_csv(tmp_path / "missing.csv", runner.CPU_TYPES) == []


def test_summary_per_group_keeps_rejections_apart(tmp_path):
    r = result(tmp_path)
    held = runner.hold_samples(r.samples, 1)
    summary = runner.summarize(held)
    assert summary["static"]["p95_s"] > 3
    assert summary["anonymous"] == {**summary["anonymous"], "requests": 2, "served": 2, "errors": 1,
                                    "error_kinds": ["HTTP 502"]}
    assert summary["api"] == {**summary["api"], "requests": 1, "served": 0, "rate_limited": 1, "p95_s": None}
    assert summary["all"]["error_percent"] == pytest.approx(25.0)
    healthy = runner.summarize(runner.hold_samples(r.samples, 0))
    assert all(v["p95_s"] < 1 and v["error_percent"] == 0 for v in healthy.values())


# ---------------------------------------------------------------- steps, validity, capacity

def test_step_table_states_load_latency_errors_and_generator_cpu(tmp_path):
    table = runner.step_table(result(tmp_path))
    assert [r["step"] for r in table] == [1, 2]  # step 3 never reached its hold phase
    first, second = table
    assert first["users"] == 8
    assert first["requests"] == 6
    assert first["hold_s"] == 8.0
    assert first["rps"] == pytest.approx(0.7)
    assert first["met"]
    assert not first["invalid"]
    assert first["generator_cpu_max_percent"] == {"lg1": 3.0, "lg2": 4.0}
    assert second["rate_limited"] == 1
    assert second["errors"] == 1
    assert second["missed"] == ["p95 3.007 s >= 1 s", "errors 25.00% >= 1%"]
    assert "generator CPU above 90%" in second["invalid"][0]
    assert "lg2 96.0%" in second["invalid"][0]
    assert "limit_req" in second["invalid"][1]  # 1 of 5 requests rejected > 5%


def test_capacity_is_the_highest_valid_step_meeting_both_targets(tmp_path):
    table = runner.step_table(result(tmp_path))
    cap = runner.capacity(table)
    assert cap["capacity_rps"] == table[0]["rps"]
    assert cap["capacity_step"] == 1
    assert cap["generator_cpu_at_capacity"] == {"lg1": 3.0, "lg2": 4.0}
    assert cap["limited_by"].startswith("step 2 could not be measured honestly")
    met = [{**table[0], "step": 1}, {**table[0], "step": 2, "rps": 16.0}]
    assert runner.capacity(met)["capacity_rps"] == 16.0
    assert "no step missed" in runner.capacity(met)["limited_by"]
    missed = [table[0], {**table[0], "step": 2, "met": False, "missed": ["p95 1.2 s >= 1 s"], "rps": 16.0}]
    assert runner.capacity(missed)["limited_by"] == "step 2 (16.0 requests/s) missed: p95 1.2 s >= 1 s"
    assert runner.capacity([missed[1]])["capacity_rps"] is None


def test_step_stats_validity_and_targets():
    stats = StepStats()
    for ms in (10, 20, 900, 1100):
        stats.add(ms / 1000, "ok")
    stats.add_cpu("lg1", 80.0)
    assert stats.invalid() == []
    assert stats.missed(1.0, 1.0) == ["p95 1.100 s >= 1 s"]
    stats.add(0.005, "error")
    assert stats.error_percent() == pytest.approx(20.0)
    stats.add_cpu("lg2", 91.0)
    assert "lg2 91.0%" in stats.invalid()[0]
    empty = StepStats()
    assert empty.invalid() == ["no request was served"]
    assert empty.missed(1, 1) == []
    gave_up = StepStats()
    gave_up.add(0.01, "ok")
    gave_up.add(0.0, "gave_up")
    assert "no token" in gave_up.invalid()[0]


# ---------------------------------------------------------------- the schedule

def test_step_plan_stops_at_the_first_bound():
    steps, why = schedule.step_plan(10, 10, 40, 600, 3, 10, 1.0, 1000)
    assert [s.users for s in steps] == [10, 20, 30, 40]
    assert "40 requests/s" in why
    steps, why = schedule.step_plan(10, 10, 400, 600, 3, 10, 1.0, 24)
    assert [s.users for s in steps] == [10, 20]
    assert "per-address limit" in why
    assert "loadgen" in why
    steps, why = schedule.step_plan(10, 10, 400, 30, 3, 10, 1.0, 1000)
    assert len(steps) == 2
    assert "30 s" in why
    steps, _ = schedule.step_plan(5, 5, 20, 600, 3, 10, 2.0, 1000)
    assert [(s.users, s.target_rps) for s in steps] == [(3, 6.0), (5, 10.0), (8, 16.0), (10, 20.0)]


def test_addresses_carry_users_under_the_per_client_api_limit():
    mix = {"anonymous": 1, "api": 1, "static": 1}
    assert schedule.max_users_for_addresses(1, 1.0, mix, 10) == 24   # 8 API r/s / (1/3) per address
    assert schedule.max_users_for_addresses(4, 1.0, mix, 10) == 96
    assert schedule.max_users_for_addresses(2, 1.0, {"anonymous": 3, "api": 1, "static": 4}, 10) == 128
    assert schedule.max_users_for_addresses(1, 1.0, {"static": 1}, 10) >= 10 ** 6
    assert schedule.address_api_rate(25, 1, 1.0, mix) == pytest.approx(25 / 3)
    assert schedule.users_per_address(25, 2) == 13


def test_schedule_phases_and_a_step_judged_after_the_next_settle():
    steps = [Step(0, 10, 10.0, 3, 10), Step(1, 20, 20.0, 3, 10)]
    s = Schedule(steps, {"p95_s": 1.0, "error_percent": 1.0}, max_requests=10000, max_time=100)
    assert s.position(0) == (0, "settle")
    assert s.position(5) == (0, "hold")
    assert s.position(14) == (1, "settle")
    assert s.position(27) == (1, "drain")
    assert s.position(30) == (2, "end")
    d = s.decide(0)
    assert (d.users, d.step, d.phase, d.stop) == (10, 0, "settle", None)
    assert d.spawn_rate == pytest.approx(10 / 1.5)
    for _ in range(20):
        s.record(0, "hold", 1.5, "ok")  # step 1 is too slow
    s.record(0, "settle", 9.0, "ok")    # not measured
    assert s.decide(14).stop is None    # the next step's settle: step 1's last samples may still come
    d = s.decide(17)
    assert d.stop == "step 1 (10 users) missed the targets: p95 1.500 s >= 1 s"
    assert s.decide(18).stop == d.stop  # stays stopped


def test_schedule_stops_on_generator_cpu_requests_and_time_and_the_gate_holds_whatever():
    steps = [Step(0, 10, 10.0, 3, 10), Step(1, 20, 20.0, 3, 10)]
    s = Schedule(steps, {"p95_s": 1.0, "error_percent": 1.0}, max_requests=10000, max_time=100)
    s.record(0, "hold", 0.01, "ok")
    s.record_cpu("lg1", 0, "hold", 95.0)
    assert "could not be measured honestly" in s.decide(17).stop
    bounded = Schedule(steps, None, max_requests=3, max_time=100)
    for _ in range(3):
        bounded.record(0, "hold", 5.0, "ok")
    assert bounded.decide(5).stop == "the request bound (3 requests) was reached"
    assert Schedule(steps, None, 10, max_time=20).decide(21).stop == "the time bound (20 s) was reached"
    gate = Schedule(steps[:1], None, 10000, 100)
    for _ in range(5):
        gate.record(0, "hold", 5.0, "error")
    assert gate.decide(12).stop is None
    assert gate.decide(17).stop == "every step ran"


# ---------------------------------------------------------------- the run as a whole

def test_a_run_without_workers_or_with_a_lost_worker_is_could_not_audit(tmp_path):
    log = "[2026] vm/ERROR/locust.main: Gave up waiting for workers to connect\n"
    r = result(tmp_path, log=log, exit_code=1)
    assert runner.run_failure(r) == "no worker connected to the master within 30 s (expected lg1, lg2)"
    lost = result(tmp_path / "lost")  # result() writes the captured files: the master's line comes after
    (tmp_path / "lost" / "events.jsonl").write_text(EVENTS.replace('"workers": ["a wor\n',
                                                                   '"why": "lg2 stopped answering"}\n'))
    lost.events = runner.read_events(tmp_path / "lost" / "events.jsonl")
    assert lost.events[-1] == {"t": 1795797749.95, "event": "worker_lost", "why": "lg2 stopped answering"}
    assert runner.run_failure(lost) == "lg2 stopped answering"
    assert runner.run_failure(result(tmp_path / "x", failure="the worker on lg2 ended")) == "the worker on lg2 ended"
    assert "exited with 2" in runner.run_failure(result(tmp_path / "y", log="boom", exit_code=2))
    ok = result(tmp_path / "z")
    assert runner.run_failure(ok) is None
    ok.samples = []
    assert runner.run_failure(ok) == "no request was recorded"


def test_applied_load_is_stated(tmp_path):
    r = result(tmp_path)
    r.left_behind = ["lg2: worker process(es) 812 still ran after the stop: killed"]
    a = runner.applied_load(r)
    assert a["client_addresses"] == 2
    assert a["workers"] == "lg1, lg2"
    assert a["profile"] == "step"
    assert a["requests"] == 13
    assert a["rate_limited"] == 1
    assert a["workers_reporting"] == ["lg1", "lg2"]
    assert a["stopped_because"].startswith("step 2 (16 users)")
    assert a["worker_processes_left_behind"] == r.left_behind
    assert a["steps"] == ["8 users", "16 users", "24 users", "32 users", "40 users", "48 users"]


def test_a_gate_run_or_step_that_cannot_support_a_verdict_is_could_not_audit(tmp_path):
    r = result(tmp_path / "a")
    with pytest.raises(CouldNotAudit, match="step 2 .* could not be measured honestly: generator CPU"):
        LoadRun(r, None, None).steps_up_to(16.0, "p95_s", 1.0)
    assert [row["step"] for row in LoadRun(r, None, None).steps_up_to(8.0, "p95_s", 1.0)] == [1]
    first_only = LoadRun(r, None, None)
    first_only.table = first_only.table[:1]
    with pytest.raises(CouldNotAudit, match=r"stopped at 0.7 requests/s \(step 1\), below the declared production "
                                            "load of 100 requests/s"):
        first_only.steps_up_to(100.0, "p95_s", 1.0)
    with pytest.raises(CouldNotAudit, match="no worker connected"):
        LoadRun(result(tmp_path / "c", "gate", log="Gave up waiting for workers to connect", exit_code=1),
                None, None).need_valid()
    gate = result(tmp_path / "d", "gate")
    gate.events = [e for e in gate.events if e.get("event") != "phase" or e["step"] == 0]
    LoadRun(gate, None, None).need_valid()  # step 0 held, valid
    gate.cpu = [{"t": 1.0, "worker": "lg1", "step": 0, "phase": "hold", "cpu": 97.0}]
    with pytest.raises(CouldNotAudit, match="generator CPU above 90%"):
        LoadRun(gate, None, None).need_valid()


# ---------------------------------------------------------------- NGINX's view

def test_nginx_timing_log_is_filtered_by_run_tag_and_step():
    lines = runner.nginx_request_times(NGINX_TIMING_LOG, "abc5c2334a")
    assert [(r["status"], r["path"], r["s"], r["step"], r["phase"]) for r in lines] == [
        (200, "/static/app.css", 0.001, 0, "hold"), (200, "/api/v1/me", 0.004, 0, "hold"),
        (200, "/docs", 0.003, 0, "hold"), (200, "/api/v1/auth/login", 0.099, 0, "settle"),
        (503, "/api/v1/me", 0.0, 1, "hold")]
    assert runner.nginx_request_times(NGINX_TIMING_LOG, "another-run") == []


def test_locust_and_nginx_p95_agree_or_say_why_not(tmp_path):
    held = runner.hold_samples(result(tmp_path).samples, 1)
    close = [{"s": s["ms"] / 1000 - 0.02} for s in held if s["name"] != "anonymous /health"]
    cmp = runner.compare_with_nginx(held, close)
    assert cmp["locust_requests"] == cmp["nginx_requests"] == 4
    assert cmp["agrees"]
    assert "why_not" not in cmp
    small = runner.compare_with_nginx([{"name": "api /api/v1/me", "ms": 32.6, "outcome": "ok"}], [{"s": 0.022}])
    assert not small["agrees"]
    assert small["difference_percent"] == 48.2
    assert "client's own share" in small["why_not"]
    busy = runner.compare_with_nginx([{"name": "api x", "ms": 900.0, "outcome": "ok"}], [{"s": 0.5}], generator_cpu=85)
    assert "generator was busy" in busy["why_not"]
    assert "none of this step" in runner.compare_with_nginx(held, [])["why_not"]
    few = runner.compare_with_nginx(held, [{"s": 3.0}])
    assert "NGINX logged 1 of 4" in few["why_not"]
    r = result(tmp_path / "s")
    per_step = runner.nginx_per_step(r, runner.nginx_request_times(NGINX_TIMING_LOG, "abc5c2334a"),
                                     runner.step_table(r))
    assert [(p["step"], p["nginx_requests"]) for p in per_step] == [(1, 3), (2, 1)]


# ---------------------------------------------------------------- charts

def test_step_chart_is_small_valid_svg_with_three_panels(tmp_path):
    table = runner.step_table(result(tmp_path))
    svg = runner.steps_svg(table, {"p95_s": 1.0, "error_percent": 1.0})
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}polyline")) == 3
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "p95 (s)" in texts
    assert "error rate (%)" in texts
    assert "generator CPU" in texts
    assert "capacity" in texts
    assert len(root.findall(f"{SVG}path")) == 3  # step 2 is invalid: a grey cross per panel
    assert len(svg) < 20000
    assert ET.fromstring(runner.steps_svg([], {})).tag.endswith("svg")
    latency = ET.fromstring(runner.latency_svg(runner.hold_samples(result(tmp_path / "l").samples, 1)))
    assert len(latency.findall(f"{SVG}polyline")) == 2
    assert ET.fromstring(runner.latency_svg([])).tag.endswith("svg")


def test_rate_limit_page_is_told_from_an_app_error():
    nginx_page = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<center>nginx</center>"
    assert is_rate_limited(503, "text/html", nginx_page)
    assert is_rate_limited(429, "text/html; charset=utf-8", nginx_page)
    assert not is_rate_limited(503, "application/json", '{"detail": "database unavailable"}')
    assert not is_rate_limited(502, "text/html", nginx_page.replace("503", "502"))
    assert not is_rate_limited(200, "text/html", "nginx")


# ---------------------------------------------------------------- the plan

def test_gate_plan_refuses_a_load_its_addresses_cannot_send(tmp_path):
    declared = {"gate": {"requests_per_s": 40}}
    with pytest.raises(ValueError, match="needs 2 client addresses.*one client address.*loadgen"):
        plan(tmp_path, "gate", workers=0, **declared).check()
    plan(tmp_path, "gate", workers=2, **declared).check()
    with pytest.raises(ValueError, match="weight"):
        plan(tmp_path, "gate", weights={"api": 0}).check()
    legacy = plan(tmp_path, "gate", workers=0, users=6)  # users waiting 0.5-1.5 s: 2 API users / 0.5 s
    legacy.check()
    assert not legacy.paced
    assert legacy.steps()[0][0].users == 6
    assert legacy.config()["pace"] == {"wait": [0.5, 1.5]}


def test_step_plan_is_bounded_by_the_addresses(tmp_path):
    one = plan(tmp_path, "step", workers=0, step={"start_rps": 10, "step_rps": 10})
    assert [s.users for s in one.steps()[0]] == [10, 20]
    assert "per-address" in one.steps()[1]
    four = plan(tmp_path, "step", workers=4, step={"start_rps": 10, "step_rps": 10})
    assert four.steps()[0][-1].users == 90
    assert four.describe()["steps_end_at"].startswith("the per-address limit: 96 users")


def test_master_and_worker_commands(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    remote = plan(tmp_path, "gate", gate={"requests_per_s": 30})
    cmd = remote.master_command(5999)
    assert cmd[1:3] == ["-m", "locust"]
    assert "--master" in cmd
    assert "--processes" not in cmd
    assert cmd[cmd.index("--expect-workers") + 1] == "2"
    assert cmd[cmd.index("--master-bind-port") + 1] == "5999"
    local = plan(tmp_path, "gate", workers=0, users_per_process=5, gate={"requests_per_s": 12})
    cmd = local.master_command(5999)
    assert cmd[cmd.index("--processes") + 1] == "2"
    assert cmd[cmd.index("--master-port") + 1] == "5999"
    env = remote.environment("u", "secret-pw")
    assert env["LOAD_APP_PASSWORD"] == "secret-pw"
    assert "secret-pw" not in " ".join(cmd) + env["LOAD_CONFIG"]
    config = remote.config(remote.workers[1], "/tmp/ca.pem")
    assert config["worker"] == "lg2"
    assert config["resolve"] == {"pynomaly.test": "172.28.77.11"}
    assert config["samples_dir"] is None
    assert config["budget"] == 750
    assert config["targets"] is None
    assert remote.config()["steps"] == [{"index": 0, "users": 30, "target_rps": 30.0, "settle": 12, "hold": 20}]


class _Session:
    class access:  # noqa: N801 - the attribute the fleet reads
        pass


def test_remote_worker_command_keeps_secrets_off_the_command_line(tmp_path):
    p = plan(tmp_path, "gate", gate={"requests_per_s": 30})
    fleet = SshFleet(_Session(), [], p)
    cmd = fleet.command(None, 41234, p.config(p.workers[0]))
    assert cmd.startswith("IFS= read -r LOAD_APP_USERNAME && IFS= read -r LOAD_APP_PASSWORD")
    assert "LOAD_LEASH=1" in cmd
    assert "--worker --master-host 127.0.0.1 --master-port 41234" in cmd
    assert f"exec timeout -k 5 {int(p.max_time + 30 + 30)} python3 -m locust -f /tmp/pynomaly-load-abc5c2334a/" in cmd
    assert "/tmp/pynomaly-load-abc5c2334a/ca.pem" in cmd
    assert "password" not in cmd.lower().replace("load_app_password", "")  # only the variable's name


# ---------------------------------------------------------------- inventory

def test_inventory_audit_load_is_typed_with_safe_defaults():
    assert HostVars(audit_load={}).audit_load == LoadProfile()
    assert LoadProfile().gate.users == 6
    assert LoadProfile().gate.run_time <= 30
    assert LoadProfile(users=4, run_time=10).gate.users == 4  # the former top-level keys are the gate's
    assert LoadProfile(gate={"requests_per_s": 40}).gate.users is None
    with pytest.raises(ValidationError, match="not both"):
        LoadProfile(gate={"requests_per_s": 40, "users": 3})
    with pytest.raises(ValidationError):
        HostVars(audit_load={"users": 0})
    with pytest.raises(ValidationError):
        HostVars(audit_load={"weights": {"admin": 1}})
    with pytest.raises(ValidationError):
        HostVars(audit_load={"duration": 10})
    with pytest.raises(ValidationError):
        HostVars(audit_load={"step": {"hold": 1}})


def test_loadgen_inventory_lists_the_workers_who_are_never_audited(tmp_path):
    from provision import loadgen

    hosts = [loadgen.worker(1), loadgen.worker(2)]
    assert [h.ip for h in hosts] == ["172.28.77.201", "172.28.77.202"]  # outside the deployment's /25
    with pytest.raises(Exception, match="1..8"):
        loadgen.worker(9)
    path = tmp_path / "inventory.yml"
    path.write_text(loadgen.inventory_text(hosts, tmp_path / "known_hosts"))
    inv = load_inventory(path)
    assert [h.name for h in inv.hosts_with_role("loadgen")] == ["lg1", "lg2"]
    assert inv.hosts["lg1"].vars["audit_resolve"] == {"pynomaly.test": "172.28.77.11"}
    assert inv.hosts["lg1"].vars["audit_known_hosts"] == str(tmp_path / "known_hosts")
    assert "lg1" not in [h.name for h in inv.hosts_with_role("all")]
    assert "web1" in [h.name for h in inv.hosts_with_role()]
    assert Path(inv.setting("audit_ca_bundle")).is_absolute()
    local = yaml.safe_load((ROOT / "inventories" / "local.yml").read_text())
    assert local["all"]["children"]["loadgen"] == {"hosts": {}}


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs an ssh client for the plugin")
def test_load_checks_are_opt_in(tmp_path):
    def collected(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "pytest", "--hosts=local", "--collect-only", "-q",
                               f"--alluredir={tmp_path / 'r'}", f"--junitxml={tmp_path / 'j.xml'}",
                               "-p", "no:cacheprovider", *args, "checks/load.py"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False).stdout

    assert "check_p95_response_time_under_declared_load" not in collected()
    assert "4 deselected" in collected()
    selected = collected("-m", "load")
    assert "check_p95_response_time_under_declared_load" in selected
    assert "check_capacity_reaches_declared_load[CHK-ERROR-RATE]" in selected
