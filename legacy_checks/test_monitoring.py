"""Guide: Monitoring & Logging - Prometheus configuration, Grafana dashboard, alerting rules, and
the monitoring checklist items that Prometheus answers (error rate, p95, alerts functional).

Files come from ONE `server.collect("monitoring-prometheus", ...)` round trip per monitoring host, which also
runs `promtool` ON that host (the one installed next to the Prometheus it checks, same version,
nothing to install on the runner): `check config`, `check rules`, and the rule unit tests shipped
in checks/promtool/ (piped in, pointed at the host's rules file: nothing is written on the host).
The live state comes from the Prometheus / Alertmanager HTTP APIs (inventory `audit_prometheus`,
`audit_alertmanager`: `{url, via}`), through an SSH tunnel on the `via` host, one per run.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import requests

from audit import prometheus as prom
from audit.evidence import attach, compare
from audit.marks import per_requirement
from audit.transport import HostUnreachable

PROM_CONFIG = "/etc/prometheus/prometheus.yml"
DASHBOARD_FILE = "/etc/grafana/dashboards/pynomaly.json"  # provision/DEVIATIONS.md 6: no Grafana server
GROUP = "pynomaly"
RULE_TESTS = Path(__file__).parent / "promtool"
ALERTS = {  # requirement -> (alert, promtool rule-test file)
    "MON-ALERT-HIGH-ERROR-RATE": ("HighErrorRate", "high_error_rate_test.yml"),
    "MON-ALERT-HIGH-RESPONSE-TIME": ("HighResponseTime", "high_response_time_test.yml"),
    "MON-ALERT-DATABASE-CONNECTION-FAILURE": ("DatabaseConnectionFailure", "database_connection_failure_test.yml"),
}
EXPORTER_JOBS = ("MON-PROM-JOB-POSTGRES", "MON-PROM-JOB-REDIS", "MON-PROM-JOB-NGINX")
MONITORING = pytest.mark.roles("monitoring")
PIPELINE_COUNTERS = ("prometheus_rule_evaluation_failures_total", "prometheus_notifications_errors_total",
                     "prometheus_notifications_dropped_total")


def _setting(server, key: str, default):
    return (server.host_vars.vars.get("audit_settings") or {}).get(key, default)


def monitoring_commands(server, rules_file: str) -> dict[str, str]:
    """What this area reads from a monitoring host: files, and promtool's verdicts on them."""
    cmds = {
        "prometheus_yml": f"cat {PROM_CONFIG}",
        "rules_yml": f"cat {rules_file}",
        "check_config": f"promtool check config {PROM_CONFIG} 2>&1; echo rc=$?",
        "check_rules": f"promtool check rules {rules_file} 2>&1; echo rc=$?",
        "dashboard": f"cat {_setting(server, 'grafana_dashboard_file', DASHBOARD_FILE)}",
    }
    for _alert, test_file in ALERTS.values():
        doc = prom.with_rule_files((RULE_TESTS / test_file).read_text(), rules_file)
        b64 = base64.b64encode(doc.encode()).decode()
        cmds[test_file] = f"echo {b64} | base64 -d | promtool test rules /dev/stdin 2>&1; echo rc=$?"
    return cmds


@pytest.fixture
def files(server, expected):
    """The monitoring host's files and promtool results (one round trip per host and run)."""
    rules_file = expected("MON-RULES-VALID")["file"]
    return server.collect("monitoring-prometheus", monitoring_commands(server, rules_file))


def _config(server, files) -> dict:
    attach("prometheus.yml", files["prometheus_yml"])
    assert files["prometheus_yml"], f"{server.name}: {PROM_CONFIG} is missing or empty"
    return prom.load_yaml(files["prometheus_yml"], f"{server.name}: {PROM_CONFIG}") or {}


