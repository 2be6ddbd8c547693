"""Scaling: the probe's parsing, and provision's rewrites of upstream, targets and replicas."""

from pathlib import Path

import pytest

from audit.judge import Judge
from audit.outcomes import NonCompliant
from audit.probes import scaling as s
from audit.probes.app import parse_compose
from audit.probes.nginx import parse_dump
from provision import scale

FILES = Path(__file__).resolve().parents[2] / "provision" / "files" / "web"
NGINX = (FILES / "nginx.conf").read_text()
COMPOSE = (FILES / "docker-compose.prod.yml").read_text()
PROMETHEUS = (FILES / "prometheus.yml").read_text()


def config(text):
    return parse_dump(f"# configuration file /etc/nginx/nginx.conf:\n{text}")


def replicas(text):
    return s.compose_replicas(parse_compose(text))


def test_reference_files_declare_three():
    assert replicas(COMPOSE) == 3
    assert s.upstream_servers(config(NGINX)) == ["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"]


def test_backup_and_down_servers_do_not_count():
    text = NGINX.replace("8002 max_fails=3 fail_timeout=30s;", "8002 max_fails=3 fail_timeout=30s down;")
    assert len(s.upstream_servers(config(text))) == 2
    assert s.upstream_servers(config("http { }")) == []


def test_compose_replicas_default_and_missing():
    assert replicas("services:\n  pynomaly-app:\n    image: x\n") == 1
    assert replicas("services: {}\n") is None
    assert replicas("") is None
    assert s.compose_replicas(None) is None


def test_disagreements_and_nothing_counted():
    judge = Judge(None, ["SCALE-INSTANCES-MATCH-UPSTREAM"], {"SCALE-INSTANCES-MATCH-UPSTREAM": 3}.get)
    judge.each({"a": 3, "b": 3}, lambda n: n == 3, what="instances")
    with pytest.raises(NonCompliant, match="'b': 2, 'c': None"):
        judge.each({"a": 3, "b": 2, "c": None}, lambda n: n == 3, what="instances")
    with pytest.raises(NonCompliant, match="none found"):
        judge.each({}, lambda n: n == 3, what="instances")


@pytest.mark.parametrize("count", [1, 3, 4, 6])
def test_scale_rewrites_round_trip(count):
    ports = tuple(8000 + i for i in range(count))
    nginx = scale.nginx_upstream(NGINX, ports)
    assert s.upstream_servers(config(nginx)) == [f"127.0.0.1:{p}" for p in ports]
    assert "least_conn;" in nginx
    assert nginx.count("max_fails=3 fail_timeout=30s;") == count
    assert scale.nginx_upstream(nginx, (8000, 8001, 8002)) == NGINX
    assert replicas(scale.compose_replicas(COMPOSE, count)) == count
    prom = scale.prometheus_targets(PROMETHEUS, ports)
    assert all(f"'localhost:{p}'" in prom for p in ports)
    assert scale.prometheus_targets(prom, (8000, 8001, 8002)) == PROMETHEUS


def test_scale_rewrites_refuse_unknown_files():
    with pytest.raises(Exception, match="upstream"):
        scale.nginx_upstream("http { }", (8000,))
    with pytest.raises(Exception, match="replicas"):
        scale.compose_replicas("services: {}", 2)
