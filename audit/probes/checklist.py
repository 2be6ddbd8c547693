"""Monitoring Checklist (guide: System Health, Application Health, Security Health), the host
parts: CPU, memory, disk, services running, failed logins (ONE round trip per host), and the
network latency from the runner. The firewall and the pending upgrades are the network and
hardening probes' (audit/probes/network.py, hardening.py); the restore test of the newest
database backup (opt-in, `writes`) is an action of this module, called by its check.

Hosts differ: services are read with systemctl where systemd is PID 1, else with the init
script; sshd logs to /var/log/auth.log (Debian, Ubuntu), /var/log/secure (RHEL) or only the
journal, with RFC 3339 stamps (Debian's rsyslog) or the traditional `Nov 27 12:00:01` ones.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import statistics
import time
from dataclasses import dataclass, field

from audit import guide
from audit.facts import probe
from audit.outcomes import CouldNotAudit
from audit.probes.network import UNREADABLE, chain_rules, rule_ports

LATENCY_SAMPLES = 5
LATENCY_TIMEOUT = 2.0
RESTORE_TIMEOUT = 120
ALIASES = {"ssh": ("ssh", "sshd"), "cron": ("cron", "crond")}  # Debian's names, then RHEL's
STAMP = r"(?P<stamp>\d{4}-\d\d-\d\dT\S+|[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d)"
AUTH_FAILURE = re.compile(STAMP + r" \S+ sshd(?:-session)?\[\d+\]: "
                          r"(?:Failed \S+ for (?:invalid user )?\S* |Invalid user \S* )from (?P<source>\S+)")


# ---------------------------------------------------------------- parsing (unit-tested)

def cpu_load_percent(loadavg: str, nproc: str) -> tuple[int, float, float]:
    """/proc/loadavg and nproc -> (cores, 5-minute load, load as % of the cores)."""
    cores, load5 = int(nproc.strip()), float(loadavg.split()[1])
    return cores, load5, round(100 * load5 / cores, 1)


def memory_used_percent(meminfo: str) -> float:
    """/proc/meminfo -> used percent (MemTotal - MemAvailable) / MemTotal."""
    vals = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", meminfo, re.M)}
    total, avail = vals.get("MemTotal", 0), vals.get("MemAvailable")
    if not total or avail is None:
        raise ValueError("MemTotal/MemAvailable missing from /proc/meminfo")
    return 100.0 * (total - avail) / total


def df_usage(text: str) -> dict[str, int]:
    """`df -P` -> {mountpoint: used percent}."""
    out = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[4].endswith("%") and fields[4][:-1].isdigit():
            out[" ".join(fields[5:])] = int(fields[4][:-1])
    return out


def filesystems(df_text: str) -> dict[str, int]:
    """Used % of the host's filesystems (kernel pseudo mounts under /proc and /sys left out)."""
    return {m: p for m, p in df_usage(df_text).items() if not m.startswith(("/proc", "/sys"))}


def expected_services(roles, want: dict) -> list[str]:
    """CHK-SERVICES-RUNNING's services for a host of these roles (`all`, then each role's)."""
    out = list(want.get("all", []))
    for role in sorted(roles):
        out += [s for s in want.get(role, []) if s not in out]
    return out