def _promtool(server, files, key: str, what: str) -> tuple[int, str]:
    code, out = prom.promtool_result(files[key])
    attach(what, out)
    if code in (126, 127):
        raise RuntimeError(f"{server.name}: promtool is not installed or not runnable: {out[-200:]}")
    return code, out


# ---------------------------------------------------------------- live APIs, through the tunnel

def _api(inventory, audit_context, setting: str, name: str) -> prom.Api:
    endpoint = inventory.setting(setting)
    if endpoint is None:
        pytest.skip(f"inventory {inventory.name} names no {setting}")
    url, via_name = (endpoint.get("url"), endpoint.get("via")) if isinstance(endpoint, dict) else (
        endpoint.url, endpoint.via)
    if via_name:
        via = audit_context.server(via_name)
        url = prom.tunnel_url(url, via.forward)
    return prom.Api(url, name)


@pytest.fixture(scope="session")
def prometheus(inventory, audit_context) -> prom.Api:
    """Prometheus' HTTP API (inventory audit_prometheus), one tunnel per run."""
    return _api(inventory, audit_context, "audit_prometheus", "prometheus")


@pytest.fixture(scope="session")
def alertmanager(inventory, audit_context) -> prom.Api:
    """Alertmanager's HTTP API (inventory audit_alertmanager), one tunnel per run."""
    return _api(inventory, audit_context, "audit_alertmanager", "alertmanager")


@pytest.fixture(scope="session")
def loaded_rules(prometheus) -> dict:
    return prometheus.get("/api/v1/rules")


# ---------------------------------------------------------------- 1. prometheus.yml

@MONITORING
@pytest.mark.requirement("MON-PROM-CONFIG-VALID")
def test_prometheus_config_is_valid_and_loaded(server, files, prometheus):
    """`promtool check config /etc/prometheus/prometheus.yml` passes (with its rule files), and the
    running Prometheus loaded it (reloadConfigSuccess in /api/v1/status/runtimeinfo)."""
    code, out = _promtool(server, files, "check_config", "promtool check config")
    assert code == 0, f"{server.name}: promtool check config {PROM_CONFIG} fails: {out.strip()[-300:]}"
    info = prometheus.get("/api/v1/status/runtimeinfo")
    compare("runtimeinfo", {k: info.get(k) for k in ("reloadConfigSuccess", "lastConfigTime", "startTime")},
            {"reloadConfigSuccess": True})
    assert info.get("reloadConfigSuccess") is True, (
        f"{server.name}: Prometheus could not load the current {PROM_CONFIG} (last reload failed; running "
        f"the config of {info.get('lastConfigTime')})")


@MONITORING
@pytest.mark.requirement("MON-PROM-GLOBAL-INTERVALS")
def test_global_intervals(server, files, expected):
    """"global: scrape_interval: 15s, evaluation_interval: 15s"."""
    want = expected("MON-PROM-GLOBAL-INTERVALS")
    glob = _config(server, files).get("global") or {}
    actual = {k: glob.get(k, "1m") for k in want}  # Prometheus' default for both is 1m
    compare("prometheus.yml global", actual, want)
    wrong = {k: v for k, v in actual.items() if prom.seconds(v) != prom.seconds(want[k])}
    assert not wrong, f"{server.name}: prometheus.yml global differs: {wrong} (guide: {want})"


@MONITORING
@pytest.mark.requirement("MON-PROM-RULE-FILES")
def test_rule_files(server, files, expected):
    """"rule_files: - "pynomaly_rules.yml"" (relative to prometheus.yml, or the same file by path)."""
    config = _config(server, files)
    want = expected("MON-PROM-RULE-FILES")
    compare("rule_files", prom.rule_file_names(config), want)
    missing = prom.missing_rule_files(config, want)
    assert not missing, (
        f"{server.name}: prometheus.yml does not load {missing} (rule_files: {prom.rule_file_names(config)})")


