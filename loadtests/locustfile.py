"""Locust scenarios and load shape for the p95 latency and error-rate targets ("Application
Health" of the guide), in Locust's distributed mode: one master (the runner's subprocess, with
the shape) and workers (forked by `--processes` on the runner, or one per `loadgen` host, started
over SSH: each its own client address).

Run by loadtests/runner.py (never import this module in the pytest process: Locust patches the
standard library with gevent on import, and registers a pytest plugin of its own). Everything
comes from the environment the runner sets; no threshold lives here:

- LOAD_CONFIG: JSON with base_url, resolve (name -> address, like curl --resolve), ca_bundle,
  weights (scenario -> weight), pace ({"user_rps": r} or {"wait": [min, max]}), steps and
  targets/bounds (schedule.py), budget (requests per worker process), samples_dir (master),
  tag (in the User-Agent, with the step: NGINX's log tells runs and steps apart), worker (name).
- LOAD_APP_USERNAME / LOAD_APP_PASSWORD: the login of the API scenario (never on argv; remote
  workers read them from their SSH session's stdin).
- LOAD_LEASH=1 (remote workers): the worker quits when its stdin closes, i.e. when the suite's SSH
  session ends, whatever the reason: no worker outlives the run that started it.

Every user is a `Client` that mixes the scenarios by weight (anonymous: GET /health, /docs; api:
GET /api/v1/me with a bearer token, /api/v1/health; static: GET /static/app.css), so every
worker sends the same mix whatever the number of workers. The API token is one per worker
process (one login per client address: NGINX allows 5 r/m). Each request is a sample
(end time, group, name, status, ms, outcome, error, step, phase) sent to the master with the
worker's CPU (each second) in Locust's worker reports; the master writes them to samples.csv and
cpu.csv, its step/phase changes and stops to events.jsonl, and its shape judges each step live.
NGINX limit_req rejections (its own 503/429 page) are outcome `rate_limited`: neither hidden nor
counted as server errors.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sys
import time

import gevent
import gevent.event
import gevent.socket
import gevent.ssl
import psutil
from classify import is_rate_limited  # loadtests/ (Locust puts the locustfile's folder on sys.path)
from locust import LoadTestShape, between, constant_throughput, events, runners, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser
from schedule import Schedule, Step

runners.WORKER_REPORT_INTERVAL = 1.0  # samples reach the master within a second (default 3 s)

CONFIG = json.loads(os.environ.get("LOAD_CONFIG", "{}"))
RESOLVE: dict[str, str] = CONFIG.get("resolve") or {}
CA_BUNDLE: str | None = CONFIG.get("ca_bundle")
WEIGHTS: dict[str, int] = CONFIG.get("weights") or {"anonymous": 1, "api": 1, "static": 1}
PACE: dict = CONFIG.get("pace") or {"user_rps": 1.0}
BUDGET = int(CONFIG.get("budget") or 1000)
TAG = CONFIG.get("tag", "manual")
WORKER = CONFIG.get("worker") or socket.gethostname()
LOGIN_RETRIES, LOGIN_RETRY_WAIT = 2, 13.0  # login zone: 5 r/m per client address

_getaddrinfo = gevent.socket.getaddrinfo


def _resolving_getaddrinfo(host, *args, **kwargs):
    """The public name resolves to the configured address, SNI stays the name."""
    return _getaddrinfo(RESOLVE.get(host, host), *args, **kwargs)


gevent.socket.getaddrinfo = _resolving_getaddrinfo


def _ssl_context(*_args, **_kwargs):
    """TLS verified against the inventory's CA bundle (not the system store)."""
    return gevent.ssl.create_default_context(cafile=CA_BUNDLE)


class _Process:
    """This process's share of the run: where the run is (from the master), what it sent."""

    step, phase = -1, "settle"
    started = 0          # requests begun: the cap counts them before they are sent
    spent = False
    token: str | None = None
    login: gevent.event.Event | None = None
    samples: list = []  # noqa: RUF012 - not yet reported to the master
    cpu: list = []  # noqa: RUF012
    name = WORKER
    environment = None


def _budget_left(environment) -> bool:
    if _Process.started < BUDGET:
        _Process.started += 1
        return True
    if not _Process.spent:
        _Process.spent = True
        runner = environment.runner
        if isinstance(runner, runners.WorkerRunner):
            runner.send_message("budget_spent", _Process.name)
    return False


@events.request.add_listener
def _record(request_type, name, response_time, response_length, response=None, exception=None, **_kw):
    status = getattr(response, "status_code", 0) or 0
    if name.endswith("[rate-limited]"):
        outcome = "rate_limited"
    elif exception is not None:
        outcome = "error"
    else:
        outcome = "ok"
    _Process.samples.append([round(time.time(), 3), name.split(" ", 1)[0], name, status, round(response_time, 2),
                             outcome, "" if exception is None else str(exception)[:120], _Process.step, _Process.phase])


