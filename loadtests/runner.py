"""Run the Locust scenarios (loadtests/locustfile.py) in Locust's distributed mode and judge what
they measured.

Never imports Locust (it patches the standard library with gevent, and registers a pytest plugin
with its own `--host`): `run()` starts the master as `python -m locust --headless` in a
subprocess, with the load shape (loadtests/schedule.py). Its workers are either forked by
`--processes N` on this machine (the inventory has no `loadgen` host: one client address), or
started by the caller on the `loadgen` hosts (a `Fleet`, audit/probes/load.py: over SSH, one
worker and one client address per host, reaching the master through a reverse tunnel). The master
writes every request (samples.csv), each worker's CPU each second (cpu.csv) and its steps and
stops (events.jsonl); the rest of this module is pure functions on those files, unit-tested on
captured outputs: the steps' numbers, their validity, the capacity, NGINX's own `$request_time`
per step, and the charts.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from audit.inventory import LoadProfile
from loadtests.schedule import (
    CPU_LIMIT,
    DRAIN,
    MAX_REJECTED_PERCENT,
    Step,
    StepStats,
    address_api_rate,
    api_fraction,
    max_users_for_addresses,
    percentile,
    step_plan,
)

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
WORKER_FILES = ("locustfile.py", "classify.py", "schedule.py")  # what a remote worker needs
NGINX_AGREEMENT_PERCENT = 10.0
__all__ = ["CPU_LIMIT", "MAX_REJECTED_PERCENT", "percentile"]


class InvalidRun(Exception):
    """The load run cannot support a verdict (a worker lost, no worker, the master failed)."""


@dataclass(frozen=True)
class WorkerHost:
    """A `loadgen` host: where one worker runs, and how it reaches the public name."""

    name: str
    resolve: dict[str, str]


class Fleet(Protocol):
    """Remote workers, started and stopped by the caller (over SSH): see audit/probes/load.py."""

    names: list[str]

    def start(self, master_port: int, config: dict[str, dict]) -> None: ...

    def failure(self) -> str | None: ...

    def stop(self) -> list[str]: ...


@dataclass
class LoadPlan:
    profile: LoadProfile
    kind: str                      # "gate" | "step"
    base_url: str
    resolve: dict[str, str]
    ca_bundle: str | None
    out_dir: Path
    workers: list[WorkerHost] = field(default_factory=list)   # empty: local processes, one address
    targets: dict[str, float] | None = None                   # {"p95_s", "error_percent"}: the catalogue's
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    # ------------------------------------------------------------ load

    @property
    def weights(self) -> dict[str, int]:
        return {k: v for k, v in self.profile.weights.items() if v > 0}

    @property
    def addresses(self) -> int:
        return len(self.workers) or 1

    @property
    def paced(self) -> bool:
        return self.kind == "step" or self.profile.gate.requests_per_s is not None

    @property
    def user_rps(self) -> float:
        """A user's highest request rate: its pace, or one task per minimum wait."""
        return self.profile.user_rps if self.paced else 1 / self.profile.wait[0]

    def gate_users(self) -> int:
        g = self.profile.gate
        return math.ceil(g.requests_per_s / self.profile.user_rps - 1e-9) if g.requests_per_s else g.users

    def address_users(self) -> int:
        return max_users_for_addresses(self.addresses, self.user_rps, self.weights, self.profile.api_rate_limit)

    def steps(self) -> tuple[list[Step], str]:
        """The run's steps and what bounds them."""
        if self.kind == "gate":
            users = self.gate_users()
            settle = max(3, math.ceil(users / self.profile.spawn_rate) + 2)
            return ([Step(0, users, round(users * self.profile.user_rps, 3) if self.paced else None, settle,
                          self.profile.gate.run_time)], "the declared run time")
        s = self.profile.step
        return step_plan(s.start_rps, s.step_rps, s.max_rps, s.max_time, s.settle, s.hold, self.profile.user_rps,
                         self.address_users())

    @property
    def max_requests(self) -> int:
        return self.profile.gate.max_requests if self.kind == "gate" else self.profile.step.max_requests

    @property
    def max_time(self) -> float:
        steps, _ = self.steps()
        return sum(s.duration for s in steps) + DRAIN + 5

    @property
    def processes(self) -> int:
        """Local worker processes (no loadgen host): one per `users_per_process` users, at most
        one per core; remote: one per loadgen host."""
        if self.workers:
            return len(self.workers)
        steps, _ = self.steps()
        users = max((s.users for s in steps), default=1)
        return max(1, min(math.ceil(users / self.profile.users_per_process), os.cpu_count() or 1))

    def check(self) -> None:
        """Refuse a load the client addresses cannot send under NGINX's per-client limits."""
        if not self.weights:
            raise ValueError("audit_load.weights: every scenario weight is 0")
        steps, why = self.steps()
        if not steps:
            raise ValueError(f"audit_load.step: not even the first step fits ({why})")
        if self.kind == "gate":
            users = steps[0].users
            rate = address_api_rate(users, self.addresses, self.user_rps, self.weights)
            if users > self.address_users():
                where = (f"{self.addresses} loadgen host(s)" if self.workers
                         else "one client address (the inventory has no loadgen host)")
                need = math.ceil(users / max(self.address_users() // self.addresses, 1))
                raise ValueError(
                    f"the declared production load ({self.declared()}) needs {need} client addresses: from "
                    f"{where} each would send up to {rate:.1f} requests/s to /api/, over NGINX's "
                    f"{self.profile.api_rate_limit:g} r/s per client (planned at 80%): the run would measure "
                    "rate limiting, not the deployment. Add hosts to the group `loadgen` "
                    "(reference deployment: python -m provision loadgen up N)")

    def declared(self) -> str:
        g = self.profile.gate
        return f"{g.requests_per_s:g} requests/s" if g.requests_per_s else f"{g.users} users"

    # ------------------------------------------------------------ Locust

    def config(self, worker: WorkerHost | None = None, ca_bundle: str | None = None) -> dict[str, Any]:
        """LOAD_CONFIG of the master (no worker) or of one worker (its name, resolve, CA path)."""
        steps, _ = self.steps()
        budget = math.ceil(self.max_requests / self.processes)
        pace = {"user_rps": self.profile.user_rps} if self.paced else {"wait": list(self.profile.wait)}
        config = {"base_url": self.base_url, "resolve": self.resolve, "ca_bundle": self.ca_bundle,
                  "weights": self.weights, "pace": pace, "budget": budget, "tag": self.tag,
                  "steps": [s.__dict__ for s in steps], "targets": self.targets if self.kind == "step" else None,
                  "max_requests": self.max_requests, "max_time": self.max_time,
                  "samples_dir": str(self.out_dir)}
        if worker is not None:
            config.update(worker=worker.name, resolve=worker.resolve, ca_bundle=ca_bundle, samples_dir=None)
        return config

    def master_command(self, port: int) -> list[str]:
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--stop-timeout", "3",
               "--csv", str(self.out_dir / "locust"), "--html", str(self.out_dir / "locust-report.html"),
               "--only-summary", "--exit-code-on-error", "0", "--loglevel", "INFO"]
        if self.workers:
            return cmd + ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                          "--expect-workers", str(len(self.workers)),
                          "--expect-workers-max-wait", str(self.profile.worker_wait)]
        return cmd + ["--processes", str(self.processes), "--master-bind-host", "127.0.0.1",
                      "--master-bind-port", str(port), "--master-port", str(port),  # the forked workers' way back
                      "--expect-workers-max-wait", str(self.profile.worker_wait)]

    def environment(self, username: str, password: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "LOCUST_"))}
        return {**env, "LOAD_CONFIG": json.dumps(self.config()), "LOAD_APP_USERNAME": username,
                "LOAD_APP_PASSWORD": password}

    def describe(self) -> dict[str, Any]:
        steps, bound = self.steps()
        where = ", ".join(w.name for w in self.workers) or "this machine (local processes)"
        d = {"profile": self.kind, "target": self.base_url, "client_addresses": self.addresses,
             "workers": where, "worker_processes": self.processes, "scenario_weights": self.weights,
             "api_share": round(api_fraction(self.weights), 3),
             "pace": f"{self.profile.user_rps:g} requests/s per user" if self.paced
             else f"{self.profile.wait[0]:g}-{self.profile.wait[1]:g} s between a user's tasks",
             "max_requests": self.max_requests, "max_time_s": round(self.max_time),
             "nginx_api_limit_per_client_per_s": self.profile.api_rate_limit,
             "max_users_for_these_addresses": self.address_users(), "tag": self.tag}
        if self.kind == "gate":
            d.update(declared=self.declared(), users=steps[0].users, run_time_s=self.profile.gate.run_time)
        else:
            d.update(steps=[f"{s.users} users" for s in steps], steps_end_at=bound)
        return d


