"""PostgreSQL (guide: Database Configuration, high availability, migrations, indexes; the health
check on connections): the settings as the server runs them and as its files set them, the app
role, its logins and grants, replication, the schema, and the connections in use.

How it reaches PostgreSQL, least privilege: the audit role `pynomaly_audit` (secret
`db_audit_password`: pg_monitor, pg_read_all_settings, pg_read_all_data, read-only sessions,
allowed by pg_hba from 127.0.0.1 only, so only through the host's SSH tunnel), one connection per
host and database, each probe in as few queries as it can (`combined`: one SELECT of json_agg
subqueries). It never reads pg_authid: that pynomaly_user's password is stored as SCRAM-SHA-256
is shown by a login as pynomaly_user (secret `db_password`, session read-only) with libpq's
`require_auth=scram-sha-256`: the server can only run a SCRAM exchange for a role whose stored
verifier is SCRAM, so a successful SCRAM login proves the storage without reading it (a pg_hba
`password` line would fail it: it sends the password in clear, which an auditor wants to see).

The settings' file side is pg_file_settings (the value each file sets, applied or not, and any
error in it). The audit role may not execute pg_show_all_file_settings(), so it is read on the
host over SSH, as the local `postgres` account through its socket, in a read-only session.

The default audit writes nothing. The opt-in replication probe (`replication_marker`, marker
`writes`) writes one marker row as pynomaly_user into audit_probe.replication_marker (a table of
its own schema that provision creates for it, never an application table) and deletes it.
"""

from __future__ import annotations

import json
import re
import shlex
import time
import uuid
from dataclasses import dataclass
from typing import Any

from audit import guide
from audit.access import Login
from audit.facts import probe
from audit.judge import ON_DISK, RUNNING, Reading
from audit.outcomes import CouldNotAudit

MB = 1024**2
WRONG_PASSWORD = "pynomaly-audit-wrong-password"  # noqa: S105 - the point is that it is wrong
# pg_settings units -> base unit (bytes for memory, milliseconds for time)
MEMORY = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
TIME = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNIT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
# pg_file_settings.error of a line that is valid but waits for a restart (not an error in the file)
PENDING = re.compile(r"setting could not be applied|cannot be changed without restarting")


# ---------------------------------------------------------------- parsing (unit-tested)

def unit_factor(unit: str | None) -> tuple[str, float]:
    """('memory'|'time'|'', factor to base unit) of a pg_settings unit such as '8kB' or 'ms'."""
    m = re.match(r"^(\d*)\s*([A-Za-z]+)$", unit or "")
    if not m:
        return "", 1
    mult, name = int(m.group(1) or 1), m.group(2)
    if name in MEMORY:
        return "memory", mult * MEMORY[name]
    if name in TIME:
        return "time", mult * TIME[name]
    return "", 1


def normalise(value: Any, unit: str | None) -> Any:
    """A postgresql.conf value as a comparable number in base units (bytes, ms), a float for plain
    numbers, or the lower-cased text (booleans as 'on'/'off').

    A bare number takes the setting's own unit ('wal_keep_size = 64' is 64 MB; pg_settings
    shows shared_buffers as 1048576 with unit 8kB = 8GB)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    kind, factor = unit_factor(unit)
    text = str(value).strip().strip("'")
    m = _UNIT.match(text)
    if m:
        number, suffix = float(m.group(1)), m.group(2)
        if not suffix:
            return number * factor
        table = MEMORY if kind == "memory" else TIME if kind == "time" else {}
        return number * table[suffix] if suffix in table else text.lower()
    low = text.lower()
    return {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}.get(low, low)


def human(setting: str, unit: str | None) -> str:
    """pg_settings' (setting, unit) as people write it: ('1048576', '8kB') -> '8GB'."""
    kind, factor = unit_factor(unit)
    try:
        number = float(setting) * factor
    except ValueError:
        return setting
    if kind == "memory":
        for name in ("TB", "GB", "MB", "kB"):
            if number >= MEMORY[name] and number % MEMORY[name] == 0:
                return f"{int(number // MEMORY[name])}{name}"
        return f"{int(number)}B"
    return f"{int(number)}ms" if kind == "time" else setting


def normalise_predicate(text: str | None) -> str:
    """'(is_active = true)' and 'is_active = true' compare equal."""
    if not text:
        return ""
    return re.sub(r"\s+", " ", text.replace("(", " ").replace(")", " ").replace('"', "")).strip().lower()


