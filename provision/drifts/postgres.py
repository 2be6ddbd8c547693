"""PostgreSQL drifts: each breaks exactly the requirements it names.

Settings drifts use ALTER SYSTEM + reload: a reloadable setting changes the running value; a
postmaster setting (shared_buffers, max_connections ...) stays as it runs and shows
pending_restart (the file changed, not applied), which the audit reports as its own finding.
"""

from __future__ import annotations

import shlex
import time

from ..ui import ProvisionError
from . import BACKUPS, Ctx, Drift, edit_file

PG_HBA = "/etc/postgresql/15/main/pg_hba.conf"
AUTO_CONF = "/var/lib/postgresql/15/main/postgresql.auto.conf"
RELOAD = "runuser -u postgres -- psql -qtAX -c 'SELECT pg_reload_conf()' >/dev/null"
DB = "pynomaly_prod"
EXTENSIONS = "/usr/share/postgresql/15/extension"
CONTRIB_FILES = "pgcrypto.control pg_trgm.control hstore.control citext.control"
CONTRIB_AWAY = f"{BACKUPS}/contrib-extensions"


def psql(c: Ctx, host: str, sql: str, db: str = "postgres", env: dict | None = None) -> str:
    """Run SQL (one statement or a script, on stdin: psql variables work) as postgres."""
    return c.sh(host, f"printf '%s\\n' {shlex.quote(sql)} | runuser -u postgres -- psql -v ON_ERROR_STOP=1 "
                      f"-qtAX -d {db}" + "".join(f" -v {k.lower()}=\"${k}\"" for k in (env or {})),
                env=env).strip()


def wait_for(c: Ctx, host: str, sql: str, want: str, seconds: int = 60, db: str = "postgres") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if psql(c, host, sql, db) == want:
            return
        time.sleep(1)
    raise ProvisionError(f"{host}: `{sql}` did not return {want!r} within {seconds}s")


def setting(req: str, name: str, bad: str) -> Drift:
    return Drift(
        f"pg-{name.replace('_', '-')}", (req,),
        f"db1: ALTER SYSTEM SET {name} = '{bad}' and reload (a postmaster setting shows pending_restart)",
        lambda c: psql(c, "db1", f"ALTER SYSTEM SET {name} = '{bad}'; SELECT pg_reload_conf();"),
        lambda c: psql(c, "db1", f"ALTER SYSTEM RESET {name}; SELECT pg_reload_conf();"))


SETTING_DRIFTS = (
    setting("PG-SHARED-BUFFERS", "shared_buffers", "128MB"),
    setting("PG-EFFECTIVE-CACHE-SIZE", "effective_cache_size", "4GB"),
    setting("PG-WORK-MEM", "work_mem", "4MB"),
    setting("PG-MAINTENANCE-WORK-MEM", "maintenance_work_mem", "64MB"),
    setting("PG-MAX-CONNECTIONS", "max_connections", "100"),
    setting("PG-MAX-PREPARED-TRANSACTIONS", "max_prepared_transactions", "0"),
    setting("PG-CHECKPOINT-COMPLETION-TARGET", "checkpoint_completion_target", "0.5"),
    setting("PG-WAL-BUFFERS", "wal_buffers", "16MB"),
    setting("PG-DEFAULT-STATISTICS-TARGET", "default_statistics_target", "50"),
    setting("PG-LOG-MIN-DURATION-STATEMENT", "log_min_duration_statement", "-1"),
    setting("PG-LOG-CHECKPOINTS", "log_checkpoints", "off"),
    setting("PG-LOG-CONNECTIONS", "log_connections", "off"),
    setting("PG-LOG-DISCONNECTIONS", "log_disconnections", "off"),
    setting("PG-WAL-LEVEL", "wal_level", "logical"),
    setting("PG-MAX-WAL-SENDERS", "max_wal_senders", "5"),
    setting("PG-WAL-KEEP-SIZE", "wal_keep_size", "16"),
)


# ---------------------------------------------------------------- pynomaly_user's password

def _save_verifier(c: Ctx, name: str) -> None:
    c.sh("db1", f"mkdir -p -m 700 {BACKUPS} && runuser -u postgres -- psql -qtAX -c "
                "\"SELECT rolpassword FROM pg_authid WHERE rolname = 'pynomaly_user'\" "
                f"> {BACKUPS}/{name} && chmod 600 {BACKUPS}/{name} && test -s {BACKUPS}/{name}")


