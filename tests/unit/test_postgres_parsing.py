"""PostgreSQL checks' comparisons (audit/pg.py), on values captured from pg_settings and pg_index
of the reference deployment, both directions."""

import pytest

from audit.pg import human, index_findings, is_auth_failure, normalise, normalise_predicate, same_setting

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


@pytest.mark.parametrize(("setting", "unit", "guide"), COMPLIANT)
def test_settings_equal_after_unit_normalisation(setting, unit, guide):
    assert same_setting(setting, unit, guide)


@pytest.mark.parametrize(("setting", "unit", "guide"), NON_COMPLIANT)
def test_settings_that_differ(setting, unit, guide):
    assert not same_setting(setting, unit, guide)


def test_human_units():
    assert human("1048576", "8kB") == "8GB"
    assert human("262144", "kB") == "256MB"
    assert human("1000", "ms") == "1000ms"
    assert human("replica", None) == "replica"
    assert normalise("8GB", "8kB") == 8 * 1024**3


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


@pytest.mark.parametrize(("message", "auth"), [
    ('connection failed: FATAL:  password authentication failed for user "pynomaly_user"', True),
    ('FATAL:  role "pynomaly_user" is not permitted to log in', True),
    ('authentication method requirement "scram-sha-256" failed: server requested a hashed password', True),
    ("connection failed: Connection refused", False),
    ("connection timeout expired", False),
])
def test_refused_login_versus_network_problem(message, auth):
    assert is_auth_failure(message) is auth
