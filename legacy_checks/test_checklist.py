"""Guide: Monitoring Checklist - the host parts of System Health, Application Health and Security
Health: CPU, memory, disk, network latency, services running, failed logins, security updates,
firewall rules, and (opt-in, marker `writes`) a restore test of the newest database backup.

A host is asked once for this area (`server.collect("checklist", ...)`); the firewall and the apt
data come from the network and hardening areas' own round trips.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import statistics
import time

import pytest

from audit.evidence import attach, compare
from audit.hostcheck import network_facts, setting
from audit.hostparse import (
    SERVER_ROLES,
    df_usage,
    memory_used_percent,
    parse_ufw_status,
    rule_ports,
    source_is_internal,
)
from checks.test_hardening import pending_upgrades

EVERY_SERVER = pytest.mark.roles(*SERVER_ROLES)
LATENCY_SAMPLES = 5
APP_BASE_PORT = 8000
AUTH_FAILURE = re.compile(
    r"^(\S+) \S+ sshd\[\d+\]: (?:Failed \S+ for (?:invalid user )?\S+|Invalid user \S*) from (\S+)")


def service_states_script(services: list[str], app_ports: list[int]) -> str:
    """One line per service: NAME active|inactive (systemd when it runs, else the init script);
    pynomaly-app:PORT lines for the app instances (their health endpoint on the host)."""
    names = " ".join(services)
    lines = [
        f"for s in {names}; do",
        "  if [ -d /run/systemd/system ]; then st=$(systemctl is-active $s 2>/dev/null);",
        "  elif [ -x /etc/init.d/$s ]; then service $s status >/dev/null 2>&1 && st=active || st=inactive;",
        "  else st=not-installed; fi; echo \"$s $st\"; done",
    ]
    for port in app_ports:
        lines.append(f"curl -fsS -m 3 -o /dev/null http://127.0.0.1:{port}/health && echo 'pynomaly-app:{port} active'"
                     f" || echo 'pynomaly-app:{port} inactive'")
    return "\n".join(lines)


def expected_services(roles, want: dict) -> list[str]:
    out = list(want.get("all", []))
    for role in sorted(roles):
        out += [s for s in want.get(role, []) if s not in out]
    return out


def checklist_commands(server, services: list[str], app_ports: list[int]) -> dict[str, str]:
    return {
        "nproc": "nproc",
        "loadavg": "cat /proc/loadavg",
        "meminfo": "cat /proc/meminfo",
        "df": "df -P 2>/dev/null",
        "services": service_states_script([s for s in services if s != "pynomaly-app"], app_ports),
        "now": "date +%s",
        "auth_log": "tail -n 5000 /var/log/auth.log 2>/dev/null",
    }


def _app_ports(server, inventory) -> list[int]:
    if "app" not in server.roles:
        return []
    count = int(inventory.setting("audit_app_instances") or 3)
    return [APP_BASE_PORT + i for i in range(count)]


@pytest.fixture
def checklist(server, expected, inventory):
    services = expected_services(server.roles, expected("CHK-SERVICES-RUNNING"))
    ports = _app_ports(server, inventory)
    return server.collect("checklist", checklist_commands(server, services, ports))


def cpu_load_percent(loadavg: str, nproc: str) -> tuple[int, float, float]:
    """/proc/loadavg and nproc -> (cores, 5-minute load, load as % of the cores)."""
    cores, load5 = int(nproc.strip()), float(loadavg.split()[1])
    return cores, load5, round(100 * load5 / cores, 1)


@EVERY_SERVER
@pytest.mark.requirement("CHK-CPU-USAGE")
def test_cpu_usage(server, expected, checklist):
    """"CPU usage < 80%": the 5-minute load average as a share of the host's cores."""
    limit = expected("CHK-CPU-USAGE")["max_percent"]
    cores, load5, percent = cpu_load_percent(checklist["loadavg"], checklist["nproc"])
    compare("CPU load (5 min) % of cores", {"load5": load5, "cores": cores, "percent": percent}, f"< {limit}")
    assert percent < limit, f"{server.name}: CPU load {load5} on {cores} cores = {percent}% (max {limit}%)"


@EVERY_SERVER
@pytest.mark.requirement("CHK-MEMORY-USAGE")
def test_memory_usage(server, expected, checklist):
    """"Memory usage < 80%": (MemTotal - MemAvailable) / MemTotal."""
    limit = expected("CHK-MEMORY-USAGE")["max_percent"]
    percent = round(memory_used_percent(checklist["meminfo"]), 1)
    compare("memory used %", percent, f"< {limit}")
    assert percent < limit, f"{server.name}: memory {percent}% used (max {limit}%)"


