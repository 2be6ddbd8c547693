"""Run the Locust scenarios (loadtests/locustfile.py) in a subprocess and judge what they measured.

Never imports Locust (it patches the standard library with gevent): `run()` starts
`python -m locust --headless` (with `--processes N`, one master and N forked workers, when the
declared users exceed what one core drives), samples the generator's CPU with psutil, and reads
the per-request samples the locustfile writes. The rest are pure functions, unit-tested on
captured outputs: percentiles and error rates per endpoint group, the validity of a run, the
NGINX `$request_time` log, and a small SVG latency chart.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from audit.inventory import LoadProfile

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
CLASSES = {"anonymous": "AnonymousUser", "api": "ApiUser", "static": "StaticUser"}
CPU_LIMIT = 90.0  # % of one core, per generator process: above it the generator is the bottleneck
MAX_REJECTED_PERCENT = 5.0  # NGINX limit_req rejections above this share: the measurement is polluted


class InvalidRun(Exception):
    """The load run cannot support a verdict (generator saturated, run failed, polluted)."""


@dataclass
class LoadPlan:
    profile: LoadProfile
    base_url: str
    resolve: dict[str, str]
    ca_bundle: str | None
    out_dir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def processes(self) -> int:
        """Worker processes: one per `users_per_process` users, at most one per core."""
        need = math.ceil(self.profile.users / self.profile.users_per_process)
        return max(1, min(need, os.cpu_count() or 1))

    @property
    def weights(self) -> dict[str, int]:
        return {k: v for k, v in self.profile.weights.items() if v > 0}

    def api_users(self) -> int:
        """Users of the authenticated scenario (Locust spreads users by class weight)."""
        return math.ceil(self.profile.users * self.weights.get("api", 0) / sum(self.weights.values()))

    def worst_case_api_rate(self) -> float:
        """Requests/s to /api/ if every API user answered at once and waited the minimum."""
        return self.api_users() / self.profile.wait[0]

    def check(self) -> None:
        """The profile stays under NGINX's per-client limits by design (one client IP sends it all)."""
        if not self.weights:
            raise ValueError("audit_load.weights: every scenario weight is 0")
        if self.worst_case_api_rate() > self.profile.api_rate_limit:
            raise ValueError(
                f"audit_load: {self.profile.users} users with wait >= {self.profile.wait[0]} s can send "
                f"{self.worst_case_api_rate():.1f} r/s to /api/ from one client IP, above NGINX's "
                f"{self.profile.api_rate_limit} r/s per client: the run would measure rate limiting")

    def describe(self) -> dict[str, Any]:
        p = self.profile
        return {"target": self.base_url, "users": p.users, "spawn_rate_per_s": p.spawn_rate,
                "run_time_s": p.run_time, "max_requests": p.max_requests, "wait_s": list(p.wait),
                "scenario_weights": self.weights, "processes": self.processes,
                "mode": "distributed (master + workers)" if self.processes > 1 else "single process",
                "worst_case_api_rate_per_s": round(self.worst_case_api_rate(), 2),
                "nginx_api_limit_per_client_per_s": p.api_rate_limit, "tag": self.tag}

    def command(self) -> list[str]:
        p = self.profile
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "-u", str(p.users), "-r", str(p.spawn_rate), "--run-time", f"{p.run_time}s",
               "--stop-timeout", "5", "--csv", str(self.out_dir / "locust"), "--csv-full-history",
               "--html", str(self.out_dir / "locust-report.html"), "--only-summary",
               "--exit-code-on-error", "0", "--loglevel", "WARNING"]
        if self.processes > 1:
            cmd += ["--processes", str(self.processes)]
        return cmd + [CLASSES[k] for k in self.weights]

    def environment(self, username: str, password: str) -> dict[str, str]:
        config = {"base_url": self.base_url, "resolve": self.resolve, "ca_bundle": self.ca_bundle,
                  "weights": self.weights, "wait": list(self.profile.wait), "tag": self.tag,
                  "max_requests_per_process": math.ceil(self.profile.max_requests / self.processes),
                  "samples_dir": str(self.out_dir)}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "LOCUST_"))}
        return {**env, "LOAD_CONFIG": json.dumps(config), "LOAD_APP_USERNAME": username,
                "LOAD_APP_PASSWORD": password}


