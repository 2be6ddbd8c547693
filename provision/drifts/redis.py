"""Redis drifts: each breaks exactly the requirements it names.

Standalone Redis (cache1:6379) drifts use CONFIG SET / ACL SETUSER (runtime only: redis.conf is
untouched, so heal sets the file's values again). Cluster drifts change the cluster's shape and
heal waits until it is back as it was (failed back, replica re-attached, node re-joined).
"""

from __future__ import annotations

import json
import shlex
import time

from ..ui import ProvisionError
from . import BACKUPS, Ctx, Drift, edit_file

CONF = "/etc/redis/redis.conf"
PLACEHOLDER = "your_secure_redis_password"  # noqa: S105 - the guide's placeholder, on purpose


def cli(c: Ctx, host: str, port: int, args: str) -> str:
    return c.redis(host, port, args).strip()


def from_file(key: str) -> str:
    """The file's value of `key` (space-joined for repeated `save` lines), as a shell word."""
    return f"\"$(grep -E '^{key} ' {CONF} | cut -d' ' -f2- | tr '\\n' ' ' | sed 's/ $//')\""


def set_from_file(key: str):
    return lambda c: c.sh("cache1", f"redis-cli --no-auth-warning -p 6379 config set {key} {from_file(key)} "
                                    "| grep -qx OK", env={"REDISCLI_AUTH": c.st.secret("redis_password")})


