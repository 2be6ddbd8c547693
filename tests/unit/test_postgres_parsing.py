"""PostgreSQL parsing and comparisons (audit/probes/postgres.py), on values captured from
pg_settings, pg_file_settings, pg_index and pg_stat_replication of the reference deployment,
both directions."""

import pytest

from audit.access import is_auth_failure
from audit.judge import ON_DISK, RUNNING
from audit.probes.postgres import (
    PgSettingsFacts,
    PostgresFacts,
    Setting,
    Standby,
    combined,
    file_settings,
    human,
    index_findings,
    lsn,
    normalise,
    normalise_predicate,
    standby_lags,
)

# (setting, unit) as pg_settings shows them on the reference primary, and the guide's value
COMPLIANT = [
    ("1048576", "8kB", "8GB"),          # shared_buffers
    ("3145728", "8kB", "24GB"),         # effective_cache_size
    ("262144", "kB", "256MB"),          # work_mem
    ("2097152", "kB", "2GB"),           # maintenance_work_mem
    ("200", None, 200),                 # max_connections
    ("0.9", None, 0.9),                 # checkpoint_completion_target
    ("8192", "8kB", "64MB"),            # wal_buffers
    ("1000", "ms", 1000),               # log_min_duration_statement (bare number: the setting's unit)
    ("1000", "ms", "1s"),
    ("on", None, "on"),                 # log_checkpoints
    ("on", None, True),                 # YAML reads `on` as true
    ("replica", None, "replica"),       # wal_level
    ("64", "MB", 64),                   # wal_keep_size = 64 (MB)
    ("64", "MB", "64MB"),
]
NON_COMPLIANT = [
    ("16384", "8kB", "8GB"),            # shared_buffers 128MB
    ("4096", "kB", "256MB"),            # work_mem 4MB
    ("100", None, 200),
    ("0.5", None, 0.9),
    ("-1", "ms", 1000),
    ("off", None, "on"),
    ("off", None, True),
    ("logical", None, "replica"),
    ("16", "MB", 64),
    ("64", "MB", "64GB"),
]
# pg_file_settings as the probe's psql prints it on db1 (two rows of postgresql.conf), and the
# same after `ALTER SYSTEM SET shared_buffers = '128MB'` and a reload (pending a restart)
FILES = """[{"sourcefile":"/etc/postgresql/15/main/postgresql.conf","sourceline":33,"seqno":25,"name":"shared_buffers","setting":"8GB","applied":true,"error":null},
 {"sourcefile":"/etc/postgresql/15/main/postgresql.conf","sourceline":35,"seqno":27,"name":"work_mem","setting":"256MB","applied":true,"error":null}]"""  # noqa: E501
PENDING = FILES.replace('"applied":true,"error":null}, ', '"applied":false,"error":null}, ')[:-1] + """,
 {"sourcefile":"/var/lib/postgresql/15/main/postgresql.auto.conf","sourceline":3,"seqno":40,"name":"shared_buffers","setting":"128MB","applied":false,"error":"setting could not be applied"}]"""  # noqa: E501


def running(name: str, setting: str, unit: str | None, pending: bool = False) -> Setting:
    return Setting(name, setting, unit, "configuration file", "/etc/postgresql/15/main/postgresql.conf", 33, pending)


def meets(facts: PgSettingsFacts, key: str, guide) -> dict[str, bool]:
    """What checks/values.py decides for each side (compare: equal)."""
    want = facts.norm(key, guide)
    return {side: r.value == want for side, r in facts.sides(key).items()}


@pytest.mark.parametrize(("setting", "unit", "guide"), COMPLIANT)
def test_settings_equal_after_unit_normalisation(setting, unit, guide):
    facts = PgSettingsFacts({"x": running("x", setting, unit)}, ())
    assert meets(facts, "x", guide) == {RUNNING: True}


@pytest.mark.parametrize(("setting", "unit", "guide"), NON_COMPLIANT)
def test_settings_that_differ(setting, unit, guide):
    facts = PgSettingsFacts({"x": running("x", setting, unit)}, ())
    assert meets(facts, "x", guide) == {RUNNING: False}