@dataclass
class LoadResult:
    plan: LoadPlan
    exit_code: int
    started: float
    ended: float
    samples: list[dict[str, Any]]
    cpu_max: dict[str, float]      # process -> highest CPU % of one core seen
    log_tail: str

    @property
    def duration(self) -> float:
        return max(self.ended - self.started, 1e-6)

    def files(self) -> list[Path]:
        names = ["locust_stats.csv", "locust_failures.csv", "locust-report.html", "latency.svg"]
        return [self.plan.out_dir / n for n in names if (self.plan.out_dir / n).exists()]


class _CpuSampler(threading.Thread):
    """Highest CPU % per process of the generator's process tree, sampled every second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root, self.stop, self.max = psutil.Process(pid), threading.Event(), {}
        self._procs: dict[int, psutil.Process] = {}

    def run(self) -> None:
        while not self.stop.wait(1.0):
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
                key = "master" if proc.pid == self.root.pid else f"worker-{proc.pid}"
                self.max[key] = max(self.max.get(key, 0.0), pct)


def run(plan: LoadPlan, username: str, password: str) -> LoadResult:
    """Run the scenario once (bounded by run_time and max_requests) and collect what it measured."""
    plan.check()
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    for old in plan.out_dir.glob("samples-*.csv"):
        old.unlink()
    started = time.time()
    proc = subprocess.Popen(plan.command(), env=plan.environment(username, password), cwd=LOCUSTFILE.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = _CpuSampler(proc.pid)
    sampler.start()
    try:
        output, _ = proc.communicate(timeout=plan.profile.run_time + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise InvalidRun(f"Locust did not stop within {plan.profile.run_time + 60} s") from None
    finally:
        sampler.stop.set()
        sampler.join(timeout=3)
    ended = time.time()
    samples = read_samples(plan.out_dir)
    (plan.out_dir / "latency.svg").write_text(latency_svg(samples))
    return LoadResult(plan, proc.returncode, started, ended, samples, dict(sampler.max), output[-3000:])


def read_samples(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("samples-*.csv")):
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                row["t_end"], row["ms"], row["status"] = float(row["t_end"]), float(row["ms"]), int(row["status"])
                rows.append(row)
    return sorted(rows, key=lambda r: r["t_end"])


# ---------------------------------------------------------------- judging (pure)

def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(samples: list[dict[str, Any]], quantile: float = 0.95) -> dict[str, dict[str, Any]]:
    """Per endpoint group and overall ("all"): requests, errors, NGINX rejections, error % and
    the latency quantile in seconds. Rejections are counted apart: not in the latency, not in
    the error rate (they are NGINX protecting itself from this one client, not a server error)."""
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


def invalid_reasons(result_cpu: dict[str, float], samples: list[dict[str, Any]], exit_code: int,
                    log_tail: str) -> list[str]:
    """Why a run cannot support a verdict (empty: valid). Login rejections are retried by the
    locustfile (5 r/m per client IP, shared with anyone else on that IP): they only make a run
    invalid when an API user still got no token (outcome `gave_up`): less load than declared."""
    reasons = []
    if exit_code not in (0,):
        reasons.append(f"Locust exited with {exit_code}: {log_tail.strip()[-400:]}")
    if not samples:
        reasons.append("no request was recorded")
    hot = {k: v for k, v in result_cpu.items() if v > CPU_LIMIT}
    if hot or "CPU usage above 90%" in log_tail or "exceeded cpu threshold" in log_tail:
        reasons.append(f"the load generator's CPU went above {CPU_LIMIT:.0f}% ({hot or 'Locust warned'}): "
                       "it, not the deployment, limited the measurement")
    calls = [s for s in samples if s["group"] != "login"]
    rejected = sum(1 for s in calls if s["outcome"] == "rate_limited")
    if calls and 100 * rejected / len(calls) > MAX_REJECTED_PERCENT:
        reasons.append(f"{rejected} of {len(calls)} requests were rejected by NGINX limit_req "
                       f"(> {MAX_REJECTED_PERCENT}%): the profile, or another client on this IP, "
                       "exceeded the per-client limits")
    gave_up = sum(1 for s in samples if s["outcome"] == "gave_up")
    if gave_up:
        refused = sum(1 for s in samples if s["group"] == "login" and s["outcome"] == "rate_limited")
        reasons.append(f"{gave_up} API user(s) got no token ({refused} logins rejected by NGINX's login "
                       "limit, 5 r/m per client IP): less load than declared was applied")
    return reasons


def applied_load(result: LoadResult) -> dict[str, Any]:
    """The load that was actually applied, stated next to every verdict."""
    sent = [s for s in result.samples if s["outcome"] != "gave_up"]
    served = [s for s in sent if s["outcome"] != "rate_limited"]
    return {**result.plan.describe(), "duration_s": round(result.duration, 1),
            "requests": len(sent), "requests_per_s": round(len(sent) / result.duration, 2),
            "rate_limited": len(sent) - len(served),
            "api_users_without_token": len(result.samples) - len(sent),
            "generator_cpu_max_percent": {k: round(v, 1) for k, v in result.cpu_max.items()}}


# ---------------------------------------------------------------- NGINX's own view

TIMING_LINE = re.compile(r'^(?P<msec>\d+\.\d+) (?P<rt>\d+\.\d+) (?P<status>\d{3}) "(?P<request>[^"]*)" '
                         r'"(?P<ua>[^"]*)"')


def nginx_request_times(log: str, tag: str) -> list[dict[str, Any]]:
    """Lines of the `timing` log format ($msec $request_time $status "$request" "$http_user_agent")
    sent by this run (its tag is in the User-Agent)."""
    out = []
    for line in log.splitlines():
        m = TIMING_LINE.match(line.strip())
        if m and tag in m["ua"]:
            parts = m["request"].split()
            out.append({"t": float(m["msec"]), "s": float(m["rt"]), "status": int(m["status"]),
                        "path": parts[1] if len(parts) > 1 else ""})
    return out


def compare_with_nginx(samples: list[dict[str, Any]], nginx: list[dict[str, Any]],
                       quantile: float = 0.95) -> dict[str, Any]:
    """Locust's p95 vs NGINX's $request_time p95 over the same requests (NGINX does not log
    /health: `access_log off` in the guide, so it is left out on both sides)."""
    ours = [s["ms"] / 1000 for s in samples if s["name"] != "anonymous /health" and s["outcome"] != "gave_up"]
    theirs = [r["s"] for r in nginx]
    a, b = percentile(ours, quantile), percentile(theirs, quantile)
    diff = None if not a or not b else round(100 * (a - b) / b, 1)
    return {"locust_requests": len(ours), "nginx_requests": len(theirs),
            "locust_p95_s": None if a is None else round(a, 4), "nginx_p95_s": b,
            "difference_ms": None if a is None or b is None else round(1000 * (a - b), 1),
            "difference_percent": diff}


# ---------------------------------------------------------------- chart

def latency_svg(samples: list[dict[str, Any]], threshold_s: float = 1.0, width: int = 640,
                height: int = 240) -> str:
    """p50 and p95 per second of run time (served requests), with the threshold line."""
    served = [s for s in samples if s["outcome"] not in ("rate_limited", "gave_up")]
    if not served:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40">'
                '<text x="8" y="24">no samples</text></svg>')
    t0 = served[0]["t_end"]
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
