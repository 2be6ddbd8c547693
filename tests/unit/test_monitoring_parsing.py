"""audit/probes/monitoring.py on captured outputs of the reference deployment (web1, Prometheus
2.42), in both directions: the guide's values pass, drifted ones are named, and nothing read is
never a pass."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from audit.catalogue import load_catalogue
from audit.outcomes import CouldNotAudit
from audit.probes import monitoring as prom

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "provision" / "files" / "web"
CAT = load_catalogue()


def exp(req_id):
    return CAT[req_id].expected


@pytest.fixture
def config():
    return yaml.safe_load((FILES / "prometheus.yml").read_text())


@pytest.fixture
def rules_doc():
    return yaml.safe_load((FILES / "pynomaly_rules.yml").read_text())


# captured: curl -s localhost:9090/api/v1/rules (data), web1
API_RULES = {"groups": [{"name": "pynomaly", "file": "/etc/prometheus/pynomaly_rules.yml", "interval": 15, "rules": [
    {"state": "inactive", "name": "HighErrorRate", "query": "rate(http_requests_total{status=~\"5..\"}[5m]) > 0.1",
     "duration": 300, "labels": {"severity": "critical"},
     "annotations": {"description": "Error rate is {{ $value }} requests/second",
                     "summary": "High error rate detected"}, "alerts": [], "health": "ok", "type": "alerting"},
    {"state": "inactive", "name": "HighResponseTime",
     "query": "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m])) > 1", "duration": 300,
     "labels": {"severity": "warning"},
     "annotations": {"description": "95th percentile response time is {{ $value }} seconds",
                     "summary": "High response time detected"}, "alerts": [], "health": "ok", "type": "alerting"},
    {"state": "inactive", "name": "DatabaseConnectionFailure", "query": "up{job=\"postgres\"} == 0", "duration": 60,
     "labels": {"severity": "critical"},
     "annotations": {"description": "PostgreSQL database is not reachable", "summary": "Database connection failed"},
     "alerts": [], "health": "ok", "type": "alerting"}]}]}

PROMTOOL_OK = "Unit Testing:  /dev/stdin\n  SUCCESS\n\nrc=0"
PROMTOOL_FAILED = """Unit Testing:  /dev/stdin
  FAILED:
    alertname: DatabaseConnectionFailure, time: 2m,
        exp:[],
        got:[ ... ]
