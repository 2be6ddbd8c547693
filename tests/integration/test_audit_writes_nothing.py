"""A default audit issues no write statement to PostgreSQL.

The reference primary logs every data-modifying statement (`log_statement = 'mod'`, see
provision/DEVIATIONS.md). This test audits with every check module that connects to PostgreSQL
(default markers: no `writes`), then reads what db1 logged meanwhile: not one statement from the
audit role `pynomaly_audit`, and no write attempt refused as read-only (the audit's
pynomaly_user sessions are forced read-only).
"""

from __future__ import annotations

import re

from provision import docker_engine
from tests.integration.audit_runner import ROOT, run_audit

LOG = "/var/log/postgresql/postgresql-15-main.log"
AUDIT_MODULES = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "checks").glob("test_*.py"))
                 if re.search(r"\bpsycopg\b|forward\(5432", p.read_text())]


def _log_size(db1) -> int:
    return int(db1.exec_run(["stat", "-c", "%s", LOG]).output.decode().strip())


def test_default_audit_writes_nothing(deployment, tmp_path):
    db1 = docker_engine.client_or_none().containers.get("db1")
    start = _log_size(db1)
    run = run_audit("local", tmp_path, *AUDIT_MODULES)
    assert run.tests, run.explain()
    logged = db1.exec_run(["tail", "-c", f"+{start + 1}", LOG]).output.decode(errors="replace")
    writes = [line for line in logged.splitlines() if "pynomaly_audit@" in line and "statement:" in line]
    refused = [line for line in logged.splitlines() if "read-only transaction" in line]
    assert "pynomaly_audit@" in logged, "the audit's sessions do not show in the log: is log_connections on?"
    assert not writes, "the audit wrote:\n" + "\n".join(writes)
    assert not refused, "the audit tried to write:\n" + "\n".join(refused)