@MONITORING
@pytest.mark.requirement("MON-PROM-JOB-PYNOMALY")
def test_pynomaly_scrape_job(server, files, expected, inventory):
    """"job_name: 'pynomaly', targets: ['localhost:8000', 'localhost:8001', 'localhost:8002'],
    metrics_path: /metrics, scrape_interval: 15s" - one target per app instance (inventory
    audit_app_instances, 3 by default)."""
    want = dict(expected("MON-PROM-JOB-PYNOMALY"))
    want["targets"] = prom.app_targets(want["targets"], inventory.setting("audit_app_instances"))
    actual = prom.job_summary(_config(server, files), want["job_name"])
    compare("scrape job pynomaly", actual, want)
    diffs = prom.job_differences(actual, want)
    assert not diffs, f"{server.name}: scrape job pynomaly: {'; '.join(diffs)}"


@MONITORING
@per_requirement(*EXPORTER_JOBS)
def test_exporter_scrape_job(server, files, expected, req_id):
    """"job_name: 'postgres' ... ['localhost:9187']", "'redis' ... ['localhost:9121']",
    "'nginx' ... ['localhost:9113']"."""
    want = expected(req_id)
    actual = prom.job_summary(_config(server, files), want["job_name"])
    compare(f"scrape job {want['job_name']}", actual, want)
    diffs = prom.job_differences(actual, want)
    assert not diffs, f"{server.name}: scrape job {want['job_name']}: {'; '.join(diffs)}"


@MONITORING
@pytest.mark.requirement("MON-PROM-ALERTMANAGER")
def test_alertmanager_in_config(server, files, expected):
    """"alerting: alertmanagers: - static_configs: - targets: - alertmanager:9093"."""
    want = expected("MON-PROM-ALERTMANAGER")["targets"]
    actual = prom.alertmanager_targets(_config(server, files))
    compare("alerting.alertmanagers targets", actual, want)
    assert sorted(actual) == sorted(want), f"{server.name}: alertmanagers {actual}, guide: {want}"


# ---------------------------------------------------------------- 2./3. rules, promtool, rule unit tests

@MONITORING
@pytest.mark.requirement("MON-RULES-VALID")
def test_rules_file_valid_and_loaded(server, files, expected, loaded_rules):
    """"/etc/prometheus/pynomaly_rules.yml: groups: - name: pynomaly" with three rules:
    `promtool check rules` passes, and Prometheus has loaded the group with health ok."""
    want = expected("MON-RULES-VALID")
    code, out = _promtool(server, files, "check_rules", "promtool check rules")
    assert code == 0, f"{server.name}: promtool check rules {want['file']} fails: {out.strip()[-300:]}"
    group, problems = prom.group_health(loaded_rules, want["group"])
    attach("/api/v1/rules", loaded_rules)
    assert group is not None, f"{server.name}: {problems[0]}"
    assert group.get("file") == want["file"], f"{server.name}: group {want['group']} comes from {group.get('file')}"
    count = len(group.get("rules") or [])
    compare("loaded group", {"rules": count, "problems": problems}, {"rules": want["rules"], "problems": []})
    assert count == want["rules"], f"{server.name}: group {want['group']} has {count} rules, guide: {want['rules']}"
    assert not problems, f"{server.name}: group {want['group']}: {'; '.join(problems)}"


@MONITORING
@per_requirement(*ALERTS)
def test_alert_rule(server, files, expected, loaded_rules, req_id):
    """"- alert: HighErrorRate / HighResponseTime / DatabaseConnectionFailure" with the guide's expr,
    `for`, severity and annotations - in the file and as loaded (PromQL compared without layout) -
    and the shipped rule unit test passes: it fires on a breaching series once `for` has elapsed,
    and stays silent just below the threshold and just before `for` has elapsed."""
    want = dict(expected(req_id))
    alert, test_file = ALERTS[req_id]
    group = expected("MON-RULES-VALID")["group"]
    in_file = prom.rule_from_file(prom.load_yaml(files["rules_yml"], "rules file"), group, alert)
    loaded = prom.rule_from_api(loaded_rules, group, alert)
    compare(f"{alert}: file, loaded", {"file": in_file, "loaded": loaded}, want)
    for where, rule in (("rules file", in_file), ("loaded by Prometheus", loaded)):
        diffs = prom.rule_differences(rule, want)
        assert not diffs, f"{server.name}: {alert} ({where}): {'; '.join(diffs)}"
    code, out = _promtool(server, files, test_file, f"promtool test rules checks/promtool/{test_file}")
    assert code == 0, f"{server.name}: rule unit test {test_file} fails on the host's rules: {out.strip()[-600:]}"


