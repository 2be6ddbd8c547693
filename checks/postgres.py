"""Guide: Database Configuration - PostgreSQL setup, performance tuning, high availability,
migrations and indexes; plus the health check on connections. What is read, and how (the audit
role, least privilege, SCRAM shown by a login): audit/probes/postgres.py.

The postgresql.conf settings of the guide (shared_buffers ... wal_keep_size) are catalogue rows
judged by checks/values.py, as the server runs them (pg_settings) and as its files set them
(pg_file_settings: a change not applied yet, pending a restart, is the file side that differs).
"""

from __future__ import annotations

import pytest

from audit.inventory import Host
from audit.marks import per_requirement
from audit.probes.postgres import (
    MB,
    WRONG_PASSWORD,
    alembic_head,
    index_findings,
    replication_marker,
    standby_lags,
)

# ---------------------------------------------------------------- database, role, password


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-DATABASE-EXISTS")
def check_database_exists(judge, pg_cluster):
    """"CREATE DATABASE pynomaly_prod;"."""
    judge.that(judge.expected in pg_cluster.databases, what="databases", found=list(pg_cluster.databases),
               expected=f"includes {judge.expected}", where="pg_database")


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-USER-EXISTS")
def check_app_role_exists_and_can_log_in(judge, postgres):
    """"CREATE USER pynomaly_user WITH ENCRYPTED PASSWORD ...": the role exists with LOGIN, its
    password has not expired, and the inventory's password (db_password) logs in."""
    want, role, login = judge.expected, postgres.role, postgres.logins["db_password"]
    found = {"pg_roles": role, "login with db_password": login.message}
    judge.that(role is not None, what=f"role {want['role']}", found=found, where="pg_roles")
    judge.that(role["rolcanlogin"] == want["login"] and not role["expired"] and login.ok,
               what=f"role {want['role']}", found=found, expected="LOGIN, password not expired, db_password logs in")


@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("PG-AUTH-PASSWORD-REQUIRED")
def check_wrong_password_is_refused(judge, postgres):
    """Network logins as pynomaly_user need its password (the guide creates it WITH a password):
    a wrong password is refused (no `trust` in pg_hba)."""
    login = postgres.logins["wrong password"]
    judge.that(not login.ok, what=f"login with a wrong password ({WRONG_PASSWORD!r})", found=login.message,
               expected="refused", why="trust authentication?")


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-PASSWORD-SCRAM")
def check_app_password_is_stored_as_scram(judge, postgres):
    """"WITH ENCRYPTED PASSWORD": stored as SCRAM-SHA-256, shown by a login that requires a SCRAM
    exchange (libpq require_auth=scram-sha-256), without reading pg_authid."""
    login = postgres.logins["scram"]
    judge.that(login.ok, what=f"login requiring {judge.expected}", found=login.message, expected="succeeds",
               why="an MD5 verifier, or a non-SCRAM pg_hba line?")


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-PASSWORD-NOT-PLACEHOLDER")
def check_app_password_is_not_the_placeholder(judge, postgres):
    """"PASSWORD 'secure_password_here'" is the guide's placeholder: it is not the password (the
    inventory's secret is not it, and a login with it is refused)."""
    found = {"login with the placeholder": postgres.logins["placeholder"].message,
             "inventory's db_password is the placeholder": postgres.password_is_placeholder}
    judge.that(not postgres.logins["placeholder"].ok and not postgres.password_is_placeholder,
               what="the guide's placeholder password", found=found, expected="refused, and not the inventory's")


# ---------------------------------------------------------------- grants


@pytest.mark.roles("db_primary")
@per_requirement("PG-GRANT-DATABASE", "PG-GRANT-SCHEMA", "PG-GRANT-TABLES", "PG-GRANT-SEQUENCES")
def check_app_role_grants(judge, postgres, req_id):
    """"GRANT ALL PRIVILEGES ON DATABASE pynomaly_prod TO pynomaly_user; GRANT ALL ON SCHEMA public
    ...; GRANT ALL PRIVILEGES ON ALL TABLES / ALL SEQUENCES IN SCHEMA public ..." (has_*_privilege)."""
    judge.each({f"{r['privilege']} on {r['object']}": r["held"] for r in postgres.grants[req_id]}, bool,
               what="privileges of pynomaly_user", expected={"all of": judge.expected}, where="has_*_privilege")


# ---------------------------------------------------------------- replication


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-REPLICA-STREAMING")
def check_primary_streams_to_every_replica(judge, postgres, pg_standbys):
    """"Set up streaming replication": pg_stat_replication on the primary lists every replica of
    the inventory in state streaming."""
    want = judge.expected
    streaming = [r["client_addr"] for r in postgres.senders if r["state"] == want["state"]]
    missing = [n for n, s in pg_standbys.items() if not s.addresses & set(streaming)]
    judge.that(len(streaming) >= want["min_replicas"] and not missing, what="streaming replicas",
               found={"streaming to": streaming, "inventory replicas not streaming": missing,
                      "inventory": {n: sorted(s.addresses) for n, s in pg_standbys.items()}},
               where="pg_stat_replication")


