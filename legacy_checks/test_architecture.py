"""Guide: Architecture Overview and Components - NGINX in front of several app instances, traffic
spread across them, a hot-standby PostgreSQL replica, Redis Cluster, the monitoring stack.

Reads: the public endpoint (HTTPS through the inventory's address override), the effective NGINX
configuration (shared `nginx` collect group), one `architecture` collect group per app host (each
instance's /health and request counters), PostgreSQL on the replica and Redis Cluster nodes
through SSH tunnels (read-only audit identities), Prometheus/Grafana health endpoints (tunnel).
The load-balancing check sends a few GET /docs through NGINX (3 per instance, read-only).
"""

from __future__ import annotations

import re

import pytest
import requests

from audit import http, nginx, services
from audit.evidence import attach, compare
from audit.prometheus import tunnel_url

UPSTREAM = "pynomaly_backend"
SPREAD_PATH = "/docs"  # proxied without rate limiting; nothing else requests it per instance
PER_INSTANCE = 3


def declared_ports(inventory, expected) -> list[int]:
    """The instances' ports: the guide's 8000, 8001, 8002, following `audit_app_instances`."""
    ports = list(expected("ARCH-MULTIPLE-APP-INSTANCES")["ports"])
    count = int(inventory.setting("audit_app_instances") or len(ports))
    return [ports[0] + i for i in range(count)]


# ---------------------------------------------------------------- parsing (unit-tested)

def requests_for(metrics: str, handler: str) -> float:
    """Sum of http_requests_total for `handler` in a Prometheus text exposition."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("http_requests_total{") and f'handler="{handler}"' in line:
            total += float(line.rsplit(None, 1)[1])
    return total


def proxied_locations(config: nginx.NginxConfig, upstream: str = UPSTREAM) -> list[str]:
    """Locations of the HTTPS server that proxy_pass to the upstream."""
    srv = config.server_listening(443)
    if srv is None:
        return []
    return [" ".join(loc.args) for loc in srv.find("location")
            if any(p.args and p.args[0] in (f"http://{upstream}", f"https://{upstream}")
                   for p in loc.find("proxy_pass"))]


def cluster_enabled(info: dict) -> int | None:
    value = info.get("cluster_enabled")
    return int(value) if value is not None else None


# ---------------------------------------------------------------- NGINX in front

@pytest.mark.roles("web")
@pytest.mark.requirement("ARCH-NGINX-FRONT")
def test_nginx_fronts_the_app(server, inventory, expected):
    """"Load Balancer (NGINX) -> Application Servers": public HTTPS is answered by NGINX, whose
    locations proxy to upstream pynomaly_backend."""
    want = expected("ARCH-NGINX-FRONT")
    config = nginx.effective_config(server)
    has_upstream = config.upstream(want["upstream"]) is not None
    proxied = proxied_locations(config, want["upstream"])
    session = http.public_session(inventory.setting("audit_resolve"), inventory.setting("audit_ca_bundle"))
    url = inventory.setting("audit_public_url").rstrip("/") + "/health"
    resp = session.get(url, allow_redirects=False)
    seen = {"url": url, "status": resp.status_code, "server": resp.headers.get("Server"),
            "upstream defined": has_upstream, "locations proxied to it": proxied}
    compare("front end", seen, want)
    assert (resp.headers.get("Server") or "").lower().startswith(want["proxy"]), (
        f"{url} is answered by {resp.headers.get('Server')!r}, not {want['proxy']}")
    assert resp.status_code == 200, f"{url} answered {resp.status_code} through {want['proxy']}"
    assert has_upstream, f"{server.name}: no upstream {want['upstream']}"
    assert "/" in proxied or "/health" in proxied, (
        f"{server.name}: the HTTPS server does not proxy to {want['upstream']} (proxied: {proxied})")


# ---------------------------------------------------------------- several instances, all serving

def _architecture(server, ports: list[int]) -> dict[str, str]:
    commands = {}
    for port in ports:
        commands[f"health_{port}"] = (f"curl -sS -o /dev/null -w '%{{http_code}}\\n' --max-time 5 "
                                      f"http://127.0.0.1:{port}/health")
    return server.collect("architecture", commands)


def _counters(server, ports: list[int]) -> dict[int, float]:
    cmd = "; ".join(f"echo '#port {p}'; curl -fsS --max-time 5 http://127.0.0.1:{p}/metrics" for p in ports)
    out, current, counts = server.run(cmd, timeout=30).stdout, None, {}
    for chunk in re.split(r"^#port (\d+)$", out, flags=re.M)[1:]:
        if current is None:
            current = int(chunk)
            continue
        counts[current], current = requests_for(chunk, SPREAD_PATH), None
    return counts


@pytest.mark.roles("app")
@pytest.mark.requirement("ARCH-MULTIPLE-APP-INSTANCES")
def test_several_app_instances_answer(server, inventory, expected):
    """"Application Servers: Multiple Pynomaly instances for high availability" - each declared
    instance answers GET /health with 200 on its own port."""
    want = expected("ARCH-MULTIPLE-APP-INSTANCES")
    ports = declared_ports(inventory, expected)
    seen = _architecture(server, ports)
    codes = {port: seen[f"health_{port}"].strip() for port in ports}
    compare("GET /health per instance", codes, {p: "200" for p in ports})
    healthy = [p for p, code in codes.items() if code == "200"]
    assert len(ports) >= want["min_instances"], f"only {len(ports)} app instance(s) declared"
    assert healthy == ports, f"{server.name}: instances not answering 200: {[p for p in ports if p not in healthy]}"


@pytest.mark.roles("web")
@pytest.mark.requirement("ARCH-LOAD-BALANCING")
def test_traffic_reaches_every_instance(server, inventory, expected, audit_context):
    """"Load Balancer (NGINX)" distributes requests: GET /docs through NGINX, 3 per instance;
    every instance's own request counter for /docs grows."""
    ports = declared_ports(inventory, expected)
    app_hosts = inventory.hosts_with_role("app")
    if not app_hosts:
        pytest.skip("no app host in the inventory")
    app = audit_context.server(app_hosts[0].name)
    before = _counters(app, ports)
    session = http.public_session(inventory.setting("audit_resolve"), inventory.setting("audit_ca_bundle"))
    url = inventory.setting("audit_public_url").rstrip("/") + SPREAD_PATH
    statuses = []
    for _ in range(PER_INSTANCE * len(ports)):
        try:
            statuses.append(session.get(url, allow_redirects=False).status_code)
        except requests.RequestException as exc:
            statuses.append(type(exc).__name__)
    after = _counters(app, ports)
    served = {p: after.get(p, 0) - before.get(p, 0) for p in ports}
    compare(f"GET {SPREAD_PATH} served per instance", {"statuses": statuses, "served": served},
            "every instance > 0")
    idle = [p for p, n in served.items() if n <= 0]
    assert not idle, f"{server.name}: NGINX sent none of {len(statuses)} requests to instance(s) {idle} ({served})"