def _restore_verifier(c: Ctx, name: str) -> None:
    """The stored verifier itself (ALTER ROLE ... PASSWORD '<SCRAM-SHA-256$...>'): exactly as it was."""
    c.sh("db1", f"v=$(cat {BACKUPS}/{name}) && printf '%s\\n' \"ALTER ROLE pynomaly_user PASSWORD :'v';\" "
                "| runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtAX -v v=\"$v\" "
                f"&& rm -f {BACKUPS}/{name}")


def _placeholder_apply(c: Ctx) -> None:
    _save_verifier(c, "pynomaly_user.verifier")
    psql(c, "db1", "ALTER ROLE pynomaly_user PASSWORD 'secure_password_here';")


def _md5_apply(c: Ctx) -> None:
    _save_verifier(c, "pynomaly_user.md5.verifier")
    c.sh("db1", f"cp -p {PG_HBA} {BACKUPS}/pg_hba.md5 && "
                f"sed -i -E '/pynomaly_user/s/scram-sha-256$/md5/' {PG_HBA} && ! cmp -s {PG_HBA} {BACKUPS}/pg_hba.md5")
    psql(c, "db1", "SET password_encryption = 'md5'; ALTER ROLE pynomaly_user PASSWORD :'pw'; SELECT pg_reload_conf();",
         env={"PW": c.st.secret("db_password")})


def _md5_heal(c: Ctx) -> None:
    c.sh("db1", f"cp -p {BACKUPS}/pg_hba.md5 {PG_HBA} && rm -f {BACKUPS}/pg_hba.md5")
    _restore_verifier(c, "pynomaly_user.md5.verifier")
    c.sh("db1", RELOAD)


TRUST_LINE = r"host    pynomaly_prod   pynomaly_user       127.0.0.1\/32        trust"

AUTH_DRIFTS = (
    Drift("pg-app-role-nologin", ("PG-USER-EXISTS", "PG-PASSWORD-SCRAM"),
          "db1: ALTER ROLE pynomaly_user NOLOGIN (the SCRAM login cannot be shown either)",
          lambda c: psql(c, "db1", "ALTER ROLE pynomaly_user NOLOGIN;"),
          lambda c: psql(c, "db1", "ALTER ROLE pynomaly_user LOGIN;")),
    Drift("pg-password-placeholder",
          ("PG-PASSWORD-NOT-PLACEHOLDER", "PG-USER-EXISTS", "PG-PASSWORD-SCRAM"),
          "db1: pynomaly_user's password set to the guide's 'secure_password_here' (the inventory's "
          "password no longer logs in)",
          _placeholder_apply, lambda c: _restore_verifier(c, "pynomaly_user.verifier")),
    Drift("pg-password-md5", ("PG-PASSWORD-SCRAM",),
          "db1: pynomaly_user's password stored as MD5 (same password) and its pg_hba lines md5",
          _md5_apply, _md5_heal),
    Drift("pg-replica-trust", ("PG-AUTH-PASSWORD-REQUIRED",),
          "db2: pg_hba 'host pynomaly_prod pynomaly_user 127.0.0.1/32 trust' first",
          *edit_file("db2", PG_HBA, shlex.quote(f"0,/^host/s//{TRUST_LINE}\\nhost/"), RELOAD, "pg_hba.trust")),
)


# ---------------------------------------------------------------- grants

def grant(req: str, name: str, privilege: str, on: str) -> Drift:
    return Drift(f"pg-revoke-{name}", (req,), f"db1: REVOKE {privilege} ON {on} FROM pynomaly_user",
                 lambda c: psql(c, "db1", f"REVOKE {privilege} ON {on} FROM pynomaly_user;", DB),
                 lambda c: psql(c, "db1", f"GRANT {privilege} ON {on} TO pynomaly_user;", DB))


GRANT_DRIFTS = (
    grant("PG-GRANT-DATABASE", "database-create", "CREATE", f"DATABASE {DB}"),
    grant("PG-GRANT-SCHEMA", "schema-create", "CREATE", "SCHEMA public"),
    grant("PG-GRANT-TABLES", "table-truncate", "TRUNCATE", "TABLE audit_logs"),
    grant("PG-GRANT-SEQUENCES", "sequence-update", "UPDATE", "SEQUENCE users_id_seq"),
)


# ---------------------------------------------------------------- replication

def _detach_apply(c: Ctx) -> None:
    c.sh("db2", f"mkdir -p {BACKUPS} && cp -p {AUTO_CONF} {BACKUPS}/auto.conf.detach")
    psql(c, "db2", "ALTER SYSTEM SET primary_conninfo = ''; SELECT pg_reload_conf();")
    wait_for(c, "db2", "SELECT count(*) FROM pg_stat_wal_receiver", "0")


