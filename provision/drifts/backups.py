"""Backup and DR drifts: each breaks exactly the requirements it names."""

from __future__ import annotations

from . import Drift

DRIFTS: tuple[Drift, ...] = (
    Drift("backup-cron-removed", ("BAK-CRON-DB",),
          "db1: the backup_db.sh line removed from root's crontab",
          lambda c: c.sh("db1", "crontab -l | grep -v backup_db.sh | crontab -"),
          lambda c: c.sh("db1", "crontab /etc/pynomaly/crontab")),
)
