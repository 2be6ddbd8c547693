"""Performance checks' comparisons on a captured config dump, both directions."""

import copy
import json

from checks import test_performance as p

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


def instances(**changes):
    out = {"pynomaly-app-1": {"config": DUMP, "env": ENV, "cmd": "gunicorn --workers 4"}}
    if changes:
        drifted = copy.deepcopy(DUMP)
        for path, value in changes.items():
            section, key = path.split("__")
            drifted[section][key] = value
        out["pynomaly-app-2"] = {"config": drifted, "env": ENV, "cmd": "gunicorn --workers 4"}
    return out


def test_settings_match_the_guide():
    guide = {"PERF-DB-POOL-SIZE": 20, "PERF-DB-MAX-OVERFLOW": 30, "PERF-DB-POOL-TIMEOUT": 30,
             "PERF-DB-POOL-RECYCLE": 3600, "PERF-REDIS-MAX-CONNECTIONS": 50, "PERF-CACHE-DEFAULT-TIMEOUT": 300,
             "PERF-CACHE-REDIS-DB": 1, "PERF-LOG-LEVEL": "INFO", "PERF-JWT-ALGORITHM": "HS256",
             "PERF-JWT-EXPIRE-MINUTES": 30,
             "PERF-LOG-FORMAT": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}
    for req, want in guide.items():
        assert p.mismatches(instances(), p.SETTINGS[req], want) == {}, req


def test_one_drifted_instance_is_named():
    bad = p.mismatches(instances(database__pool_size=5), p.SETTINGS["PERF-DB-POOL-SIZE"], 20)
    assert bad == {"pynomaly-app-2": 5}
    assert p.setting({}, ("database", "pool_size")) is None


def test_rate_limit_storage():
    assert p.rate_limit_problem(DUMP, ENV, RATE) is None
    memory = copy.deepcopy(DUMP)
    memory["redis"]["rate_limit_storage_url"] = "memory://"
    assert "not Redis" in p.rate_limit_problem(memory, ENV, RATE)
    other = copy.deepcopy(DUMP)
    other["redis"]["rate_limit_storage_url"] = "redis://:***@cache2:6379/5"
    assert "guide" in p.rate_limit_problem(other, ENV, RATE)
    default = copy.deepcopy(DUMP)
    default["redis"]["rate_limit_storage_url"] = "redis://localhost:6379/2"
    assert p.rate_limit_problem(default, {}, RATE) is None


def test_secret_problem():
    assert p.secret_problem(ENV) is None
    assert p.secret_problem({"SECRET_KEY": "9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c"}) is None
    assert "SECRET_KEY" in p.secret_problem({"SECRET_KEY": "x" * 40})
    assert "neither" in p.secret_problem({})
    assert "SECRET_KEY" in p.secret_problem({**ENV, "SECRET_KEY": "changeme"})
    assert "JWT_SECRET" in p.secret_problem({"JWT_SECRET": "${JWT_SECRET}"})
    assert "JWT_SECRET" in p.secret_problem({"JWT_SECRET": "short"})


def test_keyspace_dbs():
    assert p.keyspace_dbs({"db0": {"keys": 3, "expires": 0}, "db1": {"keys": 2}}) == {0: 3, 1: 2}
    assert p.keyspace_dbs({"db2": "keys=7,expires=0"}) == {2: 7}
