"""Guide: Performance Optimization > Application Configuration (ProductionConfig) - the values
each app instance really runs with, and what shows in PostgreSQL and Redis.

The app's own config dump (`python3 -m src.pynomaly.infrastructure.config.dump`, read back from
the engine and Redis pool the app builds, secrets redacted) is read ONCE per instance through the
Docker engine API (`audit_docker_url`); the instances' environment comes from the same API. The
connection figures come from one read-only query on the primary (audit role, SSH tunnel) and the
Redis databases in use from INFO keyspace on the standalone Redis (SSH tunnel).
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from audit import services
from audit.evidence import attach, compare, register_secret
from audit.marks import per_requirement

DUMP = ["python3", "-m", "src.pynomaly.infrastructure.config.dump"]
PLACEHOLDERS = re.compile(r"(?i)^(|changeme|change[-_ ]?me|secret|your[-_].*|.*here|\$\{.*\}|@@.*@@|none|null|xxx+)$")

# requirement -> path in the dump
SETTINGS = {
    "PERF-DB-POOL-SIZE": ("database", "pool_size"),
    "PERF-DB-MAX-OVERFLOW": ("database", "max_overflow"),
    "PERF-DB-POOL-TIMEOUT": ("database", "pool_timeout"),
    "PERF-DB-POOL-RECYCLE": ("database", "pool_recycle"),
    "PERF-REDIS-MAX-CONNECTIONS": ("redis", "max_connections"),
    "PERF-CACHE-DEFAULT-TIMEOUT": ("redis", "cache_default_timeout"),
    "PERF-CACHE-REDIS-DB": ("redis", "cache_db"),
    "PERF-LOG-LEVEL": ("logging", "level"),
    "PERF-LOG-FORMAT": ("logging", "format"),
    "PERF-JWT-ALGORITHM": ("jwt", "algorithm"),
    "PERF-JWT-EXPIRE-MINUTES": ("jwt", "access_token_expire_minutes"),
}


KEPT_ENV = ("SECRET_KEY", "JWT_SECRET", "REDIS_URL")  # nothing else of the environment is kept


class SecretEnv(dict):
    """The few environment values a check needs; never shown (tracebacks print fixture values)."""

    def __repr__(self) -> str:
        return f"SecretEnv({sorted(self)})"


@pytest.fixture(scope="module")
def instances(inventory) -> dict[str, dict]:
    """Container name -> {config: dump, env: {NAME: value}} for every app instance."""
    client = services.docker_client(inventory)
    found = services.app_containers(client)
    if not found:
        raise AssertionError("no app instance (service pynomaly-app) runs on the Docker engine")
    out = {}
    for c in found:
        code, raw = c.exec_run(DUMP, workdir="/app", demux=False)
        text = raw.decode(errors="replace") if raw else ""
        if code != 0:
            raise RuntimeError(f"{c.name}: the config dump failed ({code}): {text[-500:]}")
        env = SecretEnv(e.split("=", 1) for e in c.attrs["Config"]["Env"] or []
                        if e.split("=", 1)[0] in KEPT_ENV and "=" in e)
        for value in env.values():
            register_secret(value)
            register_secret(urlsplit(value).password if "://" in value else None)
        out[c.name] = {"config": json.loads(text[text.index("{"):]), "env": env}
    attach("config dump per instance", {n: i["config"] for n, i in out.items()}, kind="json")
    return out


# ---------------------------------------------------------------- parsing (unit-tested)

def setting(config: dict, path: tuple[str, ...]):
    value = config
    for key in path:
        value = (value or {}).get(key) if isinstance(value, dict) else None
    return value


def mismatches(instances: dict[str, dict], path: tuple[str, ...], want) -> dict[str, object]:
    """Instance -> value, for the instances whose value differs from `want`."""
    got = {name: setting(i["config"], path) for name, i in instances.items()}
    return {n: v for n, v in got.items() if v != want}


def strip_password(url: str | None) -> str | None:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url) if url else url


def rate_limit_problem(config: dict, env: dict, want: dict) -> str | None:
    """None when RATE_LIMIT_STORAGE_URL is REDIS_URL (or, unset, the guide's default)."""
    url = setting(config, ("redis", "rate_limit_storage_url"))
    source = env.get(want["env"])
    expected_url = strip_password(source) if source else want["default"]
    if not url or not url.startswith(("redis://", "rediss://")):
        return f"rate-limit storage is {url!r}, not Redis"
    if strip_password(url) != expected_url:
        return f"rate-limit storage is {url}, guide: ${want['env']} ({expected_url})"
    return None


def secret_problem(env: dict) -> str | None:
    """None when the app's signing secret is set: SECRET_KEY (ProductionConfig) and JWT_SECRET
    (the guide's .env.production, which the app prefers) are, where present, not placeholders,
    and at least one of them is present."""
    present = {k: env[k] for k in ("SECRET_KEY", "JWT_SECRET") if k in env}
    if not any(v.strip() for v in present.values()):
        return "neither SECRET_KEY nor JWT_SECRET is set"
    bad = [k for k, v in present.items() if PLACEHOLDERS.match(v.strip()) or len(v.strip()) < 16]
    return f"{', '.join(bad)} empty, too short or a placeholder" if bad else None


def keyspace_dbs(info: dict) -> dict[int, int]:
    """INFO keyspace -> {db number: keys}."""
    out = {}
    for key, value in info.items():
        m = re.fullmatch(r"db(\d+)", key)
        if m:
            out[int(m.group(1))] = int(value["keys"]) if isinstance(value, dict) else int(
                re.search(r"keys=(\d+)", str(value)).group(1))
    return out


# ---------------------------------------------------------------- ProductionConfig, per instance

@per_requirement("PERF-DB-POOL-SIZE", "PERF-DB-MAX-OVERFLOW", "PERF-DB-POOL-TIMEOUT", "PERF-DB-POOL-RECYCLE",
                 "PERF-REDIS-MAX-CONNECTIONS", "PERF-CACHE-DEFAULT-TIMEOUT", "PERF-CACHE-REDIS-DB", "PERF-LOG-LEVEL",
                 "PERF-LOG-FORMAT", "PERF-JWT-ALGORITHM", "PERF-JWT-EXPIRE-MINUTES")
def test_production_config_value(instances, expected, req_id):
    """ProductionConfig: "DATABASE_POOL_SIZE = 20, DATABASE_MAX_OVERFLOW = 30, DATABASE_POOL_TIMEOUT =
    30, DATABASE_POOL_RECYCLE = 3600, REDIS_MAX_CONNECTIONS = 50, CACHE_DEFAULT_TIMEOUT = 300,
    CACHE_REDIS_DB = 1, LOG_LEVEL = "INFO", LOG_FORMAT = ..., JWT_ALGORITHM = "HS256",
    JWT_ACCESS_TOKEN_EXPIRE_MINUTES = 30" - as each instance runs it."""
    path, want = SETTINGS[req_id], expected(req_id)
    compare(".".join(path), {n: setting(i["config"], path) for n, i in instances.items()}, want)
    bad = mismatches(instances, path, want)
    assert not bad, f"{'.'.join(path)}: {bad}, guide: {want!r}"


@pytest.mark.requirement("PERF-REDIS-SOCKET-KEEPALIVE")
def test_redis_socket_keepalive(instances, expected):
    """"REDIS_SOCKET_KEEPALIVE = True; REDIS_SOCKET_KEEPALIVE_OPTIONS = {TCP_KEEPINTVL: 1,
    TCP_KEEPCNT: 3, TCP_KEEPIDLE: 1}" - the options the Redis pool really passes to the socket."""
    want = expected("PERF-REDIS-SOCKET-KEEPALIVE")
    wanted = {"socket_keepalive": want["REDIS_SOCKET_KEEPALIVE"],
              "socket_keepalive_options": want["REDIS_SOCKET_KEEPALIVE_OPTIONS"]}
    got = {n: {k: setting(i["config"], ("redis", k)) for k in wanted} for n, i in instances.items()}
    compare("redis pool keepalive", got, wanted)
    bad = {n: v for n, v in got.items() if v != wanted}
    assert not bad, f"Redis keepalive: {bad}, guide: {wanted}"


@pytest.mark.requirement("PERF-RATE-LIMIT-STORAGE")
def test_rate_limit_storage_is_redis(instances, expected):
    """"RATE_LIMIT_STORAGE_URL = os.getenv("REDIS_URL", "redis://localhost:6379/2")"."""
    want = expected("PERF-RATE-LIMIT-STORAGE")
    problems = {n: rate_limit_problem(i["config"], i["env"], want) for n, i in instances.items()}
    compare("rate-limit storage", {n: setting(i["config"], ("redis", "rate_limit_storage_url"))
                                   for n, i in instances.items()}, want)
    bad = {n: p for n, p in problems.items() if p}
    assert not bad, str(bad)


@pytest.mark.requirement("PERF-SECRET-KEY-SET")
def test_secret_key_is_set(instances):
    """"SECRET_KEY = os.getenv("SECRET_KEY")" - the instances' signing secret (SECRET_KEY, or the
    guide's JWT_SECRET that the app prefers) is set and not a placeholder (values never shown)."""
    problems = {n: secret_problem(i["env"]) for n, i in instances.items()}
    compare("signing secret per instance", {n: p or "set" for n, p in problems.items()}, "set")
    bad = {n: p for n, p in problems.items() if p}
    assert not bad, str(bad)


# ---------------------------------------------------------------- behaviour

@pytest.mark.requirement("PERF-CACHE-REDIS-DB")
def test_cache_keys_live_in_the_cache_db(instances, expected, inventory, audit_context):
    """"CACHE_REDIS_DB = 1": the Redis databases in use (INFO keyspace on the standalone Redis);
    cache keys, when there are any, are not written to another database than the guide's."""
    hosts = inventory.hosts_with_role("redis")
    if not hosts:
        pytest.skip("no standalone redis in the inventory")
    info = services.redis(audit_context.server(hosts[0].name), inventory).info("keyspace")
    dbs = keyspace_dbs(info)
    attach("INFO keyspace", info, kind="json")
    want = expected("PERF-CACHE-REDIS-DB")
    compare("databases in use", dbs, f"cache in db {want}")
    bad = mismatches(instances, ("redis", "cache_db"), want)
    assert not bad, f"cache db: {bad}, guide: {want}"
