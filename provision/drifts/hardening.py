"""Security hardening drifts: each breaks exactly the requirements it names."""

from __future__ import annotations

from . import ENV_FILE, Drift

DRIFTS: tuple[Drift, ...] = (
    Drift("fail2ban-stopped",
          ("SEC-FAIL2BAN-RUNNING", "SEC-FAIL2BAN-SSHD-JAIL", "CHK-SERVICES-RUNNING"),
          "db1: service fail2ban stop",
          lambda c: c.sh("db1", "service fail2ban stop >/dev/null"),
          lambda c: c.sh("db1", "service fail2ban start >/dev/null")),
    Drift("env-file-world-readable", ("SEC-ENV-FILE-MODE", "SEC-APP-DIR-MODE"),
          f"web1: chmod 644 {ENV_FILE} (guide: 600; also grants 'others' read under /opt/pynomaly)",
          lambda c: c.sh("web1", f"chmod 644 {ENV_FILE}"),
          lambda c: c.sh("web1", f"chmod 600 {ENV_FILE}")),
    Drift("pg-hba-mode", ("SEC-PG-HBA-MODE",),
          "db1: chmod 644 /etc/postgresql/15/main/pg_hba.conf (guide: 600)",
          lambda c: c.sh("db1", "chmod 644 /etc/postgresql/15/main/pg_hba.conf"),
          lambda c: c.sh("db1", "chmod 600 /etc/postgresql/15/main/pg_hba.conf")),
)
