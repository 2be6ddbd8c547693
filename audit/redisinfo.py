"""Redis parsing and comparison helpers of checks/test_redis.py (pure: unit-tested on captured
outputs in tests/unit/test_redis_parsing.py)."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
WILDCARDS = {"*", "-*", "0.0.0.0", "::", "-::*", "::*"}


def memory_bytes(value: str | int) -> int:
    """redis.conf memory notation ('4gb', '4g', '4294967296') in bytes, as Redis reads it."""
    m = re.match(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$", str(value))
    if not m or m.group(2).lower() not in UNITS:
        raise ValueError(f"not a Redis memory value: {value!r}")
    return int(m.group(1)) * UNITS[m.group(2).lower()]


def save_points(value: str) -> list[tuple[int, int]]:
    """'900 1 300 10 60 10000' (CONFIG GET save) -> [(900, 1), (300, 10), (60, 10000)]."""
    numbers = [int(n) for n in str(value).split()]
    return sorted(zip(numbers[0::2], numbers[1::2], strict=False), reverse=True)


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


@dataclass
class Node:
    id: str
    address: str  # ip:port (the announced address)
    flags: set[str]
    master_id: str | None
    link: str
    slots: list[str] = field(default_factory=list)

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
        nodes.append(Node(id=parts[0], address=address, flags=set(parts[2].split(",")),
                          master_id=None if parts[3] == "-" else parts[3], link=parts[7], slots=parts[8:]))
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