@dataclass
class LoadResult:
    plan: LoadPlan
    exit_code: int
    started: float
    ended: float
    samples: list[dict[str, Any]]
    cpu: list[dict[str, Any]]
    events: list[dict[str, Any]]
    master_cpu: dict[str, float]     # process -> highest CPU % of one core (this machine)
    machine_cpu: float               # this machine's highest CPU % (all cores) during the run
    log_tail: str
    failure: str | None = None       # why the run could not finish (a worker lost, no worker, ...)
    left_behind: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return max(self.ended - self.started, 1e-6)

    def files(self) -> list[Path]:
        names = ["locust_stats.csv", "locust_failures.csv", "locust-report.html", "steps.svg", "latency.svg"]
        return [self.plan.out_dir / n for n in names if (self.plan.out_dir / n).exists()]


class _CpuSampler(threading.Thread):
    """Highest CPU % of the master's process tree (and of this machine), sampled every second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root, self.stop, self.max, self.machine = psutil.Process(pid), threading.Event(), {}, 0.0
        self._procs: dict[int, psutil.Process] = {}
        psutil.cpu_percent(None)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.machine = max(self.machine, psutil.cpu_percent(None))
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in tree:
                known = self._procs.setdefault(proc.pid, proc)
                try:
                    pct = known.cpu_percent(None)
                except psutil.NoSuchProcess:
                    continue
                key = "master" if proc.pid == self.root.pid else f"local-{proc.pid}"
                self.max[key] = max(self.max.get(key, 0.0), pct)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _end(proc: subprocess.Popen, grace: float = 8.0) -> None:
    """SIGTERM (the master tells its workers to quit), then SIGKILL; then whatever is left of its
    process group (the workers it forked with --processes)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(plan: LoadPlan, username: str, password: str, fleet: Fleet | None = None) -> LoadResult:
    """One bounded run of the plan; stops by itself (the shape's bounds, then a deadline)."""
    plan.check()
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("samples.csv", "cpu.csv", "events.jsonl", "master.log"):
        (plan.out_dir / name).unlink(missing_ok=True)
    port = free_port()
    deadline_s = plan.max_time + plan.profile.worker_wait + 30
    started = time.time()
    log = (plan.out_dir / "master.log").open("w")
    proc = subprocess.Popen(plan.master_command(port), env=plan.environment(username, password), cwd=HERE,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sampler = _CpuSampler(proc.pid)
    sampler.start()
    failure, left = None, []
    try:
        if fleet is not None:
            fleet.start(port, {w.name: plan.config(w) for w in plan.workers})
        while proc.poll() is None:
            failure = fleet.failure() if fleet is not None else None
            if failure:
                break
            if time.time() - started > deadline_s:
                failure = f"the run did not stop by itself within {deadline_s:.0f} s: stopped"
                break
            time.sleep(0.5)
    except InvalidRun as exc:  # a worker could not be started
        failure = str(exc)
    finally:
        _end(proc)
        if fleet is not None:
            left = fleet.stop()
            failure = failure or fleet.failure()
        sampler.stop.set()
        sampler.join(timeout=3)
        log.close()
    ended = time.time()
    out = plan.out_dir
    result = LoadResult(plan, proc.returncode, started, ended, read_csv(out / "samples.csv", SAMPLE_TYPES),
                        read_csv(out / "cpu.csv", CPU_TYPES), read_events(out / "events.jsonl"), dict(sampler.max),
                        sampler.machine, (out / "master.log").read_text(errors="replace")[-4000:], failure, left)
    table = step_table(result)
    (out / "steps.svg").write_text(steps_svg(table, plan.targets or {}) if plan.kind == "step"
                                   else latency_svg(hold_samples(result.samples, 0)))
    return result


# ---------------------------------------------------------------- reading (pure)

SAMPLE_TYPES = {"t_end": float, "status": int, "ms": float, "step": int}
CPU_TYPES = {"t": float, "cpu": float, "step": int}


def read_csv(path: Path, types: dict[str, type]) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                rows.append({k: types.get(k, str)(v) for k, v in row.items()})
            except (TypeError, ValueError):
                continue  # a line cut short when the master was stopped
    return rows


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def hold_samples(samples: list[dict[str, Any]], step: int) -> list[dict[str, Any]]:
    return [s for s in samples if s["step"] == step and s["phase"] == "hold"]


# ---------------------------------------------------------------- judging (pure)

def summarize(samples: list[dict[str, Any]], quantile: float = 0.95) -> dict[str, dict[str, Any]]:
    """Per endpoint group and overall ("all"): requests, errors, NGINX rejections, error % and the
    latency quantile in seconds. Rejections are counted apart: not in the latency, not in the error
    rate (NGINX protecting itself from one client, not a server error); requests that were never
    sent (no token: `gave_up`) are not requests."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        groups.setdefault(s["group"], []).append(s)
    groups["all"] = list(samples)
    groups = {g: [r for r in rows if r["outcome"] != "gave_up"] for g, rows in groups.items()}
    out = {}
    for name, rows in groups.items():
        served = [r for r in rows if r["outcome"] != "rate_limited"]
        errors = [r for r in served if r["outcome"] == "error"]
        p = percentile([r["ms"] / 1000 for r in served], quantile)
        out[name] = {"requests": len(rows), "served": len(served), "errors": len(errors),
                     "rate_limited": len(rows) - len(served),
                     "error_percent": round(100 * len(errors) / len(served), 3) if served else None,
                     f"p{round(quantile * 100)}_s": None if p is None else round(p, 4),
                     "error_kinds": sorted({r["error"] for r in errors})[:5]}
    return out


def phases(events: list[dict[str, Any]], ended: float) -> dict[tuple[int, str], tuple[float, float]]:
    """(step, phase) -> (start, end) in the master's clock, from its phase events."""
    marks = [(e["t"], e["step"], e["phase"]) for e in events if e.get("event") == "phase"]
    stop = next((e["t"] for e in events if e.get("event") == "stop"), ended)
    out = {}
    for i, (t, step, phase) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else stop
        out[(step, phase)] = (t, max(end, t))
    return out


def step_table(result: LoadResult) -> list[dict[str, Any]]:
    """One row per step that reached its hold phase: the load applied and what it measured."""
    spans = phases(result.events, result.ended)
    steps, _ = result.plan.steps()
    rows = []
    for step in steps:
        if (step.index, "hold") not in spans:
            continue
        start, end = spans[(step.index, "hold")]
        stats = StepStats()
        held = hold_samples(result.samples, step.index)
        for s in held:
            stats.add(s["ms"] / 1000, s["outcome"])
        for c in result.cpu:
            if c["step"] == step.index and c["phase"] == "hold":
                stats.add_cpu(c["worker"], c["cpu"])
        seconds = max(end - start, 1e-6)
        p95, err = stats.p95(), stats.error_percent()
        row = {"step": step.index + 1, "users": step.users, "target_rps": step.target_rps,
               "hold_s": round(seconds, 1), "requests": stats.requests, "rps": round(stats.requests / seconds, 1),
               "served": stats.served, "errors": stats.errors, "rate_limited": stats.rate_limited,
               "gave_up": stats.gave_up, "p95_s": None if p95 is None else round(p95, 4),
               "error_percent": None if err is None else round(err, 3),
               "generator_cpu_max_percent": {k: round(v, 1) for k, v in sorted(stats.cpu.items())},
               "generator_cpu_peak_percent": round(max(stats.cpu.values(), default=0.0), 1),
               "invalid": stats.invalid()}
        if result.plan.targets:
            row["missed"] = stats.missed(result.plan.targets["p95_s"], result.plan.targets["error_percent"])
            row["met"] = not row["invalid"] and not row["missed"]
        rows.append(row)
    return rows


def capacity(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest step that met both targets, every step below it valid and meeting them too;
    what ended the search (the first step that did not), in words."""
    best, ended_by = None, None
    for row in table:
        if row.get("met"):
            best = row
            continue
        ended_by = row
        break
    out: dict[str, Any] = {"capacity_rps": None, "capacity_step": None, "capacity_users": None,
                           "generator_cpu_at_capacity": None}
    if best:
        out.update(capacity_rps=best["rps"], capacity_step=best["step"], capacity_users=best["users"],
                   generator_cpu_at_capacity=best["generator_cpu_max_percent"])
    if ended_by is None:
        out["limited_by"] = "the run's bounds (no step missed a target): the capacity is at least this"
    elif ended_by["invalid"]:
        out["limited_by"] = f"step {ended_by['step']} could not be measured honestly: {'; '.join(ended_by['invalid'])}"
    else:
        out["limited_by"] = f"step {ended_by['step']} ({ended_by['rps']} requests/s) missed: " \
                            f"{', '.join(ended_by['missed'])}"
    return out


def run_failure(result: LoadResult) -> str | None:
    """Why the run as a whole cannot support a verdict (could not audit), or None."""
    if result.failure:
        return result.failure
    log = result.log_tail
    if "Gave up waiting for workers to connect" in log:
        return (f"no worker connected to the master within {result.plan.profile.worker_wait} s "
                f"(expected {', '.join(w.name for w in result.plan.workers)})")
    lost = [e for e in result.events if e.get("event") == "worker_lost"]
    if lost:
        return lost[0]["why"]
    if result.exit_code not in (0, -15):
        return f"the Locust master exited with {result.exit_code}: {' '.join(log.strip().splitlines()[-3:])[-400:]}"
    if not result.samples:
        return "no request was recorded"
    return None


def stop_reason(result: LoadResult) -> str | None:
    return next((e["why"] for e in result.events if e.get("event") == "stop"), None)


def applied_load(result: LoadResult) -> dict[str, Any]:
    """The load that was actually applied, stated next to every verdict."""
    sent = [s for s in result.samples if s["outcome"] != "gave_up"]
    served = [s for s in sent if s["outcome"] != "rate_limited"]
    return {**result.plan.describe(), "duration_s": round(result.duration, 1),
            "requests": len(sent), "requests_per_s": round(len(sent) / result.duration, 2),
            "rate_limited": len(sent) - len(served),
            "api_requests_not_sent_without_token": len(result.samples) - len(sent),
            "stopped_because": stop_reason(result) or run_failure(result),
            "workers_reporting": sorted({s["worker"] for s in result.samples}),
            "master_cpu_max_percent": {k: round(v, 1) for k, v in result.master_cpu.items()},
            "this_machine_cpu_max_percent_all_cores": round(result.machine_cpu, 1),
            "worker_processes_left_behind": result.left_behind or "none"}


# ---------------------------------------------------------------- NGINX's own view

TIMING_LINE = re.compile(r'^(?P<msec>\d+\.\d+) (?P<rt>\d+\.\d+) (?P<status>\d{3}) "(?P<request>[^"]*)" '
                         r'"(?P<ua>[^"]*)"')
STEP_TAG = re.compile(r"/(?P<step>-?\d+)(?P<phase>[shd])$")


def nginx_request_times(log: str, tag: str) -> list[dict[str, Any]]:
    """Lines of the `timing` log format ($msec $request_time $status "$request" "$http_user_agent")
    sent by this run (its tag is in the User-Agent, then /<step><phase initial>)."""
    out = []
    for line in log.splitlines():
        m = TIMING_LINE.match(line.strip())
        if m and tag in m["ua"]:
            parts = m["request"].split()
            st = STEP_TAG.search(m["ua"])
            out.append({"t": float(m["msec"]), "s": float(m["rt"]), "status": int(m["status"]),
                        "path": parts[1] if len(parts) > 1 else "",
                        "step": int(st["step"]) if st else None,
                        "phase": {"s": "settle", "h": "hold", "d": "drain"}[st["phase"]] if st else None})
    return out


def compare_with_nginx(samples: list[dict[str, Any]], nginx: list[dict[str, Any]], quantile: float = 0.95,
                       generator_cpu: float = 0.0) -> dict[str, Any]:
    """Locust's p95 vs NGINX's $request_time p95 over the same requests (NGINX does not log
    /health: `access_log off` in the guide, so it is left out on both sides); within ±10%, or why
    not."""
    ours = [s["ms"] / 1000 for s in samples if s["name"] != "anonymous /health" and s["outcome"] != "gave_up"]
    theirs = [r["s"] for r in nginx]
    a, b = percentile(ours, quantile), percentile(theirs, quantile)
    diff = None if a is None or not b else round(100 * (a - b) / b, 1)
    out = {"locust_requests": len(ours), "nginx_requests": len(theirs),
           "locust_p95_s": None if a is None else round(a, 4), "nginx_p95_s": b,
           "difference_ms": None if a is None or b is None else round(1000 * (a - b), 1),
           "difference_percent": diff}
    same_requests = len(theirs) >= 0.9 * len(ours)  # else the two p95s are not over the same requests
    out["agrees"] = diff is not None and abs(diff) <= NGINX_AGREEMENT_PERCENT and same_requests
    if not out["agrees"]:
        out["why_not"] = nginx_disagreement(out, generator_cpu)
    return out


def nginx_disagreement(cmp: dict[str, Any], generator_cpu: float) -> str:
    """Why Locust's and NGINX's p95 are more than 10% apart, in words."""
    if not cmp["nginx_requests"]:
        return "NGINX logged none of this step's requests (timing log unreadable or rotated)"
    if cmp["locust_p95_s"] is None:
        return "Locust recorded no request of this step"
    if cmp["nginx_requests"] < 0.9 * cmp["locust_requests"]:
        return (f"NGINX logged {cmp['nginx_requests']} of {cmp['locust_requests']} requests: the two p95s are not "
                "over the same requests")
    if generator_cpu > 0.75 * CPU_LIMIT and cmp["difference_ms"] > 0:
        return (f"the generator was busy (CPU {generator_cpu:.0f}%): time spent queueing in the client adds to "
                "Locust's p95, NGINX does not see it")
    if abs(cmp["difference_ms"]) < 25:
        return (f"{abs(cmp['difference_ms']):.1f} ms apart: at a p95 of a few ms the client's own share (TCP and "
                "TLS to NGINX, the generator's scheduling), which $request_time does not include, is that large")
    if cmp["difference_ms"] > 0:
        return (f"Locust's p95 is {cmp['difference_ms']:.0f} ms above NGINX's: time outside NGINX (connection "
                "set-up, the network, the generator's scheduling on a shared CPU)")
    return (f"NGINX's p95 is {-cmp['difference_ms']:.0f} ms above Locust's: NGINX counts until the last byte is "
            "sent to the socket and a slow reader or the log write adds to $request_time")


def nginx_per_step(result: LoadResult, nginx: list[dict[str, Any]], table: list[dict[str, Any]]) -> list[dict]:
    out = []
    for row in table:
        index = row["step"] - 1
        lines = [r for r in nginx if r["step"] == index and r["phase"] == "hold"]
        out.append({"step": row["step"], **compare_with_nginx(hold_samples(result.samples, index), lines,
                                                              generator_cpu=row["generator_cpu_peak_percent"])})
    return out


# ---------------------------------------------------------------- charts (SVG)

def _axis(x0: float, y0: float, w: float, h: float, top: float, label: str, unit: str) -> str:
    return (f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + h}" stroke="black"/>'
            f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" stroke="black"/>'
            f'<text x="{x0 - 4}" y="{y0 + 9}" text-anchor="end">{top:g}{unit}</text>'
            f'<text x="{x0 - 4}" y="{y0 + h}" text-anchor="end">0</text>'
            f'<text x="{x0 + 6}" y="{y0 + 11}" font-weight="bold">{label}</text>')


def steps_svg(table: list[dict[str, Any]], targets: dict[str, float], width: int = 680) -> str:
    """Three panels against the requests/s each step achieved: p95 (s, with the target), error rate
    (%, with the target), generator CPU (highest worker, % of a core, with the 90% validity line).
    Filled dots: valid steps that met both targets; hollow: missed; grey crosses: invalid steps."""
    if not table:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40">'
                '<text x="8" y="24">no step was measured</text></svg>')
    x0, w, h, gap = 60, width - 80, 110, 38
    xmax = max(r["rps"] for r in table) * 1.1 or 1
    cap = capacity(table) if targets else {"capacity_rps": None}
    panels = [("p95 (s)", "p95_s", max(targets.get("p95_s", 1.0) * 1.3, *[r["p95_s"] or 0 for r in table]),
               targets.get("p95_s"), " s"),
              ("error rate (%)", "error_percent",
               max(targets.get("error_percent", 1.0) * 3, *[r["error_percent"] or 0 for r in table]),
               targets.get("error_percent"), "%"),
              ("generator CPU, busiest worker (% of a core)", "generator_cpu_peak_percent", 100.0, CPU_LIMIT, "%")]
    height = 30 + len(panels) * (h + gap) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11" '
             'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>']

    def px(rps: float) -> float:
        return x0 + rps / xmax * w

    for i, (label, key, top, limit, unit) in enumerate(panels):
        y0 = 20 + i * (h + gap)
        parts.append(_axis(x0, y0, w, h, round(top, 3), label, unit))

        def py(v: float, y0: float = y0, top: float = top) -> float:
            return y0 + h - min(v, top) / top * h

        if limit is not None:
            parts.append(f'<line x1="{x0}" y1="{py(limit):.1f}" x2="{x0 + w}" y2="{py(limit):.1f}" stroke="red" '
                         f'stroke-dasharray="4"/><text x="{x0 + w - 4}" y="{py(limit) - 3:.1f}" fill="red" '
                         f'text-anchor="end">{limit:g}{unit}</text>')
        pts = [(px(r["rps"]), py(r[key] or 0)) for r in table]
        parts.append('<polyline fill="none" stroke="steelblue" stroke-width="1.2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        for r, (x, y) in zip(table, pts, strict=True):
            if r["invalid"]:
                parts.append(f'<path d="M{x - 4:.1f},{y - 4:.1f}l8,8m0,-8l-8,8" stroke="grey" stroke-width="1.5"/>')
            else:
                fill = "steelblue" if r.get("met", True) else "white"
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="steelblue"/>')
        if cap.get("capacity_rps"):
            cx = px(cap["capacity_rps"])
            parts.append(f'<line x1="{cx:.1f}" y1="{y0}" x2="{cx:.1f}" y2="{y0 + h}" stroke="green" '
                         'stroke-dasharray="2"/>')
    y = 20 + len(panels) * (h + gap) - gap + 16
    for r in table[:: max(1, len(table) // 8)]:
        parts.append(f'<text x="{px(r["rps"]):.1f}" y="{y}" text-anchor="middle">{r["rps"]:g}</text>')
    note = f"capacity {cap['capacity_rps']} requests/s (green)" if cap.get("capacity_rps") else ""
    parts.append(f'<text x="{x0 + w / 2}" y="{y + 16}" text-anchor="middle">requests/s achieved per step; {note}'
                 '</text></svg>')
    return "".join(parts)


def latency_svg(samples: list[dict[str, Any]], threshold_s: float = 1.0, width: int = 640,
                height: int = 240) -> str:
    """p50 and p95 per second of run time (served requests), with the threshold line."""
    served = [s for s in samples if s["outcome"] not in ("rate_limited", "gave_up")]
    if not served:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40">'
                '<text x="8" y="24">no samples</text></svg>')
    t0 = min(s["t_end"] for s in served)
    buckets: dict[int, list[float]] = {}
    for s in served:
        buckets.setdefault(int(s["t_end"] - t0), []).append(s["ms"] / 1000)
    secs = sorted(buckets)
    p50 = [percentile(buckets[k], 0.5) for k in secs]
    p95 = [percentile(buckets[k], 0.95) for k in secs]
    top = max([threshold_s * 1.2, *p95])
    pad, w, h = 40, width - 50, height - 40

    def xy(i: int, v: float) -> str:
        x = pad + (secs[i] / max(secs[-1], 1)) * w
        return f"{x:.1f},{10 + h - v / top * h:.1f}"

    def line(values, color):
        points = " ".join(xy(i, v) for i, v in enumerate(values))
        return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'

    ty = 10 + h - threshold_s / top * h
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11" '
            f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
            f'<line x1="{pad}" y1="{ty:.1f}" x2="{pad + w}" y2="{ty:.1f}" stroke="red" stroke-dasharray="4"/>'
            f'<text x="{pad + 4}" y="{ty - 3:.1f}" fill="red">{threshold_s} s</text>'
            f'<line x1="{pad}" y1="10" x2="{pad}" y2="{10 + h}" stroke="black"/>'
            f'<line x1="{pad}" y1="{10 + h}" x2="{pad + w}" y2="{10 + h}" stroke="black"/>'
            f'<text x="2" y="14">{top:.2f} s</text><text x="{pad}" y="{height - 8}">0 s</text>'
            f'<text x="{pad + w - 30}" y="{height - 8}">{secs[-1]} s</text>'
            f'{line(p50, "steelblue")}{line(p95, "darkorange")}'
            f'<text x="{pad + 60}" y="{height - 8}" fill="steelblue">p50</text>'
            f'<text x="{pad + 90}" y="{height - 8}" fill="darkorange">p95 per second</text></svg>')
