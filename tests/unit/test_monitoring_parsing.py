"""audit/prometheus.py on captured outputs of the reference deployment (web1, Prometheus 2.42),
in both directions: the guide's values pass, drifted ones are named."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from audit import prometheus as prom
from audit.catalogue import load_catalogue

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
    assert prom.promtool_result(PROMTOOL_OK)[0] == 0
    code, out = prom.promtool_result(PROMTOOL_FAILED)
    assert code == 1
    assert "FAILED" in out
    with pytest.raises(ValueError):
        prom.promtool_result("no code")


def test_shipped_rule_tests_point_at_the_audited_file():
    for path in (ROOT / "checks" / "promtool").glob("*_test.yml"):
        doc = yaml.safe_load(prom.with_rule_files(path.read_text(), "/etc/prometheus/pynomaly_rules.yml"))
        assert doc["rule_files"] == ["/etc/prometheus/pynomaly_rules.yml"], path
        assert doc["tests"], path


def test_targets_and_alertmanagers():
    up = {"activeTargets": [{"labels": {"job": j}, "health": "up", "scrapeUrl": f"http://x/{j}"}
                            for j in ("pynomaly", "postgres", "redis", "nginx")]}
    assert prom.target_problems(up, ["pynomaly", "postgres", "redis", "nginx"]) == []
    up["activeTargets"][2].update(health="down", lastError="connection refused")
    problems = prom.target_problems(up, ["pynomaly", "postgres", "redis", "nginx", "extra"])
    assert problems == ["job redis: http://x/redis is down (connection refused)", "job extra: no active target"]
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


def test_tunnel_url_keeps_the_path():
    assert prom.tunnel_url("http://127.0.0.1:9090/prom", lambda port, host: ("127.0.0.1", 40000 + port % 1000)) == \
        "http://127.0.0.1:40090/prom"


def test_dashboard_panels_both_ways():
    board = prom.dashboard_of(prom.load_json((FILES / "pynomaly.json").read_text(), "dashboard"))
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
    with pytest.raises(AssertionError):
        prom.load_json("{not json", "dashboard")
