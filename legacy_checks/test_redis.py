"""Guide: Redis Configuration - redis.conf (network, memory, persistence, security), the Redis
Cluster, and the health check on memory.

How the audit reaches Redis: redis-py through `server.forward(port)` (SSH port forwarding over
the host's shared SSH connection), one connection per host and port for the whole run (5 s
connect and socket timeouts), authenticated with the inventory's `redis_password`. Read-only:
CONFIG GET, INFO, CLUSTER INFO / NODES, PING, AUTH. Cluster nodes are asked one by one through
their own tunnels; no cluster client is used (it would follow the nodes' announced internal
addresses, which the runner cannot and must not reach).

The running values (CONFIG GET) are compared with the guide, and so is /etc/redis/redis.conf
(read over SSH, `requirepass`/`masterauth` lines never read): a file that differs from what runs
is a finding too (not applied, or lost at the next restart). Where CONFIG is renamed away, the
file alone is audited.
"""

from __future__ import annotations

import contextlib

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from audit.evidence import attach, compare
from audit.redisinfo import (
    affinity_findings,
    bind_findings,
    config_file,
    file_value,
    memory_bytes,
    myself,
    parse_info,
    parse_nodes,
    save_points,
    topology_findings,
)

TIMEOUT = 5
CONF = "/etc/redis/redis.conf"
KEYS = ("bind", "port", "protected-mode", "maxmemory", "maxmemory-policy", "save")
SLOTS = 16384


def _client(server, port: int, password: str | None) -> redis.Redis:
    host, local = server.forward(port)
    return redis.Redis(host=host, port=local, password=password, socket_connect_timeout=TIMEOUT,
                       socket_timeout=TIMEOUT, decode_responses=True, client_name="pynomaly-audit",
                       protocol=2,  # RESP2: an unauthenticated command gets NOAUTH (RESP3 starts with HELLO)
                       retry=Retry(NoBackoff(), 0))  # an audit reports at once (redis-py retries 3x with backoff)


@pytest.fixture(scope="session")
def redis_password(inventory):
    from audit import evidence
    from audit.inventory import resolve_secret

    value = resolve_secret(inventory, "redis_password")
    evidence.register_secret(value)
    return value


@pytest.fixture(scope="session")
def rc(redis_password):
    """rc(server, port=6379): the authenticated connection to that Redis, one per host and port."""
    conns: dict[tuple[str, int], redis.Redis] = {}

    def get(server, port: int = 6379) -> redis.Redis:
        key = (server.name, port)
        if key not in conns:
            conns[key] = _client(server, port, redis_password)
            try:
                conns[key].ping()
            except redis.AuthenticationError as exc:
                # A Redis without any password refuses AUTH: audit it anyway, without the
                # password (test_password_is_required reports the missing password).
                if "without any password configured" not in str(exc):
                    raise
                conns[key] = _client(server, port, None)
        return conns[key]

    yield get
    for conn in conns.values():
        with contextlib.suppress(Exception):
            conn.close()


@pytest.fixture(scope="session")
def redis_config(rc):
    """redis_config(server): {'running': CONFIG GET values or None, 'file': redis.conf values}."""
    cache: dict[str, dict] = {}

    def get(server) -> dict:
        if server.name not in cache:
            keys = "|".join(KEYS)
            facts = server.collect("redis", {
                "conf": f"grep -E '^[[:space:]]*({keys})([[:space:]]|$)' {CONF}",
                "addresses": "hostname -I 2>/dev/null || hostname -i",
            })
            try:
                flat = rc(server).execute_command("CONFIG", "GET", *KEYS)
                running = dict(flat.items()) if isinstance(flat, dict) else dict(zip(flat[0::2], flat[1::2],
                                                                                     strict=False))
            except redis.ResponseError as exc:  # CONFIG renamed or disabled: the file alone
                if "unknown command" not in str(exc).lower():
                    raise
                running = None
            directives = config_file(facts["conf"])
            cache[server.name] = {"running": running, "file": {k: file_value(directives, k) for k in KEYS},
                                  "file_text": facts["conf"], "addresses": set(facts["addresses"].split())}
        return cache[server.name]

    return get