@pytest.mark.roles("db_replica")
@pytest.mark.requirement("PG-REPLICA-IN-RECOVERY")
def check_replica_is_in_recovery_and_streaming(judge, postgres):
    """The replica of the guide's streaming replication: in recovery (read-only) and its WAL
    receiver streaming from the primary."""
    want, recovery = judge.expected, postgres.recovery
    status = postgres.receiver[0]["status"] if postgres.receiver else "no WAL receiver"
    judge.that(recovery["in_recovery"] is want["in_recovery"] and status == want["wal_receiver_status"],
               what="recovery", found={"in_recovery": recovery["in_recovery"], "read_only": recovery["read_only"],
                                       "wal_receiver": status}, where="pg_is_in_recovery(), pg_stat_wal_receiver")


@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("PG-REPLICATION-LAG")
def check_replication_lag_is_small(judge, server: Host, postgres, pg_standbys):
    """Replay lag below wal_keep_size (64 MB): on the primary per WAL sender (current LSN - replay
    LSN) and per inventory replica that has none (the primary's current LSN - the replica's
    replayed LSN), on a replica between received and replayed WAL. In seconds too (WAL senders'
    replay_lag) when the inventory sets audit_expected PG-REPLICATION-LAG max_lag_seconds: the
    guide gives no time limit."""
    limit, seconds = float(judge.expected["max_lag_mb"]) * MB, judge.expected.get("max_lag_seconds")
    if "db_primary" in server.roles:
        lags = standby_lags(postgres, pg_standbys)
    else:
        lags = {"received - replayed": postgres.recovery["replay_lag_bytes"]}
    judge.each(lags, lambda b: b is not None and b < limit, what="replay lag (bytes)", expected=f"< {int(limit)}")
    if seconds is not None:
        judge.each({r["client_addr"]: r["replay_lag_seconds"] or 0 for r in postgres.senders},
                   lambda s: s < float(seconds), what="replay lag (seconds)", expected=f"< {seconds}",
                   allow_empty="db_primary" not in server.roles)


@pytest.mark.writes
@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-REPLICA-STREAMING")
def check_marker_row_reaches_every_replica(judge, audit_session, server):
    """Opt-in (-m writes): a marker row written on the primary is visible on every replica within
    15 s, then deleted (writer: pynomaly_user, into audit_probe.replication_marker only)."""
    replicas = audit_session.inventory.hosts_with_role("db_replica")
    seen = replication_marker(audit_session, server, replicas, seconds=15)
    judge.each(seen, lambda s: s is not None, what="seconds until the marker row was visible",
               expected="< 15 on every replica")


# ---------------------------------------------------------------- schema


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-ALEMBIC-AT-HEAD")
def check_migrations_are_at_head(judge, server: Host, postgres):
    """"python -m alembic upgrade head": alembic_version equals the application's head revision
    (the inventory's audit_settings.alembic_head of the db_primary host)."""
    head = alembic_head(server)
    judge.equal(list(postgres.alembic or ()), what="alembic_version", expected=[head], where="pynomaly_prod")


@pytest.mark.roles("db_primary")
@per_requirement("PERF-IDX-USERS-EMAIL", "PERF-IDX-USERS-CREATED-AT", "PERF-IDX-AUDIT-LOGS-USER-ID",
                 "PERF-IDX-AUDIT-LOGS-TIMESTAMP", "PERF-IDX-API-KEYS-USER-ID", "PERF-IDX-API-KEYS-KEY-HASH",
                 "PERF-IDX-USERS-ACTIVE", "PERF-IDX-API-KEYS-ACTIVE", "PERF-IDX-AUDIT-LOGS-USER-TIMESTAMP",
                 "PERF-IDX-USERS-EMAIL-ACTIVE")
def check_guide_index_exists_and_is_valid(judge, postgres, req_id):
    """"CREATE INDEX CONCURRENTLY idx_... ON table(columns) [WHERE is_active = true]": exists in
    pynomaly_prod on those columns, with that predicate, and is valid (a failed CREATE INDEX
    CONCURRENTLY leaves an invalid index behind)."""
    want = judge.expected
    found = postgres.indexes.get(want["name"])
    problems = index_findings(found, want)
    judge.that(not problems, what=want["name"], found=found or "no such index", why="; ".join(problems))


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-STAT-STATEMENTS")
def check_pg_stat_statements_is_available(judge, pg_settings, pg_cluster):
    """Troubleshooting: "SELECT query, mean_time, calls FROM pg_stat_statements ..." in database
    postgres: the library is preloaded and the extension created there."""
    want = judge.expected
    preload = pg_settings.running.get("shared_preload_libraries")
    libraries = [p.strip() for p in (preload.setting if preload else "").split(",") if p.strip()]
    judge.that(want["shared_preload_libraries"] in libraries and bool(pg_cluster.extension), what="pg_stat_statements",
               found={"shared_preload_libraries": libraries, f"extension in {want['database']}": pg_cluster.extension})


# ---------------------------------------------------------------- health


@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("CHK-DB-CONNECTIONS")
def check_connections_below_limit(judge, postgres):
    """Application health: connections in use below 80% of max_connections."""
    limit, row = float(judge.expected["max_percent_of_limit"]), postgres.connections
    percent = 100.0 * row["clients"] / row["max_connections"]
    judge.that(percent < limit, what="client connections, % of max_connections",
               found={**row, "percent": round(percent, 1)}, expected=f"< {limit}%", where="pg_stat_activity")