def filesystems(df_text: str) -> dict[str, int]:
    """Used % of the host's filesystems (kernel pseudo mounts under /proc and /sys left out)."""
    return {m: p for m, p in df_usage(df_text).items() if not m.startswith(("/proc", "/sys"))}


@EVERY_SERVER
@pytest.mark.requirement("CHK-DISK-USAGE")
def test_disk_usage(server, expected, checklist):
    """"Disk usage < 80%" (the daily task's alert fires above 90%: the checklist's 80% is stricter)."""
    limit = expected("CHK-DISK-USAGE")["max_percent"]
    usage = filesystems(checklist["df"])
    attach("df -P", checklist["df"])
    full = {m: p for m, p in usage.items() if p >= limit}
    compare("filesystems used %", usage, f"< {limit} each")
    assert usage, f"{server.name}: df showed no filesystem"
    assert not full, f"{server.name}: filesystems at or above {limit}%: {full}"


def tcp_connect_ms(address: str, port: int, samples: int = LATENCY_SAMPLES, timeout: float = 2.0) -> list[float]:
    """Connect times in ms. A connection that times out is a sample of at least `timeout` (a
    lossy link is latency too); when none connects, the host cannot be measured (TimeoutError)."""
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        try:
            with socket.create_connection((address, port), timeout=timeout):
                out.append(round((time.perf_counter() - started) * 1000, 2))
        except TimeoutError:
            out.append(timeout * 1000)
    if all(ms >= timeout * 1000 for ms in out):
        raise TimeoutError(f"{address}:{port}: no TCP connection within {timeout}s in {samples} tries")
    return out


@EVERY_SERVER
@pytest.mark.requirement("CHK-NETWORK-LATENCY")
def test_network_latency(server, expected):
    """"Network latency < 100ms": TCP connect time from the auditor to the host's SSH port (median)."""
    limit = expected("CHK-NETWORK-LATENCY")["max_ms"]
    address, port = server.host_vars.address, int(server.host_vars.port or 22)
    times = tcp_connect_ms(address, port)
    median = statistics.median(times)
    compare(f"TCP connect to {address}:{port} (ms)", {"samples": times, "median": median}, f"< {limit}")
    assert median < limit, f"{server.name}: TCP connect latency {median} ms (max {limit} ms)"


@EVERY_SERVER
@pytest.mark.requirement("CHK-SERVICES-RUNNING")
def test_services_running(server, expected, checklist):
    """"All services running": the role's services, and every app instance answers /health."""
    states = dict(line.split(None, 1) for line in checklist["services"].splitlines() if " " in line)
    compare("services", states, "active")
    down = {s: st for s, st in states.items() if st.strip() != "active"}
    assert states, f"{server.name}: no service state could be read"
    assert not down, f"{server.name}: services not running: {down}"


def failures_per_source(auth_log: str, now: float, window: int) -> dict[str, int]:
    """Failed SSH logins per source address within the last `window` seconds (RFC 3339 syslog)."""
    counts: dict[str, int] = {}
    for line in auth_log.splitlines():
        m = AUTH_FAILURE.match(line)
        if not m:
            continue
        try:
            stamp = dt.datetime.fromisoformat(m.group(1)).timestamp()
        except ValueError:
            continue
        if now - stamp <= window:
            counts[m.group(2)] = counts.get(m.group(2), 0) + 1
    return counts


@EVERY_SERVER
@pytest.mark.requirement("CHK-FAILED-LOGINS")
def test_failed_logins(server, expected, checklist):
    """"Failed login attempts < threshold": SSH failures per source in /var/log/auth.log within
    fail2ban's findtime stay within maxretry."""
    want = expected("CHK-FAILED-LOGINS")
    counts = failures_per_source(checklist["auth_log"], float(checklist["now"]), int(want["window_seconds"]))
    over = {src: n for src, n in counts.items() if n > want["max_failures_per_source"]}
    compare(f"failed SSH logins per source (last {want['window_seconds']} s)", counts,
            f"<= {want['max_failures_per_source']} each")
    assert not over, f"{server.name}: sources over the failed-login threshold: {over}"


@EVERY_SERVER
@pytest.mark.requirement("CHK-SECURITY-UPDATES")
def test_security_updates(server, expected):
    """"Security updates installed": no pending upgrade from a security pocket (host's apt index)."""
    limit = expected("CHK-SECURITY-UPDATES")["max_pending_security_updates"]
    security = [p for p in pending_upgrades(server) if p.security]
    compare("pending security upgrades", [f"{p.package} {p.installed} -> {p.candidate} ({p.origin})" for p in security],
            f"at most {limit}")
    assert len(security) <= limit, f"{server.name}: {len(security)} pending security updates: " + ", ".join(
        p.package for p in security[:10])