def service_states_script(services: list[str], app_ports: list[int], systemd: str = "/run/systemd/system",
                          init_d: str = "/etc/init.d") -> str:
    """One line per service: `NAME STATE [ENABLED] [(UNIT)]` (systemctl is-active/is-enabled where
    systemd is PID 1, else the init script's status, as root; `not-installed` when neither knows
    it); `pynomaly-app:PORT active|inactive` for the app instances (their /health on the host)."""
    lines = [
        f"state() {{ unit=$1; if [ -d {systemd} ]; then",
        "  case \"$(systemctl show -p LoadState \"$1.service\" 2>/dev/null)\" in",
        "    LoadState=loaded|LoadState=masked) ;; *) return 1;; esac;",  # masked: a state to show
        "  echo \"$(systemctl is-active \"$1.service\") $(systemctl is-enabled \"$1.service\" 2>/dev/null)\";",
        f"elif [ -x \"{init_d}/$1\" ]; then",
        "  if command -v service >/dev/null; then $SUDO service \"$unit\" status >/dev/null 2>&1;",
        f"  else $SUDO \"{init_d}/$unit\" status >/dev/null 2>&1; fi && echo active || echo inactive;",
        "else return 1; fi; }",
    ]
    for s in services:
        units = " ".join(ALIASES.get(s, (s,)))
        lines.append(f"st=not-installed; for u in {units}; do if x=$(state $u); then st=\"$x\"; "
                     f"[ $u = {s} ] || st=\"$st ($u)\"; break; fi; done; echo \"{s} $st\"")
    for port in app_ports:
        lines.append(f"curl -fsS -m 3 -o /dev/null http://127.0.0.1:{port}/health && echo 'pynomaly-app:{port} active'"
                     f" || echo 'pynomaly-app:{port} inactive'")
    return "\n".join(lines)


def service_states(text: str) -> dict[str, str]:
    """The script's lines -> {service: its state words}."""
    return dict(line.split(None, 1) for line in text.splitlines() if " " in line.strip())


def log_seconds(stamp: str, now: float, utc_offset: str = "+0000") -> float | None:
    """A syslog time stamp as seconds since the epoch: RFC 3339 (`2026-11-27T12:00:01.5+00:00`,
    or the journal's `+0000`), or the traditional `Nov 27 12:00:01` in the host's local time
    (`utc_offset`, from `date +%z`), in the year that puts it no later than a day after `now`."""
    try:
        if stamp[:1].isdigit():
            parsed = dt.datetime.fromisoformat(stamp)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.datetime.strptime(utc_offset, "%z").tzinfo)
            return parsed.timestamp()
        zone = dt.datetime.strptime(utc_offset, "%z").tzinfo
        year = dt.datetime.fromtimestamp(now, zone).year
        for y in (year, year - 1):
            local = dt.datetime.strptime(f"{y} {' '.join(stamp.split())}", "%Y %b %d %H:%M:%S").replace(tzinfo=zone)
            if local.timestamp() <= now + 86400:
                return local.timestamp()
    except ValueError:
        return None
    return None


def failures_per_source(auth_log: str, now: float, window: int, utc_offset: str = "+0000") -> dict[str, int]:
    """Failed SSH logins (a failed password or key, an invalid user) per source address within
    the last `window` seconds, from sshd's lines in any of the syslog formats above."""
    counts: dict[str, int] = {}
    for line in auth_log.splitlines():
        m = AUTH_FAILURE.match(line)
        if not m:
            continue
        stamp = log_seconds(m.group("stamp"), now, utc_offset)
        if stamp is not None and -60 <= now - stamp <= window:  # not later than the host's clock
            counts[m.group("source")] = counts.get(m.group("source"), 0) + 1
    return counts


def auth_log_command(window: int) -> str:
    """sshd's log: the first of /var/log/auth.log and /var/log/secure that exists, else the
    journal of sshd over the window; its first line names the source (`# PATH` or `# journal`)."""
    files = " ".join(guide.AUTH_LOGS)
    return (f"for auth_log in {files}; do if [ -e $auth_log ]; then echo \"# $auth_log\"; "
            f"$SUDO tail -n 5000 $auth_log || echo '{UNREADABLE}'; exit 0; fi; done; "
            "if command -v journalctl >/dev/null; then echo '# journal'; $SUDO journalctl -q "
            f"--no-pager -o short-iso --since -{int(window)}s _COMM=sshd _COMM=sshd-session || echo '{UNREADABLE}'; fi")


