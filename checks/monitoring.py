"""Guide: Monitoring & Logging - Prometheus configuration, alerting rules, Grafana dashboard, and
the monitoring checklist items that Prometheus answers (error rate, p95, alerts functional).
What is read, and how: audit/probes/monitoring.py (`monitoring`: the host's files and promtool's
verdicts in one round trip; `prometheus`: the running Prometheus and Alertmanager).

prometheus.yml's global intervals and its Alertmanager target are catalogue value rows
(checks/values.py), as Prometheus runs them and as the file says. So are the rule files, the scrape
jobs and each alerting rule here: as loaded (/api/v1/status/config, /api/v1/rules) and as the
files say (what the next reload loads).
"""

from __future__ import annotations

import pytest

from audit import evidence, guide
from audit.marks import per_requirement
from audit.probes.monitoring import (
    ALERT_TESTS,
    ROUND_TRIP_ALERT,
    active_alertmanager_ports,
    alert_round_trip,
    app_targets,
    comparable_job,
    firing,
    group_health,
    group_sides,
    job_differences,
    job_summary,
    missing_rule_files,
    panel_differences,
    panels_summary,
    rule_differences,
    rule_file_paths,
    rule_from_api,
    rule_sides,
    target_problems,
)

MONITORING = pytest.mark.roles("monitoring")
EXPORTER_JOBS = ("MON-PROM-JOB-POSTGRES", "MON-PROM-JOB-REDIS", "MON-PROM-JOB-NGINX")
ALERTS = ("MON-ALERT-HIGH-ERROR-RATE", "MON-ALERT-HIGH-RESPONSE-TIME", "MON-ALERT-DATABASE-CONNECTION-FAILURE")


def _promtool(judge, monitoring, name: str, what: str) -> None:
    result = monitoring.verdict(name)
    judge.that(result.code == 0, what=what, found=f"exit {result.code}: {result.output.strip()[-600:]}",
               expected="exit 0")


# ---------------------------------------------------------------- 1. prometheus.yml

@MONITORING
@pytest.mark.requirement("MON-PROM-CONFIG-VALID")
def check_prometheus_config_valid_and_loaded(judge, monitoring, prometheus):
    """`promtool check config /etc/prometheus/prometheus.yml` passes (with its rule files), and the
    running Prometheus loaded it (reloadConfigSuccess in /api/v1/status/runtimeinfo)."""
    _promtool(judge, monitoring, "check_config", f"promtool check config {guide.PROMETHEUS_CONFIG}")
    info = {k: prometheus.runtime.get(k) for k in ("reloadConfigSuccess", "lastConfigTime", "startTime")}
    judge.that(info["reloadConfigSuccess"] is True, what="the last configuration reload", found=info,
               expected={"reloadConfigSuccess": True}, where="/api/v1/status/runtimeinfo",
               why=f"Prometheus still runs the configuration of {info['lastConfigTime']}")


@MONITORING
@pytest.mark.requirement("MON-PROM-RULE-FILES")
def check_rule_files(judge, monitoring):
    """"rule_files: - "pynomaly_rules.yml"" (relative to prometheus.yml, or the same file by path)."""
    judge.sides(monitoring.config_sides(rule_file_paths), lambda names: not missing_rule_files(
        {"rule_files": names}, judge.expected), what="rule_files")


def _scrape_job(judge, monitoring, want: dict) -> None:
    judge.sides(monitoring.config_sides(lambda config: job_summary(config, want["job_name"]), comparable_job),
                lambda job: not job_differences(job, want), what=f"scrape job {want['job_name']}", expected=want)


@MONITORING
@pytest.mark.requirement("MON-PROM-JOB-PYNOMALY")
def check_pynomaly_scrape_job(judge, monitoring, inventory):
    """"job_name: 'pynomaly', targets: ['localhost:8000', 'localhost:8001', 'localhost:8002'],
    metrics_path: /metrics, scrape_interval: 15s" - one target per app instance (inventory
    audit_app_instances, 3 by default)."""
    want = {**judge.expected, "targets": app_targets(judge.expected["targets"],
                                                     inventory.setting("audit_app_instances"))}
    _scrape_job(judge, monitoring, want)


@MONITORING
@per_requirement(*EXPORTER_JOBS)
def check_exporter_scrape_job(judge, monitoring, req_id):
    """"job_name: 'postgres' ... ['localhost:9187']", "'redis' ... ['localhost:9121']",
    "'nginx' ... ['localhost:9113']"."""
    _scrape_job(judge, monitoring, judge.expected)


# ---------------------------------------------------------------- 2./3. rules, promtool, rule unit tests

