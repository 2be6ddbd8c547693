"""Architecture checks' parsing (audit/probes/architecture.py): request counters, proxied
locations (on the NGINX area's parser), cluster mode from a node's answer, declared ports."""

from pathlib import Path
from types import SimpleNamespace

from audit.probes.architecture import (
    HOT_STANDBY_OFF,
    cluster_enabled,
    declared_ports,
    proxied_locations,
    requests_for,
)
from audit.probes.nginx import parse_dump

NGINX = (Path(__file__).resolve().parents[2] / "provision" / "files" / "web" / "nginx.conf").read_text()
METRICS = """# HELP http_requests_total Total
http_requests_total{handler="/health",method="GET",status="200"} 73.0
http_requests_total{handler="/docs",method="GET",status="200"} 4.0
http_requests_total{handler="/docs",method="GET",status="304"} 2.0
http_requests_total{handler="/docs/x",method="GET",status="200"} 9.0
"""


def config(text):
    return parse_dump(f"# configuration file /etc/nginx/nginx.conf:\n{text}")


def test_requests_for():
    assert requests_for(METRICS, "/docs") == 6.0
    assert requests_for(METRICS, "/nothing") == 0.0
    assert requests_for("", "/docs") == 0.0  # an instance whose /metrics did not answer served nothing


def test_proxied_locations():
    found = proxied_locations(config(NGINX), "pynomaly_backend")
    assert "/health" in found
    assert "/api/" in found
    bypass = NGINX.replace("proxy_pass http://pynomaly_backend;", "proxy_pass http://127.0.0.1:8000;")
    assert proxied_locations(config(bypass), "pynomaly_backend") == []
    assert proxied_locations(config("events {}\nhttp {}\n"), "pynomaly_backend") == []  # no HTTPS server


def test_cluster_enabled():
    assert cluster_enabled({"cluster_state": "ok", "cluster_slots_assigned": "16384"}, None) == 1
    assert cluster_enabled({"cluster_state": "fail"}, None) == 1  # a failing cluster is still cluster mode
    assert cluster_enabled({}, "ResponseError: This instance has cluster support disabled") == 0
    assert cluster_enabled({}, "Redis refuses connections (is it running?)") is None  # could not audit
    assert cluster_enabled({}, None) is None


def test_declared_ports_follow_the_inventory():
    def session(instances):
        return SimpleNamespace(expected=lambda req: {"min_instances": 2, "ports": [8000, 8001, 8002]},
                               inventory=SimpleNamespace(setting=lambda key: instances))

    assert declared_ports(session(None)) == (8000, 8001, 8002)
    assert declared_ports(session(4)) == (8000, 8001, 8002, 8003)


def test_a_replica_that_is_no_hot_standby_refuses_in_these_words():
    refused = ('connection failed: connection to server at "127.0.0.1", port 41703 failed: FATAL:  the database '
               "system is not accepting connections DETAIL:  Hot standby mode is disabled.")
    assert HOT_STANDBY_OFF.search(refused)
    assert not HOT_STANDBY_OFF.search("PostgreSQL refuses connections (is it running and listening?)")
