"""Architecture Overview and Components: NGINX in front of several app instances, traffic spread
across them, a hot-standby PostgreSQL replica, Redis Cluster, the monitoring stack.

Reused from other areas: the effective NGINX configuration (`nginx`, audit/probes/nginx.py) and
every Redis Cluster node's view (`redis_cluster`, audit/probes/redis.py). Read here, small and on
their own (the app and monitoring areas' probes judge other things): each app instance's /health
and request counters (curl on the app host, one round trip), /health through the public endpoint,
the replica's answer to a read-only query (the audit role), Prometheus' and Grafana's health
endpoints (the inventory's tunnelled APIs). `arch_spread` sends a few GET /docs through NGINX
(3 per instance, read-only) between two readings of the instances' counters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from audit.facts import probe
from audit.outcomes import CouldNotAudit

SPREAD_PATH = "/docs"  # proxied without rate limiting; nothing else requests it per instance
PER_INSTANCE = 3
ROUNDS = 4  # at most 4 x 3 requests per instance
HOT_STANDBY_OFF = re.compile(r"hot standby mode is disabled|not accepting connections|not yet accepting", re.I)
CLUSTER_DISABLED = "cluster support disabled"


# ---------------------------------------------------------------- parsing (unit-tested)

def requests_for(metrics: str, handler: str) -> float:
    """Sum of http_requests_total for `handler` in a Prometheus text exposition."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("http_requests_total{") and f'handler="{handler}"' in line:
            total += float(line.rsplit(None, 1)[1])
    return total


def proxied_locations(config, upstream: str) -> list[str]:
    """Locations of the HTTPS server (an NginxConfig) that proxy_pass to the upstream."""
    srv = config.server_listening(443)
    if srv is None:
        return []
    targets = (f"http://{upstream}", f"https://{upstream}")
    return [" ".join(loc.args) for loc in srv.find("location")
            if any(p.args and p.args[0] in targets for p in loc.find("proxy_pass"))]


def cluster_enabled(info: dict, error: str | None) -> int | None:
    """cluster_enabled of a node from CLUSTER INFO (it answers only in cluster mode) or its refusal
    ("This instance has cluster support disabled"); None when the node said neither."""
    if info.get("cluster_state"):
        return 1
    return 0 if error and CLUSTER_DISABLED in error else None


def declared_ports(session) -> tuple[int, ...]:
    """The instances' ports: the guide's 8000, 8001, 8002, following `audit_app_instances`."""
    ports = list(session.expected("ARCH-MULTIPLE-APP-INSTANCES")["ports"])
    count = int(session.inventory.setting("audit_app_instances") or len(ports))
    return tuple(ports[0] + i for i in range(count))


# ---------------------------------------------------------------- the app instances

def _curl(port: int, path: str) -> str:
    return f"curl -sS -o /dev/null -w '%{{http_code}}\\n' --max-time 5 http://127.0.0.1:{port}{path}"


@dataclass(frozen=True)
class Instances:
    ports: tuple[int, ...]        # declared
    health: dict[int, str]        # port -> HTTP status of GET /health ('000': no answer)


@probe()
def arch_instances(session, host) -> Instances:
    """GET /health of every declared instance, on the app host itself (one round trip)."""
    ports = declared_ports(session)
    out = session.access.collect(host, {str(p): _curl(p, "/health") for p in ports})
    return Instances(ports, {p: out[str(p)] for p in ports})


@dataclass(frozen=True)
class Spread:
    ports: tuple[int, ...]
    statuses: tuple[str, ...]     # of the GETs through NGINX
    served: dict[int, float]      # port -> requests of SPREAD_PATH it counted meanwhile


def _counters(session, host, ports) -> dict[int, float]:
    out = session.access.collect(host, {str(p): f"curl -fsS --max-time 5 http://127.0.0.1:{p}/metrics"
                                        for p in ports})
    return {p: requests_for(out[str(p)], SPREAD_PATH) for p in ports}


@probe(per_host=False)
def arch_spread(session) -> Spread:
    """GET /docs through NGINX, 3 per declared instance (repeated, at most ROUNDS times, until every
    instance served one), between readings of every instance's own request counter (on the first
    app host)."""
    apps = session.inventory.hosts_with_role("app")
    if not apps:
        raise CouldNotAudit(None, "the app instances", "no host in inventory group app")
    session.facts.get("reach", apps[0].name)
    ports, public = declared_ports(session), session.access.public()
    before = _counters(session, apps[0], ports)
    statuses, served = [], dict.fromkeys(ports, 0.0)
    # least_conn rightly avoids an instance busy with other requests of the audit (a login, a
    # scan): rounds go on until every instance served one, within a bound a broken balancer
    # never meets
    for _ in range(ROUNDS):
        for _ in range(PER_INSTANCE * len(ports)):
            try:
                statuses.append(str(public.get(SPREAD_PATH).status_code))
            except CouldNotAudit as exc:
                statuses.append(exc.why)
        after = _counters(session, apps[0], ports)
        served = {p: after[p] - before[p] for p in ports}
        if all(n > 0 for n in served.values()):
            break
    return Spread(ports, tuple(statuses), served)


# ---------------------------------------------------------------- NGINX in front

@dataclass(frozen=True)
class Front:
    url: str
    status: int | None
    server: str | None            # the Server header
    error: str | None = None


@probe(per_host=False)
def arch_front(session) -> Front:
    """GET /health through the public endpoint: who answers, and how."""
    public = session.access.public()
    try:
        resp = public.get("/health")
    except CouldNotAudit as exc:
        return Front(public.url + "/health", None, None, exc.why)
    return Front(public.url + "/health", resp.status_code, resp.headers.get("Server"))


# ---------------------------------------------------------------- the read replica

@dataclass(frozen=True)
class ReplicaReads:
    row: dict | None              # hot_standby, in_recovery, users counted
    refused: str | None           # why the replica refused the connection (hot standby off)


@probe()
def arch_replica(session, host) -> ReplicaReads:
    """A read-only query on the replica's app database as the audit role; the replica refusing
    connections because it is no hot standby is the answer, not a failure to audit."""
    want = session.expected("ARCH-DB-READ-REPLICA")
    try:
        rows = session.access.query(host, "SELECT current_setting('hot_standby') AS hot_standby, "
                                          "pg_is_in_recovery() AS in_recovery, (SELECT count(*) FROM users) AS users",
                                    database=want["database"])
    except CouldNotAudit as exc:
        if HOT_STANDBY_OFF.search(exc.why):
            return ReplicaReads(None, exc.why)
        raise
    return ReplicaReads(rows[0], None)


# ---------------------------------------------------------------- Redis Cluster

@probe(needs=("redis_cluster",))
def arch_cluster(session, host) -> dict[int, int]:
    """cluster_enabled of this host's cluster nodes, from the Redis area's view of every node."""
    views = session.facts.get("redis_cluster").views
    out = {}
    for port in host.settings.redis_cluster_ports:
        view = views.get((host.name, port))
        enabled = cluster_enabled(view.info, view.error) if view else None
        if enabled is None:
            raise CouldNotAudit(host.name, f"Redis on port {port}", view.error if view else "not asked")
        out[port] = enabled
    return out


# ---------------------------------------------------------------- the monitoring stack

@dataclass(frozen=True)
class Health:
    url: str
    status: int | None
    body: str


def _health(session, name: str, path: str) -> Health:
    via = (session.inventory.setting(f"audit_{name}") or {}).get("via")
    if via in session.inventory.hosts:
        session.facts.get("reach", via)  # the tunnel rides on that host's SSH connection
    api = session.access.api(name)
    return Health(api.base + path, *api.status(path))


@probe(per_host=False)
def arch_prometheus(session) -> Health:
    """Prometheus' /-/healthy (the inventory's audit_prometheus)."""
    return _health(session, "prometheus", "/-/healthy")


@probe(per_host=False)
def arch_grafana(session) -> Health:
    """Grafana's /api/health (the inventory's audit_grafana)."""
    return _health(session, "grafana", "/api/health")
