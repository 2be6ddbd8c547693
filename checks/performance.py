"""Guide: Performance Optimization > Application Configuration (ProductionConfig): the values each
app instance builds its configuration with. What is read, and how: audit/probes/performance.py.

The single values (DATABASE_POOL_SIZE, ..., JWT_ACCESS_TOKEN_EXPIRE_MINUTES) are catalogue rows
judged by checks/values.py on every instance; the checks here judge what is more than one value.
"""

from __future__ import annotations

import pytest

from audit.probes.performance import rate_limit_problem, setting


@pytest.mark.roles("app")
@pytest.mark.requirement("PERF-REDIS-SOCKET-KEEPALIVE")
def check_redis_socket_keepalive(judge, app_config):
    """"REDIS_SOCKET_KEEPALIVE = True; REDIS_SOCKET_KEEPALIVE_OPTIONS = {TCP_KEEPINTVL: 1,
    TCP_KEEPCNT: 3, TCP_KEEPIDLE: 1}" - the options the Redis pool really passes to the socket."""
    want = {"socket_keepalive": judge.expected["REDIS_SOCKET_KEEPALIVE"],
            "socket_keepalive_options": judge.expected["REDIS_SOCKET_KEEPALIVE_OPTIONS"]}
    judge.each({n: {k: setting(i.config, ("redis", k)) for k in want} for n, i in app_config.instances.items()},
               lambda found: found == want, what="Redis pool keepalive per instance", expected=want)


@pytest.mark.roles("app")
@pytest.mark.requirement("PERF-RATE-LIMIT-STORAGE")
def check_rate_limit_storage_is_redis(judge, app_config):
    """"RATE_LIMIT_STORAGE_URL = os.getenv("REDIS_URL", "redis://localhost:6379/2")"."""
    judge.each({n: rate_limit_problem(i.config, i.env_urls, judge.expected) or "Redis, as the guide says"
                for n, i in app_config.instances.items()}, lambda v: v == "Redis, as the guide says",
               what="rate-limit storage per instance")


@pytest.mark.roles("app")
@pytest.mark.requirement("PERF-SECRET-KEY-SET")
def check_secret_key_is_set(judge, app_config):
    """"SECRET_KEY = os.getenv("SECRET_KEY")" - the instances' signing secret (SECRET_KEY, or the
    guide's JWT_SECRET that the app prefers) is set and not a placeholder (values never shown)."""
    judge.each({n: i.secret_problem or "set" for n, i in app_config.instances.items()}, lambda v: v == "set",
               what="signing secret per instance", expected="set")
