"""Guide: Database Configuration - PostgreSQL setup, performance tuning, high availability,
migrations and indexes; plus the health check on connections.

How the audit reaches PostgreSQL: psycopg 3 through `server.forward(5432)` (SSH port forwarding
over the host's shared SSH connection), ONE connection per host, database and login for the
whole run (`pg` fixture, session scope, 5 s connect timeout, autocommit, read-only sessions).

Least privilege: the audit logs in as `pynomaly_audit` (secret `db_audit_password`), a role
with pg_monitor, pg_read_all_settings and pg_read_all_data only, default_transaction_read_only,
and allowed by pg_hba from 127.0.0.1 only (so only through SSH). It never reads pg_authid
(superuser only): that pynomaly_user's password is stored as SCRAM-SHA-256 is shown by logging in
as pynomaly_user (secret `db_password`, session forced read-only) with libpq's
`require_auth=scram-sha-256`: the server can only run a SCRAM exchange for a role whose stored
verifier is SCRAM (an MD5 verifier gets an md5 challenge, or fails under a scram-sha-256 pg_hba
line), so a successful SCRAM login proves the storage without reading the verifier. (A pg_hba
`password` line would make this check red although the storage may be SCRAM: that line sends
the password in clear, which an auditor wants to see anyway.)

The default audit issues no write statement (tests/integration/test_audit_writes_nothing.py
proves it from the primary's log_statement = 'mod' log). The opt-in replication probe (marker
`writes`) writes one marker row as pynomaly_user into audit_probe.replication_marker (a table
provision creates for it, outside the application's schema) and deletes it.
"""

from __future__ import annotations

import contextlib
import time
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from audit.evidence import attach, compare
from audit.marks import per_requirement
from audit.pg import human, index_findings, is_auth_failure, same_setting

CONNECT_TIMEOUT = 5
DATABASE = "pynomaly_prod"
APP_ROLE = "pynomaly_user"
WRONG_PASSWORD = "pynomaly-audit-wrong-password"  # noqa: S105 - the point is that it is wrong
MB = 1024**2

# requirement id -> setting name, for the guide's postgresql.conf blocks
SETTINGS = {
    "PG-SHARED-BUFFERS": "shared_buffers", "PG-EFFECTIVE-CACHE-SIZE": "effective_cache_size",
    "PG-WORK-MEM": "work_mem", "PG-MAINTENANCE-WORK-MEM": "maintenance_work_mem",
    "PG-MAX-CONNECTIONS": "max_connections", "PG-MAX-PREPARED-TRANSACTIONS": "max_prepared_transactions",
    "PG-CHECKPOINT-COMPLETION-TARGET": "checkpoint_completion_target", "PG-WAL-BUFFERS": "wal_buffers",
    "PG-DEFAULT-STATISTICS-TARGET": "default_statistics_target",
    "PG-LOG-MIN-DURATION-STATEMENT": "log_min_duration_statement", "PG-LOG-CHECKPOINTS": "log_checkpoints",
    "PG-LOG-CONNECTIONS": "log_connections", "PG-LOG-DISCONNECTIONS": "log_disconnections",
    "PG-WAL-LEVEL": "wal_level", "PG-MAX-WAL-SENDERS": "max_wal_senders", "PG-WAL-KEEP-SIZE": "wal_keep_size",
}
# The guide's performance-tuning block applies to every server (a hot standby needs
# max_connections, max_prepared_transactions ... >= the primary's anyway); the replication block
# is "On primary server" only.
ALL_SERVERS = ("PG-SHARED-BUFFERS", "PG-EFFECTIVE-CACHE-SIZE", "PG-WORK-MEM", "PG-MAINTENANCE-WORK-MEM",
               "PG-MAX-CONNECTIONS", "PG-MAX-PREPARED-TRANSACTIONS", "PG-CHECKPOINT-COMPLETION-TARGET",
               "PG-WAL-BUFFERS", "PG-DEFAULT-STATISTICS-TARGET", "PG-LOG-MIN-DURATION-STATEMENT",
               "PG-LOG-CHECKPOINTS", "PG-LOG-CONNECTIONS", "PG-LOG-DISCONNECTIONS")


class LoginRefused(Exception):
    """PostgreSQL refused the login (authentication), as opposed to an unreachable server."""


