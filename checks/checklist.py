"""Guide: Monitoring Checklist - the host parts of System Health, Application Health and Security
Health: CPU, memory, disk, network latency, services running, failed logins, security updates,
firewall rules, and (opt-in, marker `writes`) a restore test of the newest database backup.
What is read, and how: audit/probes/checklist.py (the firewall and the pending upgrades come from
the network and hardening probes).
"""

from __future__ import annotations

import pytest

from audit import guide
from audit.probes.checklist import allowance, iptables_allowance, permitted, restore_newest_backup

EVERY_SERVER = pytest.mark.roles(*guide.SERVER_ROLES)


# ---------------------------------------------------------------- system health

@EVERY_SERVER
@pytest.mark.requirement("CHK-CPU-USAGE")
def check_cpu_usage(judge, checklist):
    """"CPU usage < 80%": the 5-minute load average as a share of the host's cores."""
    limit = judge.expected["max_percent"]
    cores, load5, percent = checklist.cpu()
    judge.that(percent < limit, what="CPU load (5 min), % of the cores",
               found={"load5": load5, "cores": cores, "percent": percent}, expected=f"< {limit}%")


@EVERY_SERVER
@pytest.mark.requirement("CHK-MEMORY-USAGE")
def check_memory_usage(judge, checklist):
    """"Memory usage < 80%": (MemTotal - MemAvailable) / MemTotal."""
    limit = judge.expected["max_percent"]
    percent = checklist.memory_percent()
    judge.that(percent < limit, what="memory used, %", found=percent, expected=f"< {limit}%", where="/proc/meminfo")


@EVERY_SERVER
@pytest.mark.requirement("CHK-DISK-USAGE")
def check_disk_usage(judge, checklist):
    """"Disk usage < 80%" (the daily task's alert fires above 90%: the checklist's 80% is stricter)."""
    limit = judge.expected["max_percent"]
    judge.each(checklist.filesystems, lambda used: used < limit, what="filesystems used, %", expected=f"< {limit}%",
               where="df -P")


@EVERY_SERVER
@pytest.mark.requirement("CHK-NETWORK-LATENCY")
def check_network_latency(judge, latency):
    """"Network latency < 100ms": TCP connect time from the auditor to the host's SSH port (median)."""
    limit = judge.expected["max_ms"]
    judge.that(latency.median < limit, what=f"TCP connect to {latency.target}, ms",
               found={"samples": list(latency.samples), "median": latency.median}, expected=f"median < {limit}")


# ---------------------------------------------------------------- application health

@EVERY_SERVER
@pytest.mark.requirement("CHK-SERVICES-RUNNING")
def check_services_running(judge, checklist):
    """"All services running": the role's services, and every app instance answers /health."""
    judge.each(checklist.services, lambda state: state.startswith("active"), what="services",
               expected="active")


# ---------------------------------------------------------------- security health

@EVERY_SERVER
@pytest.mark.requirement("CHK-FAILED-LOGINS")
def check_failed_logins(judge, checklist):
    """"Failed login attempts < threshold": SSH failures per source in sshd's log within fail2ban's
    findtime stay within maxretry (no failure at all is a reading too: the log was read)."""
    want = judge.expected
    counts = checklist.failures(int(want["window_seconds"]))
    judge.that(all(n <= want["max_failures_per_source"] for n in counts.values()), allow_empty=True,
               what=f"failed SSH logins per source (last {want['window_seconds']} s)", found=counts,
               expected=f"<= {want['max_failures_per_source']} each", where=checklist.auth_source)


@EVERY_SERVER
@pytest.mark.requirement("CHK-SECURITY-UPDATES")
def check_security_updates(judge, hardening):
    """"Security updates installed": no pending upgrade from a security pocket (the host's apt
    index: an empty list is apt's answer, proven by its index and exit status)."""
    limit = judge.expected["max_pending_security_updates"]
    security = [str(p) for p in hardening.pending() if p.security]
    judge.that(len(security) <= limit, allow_empty=True, what="pending security upgrades", found=security,
               expected=f"at most {limit}", where="apt-get -s dist-upgrade")


@EVERY_SERVER
@pytest.mark.requirement("CHK-FIREWALL-RULES-UP-TO-DATE")
def check_firewall_rules_up_to_date(judge, server, firewall):
    """"Firewall rules up to date": no allow rule beyond the guide's for the host's roles (ufw
    running and on disk; on a host of the group `iptables`, its INPUT chain, where the guide's
    iptables rules are allowed too)."""
    allowed = allowance(server.roles, judge.expected)
    if not firewall.uses_ufw:
        allowed += iptables_allowance(judge.expected_of("NET-IPTABLES-INPUT-RULES")["rules"])
    judge.each(firewall.rules(), lambda r: permitted(r, allowed, firewall.internal(r.source)),
               what=f"firewall rules beyond the guide's for roles {sorted(server.roles)}", expected=allowed)


# ---------------------------------------------------------------- restore test (opt-in: writes)

@pytest.mark.writes
@pytest.mark.roles("backup_db")
@pytest.mark.requirement("CHK-BACKUP-INTEGRITY-VERIFIED")
def check_backup_restores(judge, server, audit_session):
    """"Backup integrity verified": the newest backup restores into a scratch database with every
    table of pynomaly_prod; row counts are compared (the live one may have grown since the dump).
    The scratch database is dropped afterwards."""
    result = restore_newest_backup(audit_session, server)
    judge.that("restore rc=0" in result.output, what="restore of the newest backup", found=result.output[-500:],
               expected="restore rc=0")
    judge.each({t: (result.restored.get(t), n) for t, n in result.live.items()},
               lambda pair: pair[0] is not None and pair[0] <= pair[1],
               what="tables of the live database: (rows restored, rows live)",
               expected="every table restored, with no more rows than live")