def allowance(roles, want: dict) -> list[tuple[int, bool]]:
    """(port, internal_only) CHK-FIREWALL-RULES-UP-TO-DATE allows on a host of these roles."""
    out = []
    for role in ["all", *sorted(roles)]:
        for item in want.get(role, []):
            m = re.match(r"(\d+)/tcp(\s+internal)?", item)
            if m:
                out.append((int(m.group(1)), bool(m.group(2))))
    return out


def iptables_allowance(rules: list[str]) -> list[tuple[int, bool]]:
    """The ports the guide's iptables rules (NET-IPTABLES-INPUT-RULES) open to anyone."""
    return [(p, False) for r in chain_rules("\n".join(rules), "INPUT") if r.allows for p in rule_ports(r.to) or ()]


def permitted(rule, allowed: list[tuple[int, bool]], internal: bool) -> bool:
    """A rule within `allowed`: every port it opens is allowed, from the deployment network
    where the port is internal-only."""
    if not rule.allows:
        return True
    ports = rule_ports(rule.to)
    return ports is not None and all(any(p == port and (internal or not only) for port, only in allowed)
                                     for p in ports)


def tcp_connect_ms(address: str, port: int, samples: int = LATENCY_SAMPLES,
                   timeout: float = LATENCY_TIMEOUT) -> list[float]:
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


RESTORE_COUNT_SQL = ("SELECT format('%s %s', c.relname, (xpath('/row/n/text()', query_to_xml("
                     "format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text) "
                     "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1")
PSQL = "runuser -u postgres -- psql -qtAX"  # as the postgres account: `$SUDO {PSQL} ...` (audit/sudo.py)