def _connect(server, dbname: str, user: str, password: str, **extra) -> psycopg.Connection:
    host, port = server.forward(5432)
    try:
        return psycopg.connect(host=host, port=port, dbname=dbname, user=user, password=password,
                               connect_timeout=CONNECT_TIMEOUT, autocommit=True, sslmode="prefer",
                               application_name="pynomaly-audit",
                               options="-c default_transaction_read_only=on", **extra)
    except psycopg.OperationalError as exc:
        if is_auth_failure(str(exc)):
            raise LoginRefused(f"{server.name}: login as {user} to {dbname} refused: {exc}") from None
        raise


@pytest.fixture(scope="session")
def pg(session_secret):
    """pg(server, dbname=pynomaly_prod): the audit role's connection, one per host and database."""
    conns: dict[tuple[str, str], psycopg.Connection] = {}

    def get(server, dbname: str = DATABASE) -> psycopg.Connection:
        key = (server.name, dbname)
        if key not in conns or conns[key].closed:
            conns[key] = _connect(server, dbname, "pynomaly_audit", session_secret("db_audit_password"))
        return conns[key]

    yield get
    for conn in conns.values():
        with contextlib.suppress(Exception):
            conn.close()


@pytest.fixture(scope="session")
def session_secret(inventory):
    """The plugin's `secret`, for the session-scoped connection fixtures."""
    from audit import evidence
    from audit.inventory import resolve_secret

    def lookup(name: str) -> str:
        value = resolve_secret(inventory, name)
        evidence.register_secret(value)
        return value

    return lookup


def query(conn: psycopg.Connection, sql: str, params=None) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


@pytest.fixture(scope="session")
def pg_settings(pg):
    """pg_settings(server): name -> row of pg_settings, one query per host."""
    cache: dict[str, dict] = {}

    def get(server) -> dict[str, dict]:
        if server.name not in cache:
            rows = query(pg(server), "SELECT name, setting, unit, pending_restart, source, sourcefile, "
                                     "sourceline FROM pg_settings")
            cache[server.name] = {r["name"]: r for r in rows}
        return cache[server.name]

    return get


@pytest.fixture(scope="session")
def app_login(session_secret):
    """app_login(server, **libpq): (ok, message) of a login as pynomaly_user, cached per variant."""
    cache: dict[tuple, tuple[bool, str]] = {}

    def attempt(server, password: str | None = None, **extra) -> tuple[bool, str]:
        pw = session_secret("db_password") if password is None else password
        key = (server.name, pw, tuple(sorted(extra.items())))
        if key not in cache:
            try:
                conn = _connect(server, DATABASE, APP_ROLE, pw, **extra)
            except LoginRefused as exc:
                cache[key] = (False, str(exc))
            else:
                with conn:
                    row = query(conn, "SELECT current_user AS who, current_setting('transaction_read_only') AS ro")
                cache[key] = (True, f"logged in as {row[0]['who']} (read-only session: {row[0]['ro']})")
        return cache[key]

    return attempt


# ---------------------------------------------------------------- database, role, password

@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-DATABASE-EXISTS")
def test_database_exists(server, pg, expected):
    """"CREATE DATABASE pynomaly_prod;"."""
    rows = query(pg(server, "postgres"), "SELECT datname, datallowconn FROM pg_database ORDER BY 1")
    attach("databases", rows)
    names = {r["datname"] for r in rows}
    assert expected("PG-DATABASE-EXISTS") in names, f"{server.name}: no database {expected('PG-DATABASE-EXISTS')}"


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-USER-EXISTS")
def test_app_role_exists_and_can_log_in(server, pg, app_login, expected):
    """"CREATE USER pynomaly_user WITH ENCRYPTED PASSWORD ...": the role exists with LOGIN and the
    inventory's password (db_password) logs in (a read-only session)."""
    want = expected("PG-USER-EXISTS")
    rows = query(pg(server), "SELECT rolname, rolcanlogin, rolvaliduntil::text AS valid_until, "
                             "rolvaliduntil < now() AS expired FROM pg_roles WHERE rolname = %s", (want["role"],))
    ok, message = app_login(server)
    compare("role", {"pg_roles": rows, "login with db_password": message}, want)
    assert rows, f"{server.name}: role {want['role']} does not exist"
    assert rows[0]["rolcanlogin"] == want["login"], f"{server.name}: {want['role']} has NOLOGIN"
    assert not rows[0]["expired"], f"{server.name}: {want['role']}'s password expired ({rows[0]['valid_until']})"
    assert ok, f"{server.name}: {want['role']} cannot log in with the inventory's password: {message}"


