"""Prometheus, Alertmanager and Grafana for the monitoring checks: a small HTTP API client over the
inventory's tunnel, and the parsing and comparisons of what they (and the config files) say.

Everything here is a pure function of captured text or JSON, so that tests/unit can prove it in
both directions; the checks (checks/test_monitoring.py) only fetch and assert.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests
import yaml

TIMEOUT = (5, 15)  # connect, read
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class ApiError(Exception):
    """The API answered, but not with a success (could not audit)."""


@dataclass
class Api:
    """GET JSON from a Prometheus-style HTTP API at `base` (a tunnelled local URL)."""

    base: str
    name: str = "prometheus"

    def get(self, path: str, **params: Any) -> Any:
        resp = requests.get(self.base.rstrip("/") + path, params=params or None, timeout=TIMEOUT)
        resp.raise_for_status()
        body = resp.json()
        if isinstance(body, dict) and body.get("status") not in (None, "success"):
            raise ApiError(f"{self.name} {path}: {body.get('errorType')}: {body.get('error')}")
        return body.get("data", body) if isinstance(body, dict) else body

    def value(self, query: str) -> float | None:
        """The single value of an instant query (None when the result is empty)."""
        return scalar(self.get("/api/v1/query", query=query))

    def text(self, path: str) -> str:
        resp = requests.get(self.base.rstrip("/") + path, timeout=TIMEOUT)
        resp.raise_for_status()
        return resp.text


def tunnel_url(url: str, forward) -> str:
    """`url` rewritten to the local end of `forward(port, host)` (an SSH tunnel), path kept."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addr, local_port = forward(port, parsed.hostname or "127.0.0.1")
    return parsed._replace(netloc=f"{addr}:{local_port}").geturl()


# ---------------------------------------------------------------- durations and PromQL