rc=1"""

SELF_METRICS = """# HELP prometheus_notifications_dropped_total Total number of alerts dropped.
# TYPE prometheus_notifications_dropped_total counter
prometheus_notifications_dropped_total 0
prometheus_notifications_errors_total{alertmanager="http://alertmanager:9093/api/v2/alerts"} 0
prometheus_notifications_sent_total{alertmanager="http://alertmanager:9093/api/v2/alerts"} 4
prometheus_rule_evaluation_failures_total{rule_group="/etc/prometheus/pynomaly_rules.yml;pynomaly"} 0
"""


def test_durations():
    assert prom.seconds("15s") == 15
    assert prom.seconds("5m") == 300
    assert prom.seconds("1h30m") == 5400
    assert prom.seconds(60) == 60
    assert prom.seconds(None) is None
    with pytest.raises(ValueError):
        prom.seconds("5 minutes")


def test_promql_layout_does_not_matter_but_content_does():
    guide = 'rate(http_requests_total{status=~"5.."}[5m]) > 0.1'
    spaced = 'rate( http_requests_total{ status =~ "5.." } [5m] )>0.1'
    assert prom.normalise_promql(spaced) == prom.normalise_promql(guide)
    assert prom.normalise_promql('rate(http_requests_total{status=~"5.."}[1m]) > 0.1') != prom.normalise_promql(guide)
    # whitespace inside a string literal is content
    assert prom.normalise_promql('up{job="a b"}') != prom.normalise_promql('up{job="ab"}')


def test_global_and_jobs_of_the_guide_config_pass(config):
    assert prom.seconds(config["global"]["scrape_interval"]) == 15
    for req in ("MON-PROM-JOB-PYNOMALY", "MON-PROM-JOB-POSTGRES", "MON-PROM-JOB-REDIS", "MON-PROM-JOB-NGINX"):
        want = exp(req)
        assert prom.job_differences(prom.job_summary(config, want["job_name"]), want) == [], req
    assert prom.missing_rule_files(config, exp("MON-PROM-RULE-FILES")) == []
    assert prom.alertmanager_targets(config) == exp("MON-PROM-ALERTMANAGER")["targets"]


def test_drifted_jobs_are_named(config):
    config["scrape_configs"][0]["static_configs"][0]["targets"].remove("localhost:8002")
    config["scrape_configs"][2]["static_configs"][0]["targets"] = ["localhost:9122"]
    config["scrape_configs"][0]["scrape_interval"] = "30s"
    pyn = prom.job_differences(prom.job_summary(config, "pynomaly"), exp("MON-PROM-JOB-PYNOMALY"))
    assert any(d.startswith("targets") for d in pyn)
    assert any(d.startswith("scrape_interval") for d in pyn)
    assert prom.job_differences(prom.job_summary(config, "redis"), exp("MON-PROM-JOB-REDIS"))
    assert prom.job_differences(None, {"job_name": "x"}) == ["no scrape job 'x'"]
    config["rule_files"] = ["other.yml"]
    assert prom.missing_rule_files(config, ["pynomaly_rules.yml"]) == ["pynomaly_rules.yml"]
    assert prom.missing_rule_files({"rule_files": ["/etc/prometheus/pynomaly_rules.yml"]}, ["pynomaly_rules.yml"]) == []


def test_job_defaults_come_from_global():
    cfg = {"global": {"scrape_interval": "15s"}, "scrape_configs": [{"job_name": "j"}]}
    assert prom.job_summary(cfg, "j") == {"job_name": "j", "targets": [], "metrics_path": "/metrics",
                                          "scrape_interval": "15s"}


def test_app_targets_follow_the_instance_count():
    guide = ["localhost:8000", "localhost:8001", "localhost:8002"]
    assert prom.app_targets(guide, None) == guide
    assert prom.app_targets(guide, 3) == guide
    assert prom.app_targets(guide, 4)[-1] == "localhost:8003"


@pytest.mark.parametrize("req", ["MON-ALERT-HIGH-ERROR-RATE", "MON-ALERT-HIGH-RESPONSE-TIME",
                                 "MON-ALERT-DATABASE-CONNECTION-FAILURE"])
def test_guide_rules_match_in_file_and_api(rules_doc, req):
    want = exp(req)
    assert prom.rule_differences(prom.rule_from_file(rules_doc, "pynomaly", want["alert"]), want) == []
    assert prom.rule_differences(prom.rule_from_api(API_RULES, "pynomaly", want["alert"]), want) == []


def test_drifted_rules_are_named(rules_doc):
    rule = rules_doc["groups"][0]["rules"][0]
    rule["for"] = "1m"
    rule["labels"]["severity"] = "warning"
    diffs = prom.rule_differences(prom.rule_from_file(rules_doc, "pynomaly", "HighErrorRate"),
                                  exp("MON-ALERT-HIGH-ERROR-RATE"))
    assert [d.split()[0] for d in diffs] == ["for", "severity"]
    rules_doc["groups"][0]["rules"][2]["expr"] = 'up{job="postgresql"} == 0'
    diffs = prom.rule_differences(prom.rule_from_file(rules_doc, "pynomaly", "DatabaseConnectionFailure"),
                                  exp("MON-ALERT-DATABASE-CONNECTION-FAILURE"))
    assert diffs
    assert diffs[0].startswith("expr")
    assert prom.rule_differences(None, {"alert": "X"}) == ["no alerting rule 'X'"]


def test_group_health_and_firing():
    group, problems = prom.group_health(API_RULES, "pynomaly")
    assert group
    assert problems == []
    assert prom.firing(API_RULES, "pynomaly") == []
    bad = yaml.safe_load(yaml.safe_dump(API_RULES))
    bad["groups"][0]["rules"][0].update(health="err", lastError="bad")
    bad["groups"][0]["rules"][2]["alerts"] = [{"state": "firing", "labels": {"job": "postgres"},
                                               "activeAt": "2026-11-26T05:00:00Z", "value": "0e+00"}]
    assert prom.group_health(bad, "pynomaly")[1] == ["HighErrorRate: health err (bad)"]
    assert [a["alertname"] for a in prom.firing(bad, "pynomaly")] == ["DatabaseConnectionFailure"]
    assert prom.group_health(API_RULES, "other") == (None, ["rule group 'other' is not loaded"])


def test_promtool_results():
    assert prom.promtool_result(PROMTOOL_OK).code == 0
    result = prom.promtool_result(PROMTOOL_FAILED)
    assert result.code == 1
    assert "FAILED" in result.output
    assert prom.promtool_result("no code").code is None


@pytest.mark.parametrize("output", ["sh: 1: promtool: not found\nrc=127", "", "no code"])
def test_promtool_that_cannot_run_is_could_not_audit(output):
    facts = prom.MonitoringFacts(host="web1", promtool={"check_config": prom.promtool_result(output)})
    with pytest.raises(CouldNotAudit, match="web1: promtool: not installed or not runnable"):
        facts.verdict("check_config")
    assert prom.MonitoringFacts(promtool={"check_config": prom.promtool_result(PROMTOOL_FAILED)}).verdict(
        "check_config").code == 1


def test_shipped_rule_tests_point_at_the_audited_file():
    for path in (ROOT / "checks" / "promtool").glob("*_test.yml"):
        doc = yaml.safe_load(prom.with_rule_files(path.read_text(), "/etc/prometheus/pynomaly_rules.yml"))
        assert doc["rule_files"] == ["/etc/prometheus/pynomaly_rules.yml"], path
        assert doc["tests"], path


def test_targets_and_alertmanagers():
    up = {"activeTargets": [{"labels": {"job": j}, "health": "up", "scrapeUrl": f"http://x/{j}"}
                            for j in ("pynomaly", "postgres", "redis", "nginx")]}
    jobs = ["pynomaly", "postgres", "redis", "nginx"]
    assert prom.target_problems(prom.parse_targets(up), jobs) == []
    up["activeTargets"][2].update(health="down", lastError="connection refused")
    problems = prom.target_problems(prom.parse_targets(up), [*jobs, "extra"])
    assert problems == ["job redis: http://x/redis is down (connection refused)", "job extra: no active target"]
    # no target at all is not "every target up"
    assert prom.target_problems(prom.parse_targets({}), jobs) == [f"job {j}: no active target" for j in jobs]
    data = {"activeAlertmanagers": [{"url": "http://alertmanager:9093/api/v2/alerts"}]}
    assert prom.active_alertmanager_ports(data) == [9093]
    assert prom.active_alertmanager_ports({"activeAlertmanagers": []}) == []


def test_query_values_and_self_metrics():
    assert prom.scalar({"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.408"]}]}) == 0.408
    assert prom.scalar({"resultType": "vector", "result": []}) is None
    assert math.isnan(prom.scalar({"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}))
    assert not prom.defined(float("nan"))
    assert not prom.defined(None)
    assert prom.defined(0.0)
    sums = prom.metric_sums(SELF_METRICS, ("prometheus_notifications_dropped_total",
                                           "prometheus_notifications_sent_total", "absent_total"))
    assert sums == {"prometheus_notifications_dropped_total": 0.0, "prometheus_notifications_sent_total": 4.0,
                    "absent_total": None}


def test_dashboard_panels_both_ways():
    board = prom.dashboard_of(prom.parse_document((FILES / "pynomaly.json").read_text(), "dashboard", json.loads)[0])
    assert board["title"] == exp("MON-GRAFANA-DASHBOARD")["title"]
    panels = prom.panels_summary(board)
    assert len(panels) == 3
    assert prom.panel_differences(panels, exp("MON-GRAFANA-PANELS")) == []
    panels[2]["expr"] = 'rate(http_requests_total{status=~"5.."}[1m])'
    panels[0]["legendFormat"] = "{{method}}"
    diffs = prom.panel_differences(panels, exp("MON-GRAFANA-PANELS"))
    assert len(diffs) == 2
    assert "Error Rate" in diffs[1]
    assert "no panel 'Response Time'" in prom.panel_differences(panels[:1], exp("MON-GRAFANA-PANELS"))
    # panels inside a row count, and a Grafana API answer is unwrapped
    rowed = {"dashboard": {"panels": [{"type": "row", "panels": board["panels"]}]}}
    assert len(prom.panels_summary(prom.dashboard_of(rowed))) == 3
    assert prom.parse_document("{not json", "dashboard", json.loads)[1].startswith("dashboard is not valid JSON")


def test_no_firing_alert_needs_a_loaded_group():
    """MON-NO-ALERTS-FIRING: a group that is not loaded has no firing alert, and no evidence either:
    the check needs the group (group_health) before it judges `firing`."""
    assert prom.firing({"groups": []}, "pynomaly") == []
    assert prom.group_health({"groups": []}, "pynomaly")[0] is None
    assert prom.group_health({}, "pynomaly")[0] is None


CONFIG_TEXT = (FILES / "prometheus.yml").read_text()
RUNNING = {"global": {"scrape_interval": "15s", "scrape_timeout": "10s", "evaluation_interval": "15s"},
           "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]}}


def facts(text=CONFIG_TEXT, running=RUNNING):
    config, problem = prom.parse_document(text, "/etc/prometheus/prometheus.yml")
    return prom.MonitoringFacts(host="web1", config=config, config_problem=problem, running_config=running)


@pytest.mark.parametrize(("req", "key"), [("MON-PROM-GLOBAL-INTERVALS", "global"),
                                          ("MON-PROM-ALERTMANAGER", "alertmanagers")])
def test_value_rows_running_and_on_disk(req, key):
    want = facts().norm(key, exp(req))
    sides = facts().sides(key)
    assert set(sides) == {"running", "on disk"}
    assert all(r.value == want for r in sides.values())
    drifted = facts(CONFIG_TEXT.replace("evaluation_interval: 15s", "evaluation_interval: 30s")
                    .replace("alertmanager:9093", "alertmanager:9094")).sides(key)
    assert drifted["on disk"].value != want
    assert drifted["running"].value == want  # not reloaded yet: only the file differs
    # without the API, the file alone; a missing file is nothing found (never a pass)
    assert set(facts(running=None).sides(key)) == {"on disk"}
    missing = facts(text="").sides(key)["on disk"]
    assert missing.value is None
    assert "missing or empty" in missing.shown


def test_intervals_default_to_one_minute_and_bad_durations_compare_unequal():
    assert prom.global_intervals({"global": {}}) == {"scrape_interval": "1m", "evaluation_interval": "1m"}
    assert prom.global_intervals(None) is None
    f = facts()
    assert f.norm("global", {"scrape_interval": "fast", "evaluation_interval": "15s"}) != f.norm(
        "global", exp("MON-PROM-GLOBAL-INTERVALS"))
    assert prom.job_differences({"job_name": "j", "scrape_interval": "fast"},
                                {"job_name": "j", "scrape_interval": "15s"})


def test_documents_that_are_missing_empty_or_not_mappings():
    assert prom.parse_document("", "x") == (None, "x is missing or empty")
    assert prom.parse_document("# only a comment\n", "x") == (None, "x is not a mapping")
    assert prom.parse_document("[1, 2]", "x") == (None, "x is not a mapping")
    assert prom.parse_document("a: [", "x")[1].startswith("x is not valid YAML")


def test_window_values_without_data_are_could_not_audit():
    queries = prom.window_queries(exp("CHK-ERROR-RATE"), exp("CHK-RESPONSE-TIME-P95"))
    assert queries["p95"].startswith("histogram_quantile(0.95, sum by (le)")
    seen = prom.PrometheusFacts(window={"requests/s": 2.0, "5xx/s": None, "p95": float("nan")}, queries=queries)
    assert seen.measured("requests/s") == 2.0
    with pytest.raises(CouldNotAudit, match="no data for `histogram_quantile"):
        seen.measured("p95")
    with pytest.raises(CouldNotAudit, match="Alertmanager down"):
        prom.PrometheusFacts(unavailable={"alertmanager": ("the alertmanager API", "Alertmanager down")}).need(
            "alertmanager")


# ---------------------------------------------------------------- loaded (running) vs the files (issue 19)

def test_rules_as_loaded_and_in_the_file_agree_and_a_file_not_reloaded_differs(rules_doc):
    from audit.judge import ON_DISK, RUNNING

    sides = prom.rule_sides(rules_doc, API_RULES, "pynomaly", "HighErrorRate")
    assert sides[RUNNING].value == sides[ON_DISK].value  # layout of the PromQL does not matter
    assert prom.group_sides(rules_doc, API_RULES, "pynomaly")[RUNNING].value == \
        ["DatabaseConnectionFailure", "HighErrorRate", "HighResponseTime"]
    rules_doc["groups"][0]["rules"][0]["for"] = "1m"  # edited, not reloaded
    sides = prom.rule_sides(rules_doc, API_RULES, "pynomaly", "HighErrorRate")
    assert sides[RUNNING].value != sides[ON_DISK].value
    assert prom.rule_differences(sides[ON_DISK].value, exp("MON-ALERT-HIGH-ERROR-RATE")) != []
    assert list(prom.rule_sides(rules_doc, {}, "pynomaly", "HighErrorRate")) == [ON_DISK]  # no API: file only


def test_config_sides_resolve_rule_files_and_compare_jobs_in_seconds(config):
    from audit.judge import ON_DISK, RUNNING

    loaded = json.loads(json.dumps(config))
    loaded["rule_files"] = ["/etc/prometheus/pynomaly_rules.yml"]  # Prometheus resolves them
    for job in loaded["scrape_configs"]:
        job["scrape_interval"] = "15s"
    facts = prom.MonitoringFacts(host="web1", config=config, running_config=loaded)
    files = facts.config_sides(prom.rule_file_paths)
    assert files[RUNNING].value == files[ON_DISK].value == ["/etc/prometheus/pynomaly_rules.yml"]
    job = facts.config_sides(lambda c: prom.job_summary(c, "nginx"), prom.comparable_job)
    assert job[RUNNING].value == job[ON_DISK].value
    loaded["scrape_configs"][-1]["scrape_interval"] = "1m"  # changed live, the file still says 15s
    job = facts.config_sides(lambda c: prom.job_summary(c, loaded["scrape_configs"][-1]["job_name"]),
                             prom.comparable_job)
    assert job[RUNNING].value["scrape_interval"] == 60
    assert job[RUNNING].value != job[ON_DISK].value
    broken = prom.MonitoringFacts(host="web1", config=None, config_problem="prometheus.yml is missing or empty")
    assert broken.config_sides(prom.rule_file_paths)[ON_DISK].shown == "prometheus.yml is missing or empty"
    assert broken.config_sides(prom.rule_file_paths)[ON_DISK].value is None