# ---------------------------------------------------------------- 4. live: targets, alertmanager, alerts

@pytest.mark.requirement("MON-TARGETS-UP")
def test_every_target_is_up(prometheus, expected):
    """Every target of the jobs pynomaly, postgres, redis and nginx is up (the exporters run)."""
    jobs = expected("MON-TARGETS-UP")["jobs"]
    targets = prometheus.get("/api/v1/targets", state="active")
    summary = [{"job": t["labels"].get("job"), "url": t.get("scrapeUrl"), "health": t.get("health"),
                "lastError": t.get("lastError")} for t in targets.get("activeTargets") or []]
    attach("active targets", summary)
    problems = prom.target_problems(targets, jobs)
    assert not problems, f"Prometheus targets not up: {'; '.join(problems)}"


@pytest.mark.requirement("MON-ALERTMANAGER-DISCOVERED")
def test_alertmanager_discovered(prometheus, expected):
    """"alertmanagers: ... alertmanager:9093": Prometheus lists it among its active alertmanagers."""
    port = expected("MON-ALERTMANAGER-DISCOVERED")["port"]
    data = prometheus.get("/api/v1/alertmanagers")
    attach("/api/v1/alertmanagers", data)
    ports = prom.active_alertmanager_ports(data)
    assert port in ports, (
        f"Prometheus has no active alertmanager on port {port} (active: {data.get('activeAlertmanagers')})")


@pytest.mark.requirement("MON-NO-ALERTS-FIRING")
def test_no_alert_is_firing(loaded_rules, expected):
    """No alert of the group pynomaly is firing at audit time."""
    group = expected("MON-NO-ALERTS-FIRING")["group"]
    now = prom.firing(loaded_rules, group)
    attach("firing alerts", now)
    assert not now, f"{len(now)} alert(s) of group {group} firing: " + "; ".join(
        f"{a['alertname']} {a['labels']} since {a['activeAt']}" for a in now)


def _alertmanager_ready(alertmanager) -> tuple[bool, str]:
    """Alertmanager's /-/ready, through the tunnel. The tunnel's host answered (the SSH connection
    is up), so a refused or reset connection means Alertmanager itself is down."""
    try:
        resp = requests.get(alertmanager.base.rstrip("/") + "/-/ready", timeout=prom.TIMEOUT)
        return resp.status_code == 200, f"HTTP {resp.status_code} {resp.text.strip()[:100]}"
    except requests.ConnectionError as exc:
        return False, f"no answer through the tunnel: {type(exc).__name__}"


@pytest.mark.requirement("CHK-MONITORING-ALERTS-FUNCTIONAL")
def test_alerting_pipeline_is_healthy(prometheus, alertmanager):
    """"Monitoring alerts functional": Alertmanager is ready, no rule evaluation failed and no
    notification to Alertmanager failed or was dropped since Prometheus started (its own /metrics)."""
    ready, how = _alertmanager_ready(alertmanager)
    # Prometheus' own counters (its /metrics: the guide's config does not scrape Prometheus itself)
    counters = prom.metric_sums(prometheus.text("/metrics"), PIPELINE_COUNTERS)
    missing = [k for k, v in counters.items() if v is None]
    if missing:
        raise RuntimeError(f"Prometheus' /metrics lacks {missing}: cannot audit its notifications")
    compare("alerting pipeline", {"alertmanager ready": how, **counters},
            {"alertmanager ready": "HTTP 200", **{k: 0 for k in counters}})
    assert ready, f"Alertmanager is not ready: {how}"
    bad = {k: round(v, 2) for k, v in counters.items() if v > 0}
    assert not bad, f"the alerting pipeline lost work since Prometheus started: {bad}"