def _values(server, redis_config, key: str) -> dict[str, str | None]:
    """Where each value comes from -> the value (running and file)."""
    cfg = redis_config(server)
    attach(f"{CONF} ({', '.join(KEYS)})", cfg["file_text"])
    values = {"file": cfg["file"][key]}
    if cfg["running"] is not None:
        values["running"] = cfg["running"].get(key)
    return values


def _assert_each(server, values: dict, ok, want, what: str) -> None:
    compare(what, values, want)
    bad = {where: v for where, v in values.items() if v is None or not ok(v)}
    assert not bad, f"{server.name}: {what} is {bad}, guide: {want}"


# ---------------------------------------------------------------- redis.conf

@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-BIND")
def test_bind_is_loopback_and_internal(server, redis_config, expected):
    """"bind 127.0.0.1 10.0.1.100": loopback plus the host's own internal address, never all
    interfaces (the guide's 10.0.1.100 is an example address)."""
    own = redis_config(server)["addresses"]
    values = _values(server, redis_config, "bind")
    compare("host addresses", sorted(own), "bind may name these (and loopback)")
    _assert_each(server, values, lambda v: not bind_findings(v.split(), own), expected("REDIS-BIND"), "bind")


@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-PORT")
def test_port(server, redis_config, expected):
    """"port 6379"."""
    want = int(expected("REDIS-PORT"))
    _assert_each(server, _values(server, redis_config, "port"), lambda v: int(v) == want, want, "port")


@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-PROTECTED-MODE")
def test_protected_mode(server, redis_config, expected):
    """"protected-mode yes"."""
    want = expected("REDIS-PROTECTED-MODE")
    _assert_each(server, _values(server, redis_config, "protected-mode"), lambda v: v.lower() == want, want,
                 "protected-mode")


@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-MAXMEMORY")
def test_maxmemory(server, redis_config, expected):
    """"maxmemory 4gb" (4 GiB: Redis reads gb as 1024^3; CONFIG GET prints bytes)."""
    want = expected("REDIS-MAXMEMORY")
    _assert_each(server, _values(server, redis_config, "maxmemory"),
                 lambda v: memory_bytes(v) == memory_bytes(want), f"{want} = {memory_bytes(want)} bytes", "maxmemory")


@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-MAXMEMORY-POLICY")
def test_maxmemory_policy(server, redis_config, expected):
    """"maxmemory-policy allkeys-lru"."""
    want = expected("REDIS-MAXMEMORY-POLICY")
    _assert_each(server, _values(server, redis_config, "maxmemory-policy"), lambda v: v.lower() == want, want,
                 "maxmemory-policy")


@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-SAVE-SCHEDULE")
def test_save_schedule(server, redis_config, expected):
    """"save 900 1 / save 300 10 / save 60 10000": exactly these RDB save points."""
    want = sorted((tuple(p) for p in expected("REDIS-SAVE-SCHEDULE")), reverse=True)
    _assert_each(server, _values(server, redis_config, "save"), lambda v: save_points(v) == want, want, "save")


# ---------------------------------------------------------------- authentication

@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-REQUIREPASS-ENFORCED")
def test_password_is_required(server, rc):
    """"requirepass ...": a connection without the password gets NOAUTH; with it, PING works."""
    anonymous = _client(server, 6379, None)
    try:
        answer = f"PING -> {anonymous.ping()}"
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        answer = f"{type(exc).__name__}: {exc}"
    finally:
        anonymous.close()
    authenticated = rc(server).ping()
    compare("without password / with password", {"without": answer, "with": authenticated},
            {"without": "NOAUTH", "with": True})
    assert "NOAUTH" in answer or "Authentication required" in answer, (
        f"{server.name}: Redis answered without a password ({answer})")
    assert authenticated is True


@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-PASSWORD-NOT-PLACEHOLDER")
def test_password_is_not_the_placeholder(server, redis_password, expected):
    """"requirepass your_secure_redis_password" is the guide's placeholder: AUTH with it fails."""
    placeholder = expected("REDIS-PASSWORD-NOT-PLACEHOLDER")["placeholder"]
    probe = _client(server, 6379, placeholder)
    try:
        answer = f"AUTH accepted (PING -> {probe.ping()})"
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        answer = f"refused: {exc}"
    finally:
        probe.close()
    compare("AUTH with the guide's placeholder", answer, "refused")
    assert redis_password != placeholder, "the inventory's redis_password is the guide's placeholder"
    assert answer.startswith("refused"), f"{server.name}: Redis accepts the guide's placeholder password"