@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("PG-AUTH-PASSWORD-REQUIRED")
def test_wrong_password_is_refused(server, app_login, expected):
    """Network logins as pynomaly_user need its password (the guide creates it WITH a password):
    a wrong password must be refused (no `trust` in pg_hba)."""
    ok, message = app_login(server, password=WRONG_PASSWORD)
    compare("login with a wrong password", message, "refused")
    assert not ok, f"{server.name}: a wrong password was accepted for {APP_ROLE} ({message}): trust authentication?"


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-PASSWORD-SCRAM")
def test_app_password_is_stored_as_scram(server, app_login, expected):
    """"WITH ENCRYPTED PASSWORD": stored as SCRAM-SHA-256, shown by a login that requires a SCRAM
    exchange (libpq require_auth=scram-sha-256), without reading pg_authid."""
    ok, message = app_login(server, require_auth=expected("PG-PASSWORD-SCRAM"))
    compare("login requiring SCRAM-SHA-256", message, "succeeds")
    assert ok, f"{server.name}: {APP_ROLE} cannot authenticate with SCRAM-SHA-256 (MD5 verifier?): {message}"


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-PASSWORD-NOT-PLACEHOLDER")
def test_app_password_is_not_the_placeholder(server, app_login, secret, expected):
    """"PASSWORD 'secure_password_here'" is the guide's placeholder: it must not be the password
    (the inventory's secret is not it, and a login with it is refused)."""
    placeholder = expected("PG-PASSWORD-NOT-PLACEHOLDER")["placeholder"]
    ok, message = app_login(server, password=placeholder)
    compare("login with the guide's placeholder", message, "refused")
    assert secret("db_password") != placeholder, "the inventory's db_password is the guide's placeholder"
    assert not ok, f"{server.name}: {APP_ROLE} logs in with the guide's placeholder password"


# ---------------------------------------------------------------- grants

# Objects of an extension (pg_stat_statements' views) are not the application's tables: the
# guide's GRANT ... ON ALL TABLES covers what the application's migrations create.
EXTENSION_MEMBERS = ("AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
                     "AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1, 2")