@MONITORING
@pytest.mark.requirement("MON-RULES-VALID")
def check_rules_file_valid_and_loaded(judge, monitoring, prometheus):
    """"/etc/prometheus/pynomaly_rules.yml: groups: - name: pynomaly" with three rules:
    `promtool check rules` passes, and Prometheus has loaded the group with health ok."""
    want = judge.expected
    _promtool(judge, monitoring, "check_rules", f"promtool check rules {want['file']}")
    judge.sides(group_sides(monitoring.rules, prometheus.rules, want["group"]),
                lambda names: len(names) == want["rules"], what=f"rules of group {want['group']}",
                expected=f"{want['rules']} rules")
    group, problems = group_health(prometheus.rules, want["group"])
    found = {"file": group.get("file"), "rules": len(group.get("rules") or []), "problems": problems} if group else None
    judge.that(found == {"file": want["file"], "rules": want["rules"], "problems": []},
               what=f"rule group {want['group']} as loaded", found=found or problems, where="/api/v1/rules",
               expected={"file": want["file"], "rules": want["rules"], "problems": []})


@MONITORING
@per_requirement(*ALERTS)
def check_alert_rule(judge, monitoring, prometheus, req_id):
    """"- alert: HighErrorRate / HighResponseTime / DatabaseConnectionFailure" with the guide's expr,
    `for`, severity and annotations - in the file and as loaded (PromQL compared without layout) -
    and the shipped rule unit test passes: it fires on a breaching series once `for` has elapsed,
    and stays silent just below the threshold and just before `for` has elapsed."""
    want, group = judge.expected, judge.expected_of("MON-RULES-VALID")["group"]
    alert = want["alert"]
    judge.sides(rule_sides(monitoring.rules, prometheus.rules, group, alert),
                lambda rule: not rule_differences(rule, want), what=f"alert rule {alert}")
    _promtool(judge, monitoring, f"test {alert}", f"rule unit test checks/promtool/{ALERT_TESTS[alert]}")


# ---------------------------------------------------------------- 4. live: targets, alertmanager, alerts

@pytest.mark.requirement("MON-TARGETS-UP")
def check_every_target_is_up(judge, prometheus):
    """Every target of the jobs pynomaly, postgres, redis and nginx is up (the exporters run)."""
    jobs = judge.expected["jobs"]
    problems = target_problems(prometheus.targets, jobs)
    judge.that(not problems, what="active targets", where="/api/v1/targets", why="; ".join(problems),
               found=problems or [f"{t.job} {t.url} {t.health}" for t in prometheus.targets if t.job in jobs])


@pytest.mark.requirement("MON-ALERTMANAGER-DISCOVERED")
def check_alertmanager_discovered(judge, prometheus):
    """"alertmanagers: ... alertmanager:9093": Prometheus lists it among its active alertmanagers."""
    port = judge.expected["port"]
    judge.that(port in active_alertmanager_ports(prometheus.alertmanagers), what="active alertmanagers",
               found=[a.get("url") for a in prometheus.alertmanagers.get("activeAlertmanagers") or []],
               expected=f"one on port {port}", where="/api/v1/alertmanagers")


@pytest.mark.requirement("MON-NO-ALERTS-FIRING")
def check_no_alert_is_firing(judge, prometheus):
    """No alert of the group pynomaly is firing at audit time (the group must be loaded: a group
    that is not there cannot show that its alerts are silent)."""
    name = judge.expected["group"]
    group, _ = group_health(prometheus.rules, name)
    if group is None:
        judge.fail(f"rule group {name} is not loaded: none of its alerts can be shown silent")
    now = firing(prometheus.rules, name)
    judge.that(not now, what=f"alert rules of group {name}", expected="none firing", where="/api/v1/rules",
               found={r.get("name"): r.get("state") for r in group.get("rules") or []},
               why="; ".join(f"{a['alertname']} {a['labels']} since {a['activeAt']}" for a in now))


@pytest.mark.requirement("CHK-MONITORING-ALERTS-FUNCTIONAL")
def check_alerting_pipeline_is_healthy(judge, prometheus):
    """"Monitoring alerts functional": Alertmanager is ready, and every alert firing in Prometheus
    has reached it. (Prometheus' own counters of failed or dropped notifications are shown, with
    its start time, but not judged: they count since the start, so one lost notification long ago
    would keep the check red until a restart; the live delivery is what the guide asks.)"""
    prometheus.need("alertmanager")
    ready, how = prometheus.alertmanager_ready
    judge.that(ready, what="Alertmanager /-/ready", found=how, expected="HTTP 200")
    evidence.attach("alerting work lost since Prometheus started (not judged)",
                    {"since": prometheus.runtime.get("startTime"), **prometheus.counters}, kind="json")
    lost = sorted(set(prometheus.firing) - set(prometheus.delivered))
    judge.that(not lost, what="alerts firing in Prometheus that Alertmanager does not hold", allow_empty=True,
               found={"firing": list(prometheus.firing), "in Alertmanager": list(prometheus.delivered),
                      "missing": lost}, expected="every firing alert delivered", where="/api/v1/alerts, /api/v2/alerts")