def index_findings(found: dict | None, expected: dict) -> list[str]:
    """What is wrong with one index of the guide: missing, other table/columns/predicate, invalid."""
    if not found:
        return [f"index {expected['name']} does not exist"]
    problems = []
    if found["table"] != expected["table"]:
        problems.append(f"on table {found['table']}, guide: {expected['table']}")
    if list(found["columns"]) != list(expected["columns"]):
        problems.append(f"columns {found['columns']}, guide: {expected['columns']}")
    if normalise_predicate(found.get("predicate")) != normalise_predicate(expected.get("where")):
        problems.append(f"predicate {found.get('predicate') or 'none'!r}, guide: {expected.get('where') or 'none'!r}")
    if not found["valid"]:
        problems.append("is INVALID (indisvalid = false: a failed CREATE INDEX CONCURRENTLY?)")
    if not found.get("ready", True):
        problems.append("is not ready (indisready = false)")
    return problems


def lsn(text: str | None) -> int | None:
    """A pg_lsn ('16/B374D848') as a byte position."""
    if not text or "/" not in text:
        return None
    high, low = text.split("/", 1)
    return (int(high, 16) << 32) + int(low, 16)


def file_settings(output: str) -> tuple[FileSetting, ...]:
    """pg_file_settings as the JSON array the probe's psql prints, in file order (seqno)."""
    try:
        rows = json.loads(output)
    except json.JSONDecodeError:
        raise ValueError(" ".join(output.split())[:300] or "no output") from None
    return tuple(FileSetting(name=str(r["name"]).lower(), setting=r["setting"], sourcefile=r["sourcefile"],
                             sourceline=r["sourceline"], applied=bool(r["applied"]), error=r["error"])
                 for r in sorted(rows, key=lambda r: r["seqno"] or 0))


def combined(parts: dict[str, str]) -> str:
    """One SELECT of several queries, each as a JSON array of its rows (one round trip)."""
    return "SELECT " + ", ".join(f"(SELECT coalesce(json_agg(q), '[]'::json) FROM ({sql}) q) AS {name}"
                                 for name, sql in parts.items())


# ---------------------------------------------------------------- settings: running and on disk

@dataclass(frozen=True)
class Setting:
    """One row of pg_settings."""

    name: str
    setting: str
    unit: str | None
    source: str
    sourcefile: str | None
    sourceline: int | None
    pending_restart: bool


@dataclass(frozen=True)
class FileSetting:
    """One row of pg_file_settings: what a file sets, whether it is applied, any error in it."""

    name: str
    setting: str | None
    sourcefile: str | None
    sourceline: int | None
    applied: bool
    error: str | None


@dataclass(frozen=True)
class PgSettingsFacts:
    """The server's settings as it runs them (pg_settings) and as its files set them now
    (pg_file_settings, re-read at every query: what the next reload or restart applies)."""

    running: dict[str, Setting]
    files: tuple[FileSetting, ...]

    def on_disk(self, name: str) -> FileSetting | None:
        """The line that wins for `name`: the last one in file order."""
        return next((f for f in reversed(self.files) if f.name == name), None)

    def sides(self, key: str) -> dict[str, Reading]:
        """`key` as it runs, and as the files set it when one does (a file not applied yet, e.g.
        pending a restart, or with an error, is the on-disk side that differs)."""
        out = {}
        row = self.running.get(key)
        if row is not None:
            at = f" {row.sourcefile}:{row.sourceline}" if row.sourcefile else ""
            out[RUNNING] = Reading(human(row.setting, row.unit), normalise(row.setting, row.unit),
                                   f"pg_settings, source {row.source}{at}"
                                   + (", pending restart" if row.pending_restart else ""))
        line = self.on_disk(key)
        broken = self.file_errors()
        if line is not None:
            error = line.error if line.error and not PENDING.search(line.error) else None
            pending = "needs a restart" if (row is not None and row.pending_restart) or (
                line.error and PENDING.search(line.error)) else "not reloaded yet"
            state = f"error: {error}" if error else "applied" if line.applied else f"not applied: {pending}"
            value = f"error: {error}" if error or line.setting is None else \
                normalise(line.setting, row.unit if row is not None else None)
            where = f"pg_file_settings {line.sourcefile}:{line.sourceline}"
            if broken:  # a reload applies nothing of a file with an error, a restart fails
                state, value, where = f"{state}; {broken}", f"error: {broken}", f"{where}; {broken}"
            out[ON_DISK] = Reading(f"{line.setting} ({state})", value, where)
        elif broken:
            out[ON_DISK] = Reading(broken, f"error: {broken}", "pg_file_settings")
        return out

    def file_errors(self) -> str:
        """Errors of the files that are not tied to one setting (a syntax error: name NULL), in
        the suite's words; '' when there is none."""
        errors = [f"{f.sourcefile}:{f.sourceline}: {f.error}" for f in self.files
                  if f.error and f.name in ("none", "") and not PENDING.search(f.error)]
        return f"the configuration files have errors ({'; '.join(errors)})" if errors else ""

    def norm(self, key: str, expected: Any) -> Any:
        row = self.running.get(key)
        return normalise(expected, row.unit if row is not None else None)