GRANTS_SQL = {
    "PG-GRANT-DATABASE": ("SELECT current_database() AS object, p AS privilege, "
                          "has_database_privilege(%(role)s, current_database(), p) AS held "
                          "FROM unnest(%(privs)s::text[]) p"),
    "PG-GRANT-SCHEMA": ("SELECT 'public' AS object, p AS privilege, "
                        "has_schema_privilege(%(role)s, 'public', p) AS held "
                        "FROM unnest(%(privs)s::text[]) p"),
    "PG-GRANT-TABLES": ("SELECT c.relname AS object, p AS privilege, has_table_privilege(%(role)s, c.oid, p) AS held "
                        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, unnest(%(privs)s::text[]) p "
                        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') " + EXTENSION_MEMBERS),
    "PG-GRANT-SEQUENCES": ("SELECT c.relname AS object, p AS privilege, "
                           "has_sequence_privilege(%(role)s, c.oid, p) AS held "
                           "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, unnest(%(privs)s::text[]) p "
                           "WHERE n.nspname = 'public' AND c.relkind = 'S' " + EXTENSION_MEMBERS),
}


@pytest.mark.roles("db_primary")
@per_requirement("PG-GRANT-DATABASE", "PG-GRANT-SCHEMA", "PG-GRANT-TABLES", "PG-GRANT-SEQUENCES")
def test_app_role_grants(server, pg, expected, req_id):
    """"GRANT ALL PRIVILEGES ON DATABASE pynomaly_prod TO pynomaly_user; GRANT ALL ON SCHEMA public
    ...; GRANT ALL PRIVILEGES ON ALL TABLES / ALL SEQUENCES IN SCHEMA public ..." (has_*_privilege)."""
    privs = list(expected(req_id))
    rows = query(pg(server), GRANTS_SQL[req_id], {"role": APP_ROLE, "privs": privs})
    missing = [f"{r['privilege']} on {r['object']}" for r in rows if not r["held"]]
    compare("privileges of pynomaly_user", {"checked": len(rows), "missing": missing}, {"all of": privs})
    assert rows, f"{server.name}: nothing to check for {req_id} (no object in schema public?)"
    assert not missing, f"{server.name}: {APP_ROLE} lacks {', '.join(missing)}"


# ---------------------------------------------------------------- postgresql.conf

def _setting(server, pg_settings, req_id):
    name = SETTINGS[req_id]
    rows = pg_settings(server)
    assert name in rows, f"{server.name}: PostgreSQL has no setting {name}"
    return name, rows[name]


def _assert_setting(server, pg_settings, expected, req_id):
    name, row = _setting(server, pg_settings, req_id)
    want = expected(req_id)
    compare(name, {"setting": row["setting"], "unit": row["unit"], "as written": human(row["setting"], row["unit"]),
                   "source": row["source"], "file": f"{row['sourcefile'] or ''}:{row['sourceline'] or ''}"}, want)
    assert same_setting(row["setting"], row["unit"], want), (
        f"{server.name}: {name} = {human(row['setting'], row['unit'])}, guide: {want}")


def _assert_applied(server, pg_settings, req_id):
    name, row = _setting(server, pg_settings, req_id)
    compare(f"{name} pending restart", bool(row["pending_restart"]), False)
    assert not row["pending_restart"], (
        f"{server.name}: {name} was changed in the configuration but is not applied "
        f"(pending restart; running value {human(row['setting'], row['unit'])})")


@pytest.mark.roles("db_primary", "db_replica")
@per_requirement(*ALL_SERVERS)
def test_setting_matches_the_guide(server, pg_settings, expected, req_id):
    """The guide's postgresql.conf "Performance Tuning" block (memory, connections, checkpoint,
    logging), from pg_settings with units normalised (8GB = 1048576 x 8kB)."""
    _assert_setting(server, pg_settings, expected, req_id)


@pytest.mark.roles("db_primary")
@per_requirement("PG-WAL-LEVEL", "PG-MAX-WAL-SENDERS", "PG-WAL-KEEP-SIZE")
def test_replication_setting_matches_the_guide(server, pg_settings, expected, req_id):
    """"On primary server ... wal_level = replica, max_wal_senders = 3, wal_keep_size = 64"."""
    _assert_setting(server, pg_settings, expected, req_id)


@pytest.mark.roles("db_primary", "db_replica")
@per_requirement(*ALL_SERVERS)
def test_setting_change_is_applied(server, pg_settings, req_id):
    """A postgresql.conf change that needs a restart is its own finding: the file says one thing,
    the server runs another (pg_settings.pending_restart)."""
    _assert_applied(server, pg_settings, req_id)


@pytest.mark.roles("db_primary")
@per_requirement("PG-WAL-LEVEL", "PG-MAX-WAL-SENDERS", "PG-WAL-KEEP-SIZE")
def test_replication_setting_change_is_applied(server, pg_settings, req_id):
    """The replication settings of the primary are applied (not pending a restart)."""
    _assert_applied(server, pg_settings, req_id)


# ---------------------------------------------------------------- replication

def _replica_addresses(inventory, server_of) -> dict[str, set[str]]:
    """Inventory replica -> its addresses (as the primary sees its client_addr)."""
    out = {}
    for host in inventory.hosts_with_role("db_replica"):
        srv = server_of(host.name)
        facts = srv.collect("postgres", {"addresses": "hostname -I 2>/dev/null || hostname -i"})
        out[host.name] = set(facts["addresses"].split()) | {host.address}
    return out


@pytest.fixture
def server_of(audit_context):
    def get(name):
        srv = audit_context.server(name)
        srv.ensure_reachable()
        return srv
    return get


REPLICATION_SQL = ("SELECT application_name, host(client_addr) AS client_addr, state, sync_state, "
                   "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS replay_lag_bytes, "
                   "extract(epoch FROM replay_lag)::float AS replay_lag_seconds FROM pg_stat_replication")


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-REPLICA-STREAMING")
def test_primary_streams_to_every_replica(server, pg, inventory, server_of, expected):
    """"Set up streaming replication": pg_stat_replication on the primary lists every replica of
    the inventory in state streaming."""
    want = expected("PG-REPLICA-STREAMING")
    rows = query(pg(server), REPLICATION_SQL)
    replicas = _replica_addresses(inventory, server_of)
    attach("pg_stat_replication", rows)
    streaming = [r for r in rows if r["state"] == want["state"]]
    missing = [name for name, addrs in replicas.items() if not any(r["client_addr"] in addrs for r in streaming)]
    compare("streaming replicas", {"streaming": [r["client_addr"] for r in streaming], "inventory": replicas},
            want)
    assert len(streaming) >= want["min_replicas"], f"{server.name}: {len(streaming)} streaming replica(s)"
    assert not missing, f"{server.name}: no streaming WAL sender to {', '.join(missing)}"


@pytest.mark.roles("db_replica")
@pytest.mark.requirement("PG-REPLICA-IN-RECOVERY")
def test_replica_is_in_recovery_and_streaming(server, pg, expected):
    """The replica of the guide's streaming replication: in recovery (read-only) and its WAL
    receiver streaming from the primary."""
    want = expected("PG-REPLICA-IN-RECOVERY")
    conn = pg(server)
    recovery = query(conn, "SELECT pg_is_in_recovery() AS in_recovery, "
                           "current_setting('transaction_read_only') AS read_only")[0]
    receiver = query(conn, "SELECT status, sender_host, sender_port, slot_name FROM pg_stat_wal_receiver")
    compare("recovery", {**recovery, "wal_receiver": receiver}, want)
    assert recovery["in_recovery"] is want["in_recovery"], f"{server.name}: not in recovery (a promoted primary?)"
    status = receiver[0]["status"] if receiver else "no WAL receiver"
    assert status == want["wal_receiver_status"], f"{server.name}: WAL receiver is {status}"


@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("PG-REPLICATION-LAG")
def test_replication_lag_is_small(server, pg, expected):
    """Replay lag below wal_keep_size (64 MB): on the primary per WAL sender (current LSN - replay
    LSN), on a replica between received and replayed WAL. In seconds too (pg_stat_replication's
    replay_lag, on the primary) when the inventory sets audit_expected PG-REPLICATION-LAG
    max_lag_seconds: the guide gives no time limit."""
    limit = float(expected("PG-REPLICATION-LAG")["max_lag_mb"]) * MB
    conn = pg(server)
    if "db_primary" in server.roles:
        rows = query(conn, REPLICATION_SQL)
    else:
        rows = query(conn, "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint "
                           "AS replay_lag_bytes, extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float "
                           "AS seconds_since_last_replayed_transaction, pg_is_wal_replay_paused() AS paused")
    seconds = expected("PG-REPLICATION-LAG").get("max_lag_seconds")  # optional, from the inventory
    compare("replay lag", rows, {"replay_lag_bytes": f"< {int(limit)}", "replay_lag_seconds": f"< {seconds}"})
    lagging = [r for r in rows if (r["replay_lag_bytes"] or 0) >= limit]
    assert not lagging, (f"{server.name}: replay lag {[r['replay_lag_bytes'] // MB for r in lagging]} MB "
                         f">= {limit / MB:.0f} MB")
    slow = [r for r in rows if seconds is not None and (r.get("replay_lag_seconds") or 0) >= float(seconds)]
    assert not slow, f"{server.name}: replay lag {[r['replay_lag_seconds'] for r in slow]} s >= {seconds} s"


PROBE_TABLE = "audit_probe.replication_marker"
PROBE_SECONDS = 15


@pytest.mark.writes
@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-REPLICA-STREAMING")
def test_marker_row_reaches_every_replica(server, pg, inventory, server_of, session_secret):
    """Opt-in (-m writes): a marker row written on the primary is visible on every replica within
    15 s, then deleted. Writer: pynomaly_user (secret db_password), the only credential of the
    deployment allowed to write; it writes only to audit_probe.replication_marker, a table of its
    own schema that provision creates for this probe (never an application table)."""
    marker = f"pynomaly-audit-{uuid.uuid4()}"
    seen: dict[str, float | None] = {}
    with _connect(server, DATABASE, APP_ROLE, session_secret("db_password")) as writer:
        with writer.transaction():
            writer.execute("SET LOCAL transaction_read_only = off")
            writer.execute(f"INSERT INTO {PROBE_TABLE} (marker) VALUES (%s)", (marker,))
        try:
            start = time.monotonic()
            for host in inventory.hosts_with_role("db_replica"):
                conn, seen[host.name] = pg(server_of(host.name)), None
                while time.monotonic() - start < PROBE_SECONDS:
                    if query(conn, f"SELECT 1 AS found FROM {PROBE_TABLE} WHERE marker = %s", (marker,)):
                        seen[host.name] = round(time.monotonic() - start, 2)
                        break
                    time.sleep(0.2)
        finally:
            with writer.transaction():
                writer.execute("SET LOCAL transaction_read_only = off")
                writer.execute(f"DELETE FROM {PROBE_TABLE} WHERE marker = %s", (marker,))
    compare("seconds until the marker row was visible", seen, f"< {PROBE_SECONDS} on every replica")
    late = [h for h, s in seen.items() if s is None]
    assert not late, f"{server.name}: the marker row did not reach {', '.join(late)} within {PROBE_SECONDS}s"


# ---------------------------------------------------------------- schema

@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-ALEMBIC-AT-HEAD")
def test_migrations_are_at_head(server, pg):
    """"python -m alembic upgrade head": alembic_version equals the application's head revision
    (the inventory's audit_settings.alembic_head of the db_primary host)."""
    head = (server.host_vars.vars.get("audit_settings") or {}).get("alembic_head")
    if not head:
        raise LookupError(f"{server.name}: set audit_settings.alembic_head (the app's alembic head) in the inventory")
    rows = query(pg(server), "SELECT version_num FROM alembic_version")
    versions = [r["version_num"] for r in rows]
    compare("alembic_version", versions, [str(head)])
    assert versions == [str(head)], f"{server.name}: alembic_version {versions}, application head {head}"


INDEX_SQL = """
SELECT i.relname AS name, t.relname AS "table", x.indisvalid AS valid, x.indisready AS ready,
       pg_get_expr(x.indpred, x.indrelid) AS predicate, pg_get_indexdef(x.indexrelid) AS definition,
       ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n) AS columns
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = 'public'
"""


@pytest.fixture(scope="session")
def indexes(pg):
    cache: dict[str, dict] = {}

    def get(server) -> dict[str, dict]:
        if server.name not in cache:
            cache[server.name] = {r["name"]: r for r in query(pg(server), INDEX_SQL)}
        return cache[server.name]

    return get


@pytest.mark.roles("db_primary")
@per_requirement("PERF-IDX-USERS-EMAIL", "PERF-IDX-USERS-CREATED-AT", "PERF-IDX-AUDIT-LOGS-USER-ID",
                 "PERF-IDX-AUDIT-LOGS-TIMESTAMP", "PERF-IDX-API-KEYS-USER-ID", "PERF-IDX-API-KEYS-KEY-HASH",
                 "PERF-IDX-USERS-ACTIVE", "PERF-IDX-API-KEYS-ACTIVE", "PERF-IDX-AUDIT-LOGS-USER-TIMESTAMP",
                 "PERF-IDX-USERS-EMAIL-ACTIVE")
def test_guide_index_exists_and_is_valid(server, indexes, expected, req_id):
    """"CREATE INDEX CONCURRENTLY idx_... ON table(columns) [WHERE is_active = true]": exists in
    pynomaly_prod on those columns, with that predicate, and is valid (a failed CREATE INDEX
    CONCURRENTLY leaves an invalid index behind)."""
    want = expected(req_id)
    found = indexes(server).get(want["name"])
    compare(want["name"], found, want)
    problems = index_findings(found, want)
    assert not problems, f"{server.name}: {want['name']}: {'; '.join(problems)}"


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("PG-STAT-STATEMENTS")
def test_pg_stat_statements_is_available(server, pg, pg_settings, expected):
    """Troubleshooting: "SELECT query, mean_time, calls FROM pg_stat_statements ..." in database
    postgres: the library is preloaded and the extension created there."""
    want = expected("PG-STAT-STATEMENTS")
    preload = pg_settings(server)["shared_preload_libraries"]["setting"]
    libraries = [p.strip() for p in preload.split(",") if p.strip()]
    ext = query(pg(server, want["database"]), "SELECT extname, extversion FROM pg_extension WHERE extname = %s",
                (want["extension"],))
    compare("pg_stat_statements", {"shared_preload_libraries": libraries, "extension": ext}, want)
    assert want["shared_preload_libraries"] in libraries, f"{server.name}: pg_stat_statements is not preloaded"
    assert ext, f"{server.name}: extension pg_stat_statements is not created in database {want['database']}"


# ---------------------------------------------------------------- health

@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("CHK-DB-CONNECTIONS")
def test_connections_below_limit(server, pg, expected):
    """Application health: connections in use below 80% of max_connections."""
    limit = float(expected("CHK-DB-CONNECTIONS")["max_percent_of_limit"])
    row = query(pg(server), "SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS clients, "
                            "current_setting('max_connections')::int AS max_connections FROM pg_stat_activity")[0]
    percent = 100.0 * row["clients"] / row["max_connections"]
    compare("connections", {**row, "percent": round(percent, 1)}, f"< {limit}%")
    assert percent < limit, (f"{server.name}: {row['clients']} of {row['max_connections']} connections in use "
                             f"({percent:.0f}% >= {limit:.0f}%)")
