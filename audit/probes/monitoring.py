"""Monitoring & Logging (guide: Prometheus, Grafana, Alerting Rules, and the monitoring checklist
items Prometheus answers): what the monitoring host has on disk, what promtool says of it, and
what the running Prometheus and Alertmanager say through their HTTP APIs.

- `monitoring` (per `monitoring` host, ONE round trip): prometheus.yml, the rules file, the
  Grafana dashboard JSON, and `promtool` run ON that host (the one installed next to the
  Prometheus it checks): `check config`, `check rules`, and the rule unit tests of checks/promtool/
  (piped in, pointed at the host's rules file: nothing is written on the host). The dashboard
  comes from Grafana's API instead when the inventory names `audit_grafana`.
- `prometheus` (the deployment): the loaded configuration and rules, targets, alertmanagers,
  Prometheus' own alerting-pipeline counters, Alertmanager's readiness, and the app's 5-minute
  error rate and p95 (inventory `audit_prometheus`, `audit_alertmanager`: `{url, via}`).
- `alert_round_trip` (opt-in `writes`): stop the PostgreSQL exporter, wait for its alert in
  Alertmanager, start it again.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from audit import guide
from audit.facts import probe
from audit.judge import ON_DISK, RUNNING, Reading
from audit.outcomes import CouldNotAudit

RULE_TESTS = Path(__file__).resolve().parents[2] / "checks" / "promtool"
ALERT_TESTS = {"HighErrorRate": "high_error_rate_test.yml", "HighResponseTime": "high_response_time_test.yml",
               "DatabaseConnectionFailure": "database_connection_failure_test.yml"}
PIPELINE_COUNTERS = ("prometheus_rule_evaluation_failures_total", "prometheus_notifications_errors_total",
                     "prometheus_notifications_dropped_total")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


# ---------------------------------------------------------------- durations and PromQL (unit-tested)

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
    """PromQL with the whitespace outside string literals removed, so that layout does not matter
    (the file's text, the API's canonical `query` and the guide's text compare without a parser)."""
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


def differences(actual: dict | None, expected: dict, missing: str) -> list[str]:
    """What differs from the guide's item: PromQL without layout, durations in seconds, target
    lists as sets, the rest as is; `missing` when there is no item at all."""
    if actual is None:
        return [missing]
    return [f"{key} is {actual.get(key)!r}, guide: {want!r}" for key, want in expected.items()
            if not _same(key, actual.get(key), want)]


def _same(key: str, have, want) -> bool:
    try:
        if key == "expr":
            return normalise_promql(str(have)) == normalise_promql(str(want))
        if key in ("for", "scrape_interval"):
            return seconds(have) == seconds(want)
        if key == "targets":
            return sorted(have or []) == sorted(want)
    except ValueError:  # not a duration
        return False
    return have == want


# ---------------------------------------------------------------- prometheus.yml

def parse_document(text: str, what: str, loads=yaml.safe_load) -> tuple[Any, str]:
    """(document, '') or (None, why): a missing or empty file, or one that does not parse."""
    if not text.strip():
        return None, f"{what} is missing or empty"
    try:
        doc = loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        return None, f"{what} is not valid {'JSON' if loads is json.loads else 'YAML'}: {' '.join(str(exc).split())}"
    return (doc, "") if isinstance(doc, dict) else (None, f"{what} is not a mapping")


def static_targets(section: dict | None) -> list[str]:
    """The targets of every static_configs entry of a scrape job or alertmanagers entry."""
    return [t for sc in (section or {}).get("static_configs") or [] for t in sc.get("targets") or []]


def job_summary(config: dict | None, name: str) -> dict | None:
    """A scrape job as the guide states it: targets, metrics_path, scrape_interval (with defaults)."""
    job = next((j for j in (config or {}).get("scrape_configs") or [] if j.get("job_name") == name), None)
    if job is None:
        return None
    glob = (config or {}).get("global") or {}
    return {"job_name": name, "targets": static_targets(job), "metrics_path": job.get("metrics_path", "/metrics"),
            "scrape_interval": job.get("scrape_interval", glob.get("scrape_interval", "1m"))}


def job_differences(actual: dict | None, expected: dict) -> list[str]:
    """What differs between a scrape job and the guide's (targets as a set, durations as seconds)."""
    return differences(actual, expected, f"no scrape job {expected['job_name']!r}")


def app_targets(expected_targets: list[str], instances: int | None) -> list[str]:
    """The pynomaly job's targets: the guide's, or as many consecutive ports as the inventory's
    audit_app_instances says (counting on from the guide's first target)."""
    if not instances or instances == len(expected_targets):
        return list(expected_targets)
    host, _, port = expected_targets[0].rpartition(":")
    return [f"{host}:{int(port) + i}" for i in range(instances)]


def rule_file_names(config: dict | None) -> list[str]:
    return [str(f) for f in (config or {}).get("rule_files") or []]


def rule_file_paths(config: dict | None) -> list[str]:
    """rule_files as paths: relative to prometheus.yml's folder, as Prometheus resolves them (its
    loaded configuration shows them so)."""
    folder = guide.PROMETHEUS_CONFIG.rsplit("/", 1)[0]
    return sorted(f if f.startswith("/") else f"{folder}/{f}" for f in rule_file_names(config))


def comparable_job(job: dict | None) -> dict | None:
    """A scrape job summary as it compares: targets sorted, the interval in seconds."""
    if job is None:
        return None
    try:
        interval = seconds(job.get("scrape_interval"))
    except ValueError:
        interval = job.get("scrape_interval")
    return {**job, "targets": sorted(job.get("targets") or []), "scrape_interval": interval}


def missing_rule_files(config: dict | None, expected: list[str]) -> list[str]:
    """Expected rule files that prometheus.yml does not load (by name or path ending)."""
    have = rule_file_names(config)
    return [e for e in expected if not any(h == e or h.endswith("/" + e) for h in have)]


def alertmanager_targets(config: dict | None) -> list[str]:
    ams = ((config or {}).get("alerting") or {}).get("alertmanagers") or []
    return [t for am in ams for t in static_targets(am)]


def global_intervals(config: dict | None) -> dict[str, str] | None:
    """scrape_interval and evaluation_interval of `global` (Prometheus' default: 1m)."""
    if config is None:
        return None
    glob = config.get("global") or {}
    return {k: str(glob.get(k, "1m")) for k in ("scrape_interval", "evaluation_interval")}


# ---------------------------------------------------------------- rules

def _rule(rule: dict, alert: str, expr: str, duration) -> dict:
    return {"alert": alert, "expr": str(expr), "for": seconds(duration or 0),
            "severity": (rule.get("labels") or {}).get("severity"),
            **{k: (rule.get("annotations") or {}).get(k) for k in ("summary", "description")}}


def _group(doc: dict | None, group: str) -> dict | None:
    return next((g for g in (doc or {}).get("groups") or [] if g.get("name") == group), None)


def rule_from_file(doc: dict | None, group: str, alert: str) -> dict | None:
    """An alerting rule of the rules file, as {alert, expr, for, severity, summary, description}."""
    return next((_rule(r, alert, r.get("expr", ""), r.get("for"))
                 for r in (_group(doc, group) or {}).get("rules") or [] if r.get("alert") == alert), None)


def rule_from_api(rules: dict | None, group: str, alert: str) -> dict | None:
    """The same rule as Prometheus loaded it (/api/v1/rules: query, duration in seconds)."""
    return next((_rule(r, alert, r.get("query", ""), r.get("duration"))
                 for r in (_group(rules, group) or {}).get("rules") or []
                 if r.get("type") == "alerting" and r.get("name") == alert), None)


def rule_sides(doc: dict | None, loaded: dict | None, group: str, alert: str) -> dict[str, Reading]:
    """An alerting rule as Prometheus loaded it (/api/v1/rules; left out when the API gave no
    rules) and as the rules file has it (what the next reload loads)."""
    out = {}
    if loaded:
        found = rule_from_api(loaded, group, alert)
        out[RUNNING] = Reading(found, _comparable_rule(found), "/api/v1/rules")
    found = rule_from_file(doc, group, alert)
    out[ON_DISK] = Reading(found, _comparable_rule(found), "the rules file")
    return out


def _comparable_rule(rule: dict | None) -> dict | None:
    return None if rule is None else {**rule, "expr": normalise_promql(rule["expr"])}


def group_sides(doc: dict | None, loaded: dict | None, group: str) -> dict[str, Reading]:
    """The rule names of a group as loaded (/api/v1/rules) and in the rules file."""
    out = {}
    if loaded:
        found = sorted(r.get("name") for r in (_group(loaded, group) or {}).get("rules") or [])
        out[RUNNING] = Reading(found, found, "/api/v1/rules")
    found = sorted(r.get("alert") or r.get("record") for r in (_group(doc, group) or {}).get("rules") or [])
    out[ON_DISK] = Reading(found, found, "the rules file")
    return out


def rule_differences(actual: dict | None, expected: dict) -> list[str]:
    """What differs from the guide's rule: PromQL without layout, `for` in seconds, the rest as is."""
    return differences(actual, expected, f"no alerting rule {expected['alert']!r}")


def group_health(rules: dict | None, group: str) -> tuple[dict | None, list[str]]:
    """The loaded group and its problems: missing, rule health not ok, evaluation errors."""
    g = _group(rules, group)
    if g is None:
        return None, [f"rule group {group!r} is not loaded"]
    problems = [f"{r.get('name')}: health {r.get('health')}" + (f" ({r['lastError']})" if r.get("lastError") else "")
                for r in g.get("rules") or [] if r.get("health") != "ok" or r.get("lastError")]
    return g, problems


def firing(rules: dict | None, group: str) -> list[dict]:
    """The firing alerts of a group's alerting rules: {alertname, labels, activeAt, value}."""
    return [{"alertname": r.get("name"), "labels": a.get("labels"), "activeAt": a.get("activeAt"),
             "value": a.get("value")}
            for r in (_group(rules, group) or {}).get("rules") or [] for a in r.get("alerts") or []
            if a.get("state") == "firing"]


@dataclass(frozen=True)
class Promtool:
    """One promtool run: its exit code (None when it printed none) and output."""

    code: int | None
    output: str


def promtool_result(output: str) -> Promtool:
    """A command run as `CMD 2>&1; echo rc=$?`."""
    lines = output.rstrip().splitlines()
    if not lines or not lines[-1].startswith("rc="):
        return Promtool(None, output)
    return Promtool(int(lines[-1][3:]), "\n".join(lines[:-1]))


def with_rule_files(test_doc: str, rules_path: str) -> str:
    """A promtool rule-test document pointed at `rules_path` (the file on the audited host)."""
    doc = yaml.safe_load(test_doc)
    doc["rule_files"] = [rules_path]
    return yaml.safe_dump(doc, sort_keys=False)


# ---------------------------------------------------------------- targets, alertmanagers, queries

@dataclass(frozen=True)
class Target:
    job: str
    url: str
    health: str
    error: str = ""


def parse_targets(data: dict | None) -> tuple[Target, ...]:
    """The active targets of /api/v1/targets."""
    return tuple(Target(str((t.get("labels") or {}).get("job")), str(t.get("scrapeUrl")), str(t.get("health")),
                        t.get("lastError") or "") for t in (data or {}).get("activeTargets") or [])


def target_problems(targets: tuple[Target, ...], jobs: list[str]) -> list[str]:
    """Active targets of `jobs` that are not up, and jobs without any active target."""
    problems = []
    for job in jobs:
        mine = [t for t in targets if t.job == job]
        if not mine:
            problems.append(f"job {job}: no active target")
        problems += [f"job {job}: {t.url} is {t.health}" + (f" ({t.error})" if t.error else "")
                     for t in mine if t.health != "up"]
    return problems


def active_alertmanager_ports(data: dict | None) -> list[int]:
    return [urlparse(am.get("url", "")).port or (443 if urlparse(am.get("url", "")).scheme == "https" else 80)
            for am in (data or {}).get("activeAlertmanagers") or []]


def scalar(data: dict | None) -> float | None:
    """The value of a one-element instant vector or a scalar; None when empty; NaN kept."""
    kind, result = (data or {}).get("resultType"), (data or {}).get("result")
    if kind == "scalar":
        return float(result[1])
    if not result:
        return None
    if len(result) > 1:
        raise ValueError(f"expected one series, got {len(result)}")
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
            sums[name] = (sums[name] or 0.0) + float(rest.split()[0])
    return sums


def defined(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


# ---------------------------------------------------------------- Grafana dashboard

def dashboard_of(doc: dict | None) -> dict:
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
    by_title = {p["title"]: p for p in panels}
    diffs = []
    for want in expected:
        have = by_title.get(want["title"])
        diffs += [f"panel {want['title']!r}: {d}" if have else d
                  for d in differences(have, want, f"no panel {want['title']!r}")]
    return diffs


# ---------------------------------------------------------------- facts

def api(session, name: str):
    """The access layer's `name` API, once the SSH connection of its `via` host is up (a tunnel
    rides on that host's shared connection)."""
    via = (session.inventory.setting(f"audit_{name}") or {}).get("via")
    if via in session.inventory.hosts:
        session.facts.get("reach", via)
    return session.access.api(name)


@dataclass(frozen=True)
class Unavailable:
    """Values a probe could not read, each with the service and why: reading one is could-not-audit
    for the checks that need it only."""

    unavailable: dict[str, tuple[str, str]] = field(default_factory=dict)

    def need(self, name: str) -> None:
        if name in self.unavailable:
            service, why = self.unavailable[name]
            raise CouldNotAudit(getattr(self, "host", None), service, why)


@dataclass(frozen=True)
class MonitoringFacts(Unavailable):
    """A monitoring host's files and promtool's verdicts on them."""

    host: str = ""
    config: dict | None = None                  # prometheus.yml; None when missing, empty or not YAML
    config_problem: str = ""
    rules: dict | None = None                   # the rules file
    rules_problem: str = ""
    promtool: dict[str, Promtool] = field(default_factory=dict)  # check_config, check_rules, test <alert>
    dashboard: dict | None = None
    dashboard_where: str = ""
    dashboard_problem: str = ""
    running_config: dict | None = None          # as Prometheus loaded it (/api/v1/status/config)

    def verdict(self, name: str) -> Promtool:
        """promtool's verdict `name`; could-not-audit when promtool itself could not run."""
        result = self.promtool[name]
        if result.code is None or result.code in (126, 127):
            raise CouldNotAudit(self.host, "promtool", f"not installed or not runnable: {result.output.strip()[-200:]}")
        return result

    def config_sides(self, read: Callable[[dict | None], Any], norm: Callable[[Any], Any] = lambda v: v
                     ) -> dict[str, Reading]:
        """`read` of prometheus.yml as Prometheus loaded it (/api/v1/status/config; left out when the
        API cannot be read) and as the file says (what the next reload loads)."""
        out = {}
        if self.running_config is not None:
            found = read(self.running_config)
            out[RUNNING] = Reading(found, norm(found), "/api/v1/status/config")
        found = read(self.config) if self.config is not None else None
        out[ON_DISK] = Reading(found if found is not None else self.config_problem or "nothing",
                               norm(found) if found is not None else None, guide.PROMETHEUS_CONFIG)
        return out

    def sides(self, key: str) -> dict[str, Reading]:
        """`global` intervals or `alertmanagers` targets, as Prometheus runs them and as the file says."""
        read = {"global": global_intervals,
                "alertmanagers": lambda c: None if c is None else sorted(alertmanager_targets(c))}[key]
        return self.config_sides(read, lambda found: self.norm(key, found))

    def norm(self, key: str, value) -> Any:
        """Intervals in seconds; targets sorted (the guide's value is {targets: [...]})."""
        if value is None:
            return None
        try:
            return {k: seconds(v) for k, v in value.items()} if key == "global" else sorted(
                value["targets"] if isinstance(value, dict) else value)
        except ValueError:  # not a duration: compares unequal
            return value


RULES_COPY = "@rules_file@"


def rule_test_commands(rules_file: str) -> dict[str, str]:
    """The shipped rule unit tests, piped to `promtool test rules` as the audit account and pointed at
    a copy of the host's file read as root (its messages name the host's file, as if run on it)."""
    copy = f"$d/{rules_file.rsplit('/', 1)[-1]}"  # mktemp's directory: no space, no quote
    cmds = {}
    for alert, name in ALERT_TESTS.items():
        doc = base64.b64encode(with_rule_files((RULE_TESTS / name).read_text(), RULES_COPY).encode()).decode()
        cmds[f"test {alert}"] = (
            f"d=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d); if $SUDO cat {rules_file} > {copy}; "
            f"then {{ echo {doc} | base64 -d | sed \"s#{RULES_COPY}#{copy}#\" | promtool test rules /dev/stdin 2>&1; "
            f"echo rc=$?; }} | sed \"s#{copy}#{rules_file}#g\"; else echo rc=1; fi; rm -rf \"$d\"")
    return cmds


@probe()
def monitoring(session, host) -> MonitoringFacts:
    """prometheus.yml, the rules file, the dashboard and promtool's verdicts (one round trip)."""
    rules_file = session.expected("MON-RULES-VALID")["file"]
    grafana = session.inventory.setting("audit_grafana") is not None
    dashboard_file = host.settings.grafana_dashboard_file
    out = session.access.collect(host, {
        "prometheus_yml": f"$SUDO cat {guide.PROMETHEUS_CONFIG}", "rules_yml": f"$SUDO cat {rules_file}",
        "check_config": f"$SUDO promtool check config {guide.PROMETHEUS_CONFIG} 2>&1; echo rc=$?",
        "check_rules": f"$SUDO promtool check rules {rules_file} 2>&1; echo rc=$?",
        "dashboard": "true" if grafana else f"$SUDO cat {dashboard_file}", **rule_test_commands(rules_file)})
    unavailable, running = {}, None
    with contextlib.suppress(CouldNotAudit):  # else the running side is left out; the live checks say why
        running = session.facts.get("prometheus").running_config
    if grafana:
        title, where = session.expected("MON-GRAFANA-DASHBOARD")["title"], "the Grafana API"
        try:
            board = grafana_dashboard(api(session, "grafana"), title)
            problem = "" if board else f"Grafana has no dashboard titled {title!r}"
        except CouldNotAudit as exc:
            board, problem = None, exc.why
            unavailable["dashboard"] = (exc.service, exc.why)
    else:
        board, problem = parse_document(out["dashboard"], f"dashboard JSON {dashboard_file}", json.loads)
        where = dashboard_file
    parsed, config_problem = parse_document(out["prometheus_yml"], guide.PROMETHEUS_CONFIG)
    rules, rules_problem = parse_document(out["rules_yml"], f"rules file {rules_file}")
    return MonitoringFacts(
        unavailable=unavailable, host=host.name, config=parsed, config_problem=config_problem,
        rules=rules, rules_problem=rules_problem, running_config=running,
        promtool={k: promtool_result(v) for k, v in out.items() if k.startswith(("check_", "test "))},
        dashboard=dashboard_of(board) if board else None, dashboard_where=where, dashboard_problem=problem)


def grafana_dashboard(grafana, title: str) -> dict | None:
    """The guide's dashboard from Grafana's API, found by its title (None: no such dashboard)."""
    found = [d for d in grafana.get("/api/search", query=title, type="dash-db") if d.get("title") == title]
    return grafana.get(f"/api/dashboards/uid/{found[0]['uid']}") if found else None


@dataclass(frozen=True)
class PrometheusFacts(Unavailable):
    """What the running Prometheus (and Alertmanager) say through their APIs."""

    runtime: dict = field(default_factory=dict)           # /api/v1/status/runtimeinfo
    running_config: dict | None = None                    # /api/v1/status/config, parsed
    rules: dict = field(default_factory=dict)             # /api/v1/rules
    targets: tuple[Target, ...] = ()
    alertmanagers: dict = field(default_factory=dict)     # /api/v1/alertmanagers
    alertmanager_ready: tuple[bool, str] = (False, "")    # Alertmanager's /-/ready
    counters: dict[str, float | None] = field(default_factory=dict)  # Prometheus' own /metrics (since start)
    firing: tuple[str, ...] = ()                          # alerts firing in Prometheus (/api/v1/alerts)
    delivered: tuple[str, ...] = ()                       # alerts Alertmanager holds (/api/v2/alerts)
    window: dict[str, float | None] = field(default_factory=dict)    # requests/s, 5xx/s, p95 (s)
    queries: dict[str, str] = field(default_factory=dict)

    def measured(self, name: str) -> float:
        """A value over the window; could-not-audit when Prometheus has no data for it."""
        value = self.window.get(name)
        if not defined(value):
            raise CouldNotAudit(None, "Prometheus", f"no data for `{self.queries[name]}` (no requests in the "
                                                    "window, or the app is not scraped)")
        return value


def alert_names(alerts: list) -> tuple[str, ...]:
    """`alertname{label=value,...}` of each alert (Prometheus' or Alertmanager's API), sorted; the
    labels Alertmanager adds of its own are not compared."""
    out = []
    for alert in alerts or []:
        labels = dict(alert.get("labels") or {})
        name = labels.pop("alertname", "?")
        out.append(name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}")
    return tuple(sorted(out))


def window_queries(error_rate: dict, response_time: dict) -> dict[str, str]:
    """The catalogue's windows and quantile as PromQL over the app's own metrics."""
    window, p95 = error_rate["window"], response_time["window"]
    return {"requests/s": f"sum(rate(http_requests_total[{window}]))",
            "5xx/s": f'sum(rate(http_requests_total{{status=~"5.."}}[{window}]))',
            "p95": f"histogram_quantile({response_time['quantile']}, sum by (le) "
                   f"(rate(http_request_duration_seconds_bucket[{p95}])))"}


@probe(per_host=False)
def prometheus(session) -> PrometheusFacts:
    """The running Prometheus: loaded config and rules, targets, alertmanagers, pipeline counters,
    Alertmanager's readiness, and the app's error rate and p95 over the window."""
    prom = api(session, "prometheus")
    queries = window_queries(session.expected("CHK-ERROR-RATE"), session.expected("CHK-RESPONSE-TIME-P95"))
    window = {}
    for name, query in queries.items():
        try:
            window[name] = scalar(prom.get("/api/v1/query", query=query))
        except ValueError as exc:
            raise CouldNotAudit(None, "the prometheus API", f"{query}: {exc}") from None
    if window["requests/s"] == 0:
        window["requests/s"] = None  # no requests in the window: no rate to judge
    unavailable = {}
    counters = metric_sums(prom.text("/metrics"), PIPELINE_COUNTERS)
    missing = [k for k, v in counters.items() if v is None]
    if missing:
        unavailable["counters"] = ("the prometheus API", f"its /metrics lacks {missing}: cannot audit notifications")
    delivered: tuple[str, ...] = ()
    try:
        manager = api(session, "alertmanager")
        code, said = manager.status("/-/ready")
        ready = (code == 200, f"HTTP {code} {said}" if code else said)
        if code == 200:
            delivered = alert_names(manager.get("/api/v2/alerts", active="true"))
    except CouldNotAudit as exc:
        ready = (False, exc.why)
        unavailable["alertmanager"] = (exc.service, exc.why)
    config, _ = parse_document(prom.get("/api/v1/status/config").get("yaml", ""), "the loaded configuration")
    return PrometheusFacts(
        unavailable=unavailable, runtime=prom.get("/api/v1/status/runtimeinfo"), running_config=config,
        rules=prom.get("/api/v1/rules"), targets=parse_targets(prom.get("/api/v1/targets", state="active")),
        alertmanagers=prom.get("/api/v1/alertmanagers"), alertmanager_ready=ready, counters=counters,
        firing=alert_names([a for a in prom.get("/api/v1/alerts").get("alerts", []) if a.get("state") == "firing"]),
        delivered=delivered,
        window=window, queries=queries)


# ---------------------------------------------------------------- opt-in: an alert reaches Alertmanager

EXPORTER_SERVICE = "prometheus-postgres-exporter"
ROUND_TRIP_ALERT = "DatabaseConnectionFailure"
MARGIN = 60  # seconds on top of `for`: a scrape, an evaluation and the send (15 s each) and slack
SETTLE = 90  # seconds for the target to be up again and the alert to clear, after the exporter started
# The host's service manager, as the checklist probe tells it (/run/systemd/system): a systemd unit
# is stopped and started by systemctl; under init scripts the stop signals the pidfile's process
# (`service X stop` cannot always match another user's process: start-stop-daemon --exec) with
# `pkill -F`, which reads the pid file itself: a fixed command line for sudo, no pid from the account.
SERVICE_STOP = ("if [ -d /run/systemd/system ]; then $SUDO systemctl stop {unit}; "
                "else $SUDO pkill -F /run/prometheus/{unit}.pid; fi")
SERVICE_START = ("if [ -d /run/systemd/system ]; then $SUDO systemctl start {unit}; "
                 "else $SUDO service {unit} start >/dev/null; fi")


@dataclass(frozen=True)
class RoundTrip:
    already: list      # active before anything was stopped: the round trip cannot prove anything
    deadline_s: float
    waited_s: float
    seen: list         # the alert as Alertmanager holds it: alert_states()

    @property
    def suppressed(self) -> list:
        """Arrived, but silenced or inhibited (or in no state that notifies): it never notifies."""
        return [a for a in self.seen if a["state"] != "active"]


def alert_states(alerts: list[dict]) -> list[dict]:
    """What a check shows of Alertmanager's alerts: labels, state, what suppresses it, receivers."""
    return [{"alert": alert_names([a])[0], "state": (a.get("status") or {}).get("state"),
             "silenced by": (a.get("status") or {}).get("silencedBy") or [],
             "inhibited by": (a.get("status") or {}).get("inhibitedBy") or [],
             "receivers": [r.get("name") for r in a.get("receivers") or []]} for a in alerts]


def active_alerts(session, name: str) -> list[dict]:
    """`name` as Alertmanager holds it (not resolved; silenced and inhibited ones included)."""
    return [a for a in api(session, "alertmanager").get("/api/v2/alerts", active="true")
            if (a.get("labels") or {}).get("alertname") == name]


def alert_round_trip(session, host, rule_for: float, postgres_job: str) -> RoundTrip:
    """Stop the PostgreSQL exporter (systemctl, or its pidfile's process), poll Alertmanager until
    DatabaseConnectionFailure arrives or `for` + 60 s passed, start the exporter again (in a
    finally) and wait until its target is up and the alert cleared in Prometheus and Alertmanager
    (90 s), so that nothing of the round trip is left firing for the audits that follow."""
    access, prom = session.access, api(session, "prometheus")
    deadline, seen, waited = rule_for + MARGIN, [], 0.0
    already = active_alerts(session, ROUND_TRIP_ALERT)
    if already:
        return RoundTrip(alert_states(already), deadline, 0, [])
    started = time.monotonic()
    try:
        stop = access.run(host, SERVICE_STOP.format(unit=EXPORTER_SERVICE), timeout=30)
        said = (stop.stderr or stop.stdout).strip()
        if stop.rc != 0 and said.startswith("sudo: "):
            refused = said.splitlines()[0].removeprefix("sudo: ")
            raise CouldNotAudit(host.name, "sudo", f"{refused}: stopping {EXPORTER_SERVICE} needs the opt-in "
                                                   "`writes` rules (python -m audit.sudoers --opt-in writes)")
        if stop.rc != 0:
            raise CouldNotAudit(host.name, EXPORTER_SERVICE, f"could not stop it (exit {stop.rc}): "
                                                             f"{(stop.stderr or stop.stdout).strip()[-300:]}")
        while waited < deadline and not seen:
            time.sleep(5)
            seen = active_alerts(session, ROUND_TRIP_ALERT)
            waited = time.monotonic() - started
    finally:
        access.run(host, SERVICE_START.format(unit=EXPORTER_SERVICE), timeout=30)
        settled = time.monotonic() + SETTLE
        while not (scalar(prom.get("/api/v1/query", query=f'up{{job="{postgres_job}"}}')) == 1
                   and not [a for a in prom.get("/api/v1/alerts").get("alerts", [])
                            if (a.get("labels") or {}).get("alertname") == ROUND_TRIP_ALERT]
                   and not active_alerts(session, ROUND_TRIP_ALERT)):
            if time.monotonic() > settled:
                raise CouldNotAudit(host.name, EXPORTER_SERVICE, f"its target is not up again, or {ROUND_TRIP_ALERT} "
                                                                 f"has not cleared, {SETTLE} s after the check")
            time.sleep(5)
    return RoundTrip([], deadline, round(waited), alert_states(seen))