def allowance(server, want: dict) -> list[tuple[int, bool]]:
    """(port, internal_only) the guide allows on this host's roles."""
    out = []
    for role in ["all", *sorted(server.roles)]:
        for item in want.get(role, []):
            m = re.match(r"(\d+)/tcp(\s+internal)?", item)
            if m:
                out.append((int(m.group(1)), bool(m.group(2))))
    return out


def extra_rules(status, allowed: list[tuple[int, bool]], network: str | None) -> list[str]:
    """ufw ALLOW rules beyond `allowed`: a port not allowed, or public where only internal is."""
    extra = []
    for r in status.rules:
        if not r.allows:
            continue
        internal = bool(network) and source_is_internal(r.source, network)
        ports = rule_ports(r.to)
        ok = ports is not None and all(any(p == port and (internal or not only) for port, only in allowed)
                                       for p in ports)
        if not ok:
            extra.append(f"{r.to} {r.action} {r.source}")
    return extra


@EVERY_SERVER
@pytest.mark.requirement("CHK-FIREWALL-RULES-UP-TO-DATE")
def test_firewall_rules_up_to_date(server, expected, inventory):
    """"Firewall rules up to date": no ufw allow rule beyond the guide's for the host's roles."""
    want = expected("CHK-FIREWALL-RULES-UP-TO-DATE")
    text = network_facts(server)["ufw"]
    attach("ufw status verbose", text)
    status = parse_ufw_status(text)
    network = setting(server, "deployment_network", None, inventory)
    extra = extra_rules(status, allowance(server, want), network)
    compare("ufw allow rules beyond the guide's", extra, [])
    assert not extra, f"{server.name}: ufw rules beyond the guide's for roles {sorted(server.roles)}: {extra}"


# ---------------------------------------------------------------- restore test (opt-in: writes)

RESTORE_TIMEOUT = 120


def restore_script(scratch: str, database: str, backup_dir: str) -> str:
    """Restore the newest dump into `scratch`, print row counts of both databases, always drop it."""
    count = ("SELECT format('%s %s', c.relname, (xpath('/row/n/text()', query_to_xml("
             "format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text) "
             "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
             "WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1")
    psql = "runuser -u postgres -- psql -qtAX"
    return "\n".join([
        "set -u",
        f"f=$(ls -t {backup_dir}/*.sql.gz | head -1); echo \"newest $f\"",
        f"trap '{psql} -c \"DROP DATABASE IF EXISTS {scratch}\" >/dev/null 2>&1' EXIT",
        f"{psql} -c 'CREATE DATABASE {scratch}' || exit 3",
        f"gunzip -c \"$f\" | {psql} -v ON_ERROR_STOP=1 -d {scratch} >/dev/null 2>/tmp/.pa-restore.err;"
        " echo \"restore rc=$?\"; head -5 /tmp/.pa-restore.err; rm -f /tmp/.pa-restore.err",
        f"echo '--- restored'; {psql} -d {scratch} -c \"{count}\"",
        f"echo '--- live'; {psql} -d {database} -c \"{count}\"",
    ])


def row_counts(text: str, section: str) -> dict[str, int]:
    """The "table count" lines after the `--- section` marker, up to the next marker."""
    counts: dict[str, int] = {}
    inside = False
    for line in text.splitlines():
        if line.startswith("--- "):
            inside = line == f"--- {section}"
            continue
        parts = line.split()
        if inside and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.writes
@pytest.mark.roles("backup_db")
@pytest.mark.requirement("CHK-BACKUP-INTEGRITY-VERIFIED")
def test_backup_restores(server, expected):
    """"Backup integrity verified": the newest backup restores into a scratch database with every table
    of pynomaly_prod; row counts are compared (the live one may have grown since the dump). The scratch
    database is dropped afterwards."""
    dump = expected("BAK-DB-SCRIPT-DUMP")
    scratch = f"pynomaly_restore_check_{int(time.time())}"
    out = server.run(restore_script(scratch, dump["database"], dump["backup_dir"]), timeout=RESTORE_TIMEOUT).stdout
    attach("restore test", out)
    restored, live = row_counts(out, "restored"), row_counts(out, "live")
    compare("row counts", restored, live)
    assert "restore rc=0" in out, f"{server.name}: the newest backup does not restore: {out[-500:]}"
    missing = sorted(set(live) - set(restored))
    shrunk = {t: (restored[t], live[t]) for t in live if t in restored and restored[t] > live[t]}
    assert not missing, f"{server.name}: tables missing from the restored backup: {missing}"
    assert not shrunk, f"{server.name}: restored tables have more rows than the live ones: {shrunk}"