class Client(FastHttpUser):
    """One client of the deployment: anonymous pages, the authenticated API, static files, mixed
    by the scenario weights; paced at `user_rps` requests/s (or waiting between its tasks)."""

    host = CONFIG.get("base_url", "https://localhost")
    insecure = False
    ssl_context_factory = staticmethod(_ssl_context)
    wait_time = constant_throughput(PACE["user_rps"]) if "user_rps" in PACE else between(*PACE["wait"])
    network_timeout = 10.0
    connection_timeout = 5.0

    def call(self, method: str, path: str, group: str, **kwargs):
        """One request named `group path`; NGINX rejections renamed `... [rate-limited]`."""
        if not _budget_left(self.environment):
            raise StopUser()
        name = f"{group} {path}"
        headers = {"User-Agent": f"pynomaly-audit-load/{TAG}/{_Process.step}{_Process.phase[:1]}",
                   **kwargs.pop("headers", {})}
        with self.client.request(method, path, name=name, catch_response=True, headers=headers, **kwargs) as resp:
            ctype = resp.headers.get("content-type", "") if resp.headers else ""
            if is_rate_limited(resp.status_code or 0, ctype, resp.text or ""):
                resp.request_meta["name"] = f"{name} [rate-limited]"
                resp.failure(f"rejected by NGINX limit_req ({resp.status_code})")
            elif resp.status_code and resp.status_code >= 400:
                resp.failure(f"HTTP {resp.status_code}")
            return resp

    def token(self) -> str | None:
        """This process's bearer token: the first API task logs in, the others wait for it."""
        if _Process.token or (_Process.login is not None and _Process.login.is_set()):
            return _Process.token
        if _Process.login is not None:
            _Process.login.wait(timeout=2 * LOGIN_RETRY_WAIT + 15)
            return _Process.token
        _Process.login = gevent.event.Event()
        body = {"username": os.environ.get("LOAD_APP_USERNAME", ""),
                "password": os.environ.get("LOAD_APP_PASSWORD", "")}
        try:
            for attempt in range(LOGIN_RETRIES + 1):
                resp = self.call("POST", "/api/v1/auth/login", "login", json=body)
                if resp.status_code == 200:
                    _Process.token = resp.json()["access_token"]
                    break
                if not resp.request_meta["name"].endswith("[rate-limited]") or attempt == LOGIN_RETRIES:
                    break
                gevent.sleep(LOGIN_RETRY_WAIT)
        finally:
            _Process.login.set()
        return _Process.token

    def api(self, path: str, auth: bool) -> None:
        token = self.token() if auth else ""
        if auth and not token:
            _Process.samples.append([round(time.time(), 3), "api", f"api {path}", 0, 0.0, "gave_up",
                                     "no token (login rejected)", _Process.step, _Process.phase])
            gevent.sleep(1)
            return
        self.call("GET", path, "api", headers={"Authorization": f"Bearer {token}"} if auth else {})

    @task(3 * WEIGHTS.get("anonymous", 0))
    def health(self):
        self.call("GET", "/health", "anonymous")

    @task(1 * WEIGHTS.get("anonymous", 0))
    def docs(self):
        self.call("GET", "/docs", "anonymous")

    @task(3 * WEIGHTS.get("api", 0))
    def me(self):
        self.api("/api/v1/me", auth=True)

    @task(1 * WEIGHTS.get("api", 0))
    def api_health(self):
        self.api("/api/v1/health", auth=False)

    @task(4 * WEIGHTS.get("static", 0))
    def css(self):
        self.call("GET", "/static/app.css", "static")


# ---------------------------------------------------------------- workers

def _sample_cpu() -> None:
    """This process's CPU (% of one core) every second, tagged with the run's step and phase."""
    proc = psutil.Process()
    proc.cpu_percent(None)
    while True:
        gevent.sleep(1.0)
        _Process.cpu.append([round(time.time(), 3), round(proc.cpu_percent(None), 1), _Process.step, _Process.phase])


def _leash() -> None:
    """Quit when stdin closes: the SSH session that started this worker has ended (also while
    the worker is still trying to reach its master)."""
    try:
        while True:
            gevent.socket.wait_read(0)
            if not os.read(0, 4096):
                break
    except OSError:
        pass
    runner = getattr(_Process.environment, "runner", None)
    if runner is not None:
        gevent.spawn(runner.quit)
    gevent.sleep(3)
    os._exit(3)


if os.environ.get("LOAD_LEASH") == "1":
    gevent.spawn(_leash)


def _on_phase(environment, msg, **_kw) -> None:
    _Process.step, _Process.phase = msg.data["step"], msg.data["phase"]


def _report(client_id, data) -> None:
    data["load"] = {"worker": _Process.name, "samples": _Process.samples, "cpu": _Process.cpu}
    _Process.samples, _Process.cpu = [], []


