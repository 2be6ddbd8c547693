"""audit/probes/performance.py: the ProductionConfig facts on a captured config dump, both directions."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from audit.judge import RUNNING, Judge
from audit.outcomes import CouldNotAudit, NonCompliant
from audit.probes import performance as p

GUIDE = yaml.safe_load((Path(__file__).resolve().parents[2] / "checks" / "requirements.yml").read_text())
ROWS = {r["id"]: r for r in GUIDE["requirements"] if (r.get("fact") or {}).get("probe") == "app_config"}
DUMP = json.loads("""{
  "database": {"max_overflow": 30, "pool_recycle": 3600, "pool_size": 20, "pool_timeout": 30,
               "url": "postgresql://pynomaly_user:***@db1:5432/pynomaly_prod"},
  "environment": "production",
  "jwt": {"access_token_expire_minutes": 30, "algorithm": "HS256", "secret_set": true},
  "logging": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s", "level": "INFO"},
  "redis": {"cache_db": 1, "cache_default_timeout": 300, "max_connections": 50,
            "rate_limit_storage_url": "redis://:***@cache1:6379/0", "socket_keepalive": true,
            "socket_keepalive_options": {"TCP_KEEPCNT": 3, "TCP_KEEPIDLE": 1, "TCP_KEEPINTVL": 1},
            "url": "redis://:***@cache1:6379/0"}
}""")
ENV = {"REDIS_URL": "redis://:s3cr3tpassw0rd@cache1:6379/0", "JWT_SECRET": "Zq8vN2kLm4Xr7Tb1Wc9Yd3Hf6Jg0Ps5A"}
RATE = {"env": "REDIS_URL", "default": "redis://localhost:6379/2"}


def facts(**changes) -> p.AppConfigFacts:
    out = {"pynomaly-app-1": p.instance("pynomaly-app-1", json.dumps(DUMP), ENV, "REDIS_URL")}
    if changes:
        drifted = copy.deepcopy(DUMP)
        for path, value in changes.items():
            section, key = path.split("__")
            drifted[section][key] = value
        out["pynomaly-app-2"] = p.instance("pynomaly-app-2", json.dumps(drifted), ENV, "REDIS_URL")
    return p.AppConfigFacts(out)


def test_every_value_row_matches_the_guide():
    assert len(ROWS) == 11
    for req_id, row in ROWS.items():
        side = facts().sides(row["fact"]["key"])[RUNNING]
        assert side.value == facts().norm(row["fact"]["key"], row["expected"]), req_id


def test_one_drifted_instance_is_named():
    side = facts(database__pool_size=5).sides("database.pool_size")[RUNNING]
    assert side.shown == {"pynomaly-app-1": 20, "pynomaly-app-2": 5}
    assert side.value != 20
    assert p.setting({}, ("database", "pool_size")) is None
    assert p.setting(DUMP, "redis.socket_keepalive_options")["TCP_KEEPCNT"] == 3


def test_no_instance_is_never_a_pass():
    side = p.AppConfigFacts({}).sides("database.pool_size")
    with pytest.raises(NonCompliant, match="running None"):
        Judge("web1", ["PERF-DB-POOL-SIZE"], {"PERF-DB-POOL-SIZE": 20}.get).sides(side, lambda v: v == 20, what="x")


def test_the_facts_keep_no_secret():
    instance = facts().instances["pynomaly-app-1"]
    assert "s3cr3tpassw0rd" not in repr(instance)
    assert "Zq8vN2kL" not in repr(instance)
    assert instance.env_urls == {"REDIS_URL": "redis://:***@cache1:6379/0"}
    with pytest.raises(CouldNotAudit, match="no JSON"):
        p.instance("pynomaly-app-1", "Traceback: ImportError", ENV, "REDIS_URL")


def test_rate_limit_storage():
    assert p.rate_limit_problem(DUMP, ENV, RATE) is None
    assert p.rate_limit_problem(DUMP, facts().instances["pynomaly-app-1"].env_urls, RATE) is None
    memory = copy.deepcopy(DUMP)
    memory["redis"]["rate_limit_storage_url"] = "memory://"
    assert "not Redis" in p.rate_limit_problem(memory, ENV, RATE)
    other = copy.deepcopy(DUMP)
    other["redis"]["rate_limit_storage_url"] = "redis://:***@cache2:6379/5"
    assert "guide" in p.rate_limit_problem(other, ENV, RATE)
    default = copy.deepcopy(DUMP)
    default["redis"]["rate_limit_storage_url"] = "redis://localhost:6379/2"
    assert p.rate_limit_problem(default, {}, RATE) is None
    assert "not Redis" in p.rate_limit_problem({}, ENV, RATE)


def test_signing_secret_problem():
    assert p.signing_secret_problem(ENV) is None
    assert p.signing_secret_problem({"SECRET_KEY": "9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c"}) is None
    assert "SECRET_KEY" in p.signing_secret_problem({"SECRET_KEY": "x" * 40})
    assert "neither" in p.signing_secret_problem({})
    assert "SECRET_KEY" in p.signing_secret_problem({**ENV, "SECRET_KEY": "changeme"})
    assert "JWT_SECRET" in p.signing_secret_problem({"JWT_SECRET": "${JWT_SECRET}"})
    assert "JWT_SECRET" in p.signing_secret_problem({"JWT_SECRET": "short"})