# ---------------------------------------------------------------- 5. monitoring checklist from metrics

def _window_value(prometheus, query: str, what: str) -> float:
    value = prometheus.value(query)
    if not prom.defined(value):
        raise RuntimeError(f"could not audit {what}: Prometheus has no data for `{query}` "
                           "(no requests in the window, or the app is not scraped)")
    return value


@pytest.mark.requirement("CHK-ERROR-RATE")
def test_error_rate_is_below_one_percent(prometheus, expected):
    """"Error rate < 1%": 5xx responses / all responses over the last 5 minutes (http_requests_total;
    the app is scraped every 15 s and gets health-check traffic, so the window is never empty in
    operation - an empty one is reported as could-not-audit, not as compliant)."""
    want = expected("CHK-ERROR-RATE")
    window = want["window"]
    total = _window_value(prometheus, f"sum(rate(http_requests_total[{window}]))", "the request rate")
    errors = prometheus.value(f'sum(rate(http_requests_total{{status=~"5.."}}[{window}]))') or 0.0
    if total <= 0:
        raise RuntimeError(f"could not audit the error rate: no requests in the last {window}")
    percent = 100 * errors / total
    compare(f"5xx share over {window}", {"requests/s": round(total, 4), "5xx/s": round(errors, 4),
                                         "percent": round(percent, 3)}, f"< {want['max_percent']}%")
    assert percent < want["max_percent"], (
        f"{percent:.2f}% of requests failed with 5xx over the last {window} (guide: < {want['max_percent']}%)")


@pytest.mark.requirement("CHK-RESPONSE-TIME-P95")
def test_p95_response_time_is_below_one_second(prometheus, expected):
    """"Response time < 1s (95th percentile)": histogram_quantile over all instances and handlers,
    last 5 minutes (http_request_duration_seconds)."""
    want = expected("CHK-RESPONSE-TIME-P95")
    query = (f"histogram_quantile({want['quantile']}, sum by (le) "
             f"(rate(http_request_duration_seconds_bucket[{want['window']}])))")
    p95 = _window_value(prometheus, query, "the response time")
    compare(f"p{int(want['quantile'] * 100)} over {want['window']} (s)", round(p95, 4), f"< {want['max_seconds']}")
    assert p95 < want["max_seconds"], (
        f"p{int(want['quantile'] * 100)} response time {p95:.3f}s over the last {want['window']} "
        f"(guide: < {want['max_seconds']}s)")


# ---------------------------------------------------------------- 6. Grafana

def _dashboard_from_grafana(inventory, audit_context, title: str) -> dict:
    api = _api(inventory, audit_context, "audit_grafana", "grafana")
    found = [d for d in api.get("/api/search", query=title, type="dash-db") if d.get("title") == title]
    assert found, f"Grafana has no dashboard titled {title!r}"
    return prom.dashboard_of(api.get(f"/api/dashboards/uid/{found[0]['uid']}"))


@pytest.fixture
def dashboard(server, files, inventory, audit_context, expected) -> dict:
    """The dashboard from Grafana's API when the inventory names audit_grafana, else the JSON file
    on the monitoring host (provision/DEVIATIONS.md 6: Debian 12 has no Grafana package)."""
    if inventory.setting("audit_grafana") is not None:
        board = _dashboard_from_grafana(inventory, audit_context, expected("MON-GRAFANA-DASHBOARD")["title"])
    else:
        assert files["dashboard"], f"{server.name}: dashboard JSON file is missing or empty"
        board = prom.dashboard_of(prom.load_json(files["dashboard"], f"{server.name}: dashboard JSON"))
    attach("dashboard", board)
    return board


