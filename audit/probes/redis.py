"""Redis (guide: Redis Configuration): each instance's running configuration (CONFIG GET, INFO)
and its configuration file as Redis itself names it (INFO server `config_file`), the answers to
PING without, with the inventory's and with the guide's placeholder password, and the Redis
Cluster as every node sees it.

How it reaches Redis: redis-py through a port forwarded over the host's SSH connection, as the
inventory's `redis_password`, RESP2, no retries, the access layer's timeouts. Read-only: CONFIG
GET, INFO, CLUSTER INFO / NODES, PING, AUTH. The file is read over SSH with only the directives
the guide sets (never `requirepass`/`masterauth` lines). Cluster nodes are asked one by one
through their own host's tunnel: a cluster client would follow the nodes' announced internal
addresses, which the runner must not reach.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import shlex
from collections import Counter
from dataclasses import dataclass, field

from audit import guide
from audit.access import RedisAnswer
from audit.facts import probe
from audit.judge import ON_DISK, RUNNING, Reading
from audit.outcomes import CouldNotAudit

KEYS = ("bind", "port", "protected-mode", "maxmemory", "maxmemory-policy", "save")
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
WILDCARDS = {"*", "-*", "0.0.0.0", "::", "-::*", "::*"}


# ---------------------------------------------------------------- parsing (unit-tested)

def memory_bytes(value: str | int) -> int:
    """redis.conf memory notation ('4gb', '4g', '4294967296') in bytes, as Redis reads it."""
    m = re.match(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$", str(value))
    if not m or m.group(2).lower() not in UNITS:
        raise ValueError(f"not a Redis memory value: {value!r}")
    return int(m.group(1)) * UNITS[m.group(2).lower()]


def save_points(value: str | list) -> tuple[tuple[int, int], ...]:
    """'900 1 300 10 60 10000' (CONFIG GET save), or [[900, 1], ...] -> ((900, 1), (300, 10), (60, 10000))."""
    if isinstance(value, list | tuple):
        return tuple(sorted(((int(a), int(b)) for a, b in value), reverse=True))
    numbers = [int(n) for n in str(value).split()]
    return tuple(sorted(zip(numbers[0::2], numbers[1::2], strict=False), reverse=True))


def config_file(text: str) -> dict[str, list[str]]:
    """redis.conf directives -> values (a repeated directive such as `save` keeps every line)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        out.setdefault(key.lower(), []).append(value.strip().strip('"'))
    return out


def file_value(directives: dict[str, list[str]], key: str) -> str | None:
    """The effective value of a directive in the file ('save' lines joined, last one wins otherwise)."""
    values = directives.get(key)
    if not values:
        return None
    return " ".join(values) if key == "save" else values[-1]


def comparable(key: str, value) -> object:
    """A value of `key` as it compares: bytes for memory, save points, numbers, lower-case words."""
    if key == "maxmemory":
        return memory_bytes(value)
    if key == "save":
        return save_points(value)
    if key == "port":
        return int(value)
    return str(value).strip().lower()


def bind_findings(binds: list[str], own_addresses: set[str]) -> list[str]:
    """What is wrong with a bind list: the guide binds loopback plus the host's internal address."""
    problems = []
    plain = [b.lstrip("-") for b in binds]
    if not any(_is_loopback(b) for b in plain):
        problems.append("no loopback address")
    for b in binds:
        if b in WILDCARDS or b.lstrip("-") in WILDCARDS:
            problems.append(f"{b} listens on all interfaces")
        elif not _is_loopback(b.lstrip("-")):
            addr = b.lstrip("-")
            if addr not in own_addresses:
                problems.append(f"{b} is not an address of this host")
            elif not _is_private(addr):
                problems.append(f"{b} is a public address")
    return problems


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return addr == "localhost"


