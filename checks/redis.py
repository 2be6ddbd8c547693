"""Guide: Redis Configuration - redis.conf (network, memory, persistence, security), the Redis
Cluster, and the health check on memory. What is read, and how: audit/probes/redis.py.

The single-value settings of redis.conf (port, protected-mode, maxmemory, maxmemory-policy,
save) are catalogue rows judged by checks/values.py, running (CONFIG GET) and on disk; the cluster
nodes carry the same settings (and bind), judged here node by node, running and in each node's file.
"""

from __future__ import annotations

import pytest

from audit.marks import per_requirement
from audit.probes.redis import affinity_findings, bind_findings, comparable, myself, topology_findings

# ---------------------------------------------------------------- redis.conf


@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-BIND")
def check_bind_is_loopback_and_internal(judge, redis):
    """"bind 127.0.0.1 10.0.1.100": loopback plus the host's own internal address, never all
    interfaces (the guide's 10.0.1.100 is an example address)."""
    own = set(redis.addresses)
    judge.sides(redis.sides("bind"), lambda v: not bind_findings(v.split(), own),
                what=f"bind (this host's addresses: {' '.join(sorted(own))})")


# ---------------------------------------------------------------- authentication

@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-REQUIREPASS-ENFORCED")
def check_password_is_required(judge, redis):
    """"requirepass ...": a connection without the password gets NOAUTH; with it, PING works."""
    found = {"without a password": redis.without_password, "with redis_password": redis.with_password}
    judge.that(("NOAUTH" in redis.without_password or "Authentication required" in redis.without_password)
               and redis.with_password == "PONG", what="PING", found=found,
               expected={"without a password": "NOAUTH", "with redis_password": "PONG"})


@pytest.mark.roles("redis")
@pytest.mark.requirement("REDIS-PASSWORD-NOT-PLACEHOLDER")
def check_password_is_not_the_placeholder(judge, redis):
    """"requirepass your_secure_redis_password" is the guide's placeholder: AUTH with it fails."""
    judge.that(redis.with_placeholder != "PONG", what="AUTH with the guide's placeholder password",
               found=redis.with_placeholder, expected="refused (WRONGPASS / invalid password)")


# ---------------------------------------------------------------- health

@pytest.mark.roles("redis")
@pytest.mark.requirement("CHK-REDIS-MEMORY")
def check_memory_below_limit(judge, redis):
    """Application health: Redis memory usage below 80% of maxmemory."""
    limit = float(judge.expected["max_percent_of_limit"])
    found = {"used_memory": redis.used_memory, "maxmemory": redis.maxmemory}
    if not redis.maxmemory:
        judge.fail("maxmemory is 0 (unlimited): usage has no limit to stay under")
    percent = 100.0 * redis.used_memory / redis.maxmemory
    judge.that(percent < limit, what="memory used, % of maxmemory", found={**found, "percent": round(percent, 1)},
               expected=f"< {limit}%", where=f"INFO memory on port {redis.port}")


# ---------------------------------------------------------------- cluster

@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("REDIS-CLUSTER-PORTS")
def check_cluster_nodes_answer_on_their_ports(judge, server, redis_cluster):
    """"redis-cli --cluster create 10.0.1.100:7000 10.0.1.101:7000 ... :7001": this host runs a
    cluster node on each of the guide's ports (inventory: audit_settings.redis_cluster_ports)."""
    want = judge.expected["ports"]
    judge.equal(sorted(server.settings.redis_cluster_ports), what="cluster ports of this host (inventory)",
                expected=want, normalise=sorted)
    mine = {p: v for (h, p), v in redis_cluster.views.items() if h == server.name}
    judge.each({p: f"cluster_state {v.info['cluster_state']}" if "cluster_state" in v.info else v.error or "no answer"
                for p, v in mine.items()}, lambda v: v.startswith("cluster_state"),
               what="cluster node answering CLUSTER INFO", expected="a cluster node on every port")


@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("REDIS-CLUSTER-STATE-OK")
def check_cluster_state_ok(judge, server, redis_cluster):
    """CLUSTER INFO on this host's nodes: cluster_state:ok."""
    judge.each({p: v.info.get("cluster_state") for (h, p), v in redis_cluster.answering(server.name).items()},
               lambda s: s == judge.expected, what="cluster_state")


@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("REDIS-CLUSTER-SLOTS")
def check_cluster_slots_all_assigned(judge, server, redis_cluster):
    """All 16384 hash slots assigned and ok, none pfail/fail (CLUSTER INFO of this host's nodes)."""
    want = judge.expected
    seen = {p: {k: int(v.info.get(f"cluster_{k}", -1)) for k in want}
            for (h, p), v in redis_cluster.answering(server.name).items()}
    judge.each(seen, lambda s: s == want, what="cluster slots")


