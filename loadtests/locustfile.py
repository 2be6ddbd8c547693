"""Locust scenarios for the p95 latency and error-rate targets ("Application Health" of the guide).

Run by loadtests/runner.py in a subprocess (never import this module in the pytest process:
Locust patches the standard library with gevent on import). Everything comes from the
environment the runner sets, nothing is hard-coded here, and no threshold lives here:

- LOAD_CONFIG: JSON with base_url, resolve (name -> address, like curl --resolve), ca_bundle,
  weights (scenario -> user-class weight), wait [min, max] s, max_requests_per_process,
  samples_dir, tag (in the User-Agent, to find this run in NGINX's log).
- LOAD_APP_USERNAME / LOAD_APP_PASSWORD: the login of the authenticated flow (never on argv).

Scenarios (user classes): anonymous (GET /health, GET /docs), api (log in ONCE per user, then
GET /api/v1/me and GET /api/v1/health with the bearer token), static (GET /static/app.css).
Every request is also written to samples-<pid>.csv (end time, group, name, status, ms, outcome)
so the runner computes exact percentiles per endpoint group. NGINX limit_req rejections (its
own 503/429 page) are recorded as outcome `rate_limited`, under their own name: neither hidden
nor counted as server errors. Each process stops by itself after max_requests_per_process.
"""

from __future__ import annotations

import csv
import json
import os
import time

import gevent
import gevent.socket
import gevent.ssl
from classify import is_rate_limited  # loadtests/classify.py (Locust puts loadtests/ on sys.path)
from locust import between, events
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

CONFIG = json.loads(os.environ.get("LOAD_CONFIG", "{}"))
RESOLVE: dict[str, str] = CONFIG.get("resolve") or {}
CA_BUNDLE: str | None = CONFIG.get("ca_bundle")
WEIGHTS: dict[str, int] = CONFIG.get("weights") or {"anonymous": 1, "api": 1, "static": 1}
WAIT: list[float] = CONFIG.get("wait") or [0.5, 1.5]
BUDGET = int(CONFIG.get("max_requests_per_process") or 1000)
SAMPLES_DIR = CONFIG.get("samples_dir")
USER_AGENT = f"pynomaly-audit-load/{CONFIG.get('tag', 'manual')}"
LOGIN_RETRIES, LOGIN_RETRY_WAIT = 2, 13.0  # login zone: 5 r/m, i.e. one token per 12 s

_getaddrinfo = gevent.socket.getaddrinfo


def _resolving_getaddrinfo(host, *args, **kwargs):
    """The public name resolves to the inventory's address (audit_resolve), SNI stays the name."""
    return _getaddrinfo(RESOLVE.get(host, host), *args, **kwargs)


gevent.socket.getaddrinfo = _resolving_getaddrinfo


def _ssl_context(*_args, **_kwargs):
    """TLS verified against the inventory's CA bundle (not the system store)."""
    return gevent.ssl.create_default_context(cafile=CA_BUNDLE)


class _Counter:
    started = 0  # requests this process began: the cap counts them before they are sent
    quitting = False
    without_token = 0  # API users still trying to log in


def _budget_left(environment) -> bool:
    if _Counter.started < BUDGET:
        _Counter.started += 1
        return True
    if not _Counter.quitting:
        _Counter.quitting = True
        gevent.spawn(environment.runner.quit)  # ends a local run, or this worker
    return False


_writer = None


def _sample_writer():
    global _writer
    if _writer is None and SAMPLES_DIR:
        fh = open(os.path.join(SAMPLES_DIR, f"samples-{os.getpid()}.csv"), "w", newline="", buffering=1)  # noqa: SIM115
        _writer = csv.writer(fh)
        _writer.writerow(["t_end", "group", "name", "status", "ms", "outcome", "error"])
    return _writer