# ---------------------------------------------------------------- 5. monitoring checklist from metrics

@pytest.mark.requirement("CHK-ERROR-RATE")
def check_error_rate_below_one_percent(judge, prometheus):
    """"Error rate < 1%": 5xx responses / all responses over the last 5 minutes (http_requests_total;
    the app is scraped every 15 s and gets health-check traffic, so the window is never empty in
    operation - an empty one is could-not-audit, not compliant)."""
    want = judge.expected
    total, errors = prometheus.measured("requests/s"), prometheus.window["5xx/s"] or 0.0
    percent = 100 * errors / total
    judge.that(percent < want["max_percent"], what=f"5xx share over {want['window']}",
               expected=f"< {want['max_percent']}%",
               found={"requests/s": round(total, 4), "5xx/s": round(errors, 4), "percent": round(percent, 3)})


@pytest.mark.requirement("CHK-RESPONSE-TIME-P95")
def check_p95_response_time_below_one_second(judge, prometheus):
    """"Response time < 1s (95th percentile)": histogram_quantile over all instances and handlers,
    last 5 minutes (http_request_duration_seconds)."""
    want = judge.expected
    p95 = prometheus.measured("p95")
    judge.that(p95 < want["max_seconds"], what=f"p{int(want['quantile'] * 100)} over {want['window']} (s)",
               found=round(p95, 4), expected=f"< {want['max_seconds']}", where=prometheus.queries["p95"])


# ---------------------------------------------------------------- 6. Grafana

def _dashboard(judge, monitoring) -> dict:
    monitoring.need("dashboard")
    if monitoring.dashboard is None:
        judge.fail(monitoring.dashboard_problem)
    return monitoring.dashboard


@MONITORING
@pytest.mark.requirement("MON-GRAFANA-DASHBOARD")
def check_grafana_dashboard(judge, monitoring):
    """"title": "Pynomaly Production Dashboard" with three panels (from Grafana's API when the
    inventory names audit_grafana, else the dashboard JSON on the monitoring host)."""
    board = _dashboard(judge, monitoring)
    judge.equal({"title": board.get("title"), "panels": len(panels_summary(board))}, what="dashboard",
                where=monitoring.dashboard_where)


@MONITORING
@pytest.mark.requirement("MON-GRAFANA-PANELS")
def check_grafana_panels(judge, monitoring):
    """"Request Rate" rate(http_requests_total[5m]), "Response Time" histogram_quantile(0.95, ...),
    "Error Rate" rate(http_requests_total{status=~"5.."}[5m]): graphs with the guide's legends."""
    panels = panels_summary(_dashboard(judge, monitoring))
    diffs = panel_differences(panels, judge.expected)
    judge.that(not diffs, what="dashboard panels", found=panels, where=monitoring.dashboard_where, why="; ".join(diffs))


# ---------------------------------------------------------------- 7. alerts functional (opt-in)

@pytest.mark.writes
@MONITORING
@pytest.mark.requirement("CHK-MONITORING-ALERTS-FUNCTIONAL")
def check_alert_reaches_alertmanager(judge, server, audit_session, prometheus):
    """"Monitoring alerts functional", end to end: stop the PostgreSQL exporter (its systemd unit, or
    its init script's process), see DatabaseConnectionFailure reach Alertmanager within its `for`
    plus a margin, in a state that notifies (not silenced, not inhibited), restore the exporter (in a
    finally) and wait until its target is up and the alert cleared. Bounded to `for` + 60 s + 90 s."""
    rule = rule_from_api(prometheus.rules, judge.expected_of("MON-RULES-VALID")["group"], ROUND_TRIP_ALERT)
    judge.that(rule is not None, what=f"rule {ROUND_TRIP_ALERT}", found=rule, expected="loaded")
    trip = alert_round_trip(audit_session, server, rule["for"], judge.expected_of("MON-PROM-JOB-POSTGRES")["job_name"])
    if trip.already:
        judge.fail(f"{ROUND_TRIP_ALERT} is already active in Alertmanager: cannot prove anything ({trip.already})")
    judge.that(bool(trip.seen) and not trip.suppressed,
               what=f"{ROUND_TRIP_ALERT} in Alertmanager after stopping the exporter",
               found={"seen after s": trip.waited_s, "alerts": trip.seen},
               expected=f"within {trip.deadline_s:.0f} s, active (neither silenced nor inhibited)")