FILE_SETTINGS_SQL = ("SELECT coalesce(json_agg(f), '[]'::json) FROM (SELECT sourcefile, sourceline, seqno, name, "
                     "setting, applied, error FROM pg_file_settings) f")
# as the postgres account, in a read-only session: one command with fixed arguments (audit/sudo.py)
FILE_SETTINGS = (f"cd / && $SUDO runuser -u postgres -- psql -qtAX -p {guide.PG_PORT} -d postgres "
                 f"-c 'SET default_transaction_read_only = on' -c {shlex.quote(FILE_SETTINGS_SQL)} 2>&1")


@probe()
def pg_settings(session, host) -> PgSettingsFacts:
    """pg_settings through the audit role; pg_file_settings on the host as the postgres account."""
    rows = session.access.query(host, "SELECT name, setting, unit, source, sourcefile, sourceline, pending_restart "
                                      "FROM pg_settings")
    out = session.access.collect(host, {"files": FILE_SETTINGS})["files"]
    try:
        files = file_settings(out)
    except ValueError as exc:
        raise CouldNotAudit(host.name, "pg_file_settings (runuser -u postgres psql)", str(exc)) from None
    return PgSettingsFacts({r["name"]: Setting(**r) for r in rows}, files)


# ---------------------------------------------------------------- the server, the app role, the schema

# Objects of an extension (pg_stat_statements' views) are not the application's tables: the
# guide's GRANT ... ON ALL TABLES covers what the application's migrations create.
EXTENSION_MEMBERS = ("AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
                     "AND d.objid = c.oid AND d.deptype = 'e')")
RELATIONS = "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, unnest(%({p})s::text[]) p " \
            "WHERE n.nspname = 'public' AND c.relkind {kinds} " + EXTENSION_MEMBERS
GRANTS = {"PG-GRANT-DATABASE": "grant_database", "PG-GRANT-SCHEMA": "grant_schema",
          "PG-GRANT-TABLES": "grant_tables", "PG-GRANT-SEQUENCES": "grant_sequences"}