def _detach_heal(c: Ctx) -> None:
    c.sh("db2", f"cp -p {BACKUPS}/auto.conf.detach {AUTO_CONF} && rm -f {BACKUPS}/auto.conf.detach")
    c.sh("db2", RELOAD)
    wait_for(c, "db2", "SELECT status FROM pg_stat_wal_receiver", "streaming")
    wait_for(c, "db1", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", "1")


LAG_SWITCHES = 6  # each pg_switch_wal() after a commit moves the LSN to the next 16 MB segment


def _lag_apply(c: Ctx) -> None:
    psql(c, "db2", "SELECT pg_wal_replay_pause();")
    for _ in range(LAG_SWITCHES):
        psql(c, "db1", "SELECT txid_current(); SELECT pg_switch_wal();")
    wait_for(c, "db2", "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) "
                       ">= 80 * 1024 * 1024", "t")


def _lag_heal(c: Ctx) -> None:
    psql(c, "db2", "SELECT pg_wal_replay_resume();")
    wait_for(c, "db2", "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) < 1024 * 1024",
             "t")
    wait_for(c, "db1", "SELECT bool_and(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) < 16 * 1024 * 1024) "
                       "FROM pg_stat_replication", "t")


REPLICATION_DRIFTS = (
    Drift("pg-replica-detached", ("PG-REPLICA-STREAMING", "PG-REPLICA-IN-RECOVERY"),
          "db2: primary_conninfo = '' (the standby stays in recovery but stops streaming from db1)",
          _detach_apply, _detach_heal),
    Drift("pg-replay-paused", ("PG-REPLICATION-LAG",),
          f"db2: pg_wal_replay_pause(); db1: {LAG_SWITCHES} WAL segment switches (replay lag > 64 MB)",
          _lag_apply, _lag_heal),
)


# ---------------------------------------------------------------- schema

def _alembic_apply(c: Ctx) -> None:
    c.sh("db1", f"mkdir -p {BACKUPS} && runuser -u postgres -- psql -d {DB} -qtAX -c "
                f"'SELECT version_num FROM alembic_version' > {BACKUPS}/alembic_version "
                f"&& test -s {BACKUPS}/alembic_version")
    psql(c, "db1", "UPDATE alembic_version SET version_num = '0000_drift';", DB)


def _alembic_heal(c: Ctx) -> None:
    c.sh("db1", f"v=$(cat {BACKUPS}/alembic_version) && printf '%s\\n' "
                "\"UPDATE alembic_version SET version_num = :'v';\" | runuser -u postgres -- psql "
                f"-v ON_ERROR_STOP=1 -qtAX -d {DB} -v v=\"$v\" && rm -f {BACKUPS}/alembic_version")


def drop_index(req: str, index: str) -> Drift:
    saved = f"{BACKUPS}/index.{index}.sql"

    def apply(c: Ctx) -> None:
        c.sh("db1", f"mkdir -p {BACKUPS} && runuser -u postgres -- psql -d {DB} -qtAX -c "
                    f"\"SELECT pg_get_indexdef('public.{index}'::regclass) || ';'\" > {saved} && test -s {saved}")
        psql(c, "db1", f"DROP INDEX public.{index};", DB)

    def heal(c: Ctx) -> None:
        c.sh("db1", f"runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtAX -d {DB} < {saved} && rm -f {saved}")

    return Drift(f"pg-drop-{index.replace('_', '-')}", (req,), f"db1: DROP INDEX {index} (heal: recreate it)",
                 apply, heal)


INDEXES = {
    "PERF-IDX-USERS-EMAIL": "idx_users_email", "PERF-IDX-USERS-CREATED-AT": "idx_users_created_at",
    "PERF-IDX-AUDIT-LOGS-USER-ID": "idx_audit_logs_user_id",
    "PERF-IDX-AUDIT-LOGS-TIMESTAMP": "idx_audit_logs_timestamp",
    "PERF-IDX-API-KEYS-USER-ID": "idx_api_keys_user_id", "PERF-IDX-API-KEYS-KEY-HASH": "idx_api_keys_key_hash",
    "PERF-IDX-USERS-ACTIVE": "idx_users_active", "PERF-IDX-API-KEYS-ACTIVE": "idx_api_keys_active",
    "PERF-IDX-AUDIT-LOGS-USER-TIMESTAMP": "idx_audit_logs_user_timestamp",
    "PERF-IDX-USERS-EMAIL-ACTIVE": "idx_users_email_active",
}
INVALID = "UPDATE pg_index SET indisvalid = {} WHERE indexrelid = 'public.idx_api_keys_key_hash'::regclass;"

SCHEMA_DRIFTS = (
    Drift("pg-alembic-behind", ("PG-ALEMBIC-AT-HEAD",),
          "db1: alembic_version set to '0000_drift' (not the application's head)", _alembic_apply, _alembic_heal),
    *(drop_index(req, index) for req, index in INDEXES.items()),
    Drift("pg-index-invalid", ("PERF-IDX-API-KEYS-KEY-HASH",),
          "db1: idx_api_keys_key_hash marked invalid (as a failed CREATE INDEX CONCURRENTLY leaves it)",
          lambda c: psql(c, "db1", INVALID.format("false"), DB),
          lambda c: psql(c, "db1", INVALID.format("true"), DB)),
    Drift("pg-stat-statements-dropped", ("PG-STAT-STATEMENTS",),
          "db1: DROP EXTENSION pg_stat_statements in database postgres",
          lambda c: psql(c, "db1", "DROP EXTENSION pg_stat_statements;"),
          lambda c: psql(c, "db1", "CREATE EXTENSION pg_stat_statements;")),
    Drift("pg-contrib-missing", ("PG-CONTRIB-INSTALLED",),
          "db2: the contrib extensions pgcrypto, pg_trgm, hstore and citext are no longer offered "
          "(their control files gone, as without postgresql-contrib)",
          lambda c: c.sh("db2", f"mkdir -p {CONTRIB_AWAY} && cd {EXTENSIONS} && mv {CONTRIB_FILES} {CONTRIB_AWAY}/"),
          lambda c: c.sh("db2", f"cd {CONTRIB_AWAY} && mv {CONTRIB_FILES} {EXTENSIONS}/ && rmdir {CONTRIB_AWAY}")),
)


# ---------------------------------------------------------------- health

BUSY_CONNECTIONS = 165  # of max_connections 200: 82.5%
BUSY_APP = "pynomaly-drift-connections"
COUNT_BUSY = f"SELECT count(*) >= {BUSY_CONNECTIONS} FROM pg_stat_activity WHERE application_name = '{BUSY_APP}'"


def _busy_apply(c: Ctx) -> None:
    c.sh("db2", f"for i in $(seq {BUSY_CONNECTIONS}); do setsid runuser -u postgres -- env PGAPPNAME={BUSY_APP} "
                "psql -qtAX -c 'SELECT pg_sleep(900)' </dev/null >/dev/null 2>&1 & done")
    wait_for(c, "db2", COUNT_BUSY, "t", seconds=90)


def _busy_heal(c: Ctx) -> None:
    psql(c, "db2", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                   f"WHERE application_name = '{BUSY_APP}';")
    wait_for(c, "db2", f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{BUSY_APP}'", "0")


HEALTH_DRIFTS = (
    Drift("pg-connections-busy", ("CHK-DB-CONNECTIONS",),
          f"db2: {BUSY_CONNECTIONS} idle sessions (pg_sleep) of max_connections 200 (> 80%)", _busy_apply, _busy_heal),
)

def _live_only_apply(c: Ctx) -> None:
    """log_checkpoints off for the running server only: set, reload, seen, then the file's value
    restored without a reload (pg_file_settings says on, not applied)."""
    psql(c, "db1", "ALTER SYSTEM SET log_checkpoints = 'off'; SELECT pg_reload_conf();")
    wait_for(c, "db1", "SHOW log_checkpoints", "off")
    psql(c, "db1", "ALTER SYSTEM RESET log_checkpoints;")


def _live_only_heal(c: Ctx) -> None:
    psql(c, "db1", "ALTER SYSTEM RESET log_checkpoints; SELECT pg_reload_conf();")
    wait_for(c, "db1", "SHOW log_checkpoints", "on")


# running vs on disk (issue 19)
SIDES_DRIFTS = (
    Drift("pg-not-reloaded", ("PG-WORK-MEM",),
          "db1: ALTER SYSTEM SET work_mem = '4MB', not reloaded (the server still runs 256MB; "
          "pg_file_settings shows 4MB not applied)",
          lambda c: psql(c, "db1", "ALTER SYSTEM SET work_mem = '4MB';"),
          lambda c: psql(c, "db1", "ALTER SYSTEM RESET work_mem; SELECT pg_reload_conf();")),
    Drift("pg-not-persisted", ("PG-LOG-CHECKPOINTS",),
          "db1: log_checkpoints off in the running server only (ALTER SYSTEM, reload, then RESET without a "
          "reload: the files say on, the next reload reverts it)",
          _live_only_apply, _live_only_heal),
)

DRIFTS: tuple[Drift, ...] = (*SETTING_DRIFTS, *AUTH_DRIFTS, *GRANT_DRIFTS, *REPLICATION_DRIFTS, *SCHEMA_DRIFTS,
                             *HEALTH_DRIFTS, *SIDES_DRIFTS)