# the guide's redis.conf settings that every cluster node carries too (its own port aside)
NODE_SETTINGS = {"REDIS-PROTECTED-MODE": "protected-mode", "REDIS-MAXMEMORY": "maxmemory",
                 "REDIS-MAXMEMORY-POLICY": "maxmemory-policy", "REDIS-SAVE-SCHEDULE": "save"}


def _each_node(judge, server, redis_cluster, key: str, ok, what: str) -> None:
    nodes = redis_cluster.answering(server.name)
    if not nodes:
        judge.fail(f"no cluster node of {server.name} answers: its {key} cannot be read")
    for (_, port), view in sorted(nodes.items()):
        judge.sides(view.sides(key), ok, what=f"{what} of the cluster node on port {port}")


@pytest.mark.roles("redis_cluster")
@per_requirement(*NODE_SETTINGS)
def check_cluster_node_settings(judge, server, redis_cluster, req_id):
    """The guide's redis.conf settings (protected-mode, maxmemory, maxmemory-policy, save) on every
    cluster node of this host: as it runs them (CONFIG GET) and as its file sets them (its next start)."""
    key = NODE_SETTINGS[req_id]
    want = comparable(key, judge.expected)
    _each_node(judge, server, redis_cluster, key, lambda found: found == want, key)


@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("REDIS-BIND")
def check_cluster_node_bind(judge, server, redis_cluster):
    """"bind 127.0.0.1 10.0.1.100" on every cluster node of this host, running and in its file."""
    own = {addr for addr, host in redis_cluster.host_of.items() if host == server.name}
    _each_node(judge, server, redis_cluster, "bind", lambda v: not bind_findings(v.split(), own),
               f"bind (this host's addresses: {' '.join(sorted(own))})")


@pytest.mark.requirement("REDIS-CLUSTER-SINGLE")
def check_cluster_is_one_cluster(judge, redis_cluster):
    """"redis-cli --cluster create <six nodes>": every node knows the same set of nodes, all six
    of the inventory, so they form one cluster."""
    want = int(judge.expected["nodes"])
    answering = redis_cluster.answering()
    views = {f"{h}:{p}": tuple(sorted(n.id for n in v.nodes)) for (h, p), v in answering.items()}
    judge.equal(len(redis_cluster.views), what="cluster nodes in the inventory", expected=want)
    judge.equal(len(set(views.values())), what="distinct views of the cluster's members", expected=1,
                where="CLUSTER NODES of every node")
    members = set(next(iter(views.values())))
    own = {f"{h}:{p}": (myself(list(v.nodes)).id if myself(list(v.nodes)) else None)
           for (h, p), v in answering.items()}
    judge.each(own, lambda i: i in members, what="node is a member of the cluster the others form")
    judge.equal(len(members), what="members of the cluster", expected=want)


@pytest.mark.requirement("REDIS-CLUSTER-TOPOLOGY")
def check_cluster_topology(judge, redis_cluster):
    """"--cluster-replicas 1": 3 masters, each with exactly 1 connected replica (every node's view)."""
    want = judge.expected
    findings = {f"{h}:{p}": topology_findings(list(v.nodes), int(want["masters"]), int(want["replicas_per_master"]))
                for (h, p), v in redis_cluster.answering().items()}
    judge.each(findings, lambda problems: not problems, allow_empty=False,
               what="topology problems in each node's view (CLUSTER NODES)", expected="none")


@pytest.mark.requirement("REDIS-CLUSTER-ANTI-AFFINITY")
def check_cluster_replicas_on_other_hosts(judge, redis_cluster):
    """The guide spreads 7000/7001 over three hosts so that a replica never shares its master's
    host: no replica on its master's host, no host with two masters."""
    answering = redis_cluster.answering()
    if not answering:
        judge.fail("no cluster node answers")
    view = max(answering.values(), key=lambda v: len(v.nodes)).nodes
    judge.each({n.address: n.ip in redis_cluster.host_of for n in view}, bool,
               what="announced address maps to an inventory host", expected=True)
    problems = affinity_findings(list(view), redis_cluster.host_of)
    judge.that(not problems, what="placement of masters and replicas",
               found=problems or [f"{n.address} {'master' if n.is_master else 'replica of ' + str(n.master_id)}"
                                  for n in view],
               expected="replicas on other hosts than their masters, one master per host")