GRANTS_SQL = {  # has_*_privilege of the app role, for each privilege the guide's GRANT gives
    "grant_database": "SELECT current_database() AS object, p AS privilege, "
                      "has_database_privilege(%(role)s, current_database(), p) AS held "
                      "FROM unnest(%(grant_database)s::text[]) p",
    "grant_schema": "SELECT 'public' AS object, p AS privilege, has_schema_privilege(%(role)s, 'public', p) AS held "
                    "FROM unnest(%(grant_schema)s::text[]) p",
    "grant_tables": "SELECT c.relname AS object, p AS privilege, has_table_privilege(%(role)s, c.oid, p) AS held "
                    + RELATIONS.format(p="grant_tables", kinds="IN ('r', 'p', 'v', 'm', 'f')"),
    "grant_sequences": "SELECT c.relname AS object, p AS privilege, has_sequence_privilege(%(role)s, c.oid, p) AS held "
                       + RELATIONS.format(p="grant_sequences", kinds="= 'S'"),
}
INDEX_SQL = """
SELECT i.relname AS name, t.relname AS "table", x.indisvalid AS valid, x.indisready AS ready,
       pg_get_expr(x.indpred, x.indrelid) AS predicate, pg_get_indexdef(x.indexrelid) AS definition,
       ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n) AS columns
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = 'public'
"""
# Every part works on a primary and on a standby (the functions that only one of them has are
# guarded by pg_is_in_recovery()).
SERVER_SQL = {
    "role": "SELECT rolname, rolcanlogin, rolvaliduntil::text AS valid_until, rolvaliduntil < now() AS expired "
            "FROM pg_roles WHERE rolname = %(role)s",
    "recovery": "SELECT pg_is_in_recovery() AS in_recovery, current_setting('transaction_read_only') AS read_only, "
                "CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END AS current_lsn, "
                "pg_last_wal_receive_lsn()::text AS receive_lsn, pg_last_wal_replay_lsn()::text AS replay_lsn, "
                "pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint AS replay_lag_bytes, "
                "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float "
                "AS seconds_since_last_replayed_transaction, "
                "CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS paused",
    "senders": "SELECT application_name, host(client_addr) AS client_addr, state, sync_state, "
               "CASE WHEN NOT pg_is_in_recovery() THEN pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END "
               "AS replay_lag_bytes, extract(epoch FROM replay_lag)::float AS replay_lag_seconds "
               "FROM pg_stat_replication",
    "receiver": "SELECT status, sender_host, sender_port, slot_name FROM pg_stat_wal_receiver",
    "connections": "SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS clients, "
                   "current_setting('max_connections')::int AS max_connections FROM pg_stat_activity",
    "alembic_table": "SELECT to_regclass('public.alembic_version') IS NOT NULL AS present",
    "indexes": INDEX_SQL,
    **GRANTS_SQL,
}


@dataclass(frozen=True)
class PostgresFacts:
    """One PostgreSQL server as the app database (pynomaly_prod) shows it, and the logins as
    pynomaly_user a check judges."""

    role: dict | None                     # pg_roles row of the app role
    grants: dict[str, tuple[dict, ...]]   # requirement -> (object, privilege, held) rows
    recovery: dict                        # in recovery?, LSNs, the standby's own replay lag
    senders: tuple[dict, ...]             # pg_stat_replication (WAL senders)
    receiver: tuple[dict, ...]            # pg_stat_wal_receiver
    connections: dict
    alembic: tuple[str, ...] | None       # alembic_version rows; None: no such table
    indexes: dict[str, dict]              # public indexes by name
    logins: dict[str, Login]              # as pynomaly_user: "db_password", "wrong password", ...
    password_is_placeholder: bool         # the inventory's db_password is the guide's placeholder


@probe()
def postgres(session, host) -> PostgresFacts:
    """The app role, its grants, replication, schema and connections (one query on pynomaly_prod),
    and the logins as pynomaly_user (every one on a primary, the wrong password on a standby)."""
    access = session.access
    params = {"role": guide.APP_ROLE, **{key: list(session.expected(req)) for req, key in GRANTS.items()}}
    row = access.query(host, combined(SERVER_SQL), params)[0]
    alembic = None
    if row["alembic_table"][0]["present"]:
        alembic = tuple(r["version_num"] for r in access.query(host, "SELECT version_num FROM alembic_version"))
    password, logins = access.secret("db_password"), {}
    placeholder = session.expected("PG-PASSWORD-NOT-PLACEHOLDER")["placeholder"]
    attempts = {"wrong password": (WRONG_PASSWORD, {})}
    if "db_primary" in host.roles:
        attempts |= {"db_password": (password, {}), "placeholder": (placeholder, {}),
                     "scram": (password, {"require_auth": session.expected("PG-PASSWORD-SCRAM")})}
    for name, (secret, libpq) in attempts.items():
        logins[name] = access.pg_login(host, guide.APP_ROLE, secret, **libpq)
    return PostgresFacts(
        role=(row["role"] or [None])[0], grants={req: tuple(row[key]) for req, key in GRANTS.items()},
        recovery=row["recovery"][0], senders=tuple(row["senders"]), receiver=tuple(row["receiver"]),
        connections=row["connections"][0], alembic=alembic, indexes={i["name"]: i for i in row["indexes"]},
        logins=logins, password_is_placeholder=password == placeholder)


def alembic_head(host) -> str:
    """The application's head revision, as the inventory declares it for this host."""
    head = host.settings.alembic_head
    if not head:
        raise CouldNotAudit(host.name, "inventory", "audit_settings.alembic_head is not set for this host (e.g. "
                                                    "db_primary.vars.audit_settings.alembic_head: the application's "
                                                    "alembic head revision)")
    return str(head)


