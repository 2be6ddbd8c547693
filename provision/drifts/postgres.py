"""PostgreSQL drifts: each breaks exactly the requirements it names."""

from __future__ import annotations

from . import Drift

DRIFTS: tuple[Drift, ...] = (
    Drift("pg-work-mem", ("PG-WORK-MEM",),
          "db1: ALTER SYSTEM SET work_mem = '4MB' and reload (guide: 256MB)",
          lambda c: c.psql("db1", "ALTER SYSTEM SET work_mem = '4MB'", "SELECT pg_reload_conf()"),
          lambda c: c.psql("db1", "ALTER SYSTEM RESET work_mem", "SELECT pg_reload_conf()")),
)