# ---------------------------------------------------------------- health

@pytest.mark.roles("redis")
@pytest.mark.requirement("CHK-REDIS-MEMORY")
def test_memory_below_limit(server, rc, expected):
    """Application health: Redis memory usage below 80% of maxmemory."""
    limit = float(expected("CHK-REDIS-MEMORY")["max_percent_of_limit"])
    info = rc(server).info("memory")
    used, maximum = int(info["used_memory"]), int(info["maxmemory"])
    percent = 100.0 * used / maximum if maximum else None
    compare("memory", {"used_memory": used, "maxmemory": maximum, "percent": percent}, f"< {limit}%")
    assert maximum, f"{server.name}: maxmemory is 0 (unlimited): usage has no limit to stay under"
    assert percent < limit, f"{server.name}: {used} of {maximum} bytes used ({percent:.0f}% >= {limit:.0f}%)"


# ---------------------------------------------------------------- cluster

def _ports(host) -> list[int]:
    return [int(p) for p in (host.vars.get("audit_settings") or {}).get("redis_cluster_ports") or []]


@pytest.fixture(scope="session")
def cluster(inventory, audit_context, rc):
    """Every inventory cluster node (host, port) -> {'info', 'nodes', 'error'}, each asked through
    its own host's tunnel; plus the hosts' addresses (announced ip -> inventory host)."""
    nodes, host_of = {}, {}
    for host in inventory.hosts_with_role("redis_cluster"):
        server = audit_context.server(host.name)
        server.ensure_reachable()
        facts = server.collect("redis-cluster", {"addresses": "hostname -I 2>/dev/null || hostname -i"})
        for addr in facts["addresses"].split():
            host_of[addr] = host.name
        for port in _ports(host):
            try:
                conn = rc(server, port)
                info = parse_info(conn.execute_command("CLUSTER", "INFO"))
                text = conn.execute_command("CLUSTER", "NODES")
                nodes[(host.name, port)] = {"info": info, "nodes": parse_nodes(text), "text": text, "error": None}
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                nodes[(host.name, port)] = {"info": {}, "nodes": [], "text": "", "error": error}
            me = myself(nodes[(host.name, port)]["nodes"])
            if me:
                host_of[me.ip] = host.name
    return {"nodes": nodes, "host_of": host_of}


def _answering(cluster, host: str | None = None):
    return {k: v for k, v in cluster["nodes"].items() if not v["error"] and (host is None or k[0] == host)}


def _attach_views(cluster) -> None:
    attach("CLUSTER NODES per node", "\n\n".join(f"# {h}:{p}\n{v['text'] or v['error']}"
                                                  for (h, p), v in sorted(cluster["nodes"].items())))


@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("REDIS-CLUSTER-PORTS")
def test_cluster_nodes_answer_on_their_ports(server, cluster, expected):
    """"redis-cli --cluster create 10.0.1.100:7000 10.0.1.101:7000 ... :7001": this host runs a
    cluster node on each of the inventory's ports (audit_settings.redis_cluster_ports)."""
    want = expected("REDIS-CLUSTER-PORTS")["ports"]
    ports = _ports(server.host_vars)
    mine = {p: v for (h, p), v in cluster["nodes"].items() if h == server.name}
    seen = {p: v["error"] or f"cluster_enabled node, state {v['info'].get('cluster_state')}" for p, v in mine.items()}
    compare("cluster nodes on this host", seen, want)
    assert sorted(ports) == sorted(want), f"{server.name}: inventory cluster ports {ports}, guide: {want}"
    down = {p: v["error"] for p, v in mine.items() if v["error"] or not v["info"]}
    assert not down, f"{server.name}: no cluster node answers on {down}"