def test_human_units():
    assert human("1048576", "8kB") == "8GB"
    assert human("262144", "kB") == "256MB"
    assert human("1000", "ms") == "1000ms"
    assert human("replica", None) == "replica"
    assert normalise("8GB", "8kB") == 8 * 1024**3


def test_running_and_file_agree_on_the_reference():
    facts = PgSettingsFacts({"shared_buffers": running("shared_buffers", "1048576", "8kB")}, file_settings(FILES))
    sides = facts.sides("shared_buffers")
    assert sides[RUNNING].shown == "8GB"
    assert sides[ON_DISK].shown == "8GB (applied)"
    assert sides[ON_DISK].where == "pg_file_settings /etc/postgresql/15/main/postgresql.conf:33"
    assert meets(facts, "shared_buffers", "8GB") == {RUNNING: True, ON_DISK: True}


def test_a_file_not_applied_yet_is_the_side_that_differs():
    """ALTER SYSTEM SET shared_buffers = '128MB' + reload: it still runs 8GB, pending a restart."""
    facts = PgSettingsFacts({"shared_buffers": running("shared_buffers", "1048576", "8kB", pending=True)},
                            file_settings(PENDING))
    assert facts.on_disk("shared_buffers").sourcefile.endswith("postgresql.auto.conf")  # the last line wins
    assert meets(facts, "shared_buffers", "8GB") == {RUNNING: True, ON_DISK: False}
    assert "pending restart" in facts.sides("shared_buffers")[RUNNING].where
    assert facts.sides("shared_buffers")[ON_DISK].shown == "128MB (not applied: needs a restart)"


def test_an_error_in_the_file_never_compares_equal():
    text = FILES.replace('"setting":"256MB","applied":true,"error":null',
                         '"setting":"256MB","applied":false,"error":"invalid value"')
    facts = PgSettingsFacts({"work_mem": running("work_mem", "262144", "kB")}, file_settings(text))
    assert facts.sides("work_mem")[ON_DISK].shown == "256MB (error: invalid value)"
    assert meets(facts, "work_mem", "256MB") == {RUNNING: True, ON_DISK: False}


def test_a_setting_no_file_sets_has_only_its_running_side_and_an_unknown_one_none():
    facts = PgSettingsFacts({"work_mem": running("work_mem", "262144", "kB")}, file_settings("[]"))
    assert set(facts.sides("work_mem")) == {RUNNING}
    assert facts.sides("no_such_setting") == {}  # nothing found: judge.sides fails it


def test_file_settings_output_that_is_not_json():
    with pytest.raises(ValueError, match="permission denied"):
        file_settings("psql: error: permission denied for function pg_show_all_file_settings")
    with pytest.raises(ValueError, match="no output"):
        file_settings("")


GUIDE = {"name": "idx_users_active", "table": "users", "columns": ["id"], "where": "is_active = true"}
FOUND = {"name": "idx_users_active", "table": "users", "columns": ["id"], "predicate": "(is_active = true)",
         "valid": True, "ready": True}


def test_index_as_the_guide_has_it():
    assert index_findings(FOUND, GUIDE) == []
    assert normalise_predicate("(is_active = true)") == normalise_predicate("is_active = true")


@pytest.mark.parametrize(("change", "finding"), [
    ({"valid": False}, "INVALID"),
    ({"columns": ["id", "email"]}, "columns"),
    ({"predicate": None}, "predicate"),
    ({"table": "api_keys"}, "table"),
])
def test_index_findings(change, finding):
    assert any(finding in p for p in index_findings({**FOUND, **change}, GUIDE))


def test_missing_index():
    assert index_findings(None, GUIDE) == ["index idx_users_active does not exist"]


def test_combined_query_is_one_select():
    sql = combined({"a": "SELECT 1 AS x", "b": "SELECT 2 AS y"})
    assert sql.count("json_agg") == 2
    assert sql.startswith("SELECT (SELECT coalesce(json_agg(q)")
    assert sql.endswith(" AS b")