@dataclass(frozen=True)
class ClusterFacts:
    """What the cluster holds outside the app database: its databases, and the extension of the
    troubleshooting section in its database."""

    databases: tuple[str, ...]
    extension: tuple[dict, ...]


@probe()
def pg_cluster(session, host) -> ClusterFacts:
    """pg_database and pg_extension, in the database the guide's pg_stat_statements query runs in."""
    want = session.expected("PG-STAT-STATEMENTS")
    row = session.access.query(host, combined({
        "databases": "SELECT datname FROM pg_database ORDER BY 1",
        "extension": "SELECT extname, extversion FROM pg_extension WHERE extname = %(ext)s"}),
        {"ext": want["extension"]}, database=want["database"])[0]
    return ClusterFacts(tuple(r["datname"] for r in row["databases"]), tuple(row["extension"]))


# ---------------------------------------------------------------- the standbys, seen from the primary

@dataclass(frozen=True)
class Standby:
    """An inventory replica: its addresses (as the primary sees its client_addr) and how far it
    has replayed; `error` says why what is missing could not be read."""

    addresses: frozenset[str]
    replay_lsn: str | None
    error: str | None = None


@probe(per_host=False)
def pg_standbys(session) -> dict[str, Standby]:
    """Every db_replica host of the inventory: its addresses (SSH) and its replay position (its
    `postgres` facts); a replica that cannot be read is kept with the reason."""
    out = {}
    for host in session.inventory.hosts_with_role("db_replica"):
        addresses, replay, errors = {host.address}, None, []
        try:
            session.facts.get("reach", host.name)
            addresses |= set(session.access.collect(host, {"a": "hostname -I 2>/dev/null || hostname -i"})["a"].split())
            replay = session.facts.get("postgres", host.name).recovery.get("replay_lsn")
        except CouldNotAudit as exc:
            errors.append(exc.why)
        out[host.name] = Standby(frozenset(addresses), replay, "; ".join(errors) or None)
    return out


def standby_lags(facts: PostgresFacts, standbys: dict[str, Standby]) -> dict[str, int | None]:
    """The replay lag in bytes of each WAL sender of the primary (current - replay LSN), and of
    each inventory replica without one, from the primary's current LSN and the replica's own
    replay LSN (None when it could not be read)."""
    lags: dict[str, int | None] = {}
    for row in facts.senders:
        lags[f"WAL sender to {row['client_addr']}"] = row["replay_lag_bytes"]
    current = lsn(facts.recovery.get("current_lsn"))
    for name, standby in standbys.items():
        if any(r["client_addr"] in standby.addresses for r in facts.senders):
            continue
        replayed = lsn(standby.replay_lsn)
        lags[f"{name} (no WAL sender)"] = None if current is None or replayed is None else max(0, current - replayed)
    return lags


# ---------------------------------------------------------------- opt-in: a marker row (writes)

REPLICATION_MARKER = "audit_probe.replication_marker"


def replication_marker(session, primary, replicas, seconds: float) -> dict[str, float | None]:
    """Write a marker row on the primary as pynomaly_user (the only credential of the deployment
    allowed to write), wait until each replica shows it (seconds, or None after `seconds`), and
    delete it. Never cached: an action of the opt-in `writes` check."""
    access, marker, seen = session.access, f"pynomaly-audit-{uuid.uuid4()}", {}
    for host in replicas:  # their SSH connections carry the tunnels
        session.facts.get("reach", host.name)
    with access.pg_connect(primary, guide.APP_ROLE, access.secret("db_password")) as writer:
        with writer.transaction():
            writer.execute("SET LOCAL transaction_read_only = off")
            writer.execute(f"INSERT INTO {REPLICATION_MARKER} (marker) VALUES (%s)", (marker,))
        try:
            start = time.monotonic()
            for host in replicas:
                seen[host.name] = None
                while time.monotonic() - start < seconds:
                    if access.query(host, f"SELECT 1 FROM {REPLICATION_MARKER} WHERE marker = %s", (marker,)):
                        seen[host.name] = round(time.monotonic() - start, 2)
                        break
                    time.sleep(0.2)
        finally:
            with writer.transaction():
                writer.execute("SET LOCAL transaction_read_only = off")
                writer.execute(f"DELETE FROM {REPLICATION_MARKER} WHERE marker = %s", (marker,))
    return seen