@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("REDIS-CLUSTER-STATE-OK")
def test_cluster_state_ok(server, cluster, expected):
    """CLUSTER INFO on this host's nodes: cluster_state:ok."""
    states = {p: v["info"].get("cluster_state") for (h, p), v in _answering(cluster, server.name).items()}
    compare("cluster_state", states, expected("REDIS-CLUSTER-STATE-OK"))
    bad = {p: s for p, s in states.items() if s != expected("REDIS-CLUSTER-STATE-OK")}
    assert not bad, f"{server.name}: cluster_state {bad}"


@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("REDIS-CLUSTER-SLOTS")
def test_cluster_slots_all_assigned(server, cluster, expected):
    """All 16384 hash slots assigned and ok, none pfail/fail (CLUSTER INFO of this host's nodes)."""
    want = expected("REDIS-CLUSTER-SLOTS")
    seen = {p: {k: int(v["info"].get(f"cluster_{k}", -1)) for k in want}
            for (h, p), v in _answering(cluster, server.name).items()}
    compare("slots", seen, want)
    bad = {p: s for p, s in seen.items() if s != want}
    assert not bad, f"{server.name}: slots {bad}, guide: {want}"


@pytest.mark.requirement("REDIS-CLUSTER-SINGLE")
def test_cluster_is_one_cluster(cluster, expected):
    """"redis-cli --cluster create <six nodes>": every node knows the same set of nodes, all six
    of the inventory, so they form one cluster."""
    want = int(expected("REDIS-CLUSTER-SINGLE")["nodes"])
    answering = _answering(cluster)
    own_ids = {k: (myself(v["nodes"]).id if myself(v["nodes"]) else None) for k, v in answering.items()}
    views = {f"{h}:{p}": sorted(n.id for n in v["nodes"]) for (h, p), v in answering.items()}
    _attach_views(cluster)
    compare("node ids known by each node", views, f"the same {want} ids everywhere")
    assert len(cluster["nodes"]) == want, f"the inventory names {len(cluster['nodes'])} cluster nodes, guide: {want}"
    distinct = {tuple(v) for v in views.values()}
    assert len(distinct) == 1, f"the nodes do not agree on the cluster's members: {views}"
    members = set(next(iter(distinct)))
    strangers = {f"{h}:{p}" for (h, p), i in own_ids.items() if i not in members}
    assert not strangers, f"{', '.join(sorted(strangers))} are not members of the cluster the others form"
    assert len(members) == want, f"the cluster has {len(members)} nodes, guide: {want}"


@pytest.mark.requirement("REDIS-CLUSTER-TOPOLOGY")
def test_cluster_topology(cluster, expected):
    """"--cluster-replicas 1": 3 masters, each with exactly 1 connected replica (every node's view)."""
    want = expected("REDIS-CLUSTER-TOPOLOGY")
    _attach_views(cluster)
    answering = _answering(cluster)
    assert answering, "no cluster node answers"
    problems = {f"{h}:{p}": topology_findings(v["nodes"], int(want["masters"]), int(want["replicas_per_master"]))
                for (h, p), v in answering.items()}
    problems = {k: v for k, v in problems.items() if v}
    compare("topology findings per view", problems, want)
    assert not problems, f"cluster topology differs from the guide: {problems}"


@pytest.mark.requirement("REDIS-CLUSTER-ANTI-AFFINITY")
def test_cluster_replicas_on_other_hosts(cluster):
    """The guide spreads 7000/7001 over three hosts so that a replica never shares its master's
    host: no replica on its master's host, no host with two masters."""
    _attach_views(cluster)
    answering = _answering(cluster)
    assert answering, "no cluster node answers"
    view = max(answering.values(), key=lambda v: len(v["nodes"]))["nodes"]
    compare("announced address -> host", cluster["host_of"], "every node mapped to an inventory host")
    unmapped = [n.address for n in view if n.ip not in cluster["host_of"]]
    assert not unmapped, f"cluster nodes on no inventory host: {unmapped}"
    problems = affinity_findings(view, cluster["host_of"])
    compare("placement", [f"{n.address} {'master' if n.is_master else 'replica of ' + str(n.master_id)}"
                          for n in view], "replicas on other hosts than their masters")
    assert not problems, "; ".join(problems)