def wait(what: str, probe, seconds: int = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(1)
    raise ProvisionError(f"redis drift: {what} not reached within {seconds}s")


def node_id(c: Ctx, host: str, port: int) -> str:
    return cli(c, host, port, "cluster myid")


def role(c: Ctx, host: str, port: int) -> str:
    return cli(c, host, port, "role").splitlines()[0]


CLUSTER_NODES = tuple((h, p) for h in ("cache1", "cache2", "cache3") for p in (7000, 7001))


def _settled(c: Ctx) -> bool:
    """Every node sees all six, connected and not failing, and they agree on who replicates whom
    (right after a failover or a REPLICATE, some nodes still show the old roles for a moment)."""
    views = [[line.split() for line in cli(c, h, p, "cluster nodes").splitlines()] for h, p in CLUSTER_NODES]
    if not all(len(v) == 6 and all(f[7] == "connected" and "fail" not in f[2] for f in v) for v in views):
        return False
    roles = [sorted((f[0], "master" in f[2], f[3]) for f in v) for v in views]
    return all(r == roles[0] for r in roles)


def _cluster_ok(c: Ctx) -> bool:
    return all("cluster_state:ok" in cli(c, h, p, "cluster info") for h in ("cache1", "cache2", "cache3")
               for p in (7000, 7001))


# cache1:7001 is the replica of cache3:7000 (provision's `--cluster create` order).
def _failover_apply(c: Ctx) -> None:
    if role(c, "cache1", 7001) != "slave":
        raise ProvisionError("cache1:7001 is not a replica: the cluster is not as provisioned")
    cli(c, "cache1", 7001, "cluster failover")
    wait("cache1:7001 master", lambda: role(c, "cache1", 7001) == "master" and role(c, "cache3", 7000) == "slave")
    wait("cluster settled", lambda: _settled(c))


def _failover_heal(c: Ctx) -> None:
    cli(c, "cache3", 7000, "cluster failover")
    wait("cache3:7000 master again", lambda: role(c, "cache3", 7000) == "master" and role(c, "cache1", 7001) == "slave")
    wait("cluster settled", lambda: _settled(c))


MIGRATION = "cluster-allow-replica-migration"


def _masters_of_replicas(c: Ctx) -> dict[str, str]:
    """"host:port" of each replica -> its master's node ID."""
    out = {}
    for h, p in CLUSTER_NODES:
        me = next(line for line in cli(c, h, p, "cluster nodes").splitlines() if "myself" in line).split()
        if "slave" in me[2]:
            out[f"{h}:{p}"] = me[3]
    return out


def _moved_apply(c: Ctx) -> None:
    # Redis' replica migration would hand the orphaned master a replica of its own host's other
    # node (cache3:7001 to cache3:7000) within seconds, so that the drift shows as an anti-affinity
    # breach instead, and heal could not tell which replica to move back: it is paused meanwhile
    before = {f"{h}:{p}": cli(c, h, p, f"config get {MIGRATION}").splitlines()[-1] for h, p in CLUSTER_NODES}
    c.sh("cache1", f"mkdir -p {BACKUPS} && echo {shlex.quote(json.dumps([_masters_of_replicas(c), before]))}"
                   f" > {BACKUPS}/redis-7001.master")
    for h, p in CLUSTER_NODES:
        cli(c, h, p, f"config set {MIGRATION} no")
    cli(c, "cache1", 7001, f"cluster replicate {node_id(c, 'cache2', 7000)}")
    wait("cache1:7001 re-attached", lambda: "master_link_status:up" in cli(c, "cache1", 7001, "info replication"))
    wait("cluster settled", lambda: _settled(c))


def _moved_heal(c: Ctx) -> None:
    masters, migration = json.loads(c.sh("cache1", f"cat {BACKUPS}/redis-7001.master").strip())
    cli(c, "cache1", 7001, f"cluster replicate {masters['cache1:7001']}")
    wait("cache1:7001 back", lambda: "master_link_status:up" in cli(c, "cache1", 7001, "info replication")
         and _masters_of_replicas(c) == masters)
    for node, value in migration.items():
        h, p = node.split(":")
        cli(c, h, int(p), f"config set {MIGRATION} {value}")
    c.sh("cache1", f"rm -f {BACKUPS}/redis-7001.master")
    wait("cluster settled", lambda: _settled(c))


def _stopped_apply(c: Ctx) -> None:
    if c.fleet:  # systemd would start a node that shut itself down again (Restart=always)
        c.service("cache3", "redis-cluster-7001", "stop")
        wait("cache3:7001 down", lambda: "Connection refused" in c.sh("cache3", "redis-cli -p 7001 ping 2>&1 || true"))
        return
    # not `service redis-cluster-7001 stop`: start-stop-daemon does not match the running node
    # (Debian's redis-server is a link to redis-check-rdb) and only removes the pid file
    c.sh("cache3", "redis-cli --no-auth-warning -p 7001 shutdown nosave >/dev/null 2>&1; true",
         env={"REDISCLI_AUTH": c.st.secret("redis_password")})
    wait("cache3:7001 down", lambda: "Connection refused" in c.sh("cache3", "redis-cli -p 7001 ping 2>&1 || true"))


def _stopped_heal(c: Ctx) -> None:
    if c.fleet:
        c.service("cache3", "redis-cluster-7001", "start")
    else:
        c.sh("cache3", "rm -f /run/redis/redis-7001.pid && service redis-cluster-7001 start >/dev/null")
    wait("cache3:7001 rejoined", lambda: _settled(c), seconds=90)


LAST_SLOT = 16383  # served by cache3:7000


def _slot_apply(c: Ctx) -> None:
    cli(c, "cache3", 7000, f"cluster delslots {LAST_SLOT}")
    wait("cluster_state fail on cache3:7000", lambda: "cluster_state:fail" in cli(c, "cache3", 7000, "cluster info"))


def _slot_heal(c: Ctx) -> None:
    cli(c, "cache3", 7000, f"cluster addslots {LAST_SLOT}")
    wait("cluster_state ok everywhere", lambda: _cluster_ok(c))


OTHERS = [(h, p) for h in ("cache1", "cache2", "cache3") for p in (7000, 7001) if (h, p) != ("cache3", 7001)]


def _forget_apply(c: Ctx) -> None:
    """Every other node forgets cache3:7001 (a replica): it still believes it is a member."""
    lost = node_id(c, "cache3", 7001)
    for host, port in OTHERS:
        cli(c, host, port, f"cluster forget {lost}")
    wait("cache3:7001 forgotten", lambda: all(lost not in cli(c, h, p, "cluster nodes") for h, p in OTHERS))


def _forget_heal(c: Ctx) -> None:
    """cache3:7001 meets the others again (a forgotten node is banned for 60 s: retry until then)."""
    ips = {h: c.sh(h, "hostname -i").split()[0] for h in ("cache1", "cache2")}
    deadline = time.monotonic() + 120
    while not _settled(c):
        if time.monotonic() > deadline:
            raise ProvisionError("redis drift: cache3:7001 did not rejoin the cluster within 120s")
        for ip in ips.values():
            cli(c, "cache3", 7001, f"cluster meet {ip} 7000")
        time.sleep(5)


def _memory_apply(c: Ctx) -> None:
    used = int(next(line.split(":")[1] for line in cli(c, "cache1", 6379, "info memory").splitlines()
                    if line.startswith("used_memory:")))
    cli(c, "cache1", 6379, f"config set maxmemory {int(used * 1.1)}")


DRIFTS: tuple[Drift, ...] = (
    Drift("redis-eviction-policy", ("REDIS-MAXMEMORY-POLICY",),
          "cache1: CONFIG SET maxmemory-policy noeviction on 6379 (guide: allkeys-lru)",
          lambda c: c.redis("cache1", 6379, "config set maxmemory-policy noeviction"),
          lambda c: c.redis("cache1", 6379, "config set maxmemory-policy allkeys-lru")),
    Drift("redis-bind-all", ("REDIS-BIND",), "cache1: CONFIG SET bind 0.0.0.0 on 6379 (all interfaces)",
          lambda c: cli(c, "cache1", 6379, "config set bind 0.0.0.0"), set_from_file("bind")),
    Drift("redis-port-file", ("REDIS-PORT",), f"cache1: {CONF} says port 6380 (not applied: runs on 6379)",
          *edit_file("cache1", CONF, "'s/^port 6379$/port 6380/'", "true", "redis.conf.port")),
    Drift("redis-protected-mode-off", ("REDIS-PROTECTED-MODE",), "cache1: CONFIG SET protected-mode no",
          lambda c: cli(c, "cache1", 6379, "config set protected-mode no"), set_from_file("protected-mode")),
    Drift("redis-maxmemory-2gb", ("REDIS-MAXMEMORY",), "cache1: CONFIG SET maxmemory 2gb (guide: 4gb)",
          lambda c: cli(c, "cache1", 6379, "config set maxmemory 2gb"), set_from_file("maxmemory")),
    Drift("redis-save-hourly", ("REDIS-SAVE-SCHEDULE",), "cache1: CONFIG SET save '3600 1'",
          lambda c: cli(c, "cache1", 6379, "config set save '3600 1'"), set_from_file("save")),
    Drift("redis-nopass", ("REDIS-REQUIREPASS-ENFORCED",),
          "cache1: ACL SETUSER default nopass on 6379 (no password needed)",
          lambda c: cli(c, "cache1", 6379, "acl setuser default nopass"),
          lambda c: c.sh("cache1", "redis-cli --no-auth-warning -p 6379 acl setuser default resetpass \">$PW\" "
                                   "| grep -qx OK", env={"PW": c.st.secret("redis_password")})),
    Drift("redis-placeholder-password", ("REDIS-PASSWORD-NOT-PLACEHOLDER",),
          f"cache1: ACL SETUSER default >{PLACEHOLDER} (the guide's placeholder also works)",
          lambda c: cli(c, "cache1", 6379, f"acl setuser default '>{PLACEHOLDER}'"),
          lambda c: cli(c, "cache1", 6379, f"acl setuser default '<{PLACEHOLDER}'")),
    Drift("redis-memory-full", ("CHK-REDIS-MEMORY", "REDIS-MAXMEMORY"),
          "cache1: CONFIG SET maxmemory to 110% of used_memory (usage > 80% of the limit)",
          _memory_apply, set_from_file("maxmemory")),
    # running vs on disk (issue 19)
    Drift("redis-not-reloaded", ("REDIS-MAXMEMORY",),
          f"cache1: {CONF} says maxmemory 2gb, Redis not restarted (it still runs 4gb; the next start takes 2gb)",
          *edit_file("cache1", CONF, "'s/^maxmemory 4gb$/maxmemory 2gb/'", "true", "redis-not-reloaded")),
    Drift("redis-cluster-not-persisted", ("REDIS-MAXMEMORY-POLICY",),
          "cache2:7000 CONFIG SET maxmemory-policy volatile-lru without CONFIG REWRITE (its file still says "
          "allkeys-lru: the next start reverts it)",
          lambda c: cli(c, "cache2", 7000, "config set maxmemory-policy volatile-lru"),
          lambda c: cli(c, "cache2", 7000, "config set maxmemory-policy allkeys-lru")),
    Drift("redis-cluster-not-reloaded", ("REDIS-PROTECTED-MODE",),
          "cache3: /etc/redis/redis-7001.conf says protected-mode no, the node not restarted (it still runs yes)",
          *edit_file("cache3", "/etc/redis/redis-7001.conf", "'s/^protected-mode yes$/protected-mode no/'", "true",
                     "redis-cluster-not-reloaded")),
    Drift("redis-cluster-failover", ("REDIS-CLUSTER-ANTI-AFFINITY",),
          "CLUSTER FAILOVER on cache1:7001: cache1 holds two masters (heal: fail back from cache3:7000)",
          _failover_apply, _failover_heal),
    Drift("redis-cluster-replica-moved", ("REDIS-CLUSTER-TOPOLOGY",),
          "cache1:7001 CLUSTER REPLICATE cache2:7000: one master with 2 replicas, one with none",
          _moved_apply, _moved_heal),
    Drift("redis-cluster-node-stopped", ("REDIS-CLUSTER-PORTS", "REDIS-CLUSTER-TOPOLOGY"),
          "cache3: the redis-cluster-7001 node (a replica) shut down (SHUTDOWN NOSAVE)",
          _stopped_apply, _stopped_heal),
    Drift("redis-cluster-node-forgotten", ("REDIS-CLUSTER-SINGLE", "REDIS-CLUSTER-TOPOLOGY"),
          "every other node CLUSTER FORGETs cache3:7001: it is no longer in their cluster (heal: MEET)",
          _forget_apply, _forget_heal),
    Drift("redis-cluster-slot-unassigned", ("REDIS-CLUSTER-STATE-OK", "REDIS-CLUSTER-SLOTS"),
          f"cache3:7000 CLUSTER DELSLOTS {LAST_SLOT} (slot unassigned: cluster_state fail there)",
          _slot_apply, _slot_heal),
)


def restore_failed_over_master(c: Ctx) -> None:
    """After cache3 was down, cache3:7000's replica (cache1:7001) has taken over: fail back."""
    wait("cache3:7000 answers", lambda: "PONG" in cli(c, "cache3", 7000, "ping"), seconds=90)
    if role(c, "cache3", 7000) == "slave":
        _failover_heal(c)
    wait("cluster settled", lambda: _settled(c), seconds=90)
