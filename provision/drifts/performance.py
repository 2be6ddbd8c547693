"""Application performance drifts (guide: Performance Optimization > Application Configuration).

The config drifts edit ProductionConfig (or the log-level lookup) inside ONE running instance,
pynomaly-app-2: the app's config dump, which builds the engine and Redis pool afresh, shows the
new values while the running workers keep serving with the old ones (no outage). The secret
drift re-creates pynomaly-app-2 with a placeholder SECRET_KEY (JWT_SECRET, which signs the
tokens, is unchanged); heal re-creates it as `up` does.
"""

from __future__ import annotations

from .. import setup
from ..topology import app_container_name
from . import Ctx, Drift, edit_file

APP = app_container_name(2)
CONFIG = "/app/src/pynomaly/infrastructure/config/production.py"
SETTINGS = "/app/src/pynomaly/infrastructure/config/settings.py"


def config(name: str, sed: str) -> tuple:
    return edit_file(APP, CONFIG, sed, "true", name)


def _recreate(ctx: Ctx, extra_env: dict | None) -> None:
    ctx.client.containers.get(APP).remove(force=True)
    setup.apps(ctx.client, ctx.st, ctx.st.load()["images"]["app"],
               extra_env={APP: extra_env} if extra_env else None)


_LOG_FORMAT = config("perf-log-format", "'s/LOG_FORMAT = .*/LOG_FORMAT = \"%(message)s\"/'")
_LOG_LEVEL = edit_file(APP, SETTINGS, "'s/return os.getenv(\"LOG_LEVEL\", config.LOG_LEVEL).upper()/return \"DEBUG\"/'",
                       "true", "perf-log-level")

DRIFTS: tuple[Drift, ...] = (
    Drift("perf-db-pool-shrunk",
          ("PERF-DB-POOL-SIZE", "PERF-DB-MAX-OVERFLOW", "PERF-DB-POOL-TIMEOUT", "PERF-DB-POOL-RECYCLE"),
          f"{APP}: ProductionConfig pool 5 / overflow 0 / timeout 10 / recycle -1",
          *config("perf-db-pool", "-e 's/DATABASE_POOL_SIZE = 20/DATABASE_POOL_SIZE = 5/' "
                                  "-e 's/DATABASE_MAX_OVERFLOW = 30/DATABASE_MAX_OVERFLOW = 0/' "
                                  "-e 's/DATABASE_POOL_TIMEOUT = 30/DATABASE_POOL_TIMEOUT = 10/' "
                                  "-e 's/DATABASE_POOL_RECYCLE = 3600/DATABASE_POOL_RECYCLE = -1/'")),
    Drift("perf-redis-pool-no-keepalive", ("PERF-REDIS-MAX-CONNECTIONS", "PERF-REDIS-SOCKET-KEEPALIVE"),
          f"{APP}: ProductionConfig REDIS_MAX_CONNECTIONS 10, REDIS_SOCKET_KEEPALIVE False",
          *config("perf-redis-pool", "-e 's/REDIS_MAX_CONNECTIONS = 50/REDIS_MAX_CONNECTIONS = 10/' "
                                     "-e 's/REDIS_SOCKET_KEEPALIVE = True/REDIS_SOCKET_KEEPALIVE = False/'")),
    Drift("perf-cache-db0-60s", ("PERF-CACHE-DEFAULT-TIMEOUT", "PERF-CACHE-REDIS-DB"),
          f"{APP}: ProductionConfig CACHE_DEFAULT_TIMEOUT 60, CACHE_REDIS_DB 0",
          *config("perf-cache", "-e 's/CACHE_DEFAULT_TIMEOUT = 300/CACHE_DEFAULT_TIMEOUT = 60/' "
                                "-e 's/CACHE_REDIS_DB = 1/CACHE_REDIS_DB = 0/'")),
    Drift("perf-rate-limit-in-memory", ("PERF-RATE-LIMIT-STORAGE",),
          f"{APP}: ProductionConfig RATE_LIMIT_STORAGE_URL = memory://",
          *config("perf-rate-limit", "'s|^    RATE_LIMIT_STORAGE_URL = .*|    RATE_LIMIT_STORAGE_URL = \"memory://\"|'")),
    Drift("perf-logging-debug", ("PERF-LOG-LEVEL", "PERF-LOG-FORMAT"),
          f"{APP}: the app logs at DEBUG with a bare %(message)s format",
          lambda c: (_LOG_FORMAT[0](c), _LOG_LEVEL[0](c)),
          lambda c: (_LOG_LEVEL[1](c), _LOG_FORMAT[1](c))),
    Drift("perf-jwt-hs512-1day", ("PERF-JWT-ALGORITHM", "PERF-JWT-EXPIRE-MINUTES"),
          f"{APP}: ProductionConfig JWT_ALGORITHM HS512, tokens valid 1440 minutes",
          *config("perf-jwt", "-e 's/JWT_ALGORITHM = \"HS256\"/JWT_ALGORITHM = \"HS512\"/' "
                              "-e 's/JWT_ACCESS_TOKEN_EXPIRE_MINUTES = 30/JWT_ACCESS_TOKEN_EXPIRE_MINUTES = 1440/'")),
    Drift("perf-secret-key-placeholder", ("PERF-SECRET-KEY-SET",),
          f"{APP} re-created with SECRET_KEY=changeme (JWT_SECRET, which signs tokens, unchanged)",
          lambda c: _recreate(c, {"SECRET_KEY": "changeme"}),
          lambda c: _recreate(c, None)),
)