def primary(senders, current="0/5000000") -> PostgresFacts:
    return PostgresFacts(role=None, grants={}, recovery={"in_recovery": False, "current_lsn": current},
                         senders=tuple(senders), receiver=(), connections={}, alembic=None, indexes={}, logins={},
                         password_is_placeholder=False)


SENDER = {"client_addr": "172.28.77.22", "state": "streaming", "replay_lag_bytes": 0, "replay_lag_seconds": None}
DB2 = Standby(frozenset({"127.77.0.22", "172.28.77.22"}), "0/5000000")


def test_lsn():
    assert lsn("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert lsn(None) is None
    assert lsn("") is None


def test_lag_per_wal_sender():
    assert standby_lags(primary([SENDER]), {"db2": DB2}) == {"WAL sender to 172.28.77.22": 0}


def test_a_replica_without_a_wal_sender_is_measured_from_its_replay_position():
    """No WAL sender (the replica stopped streaming) is no evidence of a small lag: the primary's
    current LSN against what the replica replayed is."""
    assert standby_lags(primary([]), {"db2": DB2}) == {"db2 (no WAL sender)": 0}
    behind = Standby(DB2.addresses, "0/1000000")
    assert standby_lags(primary([]), {"db2": behind}) == {"db2 (no WAL sender)": 0x4000000}


def test_a_replica_that_cannot_be_read_has_no_lag_to_show():
    unknown = Standby(DB2.addresses, None, "PostgreSQL refuses connections")
    assert standby_lags(primary([]), {"db2": unknown}) == {"db2 (no WAL sender)": None}
    assert standby_lags(primary([]), {}) == {}  # no sender, no replica: nothing found


@pytest.mark.parametrize(("message", "auth"), [
    ('connection failed: FATAL:  password authentication failed for user "pynomaly_user"', True),
    ('FATAL:  role "pynomaly_user" is not permitted to log in', True),
    ('authentication method requirement "scram-sha-256" failed: server requested a hashed password', True),
    ("connection failed: Connection refused", False),
    ("connection timeout expired", False),
])
def test_refused_login_versus_network_problem(message, auth):
    """A refused login is the answer a check judges; an unreachable server is could-not-audit
    (audit/access.py decides, for pg_login)."""
    assert is_auth_failure(message) is auth


def test_a_change_not_reloaded_and_an_error_of_the_whole_file():
    """ALTER SYSTEM SET work_mem = '4MB' without a reload; a syntax error in postgresql.conf."""
    not_reloaded = FILES[:-1] + """,
 {"sourcefile":"/var/lib/postgresql/15/main/postgresql.auto.conf","sourceline":3,"seqno":40,"name":"work_mem","setting":"4MB","applied":false,"error":null}]"""  # noqa: E501
    facts = PgSettingsFacts({"work_mem": running("work_mem", "262144", "kB")}, file_settings(not_reloaded))
    assert facts.sides("work_mem")[ON_DISK].shown == "4MB (not applied: not reloaded yet)"
    assert meets(facts, "work_mem", "256MB") == {RUNNING: True, ON_DISK: False}
    syntax = FILES[:-1] + """,
 {"sourcefile":"/etc/postgresql/15/main/postgresql.conf","sourceline":60,"seqno":41,"name":null,"setting":null,"applied":false,"error":"syntax error"}]"""  # noqa: E501
    broken = PgSettingsFacts({"work_mem": running("work_mem", "262144", "kB")}, file_settings(syntax))
    assert broken.file_errors() == ("the configuration files have errors "
                                    "(/etc/postgresql/15/main/postgresql.conf:60: syntax error)")
    assert meets(broken, "work_mem", "256MB") == {RUNNING: True, ON_DISK: False}
    assert "syntax error" in broken.sides("work_mem")[ON_DISK].where
    assert PgSettingsFacts({}, file_settings(FILES)).file_errors() == ""