@MONITORING
@pytest.mark.requirement("MON-GRAFANA-DASHBOARD")
def test_grafana_dashboard(server, dashboard, expected):
    """"title": "Pynomaly Production Dashboard" with three panels."""
    want = expected("MON-GRAFANA-DASHBOARD")
    actual = {"title": dashboard.get("title"), "panels": len(prom.panels_summary(dashboard))}
    compare("dashboard", actual, want)
    assert actual == want, f"{server.name}: dashboard is {actual}, guide: {want}"


@MONITORING
@pytest.mark.requirement("MON-GRAFANA-PANELS")
def test_grafana_panels(server, dashboard, expected):
    """"Request Rate" rate(http_requests_total[5m]), "Response Time" histogram_quantile(0.95, ...),
    "Error Rate" rate(http_requests_total{status=~"5.."}[5m]): graphs with the guide's legends."""
    want = expected("MON-GRAFANA-PANELS")
    panels = prom.panels_summary(dashboard)
    compare("panels", panels, want)
    diffs = prom.panel_differences(panels, want)
    assert not diffs, f"{server.name}: {'; '.join(diffs)}"


# ---------------------------------------------------------------- 7. alerts functional (opt-in)

EXPORTER_SERVICE = "prometheus-postgres-exporter"
ALERT = "DatabaseConnectionFailure"
MARGIN = 60  # seconds on top of `for`: a scrape, an evaluation and the send (15 s each) and slack


def _am_alert(alertmanager, name: str) -> list[dict]:
    return [a for a in alertmanager.get("/api/v2/alerts", active="true")
            if (a.get("labels") or {}).get("alertname") == name]


@pytest.mark.writes
@MONITORING
@pytest.mark.requirement("CHK-MONITORING-ALERTS-FUNCTIONAL")
def test_alert_reaches_alertmanager(server, prometheus, alertmanager, loaded_rules, expected):
    """"Monitoring alerts functional", end to end: stop the PostgreSQL exporter, see
    DatabaseConnectionFailure reach Alertmanager within its `for` plus a margin, restore the exporter
    (in a finally) and wait until its target is up again. Bounded to `for` + 60 s + 60 s."""
    rule = prom.rule_from_api(loaded_rules, expected("MON-RULES-VALID")["group"], ALERT)
    assert rule is not None, f"{server.name}: rule {ALERT} is not loaded"
    assert not _am_alert(alertmanager, ALERT), f"{ALERT} is already active in Alertmanager: cannot prove anything"
    deadline_s = rule["for"] + MARGIN
    seen, waited = [], 0.0
    started = time.monotonic()
    try:
        # by its pidfile: `service X stop` cannot always match another user's process
        server.run(f"kill $(cat /run/prometheus/{EXPORTER_SERVICE}.pid)", timeout=30)
        while waited < deadline_s and not seen:
            time.sleep(5)
            seen = _am_alert(alertmanager, ALERT)
            waited = time.monotonic() - started
    finally:
        server.run(f"service {EXPORTER_SERVICE} start >/dev/null", timeout=30)
        for _ in range(12):  # the target is scraped every 15 s: up again within 60 s
            time.sleep(5)
            if prometheus.value(f'up{{job="{expected("MON-PROM-JOB-POSTGRES")["job_name"]}"}}') == 1:
                break
        else:
            raise HostUnreachable(f"{server.name}: the postgres exporter target is not up again after the check")
    compare(f"{ALERT} in Alertmanager", {"seen after s": round(waited), "alerts": seen}, f"within {deadline_s:.0f}s")
    assert seen, f"{ALERT} did not reach Alertmanager within {deadline_s:.0f}s of stopping {EXPORTER_SERVICE}"