def seconds(duration: str | int | float | None) -> float | None:
    """A Prometheus duration ("1m30s", "5m") or a number of seconds, in seconds."""
    if duration is None:
        return None
    if isinstance(duration, int | float):
        return float(duration)
    text = str(duration).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def normalise_promql(expr: str) -> str:
    """PromQL with the whitespace outside string literals removed, so that layout does not matter.

    Prometheus prints a parsed rule in a canonical form (the `query` of /api/v1/rules); this makes
    the file's text, the API's text and the guide's text comparable without a PromQL parser.
    """
    out, quote, i = [], None, 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < len(expr):
                out.append(expr[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
            out.append(ch)
        elif not ch.isspace():
            out.append(ch)
        i += 1
    return "".join(out)


# ---------------------------------------------------------------- prometheus.yml

def load_yaml(text: str, what: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AssertionError(f"{what} is not valid YAML: {exc}") from None


def load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{what} is not valid JSON: {exc}") from None


def scrape_job(config: dict, name: str) -> dict | None:
    return next((j for j in (config or {}).get("scrape_configs") or [] if j.get("job_name") == name), None)


def static_targets(section: dict | None) -> list[str]:
    """The targets of every static_configs entry of a scrape job or alertmanagers entry."""
    return [t for sc in (section or {}).get("static_configs") or [] for t in sc.get("targets") or []]


def job_summary(config: dict, name: str) -> dict | None:
    """A scrape job as the guide states it: targets, metrics_path, scrape_interval (with defaults)."""
    job = scrape_job(config, name)
    if job is None:
        return None
    glob = (config or {}).get("global") or {}
    return {"job_name": name, "targets": static_targets(job),
            "metrics_path": job.get("metrics_path", "/metrics"),
            "scrape_interval": job.get("scrape_interval", glob.get("scrape_interval", "1m"))}


def job_differences(actual: dict | None, expected: dict) -> list[str]:
    """What differs between a scrape job and the guide's (targets as a set, durations as seconds)."""
    if actual is None:
        return [f"no scrape job {expected['job_name']!r}"]
    diffs = []
    for key, want in expected.items():
        have = actual.get(key)
        if key == "targets":
            same = sorted(have or []) == sorted(want)
        elif key == "scrape_interval":
            same = seconds(have) == seconds(want)
        else:
            same = have == want
        if not same:
            diffs.append(f"{key} is {have!r}, guide: {want!r}")
    return diffs


def app_targets(expected_targets: list[str], instances: int | None) -> list[str]:
    """The pynomaly job's targets: the guide's, or as many consecutive ports as the inventory's
    audit_app_instances says (counting on from the guide's first target)."""
    if not instances or instances == len(expected_targets):
        return list(expected_targets)
    host, _, port = expected_targets[0].rpartition(":")
    return [f"{host}:{int(port) + i}" for i in range(instances)]


def rule_file_names(config: dict) -> list[str]:
    return [str(f) for f in (config or {}).get("rule_files") or []]


def missing_rule_files(config: dict, expected: list[str]) -> list[str]:
    """Expected rule files that prometheus.yml does not load (by name or path ending)."""
    have = rule_file_names(config)
    return [e for e in expected if not any(h == e or h.endswith("/" + e) for h in have)]


def alertmanager_targets(config: dict) -> list[str]:
    ams = ((config or {}).get("alerting") or {}).get("alertmanagers") or []
    return [t for am in ams for t in static_targets(am)]


# ---------------------------------------------------------------- rules

def rule_from_file(doc: dict, group: str, alert: str) -> dict | None:
    """An alerting rule of the rules file, as {alert, expr, for, severity, summary, description}."""
    for g in (doc or {}).get("groups") or []:
        if g.get("name") != group:
            continue
        for r in g.get("rules") or []:
            if r.get("alert") == alert:
                return {"alert": alert, "expr": str(r.get("expr", "")), "for": seconds(r.get("for", 0)),
                        "severity": (r.get("labels") or {}).get("severity"),
                        **{k: (r.get("annotations") or {}).get(k) for k in ("summary", "description")}}
    return None


def rule_from_api(rules: dict, group: str, alert: str) -> dict | None:
    """The same rule as Prometheus loaded it (/api/v1/rules: query, duration in seconds)."""
    for g in (rules or {}).get("groups") or []:
        if g.get("name") != group:
            continue
        for r in g.get("rules") or []:
            if r.get("type") == "alerting" and r.get("name") == alert:
                return {"alert": alert, "expr": r.get("query", ""), "for": seconds(r.get("duration", 0)),
                        "severity": (r.get("labels") or {}).get("severity"),
                        **{k: (r.get("annotations") or {}).get(k) for k in ("summary", "description")}}
    return None


def rule_differences(actual: dict | None, expected: dict) -> list[str]:
    """What differs from the guide's rule: PromQL without layout, `for` in seconds, the rest as is."""
    if actual is None:
        return [f"no alerting rule {expected['alert']!r}"]
    diffs = []
    for key, want in expected.items():
        have = actual.get(key)
        if key == "expr":
            same = normalise_promql(str(have)) == normalise_promql(str(want))
        elif key == "for":
            same = seconds(have) == seconds(want)
        else:
            same = have == want
        if not same:
            diffs.append(f"{key} is {have!r}, guide: {want!r}")
    return diffs


def group_health(rules: dict, group: str) -> tuple[dict | None, list[str]]:
    """The loaded group and its problems: missing, rule health not ok, evaluation errors."""
    g = next((g for g in (rules or {}).get("groups") or [] if g.get("name") == group), None)
    if g is None:
        return None, [f"rule group {group!r} is not loaded"]
    problems = [f"{r.get('name')}: health {r.get('health')}" + (f" ({r['lastError']})" if r.get("lastError") else "")
                for r in g.get("rules") or [] if r.get("health") != "ok" or r.get("lastError")]
    return g, problems


def firing(rules: dict, group: str) -> list[dict]:
    """The firing alerts of a group's alerting rules: {alertname, labels, activeAt, value}."""
    out = []
    for g in (rules or {}).get("groups") or []:
        if g.get("name") != group:
            continue
        for r in g.get("rules") or []:
            for a in r.get("alerts") or []:
                if a.get("state") == "firing":
                    out.append({"alertname": r.get("name"), "labels": a.get("labels"),
                                "activeAt": a.get("activeAt"), "value": a.get("value")})
    return out


def promtool_result(output: str) -> tuple[int, str]:
    """(exit code, output) of a command run as `CMD 2>&1; echo rc=$?`."""
    lines = output.rstrip().splitlines()
    if not lines or not lines[-1].startswith("rc="):
        raise ValueError(f"no exit code in output: {output[-200:]!r}")
    return int(lines[-1][3:]), "\n".join(lines[:-1])


def with_rule_files(test_doc: str, rules_path: str) -> str:
    """A promtool rule-test document pointed at `rules_path` (the file on the audited host)."""
    doc = yaml.safe_load(test_doc)
    doc["rule_files"] = [rules_path]
    return yaml.safe_dump(doc, sort_keys=False)


# ---------------------------------------------------------------- targets, alertmanagers, queries

def target_problems(targets: dict, jobs: list[str]) -> list[str]:
    """Active targets of `jobs` that are not up, and jobs without any active target."""
    active = (targets or {}).get("activeTargets") or []
    problems = []
    for job in jobs:
        mine = [t for t in active if (t.get("labels") or {}).get("job") == job]
        if not mine:
            problems.append(f"job {job}: no active target")
        for t in mine:
            if t.get("health") != "up":
                problems.append(f"job {job}: {t.get('scrapeUrl')} is {t.get('health')}"
                                + (f" ({t['lastError']})" if t.get("lastError") else ""))
    return problems


def active_alertmanager_ports(data: dict) -> list[int]:
    ports = []
    for am in (data or {}).get("activeAlertmanagers") or []:
        parsed = urlparse(am.get("url", ""))
        ports.append(parsed.port or (443 if parsed.scheme == "https" else 80))
    return ports


def scalar(data: dict) -> float | None:
    """The value of a one-element instant vector or a scalar; None when empty; NaN kept."""
    kind, result = (data or {}).get("resultType"), (data or {}).get("result")
    if kind == "scalar":
        return float(result[1])
    if not result:
        return None
    if len(result) > 1:
        raise ApiError(f"expected one series, got {len(result)}")
    return float(result[0]["value"][1])


def metric_sums(text: str, names) -> dict[str, float | None]:
    """Sum of each named metric over its series, from a /metrics exposition (None when absent)."""
    sums: dict[str, float | None] = dict.fromkeys(names)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = re.split(r"[{\s]", line, maxsplit=1)[0]
        if name in sums:
            rest = line.rsplit("}", 1)[1] if "}" in line else line[len(name):]
            value = float(rest.split()[0])
            sums[name] = (sums[name] or 0.0) + value
    return sums


def defined(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


# ---------------------------------------------------------------- Grafana dashboard

def dashboard_of(doc: dict) -> dict:
    """The dashboard object of an export / API answer ({"dashboard": {...}}) or a bare one."""
    return (doc or {}).get("dashboard", doc) or {}


def panels_summary(dashboard: dict) -> list[dict]:
    """Each panel (also inside rows) as {title, type, expr, legendFormat} of its first target."""
    panels = []
    for p in dashboard.get("panels") or []:
        inner = p.get("panels") if p.get("type") == "row" else None
        for q in (inner if inner is not None else [p]):
            target = (q.get("targets") or [{}])[0]
            panels.append({"title": q.get("title"), "type": q.get("type"),
                           "expr": target.get("expr"), "legendFormat": target.get("legendFormat")})
    return panels


def panel_differences(panels: list[dict], expected: list[dict]) -> list[str]:
    diffs = []
    by_title = {p["title"]: p for p in panels}
    for want in expected:
        have = by_title.get(want["title"])
        if have is None:
            diffs.append(f"no panel {want['title']!r}")
            continue
        for key, value in want.items():
            if key == "expr":
                same = normalise_promql(str(have.get(key))) == normalise_promql(value)
            else:
                same = have.get(key) == value
            if not same:
                diffs.append(f"panel {want['title']!r}: {key} is {have.get(key)!r}, guide: {value!r}")
    return diffs