# ---------------------------------------------------------------- database replica

@pytest.mark.roles("db_replica")
@pytest.mark.requirement("ARCH-DB-READ-REPLICA")
def test_replica_serves_read_only_queries(server, inventory, expected):
    """"Database: PostgreSQL with read replicas" - hot_standby on, and pynomaly_prod answers
    read-only queries on the replica."""
    import psycopg

    want = expected("ARCH-DB-READ-REPLICA")
    try:
        conn = services.postgres(server, inventory, want["database"])
    except services.HostUnreachable as exc:
        if re.search(r"hot standby mode is disabled|not accepting connections|not yet accepting", str(exc), re.I):
            pytest.fail(f"{server.name}: the replica does not serve read-only queries: {exc}")
        raise
    try:
        rows = services.query(conn, "SELECT current_setting('hot_standby') AS hot_standby, "
                                    "pg_is_in_recovery() AS in_recovery, (SELECT count(*) FROM users) AS users")
    except psycopg.OperationalError:
        services.forget_postgres(server, want["database"])
        raise
    compare("replica", rows[0], want)
    assert rows[0]["hot_standby"] == want["hot_standby"], f"{server.name}: hot_standby = {rows[0]['hot_standby']}"


# ---------------------------------------------------------------- Redis Cluster

@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("ARCH-REDIS-CLUSTER")
def test_redis_runs_as_cluster(server, inventory, expected):
    """"Cache: Redis cluster for session and data caching" - cluster_enabled:1 on every node."""
    ports = (server.host_vars.vars.get("audit_settings") or {}).get("redis_cluster_ports") or [7000, 7001]
    seen = {port: cluster_enabled(services.redis(server, inventory, port).info("cluster")) for port in ports}
    want = expected("ARCH-REDIS-CLUSTER")["cluster_enabled"]
    compare("cluster_enabled per node", seen, want)
    bad = {p: v for p, v in seen.items() if v != want}
    assert not bad, f"{server.name}: cluster mode is not enabled on {bad}"


# ---------------------------------------------------------------- monitoring stack

def _healthy(inventory, audit_context, setting: str, path: str) -> dict:
    endpoint = inventory.setting(setting)
    if not endpoint:
        return {"configured": False}
    url, via = endpoint["url"], endpoint.get("via")
    if via:
        url = tunnel_url(url, audit_context.server(via).forward)
    try:
        resp = requests.get(url.rstrip("/") + path, timeout=(5, 10))
        return {"configured": True, "status": resp.status_code, "body": resp.text[:200]}
    except requests.RequestException as exc:
        return {"configured": True, "status": None, "body": f"{type(exc).__name__}: {exc}"}


@pytest.mark.roles("monitoring")
@pytest.mark.requirement("ARCH-MONITORING-STACK")
def test_prometheus_is_healthy(server, inventory, audit_context):
    """"Monitoring: Prometheus, Grafana, ELK stack" - Prometheus answers /-/healthy."""
    seen = _healthy(inventory, audit_context, "audit_prometheus", "/-/healthy")
    attach("Prometheus /-/healthy", seen, kind="json")
    assert seen["configured"], "the inventory names no Prometheus (audit_prometheus)"
    assert seen["status"] == 200, f"Prometheus is not healthy: {seen}"


@pytest.mark.roles("monitoring")
@pytest.mark.requirement("ARCH-MONITORING-GRAFANA")
def test_grafana_is_healthy(server, inventory, audit_context):
    """"Monitoring: Prometheus, Grafana, ELK stack" - Grafana answers /api/health."""
    seen = _healthy(inventory, audit_context, "audit_grafana", "/api/health")
    attach("Grafana /api/health", seen, kind="json")
    assert seen["configured"], "the inventory names no Grafana (audit_grafana)"
    assert seen["status"] == 200, f"Grafana is not healthy: {seen}"
