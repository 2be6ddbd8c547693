"""A default audit changes nothing: no write statement to PostgreSQL, no write command to any
Redis, no file left behind on any host; on both flavours (the fleet's audit reads through sudo as
`auditor`, its units are systemd's).

One full default audit (`pytest --hosts=local -n 2` or `--hosts=fleet`, default markers: no
`writes`) is watched three ways while it runs:
- PostgreSQL: the reference primary logs every data-modifying statement (`log_statement =
  'mod'`, see provision/DEVIATIONS.md); not one from the audit role `pynomaly_audit`, and no
  write attempt refused as read-only (the audit's pynomaly_user sessions are forced read-only).
- Redis: `MONITOR` on every instance (cache1:6379 and the six cluster nodes) records each
  command; the audit's arrive through its SSH forwards, from 127.0.0.1 (the app and the
  exporter connect from web1's address). None may be a command that Redis itself puts in the
  @write category, and every one must be a read or an inspection command. A control run proves
  that the same counter does see a write from 127.0.0.1.
- Files: a marker is touched on every host before the audit; afterwards no file on the root
  filesystem is newer than it, apart from logs, the data directories of the services (their own
  writes; the database writes are counted above) and SIDE_EFFECTS, each with its reason.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter

import pytest

from provision import containers, docker_engine, drifts, topology
from provision.fleet import topology as fleet_topology
from provision.fleet.state import FleetState
from provision.state import State
from tests.integration.audit_runner import run_audit
from tests.integration.flavours import FLAVOURS, FLEET

PG_LOG = "/var/log/postgresql/postgresql-15-main.log"  # both flavours: the Debian cluster's log file
MARKER = "/dev/shm/pynomaly-audit-marker"  # tmpfs: outside the filesystem that is scanned
# Written by the services on their own (or by their log), never by the audit's commands.
SERVICE_WRITES = ("/var/log/", "/var/lib/postgresql/", "/var/lib/redis/", "/var/lib/prometheus/",
                  "/var/lib/fail2ban/")
# Touched by commands the audit must run, or by the SSH login itself.
SIDE_EFFECTS = {
    "/run/ufw.lock": "`ufw status` takes ufw's lock",
    "/run/unattended-upgrades.lock": "the guide's `unattended-upgrade --dry-run` takes its lock",
    "/var/lib/apt/periodic/unattended-upgrades-stamp": "the guide's `unattended-upgrade --dry-run` writes its "
                                                       "stamp even when dry (created by its first run)",
    "/run/motd.dynamic": "sshd's PAM session (pam_motd) writes it at every login",
    "/var/lib/sudo/lectured/auditor": "sudo's first-use lecture stamp of the audit account (fleet)",
}
# Redis commands outside @read that only inspect (the container command and its subcommand).
INSPECTION = {"ping", "info", "config|get", "cluster|info", "cluster|nodes", "cluster|slots", "cluster|shards",
              "cluster|myid", "client|setname", "client|list", "client|info", "command", "command|docs",
              "auth", "hello", "select", "memory|stats", "latency|latest", "slowlog|get", "role"}
CONTAINER_COMMANDS = {"config", "cluster", "client", "command", "memory", "latency", "slowlog", "acl", "object",
                      "debug", "script", "function", "module", "xinfo", "pubsub"}
MONITOR_LINE = re.compile(r'^\d+\.\d+ \[\d+ (?P<source>[^\]]+)\] (?P<args>.*)$')


def _docker():
    return docker_engine.client_or_none()


def _ctx(name: str = "reference") -> drifts.Ctx:
    """provision's own helpers for a flavour: `container(host)` (the fleet's are `fleet-*`), `sh`
    in a host, `redis` (redis-cli with the password from the flavour's state)."""
    return drifts.Ctx(_docker(), FleetState() if name == "fleet" else State(), name)


def _hosts(ctx: drifts.Ctx) -> list[str]:
    return [h.name for h in (fleet_topology if ctx.fleet else topology).HOSTS]


def _redis_instances(ctx: drifts.Ctx) -> list[tuple[str, int]]:
    topo = fleet_topology if ctx.fleet else topology
    return [("cache1", 6379)] + [(h.name, p) for h in topo.hosts_with("redis_cluster") for p in topo.CLUSTER_PORTS]


def _redis_cli(host: str, port: int, args: str, ctx: drifts.Ctx | None = None) -> str:
    return (ctx or _ctx()).redis(host, port, args)


class RedisMonitor:
    """`redis-cli MONITOR` on every instance, into /dev/shm (tmpfs), for the duration of a block."""

    def __init__(self, ctx: drifts.Ctx | None = None):
        self.ctx = ctx or _ctx()

    def _log(self, port: int) -> str:
        return f"/dev/shm/pynomaly-monitor-{port}"

    def __enter__(self):
        for host, port in _redis_instances(self.ctx):  # MONITOR in the background: read at the end
            _redis_cli(host, port, f"MONITOR > {self._log(port)} 2>&1 & echo $! > {self._log(port)}.pid", self.ctx)
        return self

    def __exit__(self, *exc) -> None:
        self.logs = {}
        for host, port in _redis_instances(self.ctx):
            log = self._log(port)
            self.logs[(host, port)] = containers.run(
                self.ctx.container(host), f"kill $(cat {log}.pid); cat {log}; rm -f {log} {log}.pid")[1]


def commands_from(log: str, source: str = "127.0.0.1") -> Counter:
    """MONITOR output -> how often each command ('config|get' for a subcommand) came from `source`."""
    seen: Counter = Counter()
    for line in log.splitlines():
        m = MONITOR_LINE.match(line)
        if not m or m.group("source").rsplit(":", 1)[0] != source:
            continue
        args = [a.lower() for a in shlex.split(m.group("args"))]
        if not args:
            continue
        seen[f"{args[0]}|{args[1]}" if args[0] in CONTAINER_COMMANDS and len(args) > 1 else args[0]] += 1
    return seen


def files_newer_than_marker(container) -> list[str]:
    """Files (not directories) on the root filesystem modified after MARKER, outside logs,
    service data and SIDE_EFFECTS."""
    skip = " ".join(f"-not -path '{p}*'" for p in SERVICE_WRITES)
    found = containers.run(container, f"find / -xdev -newer {MARKER} -not -type d {skip} -not -path '/proc/*'")[1]
    return [path for path in found.split() if path not in SIDE_EFFECTS]


def redis_categories(ctx: drifts.Ctx | None = None) -> tuple[set[str], set[str]]:
    """The commands that Redis itself puts in @write and in @read (asked of the flavour's own
    cache1: the other flavour's MONITOR may be watching its own)."""
    def listed(category: str) -> set[str]:
        return set(_redis_cli("cache1", 6379, f"COMMAND LIST FILTERBY ACLCAT {category}", ctx).split())
    return listed("write"), listed("read")


@pytest.fixture(scope="module", params=["reference", "fleet"])
def watched_audit(request, tmp_path_factory):
    """The full default audit of a flavour, with the PostgreSQL log, Redis MONITOR and file
    markers watching (under the flavour's drift lock: no drift experiment meanwhile)."""
    flavour = FLAVOURS[request.param]
    request.getfixturevalue("fleet_deployment" if flavour is FLEET else "deployment")
    ctx = _ctx(flavour.name)
    with flavour.selected(), drifts.lock():
        db1 = ctx.container("db1")
        pg_start = int(containers.run(db1, f"stat -c %s {PG_LOG}")[1].strip())
        for host in _hosts(ctx):
            containers.run(ctx.container(host), f"touch {MARKER}")
        with RedisMonitor(ctx) as monitor:
            run = run_audit(flavour.inventory, tmp_path_factory.mktemp("audit"), "-n", "2")
        left = {}
        for host in _hosts(ctx):
            container = ctx.container(host)
            left[host] = files_newer_than_marker(container)
            containers.run(container, f"rm -f {MARKER}")
        pg_log = containers.run(db1, f"tail -c +{pg_start + 1} {PG_LOG}")[1]
        categories = redis_categories(ctx)
    return run, pg_log, monitor.logs, left, categories


def test_audit_ran(watched_audit):
    run, *_ = watched_audit
    assert run.exit_code == 0, run.explain()


def test_audit_writes_nothing_to_postgresql(watched_audit):
    _, logged, *_ = watched_audit
    writes = [line for line in logged.splitlines() if "pynomaly_audit@" in line and "statement:" in line]
    refused = [line for line in logged.splitlines() if "read-only transaction" in line]
    assert "pynomaly_audit@" in logged, "the audit's sessions do not show in the log: is log_connections on?"
    assert not writes, "the audit wrote:\n" + "\n".join(writes)
    assert not refused, "the audit tried to write:\n" + "\n".join(refused)


def test_audit_writes_nothing_to_redis(watched_audit, capsys):
    _, _, logs, _, (write, read) = watched_audit
    per_instance = {f"{h}:{p}": commands_from(log) for (h, p), log in logs.items()}
    with capsys.disabled():
        for where, seen in per_instance.items():
            print(f"\n  {where}: the audit sent {sum(seen.values())} commands: {dict(seen)}", end="")
    assert all(per_instance.values()), f"MONITOR saw no command from the audit on some instance: {per_instance}"
    writes = {w: sorted(set(c) & write) for w, c in per_instance.items() if set(c) & write}
    assert not writes, f"the audit sent write commands: {writes}"
    other = {w: sorted(c for c in seen if c not in read and c.split("|")[0] not in read and c not in INSPECTION)
             for w, seen in per_instance.items()}
    assert not any(other.values()), f"the audit sent commands that are neither reads nor inspection: {other}"


def test_redis_write_counter_sees_a_write(deployment):
    """Control: a SET and a DEL from 127.0.0.1, watched the same way, are counted as writes."""
    write, _ = redis_categories()
    with RedisMonitor() as monitor:
        _redis_cli("cache1", 6379, "-h 127.0.0.1 SET pynomaly:write-probe 1")
        _redis_cli("cache1", 6379, "-h 127.0.0.1 DEL pynomaly:write-probe")
    seen = commands_from(monitor.logs[("cache1", 6379)])
    assert {c: n for c, n in seen.items() if c in write} == {"set": 1, "del": 1}, seen


def test_audit_leaves_no_file_on_the_hosts(watched_audit):
    _, _, _, left, _ = watched_audit
    left = {h: paths for h, paths in left.items() if paths}
    assert not left, f"files changed or left behind by the audit (outside logs and service data): {left}"


def test_file_scan_sees_a_left_file(deployment):
    """Control: a file created after the marker, outside logs and service data, is found."""
    web1 = _docker().containers.get("web1")
    containers.run(web1, f"touch {MARKER}; sleep 1; touch /tmp/pynomaly-left-behind")
    try:
        found = files_newer_than_marker(web1)
    finally:
        containers.run(web1, f"rm -f {MARKER} /tmp/pynomaly-left-behind")
    assert "/tmp/pynomaly-left-behind" in found, found