@events.request.add_listener
def _record(request_type, name, response_time, response_length, response=None, exception=None, **_kw):
    writer = _sample_writer()
    if writer is None:
        return
    status = getattr(response, "status_code", 0) or 0
    if name.endswith("[rate-limited]"):
        outcome = "rate_limited"
    elif exception is not None:
        outcome = "error"
    else:
        outcome = "ok"
    group = name.split(" ", 1)[0]
    writer.writerow([f"{time.time():.3f}", group, name, status, f"{response_time:.2f}", outcome,
                     "" if exception is None else str(exception)[:120]])


@events.test_stop.add_listener
def _report_users_without_token(**_kw):
    """An API user that never got a token means less load than declared: say so (outcome gave_up)."""
    # the master sends nothing; users stopped by the request cap are not short of a token
    writer = _sample_writer() if _Counter.without_token and not _Counter.quitting else None
    for _ in range(_Counter.without_token if writer is not None else 0):
        writer.writerow([f"{time.time():.3f}", "login", "login gave up", 0, "0", "gave_up",
                         "no token (login rejected by NGINX's login limit)"])
    _Counter.without_token = 0


class _Scenario(FastHttpUser):
    abstract = True
    host = CONFIG.get("base_url", "https://localhost")
    insecure = False
    ssl_context_factory = staticmethod(_ssl_context)
    wait_time = between(*WAIT)
    network_timeout = 10.0
    connection_timeout = 5.0
    default_headers = {"User-Agent": USER_AGENT}  # noqa: RUF012

    def call(self, method: str, path: str, group: str, **kwargs):
        """One request named `group path`; NGINX rejections renamed `... [rate-limited]`."""
        if not _budget_left(self.environment):
            raise StopUser()
        name = f"{group} {path}"
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as resp:
            ctype = resp.headers.get("content-type", "") if resp.headers else ""
            if is_rate_limited(resp.status_code or 0, ctype, resp.text or ""):
                resp.request_meta["name"] = f"{name} [rate-limited]"
                resp.failure(f"rejected by NGINX limit_req ({resp.status_code})")
            elif resp.status_code and resp.status_code >= 400:
                resp.failure(f"HTTP {resp.status_code}")
            return resp


class AnonymousUser(_Scenario):
    """Anonymous visitor: health and API docs."""

    weight = WEIGHTS.get("anonymous", 1)

    def health(self):
        self.call("GET", "/health", "anonymous")

    def docs(self):
        self.call("GET", "/docs", "anonymous")

    tasks = {health: 3, docs: 1}  # noqa: RUF012


class ApiUser(_Scenario):
    """Authenticated API client: logs in once, then calls the API with its bearer token."""

    weight = WEIGHTS.get("api", 1)
    token: str | None = None

    def on_start(self):
        body = {"username": os.environ.get("LOAD_APP_USERNAME", ""),
                "password": os.environ.get("LOAD_APP_PASSWORD", "")}
        _Counter.without_token += 1
        for attempt in range(LOGIN_RETRIES + 1):
            resp = self.call("POST", "/api/v1/auth/login", "login", json=body)
            if resp.status_code == 200:
                self.token = resp.json()["access_token"]
                _Counter.without_token -= 1
                return
            if not resp.request_meta["name"].endswith("[rate-limited]") or attempt == LOGIN_RETRIES:
                break
            gevent.sleep(LOGIN_RETRY_WAIT)
        raise StopUser()  # counted as without a token at the end of the run

    def me(self):
        self.call("GET", "/api/v1/me", "api", headers={"Authorization": f"Bearer {self.token}"})

    def api_health(self):
        self.call("GET", "/api/v1/health", "api")

    tasks = {me: 3, api_health: 1}  # noqa: RUF012


class StaticUser(_Scenario):
    """Browser fetching static assets served by NGINX itself."""

    weight = WEIGHTS.get("static", 1)

    def css(self):
        self.call("GET", "/static/app.css", "static")

    tasks = [css]  # noqa: RUF012