def _is_private(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_private
    except ValueError:
        return False


def parse_info(text: str) -> dict[str, str]:
    """CLUSTER INFO / INFO text -> {key: value}."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


@dataclass(frozen=True)
class Node:
    id: str
    address: str  # ip:port (the announced address)
    flags: frozenset[str]
    master_id: str | None
    link: str
    slots: tuple[str, ...] = ()

    @property
    def ip(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def healthy(self) -> bool:
        return self.link == "connected" and not self.flags & {"fail", "fail?", "handshake", "noaddr"}


def parse_nodes(text: str) -> list[Node]:
    """CLUSTER NODES text -> nodes ('<id> <ip:port@cport[,host]> <flags> <master> <ping> <pong>
    <epoch> <link-state> <slot> ...')."""
    nodes = []
    for line in text.strip().splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@", 1)[0]
        nodes.append(Node(id=parts[0], address=address, flags=frozenset(parts[2].split(",")),
                          master_id=None if parts[3] == "-" else parts[3], link=parts[7], slots=tuple(parts[8:])))
    return nodes


def myself(nodes: list[Node]) -> Node | None:
    return next((n for n in nodes if "myself" in n.flags), None)


def topology_findings(nodes: list[Node], masters: int, replicas_per_master: int) -> list[str]:
    """One node's view: `masters` masters serving slots, each with exactly `replicas_per_master`
    healthy (connected, not failing) replicas."""
    problems = []
    serving = [n for n in nodes if n.is_master and n.slots]
    if len(serving) != masters:
        problems.append(f"{len(serving)} masters serve slots, guide: {masters}")
    for m in serving:
        replicas = [n for n in nodes if n.master_id == m.id]
        healthy = [n for n in replicas if n.healthy]
        if len(healthy) != replicas_per_master:
            problems.append(f"master {m.address} has {len(healthy)} healthy replica(s) "
                            f"({', '.join(f'{r.address} {r.link} {sorted(r.flags)}' for r in replicas) or 'none'})"
                            f", guide: {replicas_per_master}")
    for n in nodes:
        if not n.healthy:
            problems.append(f"node {n.address} is {n.link} {sorted(n.flags)}")
    return sorted(set(problems))


def affinity_findings(nodes: list[Node], host_of: dict[str, str]) -> list[str]:
    """Replicas on a different host from their master; no host with two masters.
    `host_of` maps a node's announced ip to the inventory host."""
    problems = []
    by_id = {n.id: n for n in nodes}
    masters = [n for n in nodes if n.is_master and n.slots]
    for n in nodes:
        if n.master_id and n.master_id in by_id:
            mine, theirs = host_of.get(n.ip, n.ip), host_of.get(by_id[n.master_id].ip, by_id[n.master_id].ip)
            if mine == theirs:
                problems.append(f"replica {n.address} runs on {mine}, like its master {by_id[n.master_id].address}")
    for host, count in Counter(host_of.get(m.ip, m.ip) for m in masters).items():
        if count > 1:
            problems.append(f"{host} holds {count} masters")
    return problems


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class RedisFacts:
    """One Redis instance (the host's `redis` role, port 6379)."""

    port: int
    config_file: str                      # as Redis names it (INFO server); '' when it runs without one
    file_text: str                        # the guide's directives of that file
    running: dict[str, str] | None        # CONFIG GET; None when CONFIG is renamed away
    addresses: tuple[str, ...]            # the host's own addresses
    without_password: str                 # PING without a password: Redis' answer
    with_password: str                    # PING with the inventory's redis_password
    with_placeholder: str                 # AUTH with the guide's placeholder password
    used_memory: int
    maxmemory: int
    file: dict[str, str | None] = field(default_factory=dict)

    def sides(self, key: str) -> dict[str, Reading]:
        """`key` as it runs (CONFIG GET) and as the file sets it (read at the next restart)."""
        return config_sides(key, self.port, self.running, self.config_file, self.file)

    def norm(self, key: str, expected) -> object:
        return comparable(key, expected)


def config_sides(key: str, port: int, running: dict | None, conf: str, file: dict) -> dict[str, Reading]:
    """One instance's `key` as it runs (CONFIG GET) and as its file sets it (read at the next restart)."""
    out = {}
    if running is not None and key in running:
        out[RUNNING] = Reading(running[key], _safe_comparable(key, running[key]), f"CONFIG GET {key} on port {port}")
    if conf:
        value = file.get(key)
        out[ON_DISK] = Reading(value, None if value is None else _safe_comparable(key, value), conf)
    return out


def config_get(flat) -> dict[str, str] | None:
    """CONFIG GET's answer (a flat list or a mapping) as a dict; None when Redis refused it."""
    if isinstance(flat, RedisAnswer):
        return None
    return dict(flat.items()) if isinstance(flat, dict) else dict(zip(flat[0::2], flat[1::2], strict=False))


def conf_command(redis_conf: str) -> str:
    """Only the guide's directives of a Redis configuration file (never requirepass/masterauth leave
    the host): the file read as root, its lines chosen as the audit account."""
    return (f"$SUDO cat {shlex.quote(redis_conf)} | grep -E '^[[:space:]]*({'|'.join(KEYS)})([[:space:]]|$)'"
            if redis_conf else "true")


def _safe_comparable(key: str, value):
    try:
        return comparable(key, value)
    except ValueError:
        return str(value)


def answer(reply) -> str:
    """A Redis reply in a few words: PONG / OK, or its error text."""
    if isinstance(reply, RedisAnswer):
        return str(reply)
    return "PONG" if reply is True or reply == "PONG" else str(reply)


@probe()
def redis(session, host) -> RedisFacts:
    """The Redis instance of a `redis` host: configuration running and on disk, auth answers, memory."""
    access, port = session.access, guide.REDIS_PORT
    placeholder = session.expected("REDIS-PASSWORD-NOT-PLACEHOLDER")["placeholder"]
    without = answer(access.redis_call(host, port, "PING", password=None))
    with_password = answer(access.redis_call(host, port, "PING"))
    no_password_set = "without any password configured" in with_password
    login = None if no_password_set else True  # a Redis without a password refuses AUTH: read it anyway
    info = access.redis_call(host, port, "INFO", "server", password=login)
    memory = access.redis_call(host, port, "INFO", "memory", password=login)
    if isinstance(info, RedisAnswer) or isinstance(memory, RedisAnswer):
        refused = info if isinstance(info, RedisAnswer) else memory
        raise CouldNotAudit(host.name, f"Redis on port {port}", f"INFO refused: {refused}")
    running = config_get(access.redis_call(host, port, "CONFIG", "GET", *KEYS, password=login))
    conf = info.get("config_file") or ""
    facts = access.collect(host, {"conf": conf_command(conf), "addresses": "hostname -I 2>/dev/null || hostname -i"})
    if conf and not facts["conf"]:
        raise CouldNotAudit(host.name, f"Redis configuration file {conf}",
                            "not readable by the audit account (or it sets none of the guide's directives)")
    directives = config_file(facts["conf"])
    return RedisFacts(
        port=port, config_file=conf, file_text=facts["conf"], running=running,
        addresses=tuple(facts["addresses"].split()), without_password=without, with_password=with_password,
        with_placeholder=answer(access.redis_call(host, port, "PING", password=placeholder)),
        used_memory=int(memory.get("used_memory", 0)), maxmemory=int(memory.get("maxmemory", 0)),
        file={k: file_value(directives, k) for k in KEYS})


@dataclass(frozen=True)
class ClusterNodeView:
    host: str
    port: int
    info: dict[str, str]
    nodes: tuple[Node, ...]
    text: str
    error: str | None
    running: dict[str, str] | None = None   # CONFIG GET of the guide's keys; None when it is refused
    config_file: str = ""                   # as the node names it (INFO server); '' when it runs without one
    file: dict[str, str | None] = field(default_factory=dict)  # the guide's directives of that file

    def sides(self, key: str) -> dict[str, Reading]:
        """`key` as the node runs it and as its file sets it (the guide's settings a node carries)."""
        return config_sides(key, self.port, self.running, self.config_file, self.file)


@dataclass(frozen=True)
class ClusterFacts:
    """Every inventory cluster node's view, and which inventory host each announced address is."""

    views: dict[tuple[str, int], ClusterNodeView]
    host_of: dict[str, str]

    def answering(self, host: str | None = None) -> dict[tuple[str, int], ClusterNodeView]:
        return {k: v for k, v in self.views.items() if not v.error and (host is None or k[0] == host)}

    def text(self) -> str:
        return "\n\n".join(f"# {h}:{p}\n{v.text or v.error}" for (h, p), v in sorted(self.views.items()))


@probe(per_host=False, slow=True)
def redis_cluster(session) -> ClusterFacts:
    """Every cluster node of the inventory (`redis_cluster` hosts, their redis_cluster_ports), asked
    through its own host's tunnel: CLUSTER INFO and CLUSTER NODES, and the guide's settings it
    carries as it runs them (CONFIG GET) and as its file sets them (read with the host's addresses,
    one round trip per host)."""
    access = session.access
    views, host_of = {}, {}
    hosts = session.inventory.hosts_with_role("redis_cluster")
    if not hosts:
        raise CouldNotAudit(None, "the Redis Cluster", "no host in inventory group redis_cluster")
    for host in hosts:
        session.facts.get("reach", host.name)
        mine = {}
        for port in host.settings.redis_cluster_ports:
            try:
                info = access.redis_call(host, port, "CLUSTER", "INFO")
                text = access.redis_call(host, port, "CLUSTER", "NODES")
                if isinstance(info, RedisAnswer) or isinstance(text, RedisAnswer):
                    raise CouldNotAudit(host.name, f"Redis on port {port}", str(info if isinstance(info, RedisAnswer)
                                                                                 else text))
                server = access.redis_call(host, port, "INFO", "server")
                conf = "" if isinstance(server, RedisAnswer) else server.get("config_file") or ""
                view = ClusterNodeView(host.name, port, parse_info(info), tuple(parse_nodes(text)), text, None,
                                       config_get(access.redis_call(host, port, "CONFIG", "GET", *KEYS)), conf)
            except CouldNotAudit as exc:
                view = ClusterNodeView(host.name, port, {}, (), "", exc.why)
            mine[port] = view
        out = access.collect(host, {"addresses": "hostname -I 2>/dev/null || hostname -i",
                                    **{f"conf {p}": conf_command(v.config_file) for p, v in mine.items()}})
        for addr in out["addresses"].split():
            host_of[addr] = host.name
        for port, view in mine.items():
            if view.config_file:
                directives = config_file(out[f"conf {port}"])
                view = dataclasses.replace(view, file={k: file_value(directives, k) for k in KEYS})
            views[(host.name, port)] = view
            me = myself(list(view.nodes))
            if me:
                host_of[me.ip] = host.name
    return ClusterFacts(views, host_of)
