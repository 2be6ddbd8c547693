"""Network and firewall drifts: each breaks exactly the requirements it names."""

from __future__ import annotations

from . import Drift

DRIFTS: tuple[Drift, ...] = (
    Drift("ufw-postgres-public", ("NET-POSTGRES-INTERNAL-ONLY", "CHK-FIREWALL-RULES-UP-TO-DATE"),
          "db1: ufw allow 5432/tcp from anywhere",
          lambda c: c.sh("db1", "ufw allow 5432/tcp >/dev/null"),
          lambda c: c.sh("db1", "ufw delete allow 5432/tcp >/dev/null")),
)