def restore_script(scratch: str, database: str, backup_dir: str) -> str:
    """Restore the newest dump into `scratch`, print row counts of both databases, always drop it."""
    return "\n".join([
        "set -u",
        f"f=$(ls -t {backup_dir}/*.sql.gz | head -1); echo \"newest $f\"",
        f"trap '$SUDO {PSQL} -c \"DROP DATABASE IF EXISTS {scratch}\" >/dev/null 2>&1' EXIT",
        f"$SUDO {PSQL} -c 'CREATE DATABASE {scratch}' 2>&1 || exit 3",
        f"gunzip -c \"$f\" | $SUDO {PSQL} -v ON_ERROR_STOP=1 -d {scratch} >/dev/null 2>/tmp/.pa-restore.err;"
        " echo \"restore rc=$?\"; head -5 /tmp/.pa-restore.err; rm -f /tmp/.pa-restore.err",
        f"echo '--- restored'; $SUDO {PSQL} -d {scratch} -c \"{RESTORE_COUNT_SQL}\"",
        f"echo '--- live'; $SUDO {PSQL} -d {database} -c \"{RESTORE_COUNT_SQL}\"",
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


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class ChecklistFacts:
    """One host's health: load, memory, filesystems, services, sshd's failed logins."""

    host: str
    nproc: str
    loadavg: str
    meminfo: str
    filesystems: dict[str, int]
    services: dict[str, str]                 # service -> its state words ("active", "inactive", ...)
    now: float                               # the host's clock
    utc_offset: str                          # the host's `date +%z`
    auth_source: str | None                  # /var/log/auth.log, /var/log/secure, "journal"; None: none
    auth_log: str = field(repr=False, default="")

    def cpu(self) -> tuple[int, float, float]:
        try:
            return cpu_load_percent(self.loadavg, self.nproc)
        except (ValueError, IndexError, ZeroDivisionError):
            raise CouldNotAudit(self.host, "/proc/loadavg and nproc", f"unreadable: {self.loadavg!r}, "
                                                                      f"{self.nproc!r}") from None

    def memory_percent(self) -> float:
        try:
            return round(memory_used_percent(self.meminfo), 1)
        except ValueError as exc:
            raise CouldNotAudit(self.host, "/proc/meminfo", str(exc)) from None

    def failures(self, window: int) -> dict[str, int]:
        """Failed SSH logins per source within `window` seconds; CouldNotAudit without a log."""
        if self.auth_source is None:
            raise CouldNotAudit(self.host, "sshd's log", f"none of {', '.join(guide.AUTH_LOGS)} exists and there "
                                                         "is no journal")
        if self.auth_log.rstrip().endswith(UNREADABLE):
            raise CouldNotAudit(self.host, self.auth_source, "the audit account cannot read it")
        return failures_per_source(self.auth_log, self.now, window, self.utc_offset)


@probe()
def checklist(session, host) -> ChecklistFacts:
    """Load, memory, filesystems, the role's services and sshd's log of the host (one round trip)."""
    services = expected_services(host.roles, session.expected("CHK-SERVICES-RUNNING"))
    count = int(session.inventory.setting("audit_app_instances") or guide.APP_INSTANCES)
    ports = [guide.APP_PORTS[0] + i for i in range(count)] if "app" in host.roles else []
    out = session.access.collect(host, {
        "nproc": "nproc", "loadavg": "cat /proc/loadavg", "df": "df -P",
        "meminfo": "grep -E '^(MemTotal|MemAvailable):' /proc/meminfo",
        "services": service_states_script([s for s in services if s != guide.APP_SERVICE], ports),
        "now": "date +%s", "utc_offset": "date +%z",
        "auth_log": auth_log_command(session.expected("CHK-FAILED-LOGINS")["window_seconds"]),
    })
    source, _, log = out["auth_log"].partition("\n")
    if not out["now"].isdigit():
        raise CouldNotAudit(host.name, "date", f"no clock reading: {out['now']!r}")
    return ChecklistFacts(host.name, out["nproc"], out["loadavg"], out["meminfo"], filesystems(out["df"]),
                          service_states(out["services"]), float(out["now"]), out["utc_offset"] or "+0000",
                          source[2:] if source.startswith("# ") else None, log)


@dataclass(frozen=True)
class Latency:
    target: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@probe(slow=True)
def latency(session, host) -> Latency:
    """TCP connect times from the runner to the host's SSH port (LATENCY_SAMPLES samples)."""
    try:
        return Latency(f"{host.address}:{host.port}", tuple(tcp_connect_ms(host.address, host.port)))
    except TimeoutError as exc:
        raise CouldNotAudit(host.name, f"TCP port {host.port}", str(exc)) from None
    except OSError as exc:
        raise CouldNotAudit(host.name, f"TCP port {host.port}", f"{type(exc).__name__}: {exc.strerror or exc}") \
            from None


@dataclass(frozen=True)
class Restore:
    output: str
    restored: dict[str, int]
    live: dict[str, int]


def restore_newest_backup(session, host) -> Restore:
    """Opt-in (`writes`): restore the newest dump of BAK-DB-SCRIPT-DUMP's backup_dir into a scratch
    database, count the rows of both, drop the scratch database."""
    dump = session.expected("BAK-DB-SCRIPT-DUMP")
    scratch = f"pynomaly_restore_check_{int(time.time())}"
    result = session.access.run(host, restore_script(scratch, dump["database"], dump["backup_dir"]),
                                timeout=RESTORE_TIMEOUT)
    out = result.stdout
    refused = [line for line in (out + "\n" + (result.stderr or "")).splitlines() if line.startswith("sudo: ")]
    if refused:  # the audit account may not run a step as postgres: nothing is known of the backup
        raise CouldNotAudit(host.name, "sudo", f"{refused[0].removeprefix('sudo: ')} (the restore test needs the "
                                               "opt-in `writes` rules: python -m audit.sudoers --opt-in writes)")
    if result.rc == 3:
        raise CouldNotAudit(host.name, "PostgreSQL", f"could not create the scratch database {scratch}: "
                                                     f"{out.strip().splitlines()[-1] if out.strip() else 'no output'}")
    return Restore(out, row_counts(out, "restored"), row_counts(out, "live"))
