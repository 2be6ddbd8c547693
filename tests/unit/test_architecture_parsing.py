"""Architecture checks' parsing: request counters, proxied locations, cluster info."""

from pathlib import Path

from audit.nginx import parse_dump
from checks import test_architecture as a

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
    assert a.requests_for(METRICS, "/docs") == 6.0
    assert a.requests_for(METRICS, "/nothing") == 0.0


def test_proxied_locations():
    found = a.proxied_locations(config(NGINX))
    assert "/health" in found
    assert "/api/" in found
    bypass = NGINX.replace("proxy_pass http://pynomaly_backend;", "proxy_pass http://127.0.0.1:8000;")
    assert a.proxied_locations(config(bypass)) == []


def test_cluster_enabled():
    assert a.cluster_enabled({"cluster_enabled": 1}) == 1
    assert a.cluster_enabled({"cluster_enabled": "0"}) == 0
    assert a.cluster_enabled({}) is None