# ---------------------------------------------------------------- master

class _Master:
    """The master's files and its live view of the run (the shape reads it)."""

    schedule: Schedule | None = None
    samples = cpu = events_fh = None
    workers: dict[str, str] = {}  # noqa: RUF012 - Locust client id -> worker name
    last = (-2, "")
    started = False


def _event(kind: str, **data) -> None:
    if _Master.events_fh is not None:
        _Master.events_fh.write(json.dumps({"t": round(time.time(), 3), "event": kind, **data}) + "\n")
        _Master.events_fh.flush()


def _on_worker_report(client_id, data) -> None:
    load = data.get("load") or {}
    name = load.get("worker") or client_id
    _Master.workers[client_id] = name
    for row in load.get("samples", []):
        _Master.samples.writerow([*row, name])
        _Master.schedule.record(row[7], row[8], row[4] / 1000, row[5])
    for t, pct, step, phase in load.get("cpu", []):
        _Master.cpu.writerow([t, name, step, phase, pct])
        _Master.schedule.record_cpu(name, step, phase, pct)


def _on_budget_spent(environment, msg, **_kw) -> None:
    _Master.schedule.stop_now(f"the request bound was reached ({msg.data} spent its share)")


def _watch_workers(environment) -> None:
    """A worker that stops answering ends the run: the load would silently drop."""
    runner = environment.runner
    expected = environment.parsed_options.expect_workers
    while True:
        gevent.sleep(1.0)
        if _Master.schedule.stopped:
            return  # the workers leave on the master's quit: not a loss
        if not _Master.started:
            continue
        missing = [c.id for c in runner.clients.all if c.state == runners.STATE_MISSING]
        if missing or len(runner.clients.all) < expected:
            names = [_Master.workers.get(c, c) for c in missing] or ["a worker"]
            why = f"{', '.join(names)} stopped answering the master (no heartbeat): the run lost its load"
            _event("worker_lost", workers=names, why=why)
            _Master.schedule.stop_now(why)
            return


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    runner = environment.runner
    _Process.environment = environment
    if isinstance(runner, runners.MasterRunner):
        out = CONFIG["samples_dir"]
        _Master.samples = csv.writer(open(os.path.join(out, "samples.csv"), "w", newline="", buffering=1))  # noqa: SIM115
        _Master.samples.writerow(["t_end", "group", "name", "status", "ms", "outcome", "error", "step", "phase",
                                  "worker"])
        _Master.cpu = csv.writer(open(os.path.join(out, "cpu.csv"), "w", newline="", buffering=1))  # noqa: SIM115
        _Master.cpu.writerow(["t", "worker", "step", "phase", "cpu"])
        _Master.events_fh = open(os.path.join(out, "events.jsonl"), "w", buffering=1)  # noqa: SIM115
        steps = [Step(**s) for s in CONFIG["steps"]]
        _Master.schedule = Schedule(steps, CONFIG.get("targets"), int(CONFIG["max_requests"]),
                                    float(CONFIG["max_time"]), CONFIG.get("spawn_rate"))
        events.worker_report.add_listener(_on_worker_report)
        runner.register_message("budget_spent", _on_budget_spent)
        gevent.spawn(_watch_workers, environment)
        _event("master", pid=os.getpid(), python=sys.version.split()[0])
    elif isinstance(runner, runners.WorkerRunner):
        _Process.name = WORKER if "worker" in CONFIG else f"{WORKER}/{os.getpid()}"
        runner.register_message("phase", _on_phase)
        events.report_to_master.add_listener(_report)
        gevent.spawn(_sample_cpu)


@events.test_stop.add_listener
def _on_stop(environment, **_kw) -> None:
    if isinstance(environment.runner, runners.MasterRunner):
        _event("stopped", requests=_Master.schedule.requests, why=_Master.schedule.stopped,
               workers=sorted(set(_Master.workers.values())))


class Plan(LoadTestShape):
    """The run's steps (schedule.py): users per step, phases broadcast to the workers (they tag
    their samples with them), a live verdict per step, and the stop with its reason."""

    def tick(self):
        runner = self.runner
        if not _Master.started:
            _Master.started = True
            _event("workers", connected=len(runner.clients.all) if hasattr(runner, "clients") else 0)
        decision = _Master.schedule.decide(self.get_run_time())
        if decision.stop:
            _event("stop", why=decision.stop, step=decision.step, requests=_Master.schedule.requests)
            return None
        if (decision.step, decision.phase) != _Master.last:
            _Master.last = (decision.step, decision.phase)
            step = _Master.schedule.steps[decision.step]
            if isinstance(runner, runners.MasterRunner):
                runner.send_message("phase", {"step": decision.step, "phase": decision.phase})
            _event("phase", step=decision.step, phase=decision.phase, users=step.users, target_rps=step.target_rps)
        return decision.users, decision.spawn_rate
